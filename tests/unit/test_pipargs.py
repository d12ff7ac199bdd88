"""pip options inside install.python_packages entries and requirements files (envd hands both
to pip verbatim): what is kept for the lock, and the one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from envnix.core.errors import FrontendError, SpecError
from envnix.frontend import load_spec
from envnix.lock.pip import requirements_text
from envnix.spec import PipRequest
from envnix.spec.pipargs import PipWords, parse_pip_words

IDX = "https://idx.example/whl/cpu"
WHL = "https://files.example/p/tok-1.0-py3-none-any.whl"


@pytest.mark.parametrize(("entry", "words"), [
    (f"torch --index-url {IDX}", PipWords(["torch"], indexes=[IDX])),
    (f"torch==2.5.1 -i {IDX}", PipWords(["torch==2.5.1"], indexes=[IDX])),
    (f"torch --extra-index-url={IDX}", PipWords(["torch"], indexes=[IDX])),
    (f"dgl -f {IDX}/repo.html", PipWords(["dgl"], find_links=[f"{IDX}/repo.html"])),
    (f"dgl --find-links {IDX}", PipWords(["dgl"], find_links=[IDX])),
    ("--pre tok", PipWords(["tok"], pre=True)),
    (f"tok @ {WHL}", PipWords([f"tok @ {WHL}"])),
    (f"tok@{WHL}", PipWords([f"tok @ {WHL}"])),
    (WHL, PipWords([f"tok @ {WHL}"])),
    ("numpy scipy", PipWords(["numpy", "scipy"])),
    (f"x --trusted-host idx.example --index-url {IDX}",
     PipWords(["x"], indexes=[IDX], trusted_hosts=["idx.example"])),
])
def test_entry_words(entry: str, words: PipWords) -> None:
    assert parse_pip_words(entry, "here") == words


@pytest.mark.parametrize(("entry", "message"), [
    ("-e .", "here: pip option '-e' cannot be locked"),
    ("torch --no-binary :all:", "here: pip option '--no-binary' cannot be locked"),
    ("torch --index-url", "here: --index-url needs a value"),
    ("dgl -f ./wheels", "here: -f './wheels' is not an http(s) URL"),
    ("x @ git+ssh://git.example/x@v1", "here: 'git+ssh://git.example/x@v1': only git+https:// "
                                       "(and git+http://) references are fetched"),
    ("https://files.example/x-1.0.tar.gz", "here: 'https://files.example/x-1.0.tar.gz' is not "
                                           "a wheel; envnix installs wheels only"),
    ("tok 'unclosed", "here: \"tok 'unclosed\" is not valid shell words"),
])
def test_what_cannot_be_locked_is_one_line_with_a_hint(entry: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_pip_words(entry, "here")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert info.value.hint


def test_entries_in_build_envd_feed_the_request(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        f'    install.python_packages(name=["torch --index-url {IDX}", "six>=1.16",\n'
        f'        "tok @ {WHL}", "--pre dgl -f {IDX}/dgl.html"])\n'
        '    config.pip_index(url="https://mirror.example/simple")\n')
    spec = load_spec(tmp_path, warn=lambda _: None)
    assert spec.pip.packages == ["torch", "six>=1.16", f"tok @ {WHL}", "dgl"]
    assert (spec.pip.package_indexes, spec.pip.find_links, spec.pip.prerelease) == (
        [IDX], [f"{IDX}/dgl.html"], True)
    assert spec.pip.index_url == "https://mirror.example/simple"  # config.pip_index kept apart
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    install.python_packages(name=["-e ."])\n')
    with pytest.raises(FrontendError) as info:
        load_spec(tmp_path, warn=lambda _: None)
    assert str(info.value).startswith("build.envd:3:5: install.python_packages: pip option "
                                      "'-e' cannot be locked")


def test_requirements_file_lines_are_read_the_same_way(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        f"# CPU only\n--extra-index-url {IDX}\ntorch==2.5.1  # the CPU build\n"
        f"tok @ {WHL}\n-f {IDX}/dgl.html\n--pre\nnumpy>=1.26\n")
    request = PipRequest(packages=["six"], requirements_files=["requirements.txt"],
                         package_indexes=["https://other.example/simple"])
    assert requirements_text(request, tmp_path).splitlines() == [
        "six", "torch==2.5.1  # the CPU build", f"tok @ {WHL}", "numpy>=1.26",
        "--extra-index-url https://other.example/simple", f"--extra-index-url {IDX}",
        f"--find-links {IDX}/dgl.html", "--pre"]
    # without options, the text (the lock's fingerprint) is what it always was
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n# c\nnumpy  # inline\n")
    assert requirements_text(PipRequest(requirements_files=["requirements.txt"]),
                             tmp_path) == "six==1.17.0\nnumpy  # inline\n"
    # the context's own project (-e ./local) is the frontend's to install: the lock skips it
    (tmp_path / "requirements.txt").write_text("six\n  -e ./local\n")
    assert requirements_text(PipRequest(requirements_files=["requirements.txt"]),
                             tmp_path) == "six\n"
    (tmp_path / "requirements.txt").write_text("six\n  -e ./local\n  --no-binary :all:\n")
    with pytest.raises(SpecError) as info:
        requirements_text(PipRequest(requirements_files=["requirements.txt"]), tmp_path)
    assert str(info.value).startswith(
        "requirements.txt:3:3: pip option '--no-binary' cannot be locked")

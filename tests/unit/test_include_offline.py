"""include(git=URL) without git: URL checks, the included module's names, errors that point
into the repository's files, and the pin the lock records. The repositories here are
IncludedRepo values made in the test (what the fetcher reads from git's object database);
tests/integration/test_include_e2e.py fetches real ones from a loopback git daemon."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from envnix.core.errors import EnvnixError, FrontendError, SpecError
from envnix.frontend import evaluate_spec, load_spec
from envnix.frontend.include import (
    IncludedRepo,
    IncludeNeeded,
    check_url,
    content_sha256,
    pins_from_lock,
    walk_order,
)
from envnix.lock import Lock, lock_inputs
from envnix.lock.model import CorruptLockError
from envnix.render import image_section

URL = "https://git.example/org/envdlib"
COMMIT = "ae56fd8c6ab851fe19a6b5ec6bfa69bab1f86a0c"
LIB = (
    ("src/jupyter.envd",
     'def jupyter_lab(envd_port=8888):\n'
     '    runtime.expose(envd_port=envd_port, service="jupyter")\n'
     '    _pkgs()\n'
     'def _pkgs():\n'
     '    install.python_packages(name=["jupyterlab"])\n'),
    ("src/tensorboard.envd",
     'DEFAULT_DIR = "/home/envd/logs"\n'
     'UNSET = None\n'
     'def tensorboard(envd_port=6006, envd_dir=DEFAULT_DIR):\n'
     '    install.python_packages(name=["tensorboard"])\n'
     '    runtime.environ(env={"TB_DIR": envd_dir})\n'
     '    runtime.expose(envd_port=envd_port, service="tensorboard")\n'),
)
HEADER = 'envdlib = include("' + URL + '")\n'


def repo(files: tuple[tuple[str, str], ...] = LIB, url: str = URL) -> IncludedRepo:
    return IncludedRepo(url, COMMIT, files)


def spec_of(tmp_path: Path, source: str, files: tuple[tuple[str, str], ...] = LIB):  # type: ignore[no-untyped-def]
    (tmp_path / "build.envd").write_text(source)
    return evaluate_spec(tmp_path, includes={URL: repo(files)})


def error_of(tmp_path: Path, source: str,
             files: tuple[tuple[str, str], ...] = LIB) -> EnvnixError:
    with pytest.raises(EnvnixError) as info:
        spec_of(tmp_path, source, files)
    return info.value


@pytest.mark.parametrize(("url", "why"), [
    ("", "the URL is empty"),
    ("file:///etc", "only http, https and git URLs are fetched, not file://"),
    ("ext::sh -c id", "spaces, control or non-ASCII"),
    ("ext::sh", "only http, https and git URLs are fetched, not ext://"),
    ("/srv/repo", "only http, https and git URLs are fetched, not a path"),
    ("ssh://git.example/org/lib", "not ssh://"),
    ("https://user:token@git.example/org/lib", "carries credentials"),
    ("https://git.example/org/lib\n", "control"),
    ("https://git.example/org/l\x00b", "control"),
    ("https:///org/lib", "no valid host"),
    ("https://git.example:99999/org/lib", "malformed"),
    ("https://git.example/org/lib?ref=main", "no ?query or #fragment"),
    ("https://git.example/" + "a" * 2048, "longer than 2048"),
])
def test_urls_git_must_not_see_are_refused(url: str, why: str) -> None:
    with pytest.raises(SpecError, match=None) as info:
        check_url(url)
    assert why in str(info.value)


@pytest.mark.parametrize("url", [URL, "http://127.0.0.1:8080/lib.git",
                                 "git://127.0.0.1:9418/envdlib", "HTTPS://git.example/x"])
def test_http_https_and_git_urls_are_taken(url: str) -> None:
    assert check_url(url) == url


def test_a_bad_url_is_one_line_at_the_include_call(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'def build():\n    base(os="debian12", language="python3.11")\n'
                             '    include(git="file:///etc/passwd")\n')
    assert isinstance(err, FrontendError) and err.exit_code == 3
    assert str(err).startswith("build.envd:3:5: include(git='file:///etc/passwd'): only http")


def test_an_unfetched_repository_stops_the_evaluation_at_its_call(tmp_path: Path) -> None:
    """The sandboxed child never runs git: load_spec fetches and evaluates again."""
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        f'    lib = include(git="{URL}")\n')
    with pytest.raises(IncludeNeeded) as info:
        evaluate_spec(tmp_path)
    assert (info.value.url, info.value.file, info.value.line, info.value.col) == (
        URL, "build.envd", 3, 11)


def test_the_included_functions_run_as_build_envd_calls(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, HEADER + 'def build():\n'
                   '    base(os="debian12", language="python3.11")\n'
                   '    envdlib.tensorboard(envd_port=8000)\n'
                   '    envdlib.jupyter_lab()\n')
    assert spec.pip.packages == ["tensorboard", "jupyterlab"]
    assert spec.env == {"TB_DIR": "/home/envd/logs"}
    assert [p["envd_port"] for p in spec.runtime.expose] == [8000, 8888]
    assert spec.includes == [{"url": URL, "commit": COMMIT, "sha256": content_sha256(LIB)}]
    assert spec.sources == ["build.envd"]  # the repository is not a context file
    assert "includes" in spec.to_dict()


def test_the_module_exports_every_global_but_underscored_ones(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, HEADER + 'def build():\n'
                   '    base(os="debian12", language="python3.11")\n'
                   '    runtime.environ(env={"A": envdlib.DEFAULT_DIR, "B": str(envdlib.UNSET),'
                   ' "C": ",".join(dir(envdlib))})\n')
    assert spec.env == {"A": "/home/envd/logs", "B": "None",
                        "C": "DEFAULT_DIR,UNSET,jupyter_lab,tensorboard"}
    err = error_of(tmp_path, HEADER + 'def build():\n    envdlib._pkgs()\n')
    assert "_pkgs" in str(err) and str(err).startswith("build.envd:3:5:")


def test_a_name_two_files_define_is_envds_error(tmp_path: Path) -> None:
    files = (*LIB, ("zz.envd", "def tensorboard():\n    pass\n"))
    err = error_of(tmp_path, HEADER + "def build():\n    pass\n", files)
    assert ("found duplicated object name: tensorboard in zz.envd "
            "(also in src/tensorboard.envd)") in str(err)


def test_errors_inside_the_repository_name_its_file_and_line(tmp_path: Path) -> None:
    files = (("lib.envd", 'def broken():\n    install.apt_packages(name="jq")\n'),)
    err = error_of(tmp_path, HEADER + "def build():\n    envdlib.broken()\n", files)
    assert str(err).startswith(f"{URL}/lib.envd:2:5: install.apt_packages: for parameter "
                               "name: got string, want list")
    files = (("lib.envd", "def f(:\n"),)
    err = error_of(tmp_path, HEADER + "def build():\n    pass\n", files)
    assert str(err).startswith(f"{URL}/lib.envd:1:")


def test_included_code_has_the_same_bounds(tmp_path: Path) -> None:
    files = (("loop.envd", "def spin():\n    for i in range(100000):\n"
                           "        for j in range(100000):\n            pass\n"),)
    err = error_of(tmp_path, HEADER + "def build():\n    envdlib.spin()\n", files)
    assert "evaluation stopped after about" in str(err)
    files = (("deep.envd", "X = " + "[" * 150 + "]" * 150 + "\n"),)
    err = error_of(tmp_path, HEADER + "def build():\n    pass\n", files)
    assert str(err).startswith(f"{URL}/deep.envd:1:") and "nested too deeply" in str(err)


def test_included_files_may_not_load_or_include(tmp_path: Path) -> None:
    files = (("a.envd", 'load("/etc/passwd.envd", "x")\n'),)
    err = error_of(tmp_path, HEADER + "def build():\n    pass\n", files)
    assert "load('/etc/passwd.envd') inside an included repository is not supported" in str(err)
    files = (("a.envd", f'def f():\n    include(git="{URL}")\n'),)
    err = error_of(tmp_path, HEADER + "def build():\n    envdlib.f()\n", files)
    assert "include() inside an included repository is not supported" in str(err)


def test_the_repository_is_read_in_envds_walk_order() -> None:
    paths = ["b.envd", "a/z.envd", "a.envd", "a/b/c.envd"]
    assert sorted(paths, key=walk_order) == ["a/b/c.envd", "a/z.envd", "a.envd", "b.envd"]


def test_the_content_hash_covers_paths_and_texts() -> None:
    moved = (("lib/jupyter.envd", LIB[0][1]), LIB[1])
    edited = ((LIB[0][0], LIB[0][1] + "\n"), LIB[1])
    assert len({content_sha256(LIB), content_sha256(moved), content_sha256(edited)}) == 3


def _locked(tmp_path: Path) -> tuple[Lock, dict]:  # type: ignore[type-arg]
    spec = spec_of(tmp_path, HEADER + 'def build():\n'
                   '    base(os="debian12", language="python3.11")\n'
                   '    envdlib.tensorboard()\n')
    lock = Lock(inputs=lock_inputs(spec, tmp_path))
    lock = dataclasses.replace(lock, image=image_section(spec, lock, tmp_path))
    return lock, json.loads(lock.dumps())


def test_the_lock_records_the_pin_and_reads_it_back(tmp_path: Path) -> None:
    lock, data = _locked(tmp_path)
    assert data["image"]["includes"] == [
        {"url": URL, "commit": COMMIT, "sha256": content_sha256(LIB)}]
    again = Lock.loads(lock.dumps())
    assert pins_from_lock(again.image) == {URL: data["image"]["includes"][0]}


@pytest.mark.parametrize(("field", "value", "why"), [
    ("commit", "abc", "a commit id"),
    ("commit", "G" * 40, "a commit id"),
    ("url", "file:///etc", "an http(s) or git:// URL"),
    ("url", "https://u:p@git.example/x", "without credentials"),
    ("sha256", "0" * 63, "64 hex digits"),
])
def test_a_damaged_pin_is_one_line_naming_the_field(tmp_path: Path, field: str, value: str,
                                                     why: str) -> None:
    _, data = _locked(tmp_path)
    data["image"]["includes"][0][field] = value
    with pytest.raises(CorruptLockError) as info:
        Lock.loads(json.dumps(data), "envnix.lock")
    assert str(info.value).startswith(f"envnix.lock: image.includes[0].{field}: ")
    assert why in str(info.value)


def test_a_repository_listed_twice_is_refused(tmp_path: Path) -> None:
    _, data = _locked(tmp_path)
    data["image"]["includes"].append(dict(data["image"]["includes"][0]))
    with pytest.raises(CorruptLockError, match=r"image.includes\[1\].url: .* appears twice"):
        Lock.loads(json.dumps(data), "envnix.lock")


def test_locked_without_a_pin_stops_before_any_git(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(HEADER + "def build():\n    pass\n")
    with pytest.raises(EnvnixError) as info:
        load_spec(tmp_path, include_pins={}, locked=True)
    assert info.value.exit_code == 5
    assert str(info.value) == (f"build.envd:1:11: include(git='{URL}') is not pinned in "
                               "envnix.lock")

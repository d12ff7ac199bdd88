"""The tests of tests/unit/test_context.py that start programs or use the network.

io.copy: context selection, ignore rules, escapes, and a real image with copied files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli import build
from _podman import podman
from test_context import make_context


@pytest.mark.network
@pytest.mark.slow
def test_copied_files_in_a_built_image(tmp_path: Path, podman_environ: dict) -> None:
    context = make_context(tmp_path)
    built = build(context, "-t", "copydemo:dev")
    out = podman("run", "--rm", f"oci:{built.layout}", "python3", "-c",
                 "import os; print(sorted(os.listdir('/detectron2')), "
                 "os.stat('/detectron2/setup.py').st_uid)", env=podman_environ)
    assert out.stdout.strip() == (
        "['detectron2', 'keep.log', 'link', 'run.sh', 'setup.py'] 1000")
    (context / "unrelated.txt").write_text("changed\n")
    again = build(context, "-t", "copydemo:dev")
    assert (again.config, again.manifest) == (built.config, built.manifest)


@pytest.mark.network
@pytest.mark.slow
def test_copy_rule_and_fish_login_shell_in_a_built_image(tmp_path: Path,
                                                         podman_environ: dict) -> None:
    """Two io.copy cases as envd places them (a directory onto a new path is that path; a
    file into a target ending in /), and shell("fish") as the dev user's login shell."""
    context = tmp_path / "tok"
    (context / "bpe").mkdir(parents=True)
    (context / "bpe" / "merges.txt").write_text("a b\n")
    (context / "vocab.txt").write_text("hello\n")
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n    shell("fish")\n'
        '    io.copy("bpe", "/opt/bpe")\n    io.copy("vocab.txt", "/opt/tok/")\n')
    built = build(context, "-t", "copyrule:dev")
    out = podman("run", "--rm", f"oci:{built.layout}", "python3", "-c",
                 "import os, pwd; print(sorted(os.listdir('/opt/bpe')), "
                 "sorted(os.listdir('/opt/tok')), pwd.getpwnam('envd').pw_shell)",
                 env=podman_environ)
    assert out.stdout.strip() == "['merges.txt'] ['vocab.txt'] /usr/bin/fish"
    out = podman("run", "--rm", f"oci:{built.layout}", "fish", "-c", "echo fish $FISH_VERSION",
                 env=podman_environ)
    assert out.stdout.startswith("fish 3.")
    blob = built.layout / "blobs" / "sha256" / built.config.removeprefix("sha256:")
    assert json.loads(blob.read_text())["config"]["Cmd"] == ["/usr/bin/fish"]

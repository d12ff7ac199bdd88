"""Files named by env.yaml and build.envd are read only inside the build context (issue 11, 2).

Each attack runs the real CLI on a context in a temp dir. The file outside the context is a
FIFO: opening it would block, so a run that returns at all proves it was never opened; the
error must be one positioned line, exit 3, and the context must hold no lock afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from envnix.core.errors import FrontendError, SpecError
from envnix.frontend.envyaml import parse_env_yaml
from envnix.lock.pip import requirements_text
from envnix.spec import PipRequest

CONDA_ENVD = """\
def build():
    base(os="debian12", language="python3.11")
    install.conda_packages(env_file="env.yaml")
"""


def _context(tmp_path: Path, pip_lines: list[str]) -> tuple[Path, Path]:
    """A context whose env.yaml has ``pip_lines`` and, beside it (outside), a FIFO trap."""
    outside = tmp_path / "outside"
    (outside / "pkg").mkdir(parents=True)
    os.mkfifo(outside / "secret.txt")
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "build.envd").write_text(CONDA_ENVD)
    pip = "".join(f"    - {line}\n" for line in pip_lines)
    (context / "env.yaml").write_text(
        "channels: [http://127.0.0.1:9/unused]\ndependencies:\n  - python=3.11\n  - pip:\n"
        + pip)
    return context, outside


def envnix(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """conftest's envnix(), with a timeout: a regression that opens the FIFO fails, not hangs."""
    try:
        return subprocess.run([sys.executable, "-m", "envnix", *args], capture_output=True,
                              text=True, check=check, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"envnix {' '.join(args)} blocked: it opened the FIFO outside the context")


def _one_line_error(proc: object, context: Path) -> str:
    assert proc.returncode == 3, proc.stderr  # type: ignore[attr-defined]
    lines = proc.stderr.splitlines()  # type: ignore[attr-defined]
    assert lines and lines[0].startswith("envnix: "), proc.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in proc.stderr  # type: ignore[attr-defined]
    assert len([ln for ln in lines if not ln.startswith("  hint:")]) == 1, lines
    # nothing locked, rendered or left behind, in the context or beside it
    made = {p.name for p in context.parent.rglob("*")} - {
        "ctx", "outside", "pkg", "secret.txt", "build.envd", "env.yaml", "reqs.txt", "link.txt"}
    assert made == set()
    return lines[0]


@pytest.mark.parametrize("entry", [
    "-r {outside}/secret.txt",
    "--requirement {outside}/secret.txt",
    "--requirement={outside}/secret.txt",
    "-r{outside}/secret.txt",
    "-r ../outside/secret.txt",
    "-r ~/../../{outside}/secret.txt",
    "-e {outside}/pkg",
    "-e ../outside/pkg",
    "../outside/pkg",
    "file://{outside}/pkg",
])
def test_env_yaml_pip_entry_outside_the_context_is_refused(tmp_path: Path, entry: str) -> None:
    context, _ = _context(tmp_path, [entry.format(outside=tmp_path / "outside")])
    proc = envnix("lock", str(context), check=False)
    line = _one_line_error(proc, context)
    assert line.startswith(f"envnix: {context / 'env.yaml'}:5:7: "), line
    assert "outside the build context" in line
    assert "envnix reads only files inside the build context" in proc.stderr or \
        "move it under the build context" in proc.stderr


def test_nested_requirements_file_escaping_is_refused_at_its_line(tmp_path: Path) -> None:
    """env.yaml -r reqs.txt (inside) whose 2nd line is -r through a symlink leading out."""
    context, outside = _context(tmp_path, ["six", "-r reqs.txt"])
    (context / "link.txt").symlink_to(outside / "secret.txt")
    (context / "reqs.txt").write_text("attrs\n-r link.txt\n")
    proc = envnix("lock", str(context), check=False)
    line = _one_line_error(proc, context)
    assert line.startswith(f"envnix: {context / 'reqs.txt'}:2: -r link.txt: it resolves to "
                           f"{outside / 'secret.txt'}, outside the build context"), line


@pytest.mark.parametrize("entry", ["-c {outside}/secret.txt", "--constraint ../outside/x",
                                   "--index-url file://{outside}",
                                   "--extra-index-url=file:///etc"])
def test_other_pip_options_naming_host_files_read_nothing(tmp_path: Path, entry: str) -> None:
    context, _ = _context(tmp_path, [entry.format(outside=tmp_path / "outside")])
    proc = envnix("lock", str(context), check=False)
    line = _one_line_error(proc, context)
    assert line.startswith(f"envnix: {context / 'env.yaml'}:5:7: "), line


def test_a_fifo_inside_the_context_is_not_opened(tmp_path: Path) -> None:
    context, _ = _context(tmp_path, ["-r reqs.txt"])
    os.mkfifo(context / "reqs.txt")
    proc = envnix("lock", str(context), check=False)
    line = _one_line_error(proc, context)
    assert line.endswith(f"-r reqs.txt: {context / 'reqs.txt'} is not a regular file"), line


def test_build_envd_requirements_through_a_symlink_out_is_refused(tmp_path: Path) -> None:
    context, outside = _context(tmp_path, [])
    (context / "link.txt").symlink_to(outside / "secret.txt")
    (context / "build.envd").write_text(textwrap.dedent("""\
        def build():
            base(os="debian12", language="python3.11")
            install.python_packages(requirements="link.txt")
        """))
    proc = envnix("lock", str(context), check=False)
    line = _one_line_error(proc, context)
    assert line.startswith("envnix: build.envd:3:5: requirements file 'link.txt' is outside"), line


def test_the_requirements_reader_checks_too(tmp_path: Path) -> None:
    """lock/pip.py reads build.envd's requirements file itself: it applies the same rule."""
    context, outside = _context(tmp_path, [])
    (context / "link.txt").symlink_to(outside / "secret.txt")
    for rel in ("link.txt", "../outside/secret.txt", str(outside / "secret.txt")):
        with pytest.raises(SpecError, match="outside the build context"):
            requirements_text(PipRequest(requirements_files=[rel]), context)
    (context / "reqs.txt").write_text("six\n")
    assert requirements_text(PipRequest(requirements_files=["reqs.txt"]), context) == "six\n"


def test_files_inside_the_context_but_beside_env_yaml_are_fine(tmp_path: Path) -> None:
    """env.yaml in a subdirectory may name files elsewhere in the context (when the caller
    says where the context is), never above it."""
    context = tmp_path / "ctx"
    (context / "envs").mkdir(parents=True)
    (context / "pkg").mkdir()
    (context / "reqs.txt").write_text("six\n")
    env_yaml = context / "envs" / "env.yaml"
    env_yaml.write_text("dependencies:\n  - pip:\n    - -r ../reqs.txt\n    - -e ../pkg\n")
    parsed = parse_env_yaml(env_yaml, context)
    assert parsed.pip == ("six",)
    assert parsed.pip_local == ((str(context.resolve() / "pkg"), True),)
    with pytest.raises(FrontendError, match=r"envs/env.yaml:3:7: -r \.\./reqs.txt: it resolves"):
        parse_env_yaml(env_yaml)  # no context given: env.yaml's own directory is the boundary
    with pytest.raises(FrontendError, match=r"cannot read env\.yaml: it resolves to"):
        parse_env_yaml(env_yaml, context / "envs" / "other")


def test_env_yaml_in_a_subdirectory_may_name_files_elsewhere_in_the_context(
        tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "envs").mkdir(parents=True)
    (context / "reqs.txt").write_text("six\n")
    (context / "build.envd").write_text(CONDA_ENVD.replace('"env.yaml"', '"envs/env.yaml"'))
    (context / "envs" / "env.yaml").write_text(
        "channels: [http://127.0.0.1:9/unused]\n"
        "dependencies:\n  - python=3.11\n  - pip:\n    - -r ../reqs.txt\n")
    proc = envnix("spec", str(context))
    assert proc.returncode == 0, proc.stderr


def test_a_line_break_inside_a_pip_name_reads_no_host_file(tmp_path: Path) -> None:
    """uv reads requirements.in line by line: a "\\r" inside one install.python_packages entry
    once became a line of its own, `-r <host file>`, and uv read it (the FIFO here would block)."""
    context, outside = _context(tmp_path, [])
    (context / "build.envd").write_text(textwrap.dedent(f"""\
        def build():
            base(os="debian12", language="python3.11")
            install.python_packages(name=["six ; python_version > '3'\\r-r {outside}/secret.txt"])
        """))
    proc = envnix("lock", str(context), check=False)
    line = _one_line_error(proc, context)
    assert "control character" in line, line

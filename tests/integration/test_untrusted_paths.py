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
from test_untrusted_paths_offline import CONDA_ENVD, _context


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

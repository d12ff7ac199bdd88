"""Bounded evaluation: a hostile build.envd gets one `envnix:` line and exit 3, never a crash,
a hang or a traceback (nesting, steps, CPU, memory, special files as the build file)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_frontend_limits_offline import BASE, write

from envnix.frontend.bounds import MAX_NESTING


def spec_cli(context: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envnix", "spec", str(context)],
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line(proc: subprocess.CompletedProcess[str], pattern: str) -> None:
    """Exit 3 and exactly one `envnix:` error line matching ``pattern`` (plus an optional
    hint line): no traceback, no Rust panic text, nothing else on stderr."""
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and re.fullmatch(pattern, lines[0]), proc.stderr
    assert all(line.startswith("  hint: ") for line in lines[1:]), proc.stderr


# -- nesting ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "where"), [
    ("x = " + "[" * 3000 + "]" * 3000, f"3:{4 + MAX_NESTING + 1}"),
    ("x = " + "-" * 5000 + "1", f"3:{4 + MAX_NESTING + 1}"),
    ("x = " + "+".join(["1"] * 10000), f"3:{4 + 2 * (MAX_NESTING + 1)}"),
    ("x = " + "lambda: " * 2000 + "1", f"3:{4 + 8 * MAX_NESTING + 1}"),
    ("x = 1\nif x == 0:\n    pass\n" + "".join(f"elif x == {i}:\n    pass\n"
                                              for i in range(3000)),
     f"{5 + 2 * MAX_NESTING}:5"),  # the body of the 100th elif
], ids=["brackets", "unary", "binary", "lambda", "elif"])
def test_deep_nesting_is_one_line_with_position(tmp_path: Path, source: str,
                                                where: str) -> None:
    """Each of these killed envnix with SIGSEGV (the parser/compiler recursion)."""
    proc = spec_cli(write(tmp_path, "# deep\n\n" + source + "\n" + BASE))
    assert_one_line(proc, rf"envnix: build\.envd:{where}: nested too deeply: more than "
                          rf"{MAX_NESTING} levels of brackets, operators and blocks")


def test_deep_indentation(tmp_path: Path) -> None:
    levels = 300
    body = "".join(" " * (i + 1) + "if True:\n" for i in range(levels)) + " " * (levels + 1)
    proc = spec_cli(write(tmp_path, "def build():\n" + body + "pass\n"))
    # def's body is block 1; the 100th if is block 100, the next line is one too deep
    assert_one_line(proc, rf"envnix: build\.envd:{MAX_NESTING + 1}:{MAX_NESTING + 1}: "
                          "nested too deeply: .*")


def test_nesting_in_a_loaded_file_points_into_it(tmp_path: Path) -> None:
    write(tmp_path, "\n" * 4 + "X = " + "[" * 3000 + "\n", "lib.envd")
    proc = spec_cli(write(tmp_path, 'load("lib.envd", "X")\n' + BASE))
    assert_one_line(proc, rf"envnix: lib\.envd:5:{4 + MAX_NESTING + 1}: nested too deeply.*")


# -- steps, CPU, memory -----------------------------------------------------------------------
def test_endless_loop_stops_with_position(tmp_path: Path) -> None:
    proc = spec_cli(write(tmp_path, BASE + "    n = 0\n    for i in range(100000):\n"
                                           "        for j in range(100000):\n"
                                           "            n += 1\n"))
    assert_one_line(proc, r"envnix: build\.envd:[45]:\d+: evaluation stopped after about "
                          r"\d+ million instructions \(an endless or very long loop\?\)")


def test_string_doubling_is_one_line(tmp_path: Path) -> None:
    """On main: a PanicException traceback after 1.1 GB."""
    proc = spec_cli(write(tmp_path, BASE + '    s = "x"\n    for i in range(100):\n'
                                           "        s = s + s\n"))
    assert_one_line(proc, r"envnix: build\.envd: (evaluation ran out of memory \(the limit "
                          r"is 1024 MiB\)|a string or list grew too large .*)")


def test_one_huge_allocation_is_one_line(tmp_path: Path) -> None:
    """list(range(1 << 27)) asks Rust for 15 GB in one allocation, which aborts the process."""
    proc = spec_cli(write(tmp_path, BASE + "    x = len(list(range(1 << 27)))\n"))
    assert_one_line(proc, r"envnix: build\.envd: evaluation ran out of memory \(the limit "
                          r"is 1024 MiB\)")


def test_gradual_memory_growth_stops_with_position(tmp_path: Path) -> None:
    proc = spec_cli(write(tmp_path, BASE + "    x = [[0] * 1000 for i in range(1000000)]\n"))
    assert_one_line(proc, r"envnix: build\.envd:3:\d+: evaluation stopped: it used more than "
                          r"512 MiB of memory")


# -- what the build file itself is --------------------------------------------------------------
def test_build_file_that_is_a_fifo_or_device(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "build.envd")
    assert_one_line(spec_cli(tmp_path, timeout=60),
                    r"envnix: .*build\.envd: is a FIFO \(named pipe\), not a file")
    (tmp_path / "build.envd").unlink()
    (tmp_path / "build.envd").symlink_to("/dev/zero")
    assert_one_line(spec_cli(tmp_path, timeout=60),
                    r"envnix: .*build\.envd: is a character device, not a file")


def test_loaded_fifo_and_huge_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "lib.envd")
    proc = spec_cli(write(tmp_path, 'load("lib.envd", "X")\n' + BASE), timeout=60)
    assert_one_line(proc, r"envnix: build\.envd:1:1: load\('lib\.envd'\): .*lib\.envd: is a "
                          r"FIFO \(named pipe\), not a file")
    (tmp_path / "build.envd").write_text(BASE + "# " + "x" * (1 << 20) + "\n")
    assert_one_line(spec_cli(tmp_path), r"envnix: .*build\.envd: larger than 1 MiB; .*")


def test_interrupted_parent_leaves_no_child(tmp_path: Path) -> None:
    """Ctrl-C while the child evaluates: the child is killed, not left running."""
    write(tmp_path, BASE + "    n = 0\n    for i in range(100000):\n"
                           "        for j in range(100000):\n            n += 1\n")
    proc = subprocess.Popen([sys.executable, "-m", "envnix", "spec", str(tmp_path)],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (children := _children(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children, "the evaluation child never started"
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_python_conversion_errors_are_said_plainly(tmp_path: Path) -> None:
    """Found by the fuzz test: a 5000-digit integer showed Python's ValueError text."""
    proc = spec_cli(write(tmp_path, "def build():\n    config.owner(uid=" + "9" * 5000 +
                                    ", gid=1)\n"))
    assert_one_line(proc, r"envnix: build\.envd:2:5: integer too large: envnix takes integers "
                          r"of at most 4300 digits")

"""envnix/core/process.py: a timeout stops the program's whole process group, children included."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from envnix.core import process
from envnix.core.errors import BuildError, ToolMissingError
from envnix.core.process import run


def test_timeout_stops_the_whole_group_and_is_one_line(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "GRACE_INT", 1.0)  # the child below waits out SIGINT
    pids = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(BuildError, match=r"^sh did not finish within 1 s and was stopped$"):
        # a child that ignores SIGINT, so the runner has to escalate past it
        run(["sh", "-c", f"(trap '' INT; sleep 60) & echo $! > {pids}; sleep 60"],
            error=BuildError, timeout=1)
    assert time.monotonic() - started < 10
    child = int(pids.read_text())
    time.sleep(0.2)
    state = Path(f"/proc/{child}/stat")
    assert not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_output_lines_and_status() -> None:
    seen: list[str] = []
    done = run(["sh", "-c", "echo out; echo err >&2; exit 3"], error=BuildError,
               on_line=seen.append)
    assert (done.returncode, done.text, seen, done.last_error_line()) == (3, "out\n",
                                                                          ["err\n"], "err")


def test_a_missing_program_is_a_missing_tool() -> None:
    with pytest.raises(ToolMissingError, match="envnix-no-such-tool not found"):
        run(["envnix-no-such-tool"], error=BuildError)

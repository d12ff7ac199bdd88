"""envnix/core/progress.py: the one reporter every command and stage prints through."""

from __future__ import annotations

from pathlib import Path

import pytest

from envnix.core.progress import REPORTER, Reporter
from envnix.lock.model import Lock, write_lock


def test_messages_warnings_and_tool_lines_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    REPORTER.message("lock: wrote envnix.lock")
    REPORTER("nix: 3 derivation(s) to build")  # a Reporter is a Progress
    REPORTER.warning("pip: six is listed twice")
    REPORTER.verbose("building '/nix/store/x.drv'...\n")
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("lock: wrote envnix.lock\nnix: 3 derivation(s) to build\n"
                   "envnix: warning: pip: six is listed twice\nbuilding '/nix/store/x.drv'...\n")


def test_quiet_silences_progress_but_not_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    quiet = Reporter(quiet=True)
    quiet.message("apt: fetching Packages")
    quiet.warning("the lock was damaged; kept as envnix.lock.bak")
    assert capsys.readouterr().err == "envnix: warning: the lock was damaged; kept as " \
                                      "envnix.lock.bak\n"


def test_the_lock_writer_reports_a_kept_damaged_lock_through_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "envnix.lock"
    path.write_text("not a lock")
    assert write_lock(path, Lock(inputs={}))
    assert (tmp_path / "envnix.lock.bak").read_text() == "not a lock"
    assert "envnix.lock.bak" in capsys.readouterr().err

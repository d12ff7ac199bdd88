"""envnix/core/progress.py: the one reporter every command and stage prints through, and its
modes (issue 19, item 3): a live line on a terminal, plain lines with a heartbeat otherwise,
quiet, NO_COLOR; and --progress on the commands."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from envnix.cli import cli
from envnix.core.progress import REPORTER, Reporter, human_bytes, status, transfer
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


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _wait_for(stream: io.StringIO, pattern: str) -> str:
    """The stream's text once ``pattern`` is in it (a ticker thread writes it)."""
    for _ in range(200):
        if re.search(pattern, stream.getvalue()):
            return stream.getvalue()
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} never appeared in {stream.getvalue()!r}")


def test_plain_lines_and_a_heartbeat_when_a_step_is_silent() -> None:
    out = io.StringIO()
    reporter = Reporter(stream=out, mode="auto")  # not a terminal: plain
    assert not reporter.live
    reporter.heartbeat = 0.1
    with reporter.step("nix: evaluating"):
        reporter("nix: 3 derivation(s) to build")
        reporter.status("nix: 1/3 derivations built, building envnix-layer-os")
        text = _wait_for(out, r"building envnix-layer-os \(still working, \d+s\)\n")
    assert "nix: 3 derivation(s) to build\n" in text
    assert "\x1b" not in text and "\r" not in text  # plain: no terminal control at all


def test_tty_redraws_one_line_and_lines_scroll_above_it(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    out = Terminal()
    reporter = Reporter(stream=out)
    assert reporter.live and reporter.color
    with reporter.step("lock: resolving"):
        reporter.transfer("download six.whl", 2_000_000, 4_000_000)
        reporter("pip: locked 1 wheel(s)")
        reporter.warning("careful")
    text = out.getvalue()
    assert "\r\x1b[K\x1b[1mdownload six.whl: 2.0 MB/4.0 MB" in text
    assert "\r\x1b[Kpip: locked 1 wheel(s)\n" in text
    assert "envnix: \x1b[33mwarning\x1b[0m: careful\n" in text
    assert text.endswith("\r\x1b[K")  # the live line is gone when the step ends


def test_no_color_and_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm")
    out = Terminal()
    reporter = Reporter(stream=out, mode="tty")
    reporter.status("push: 1.0 MB/2.0 MB")
    reporter.warning("careful")
    reporter.status(None)
    assert "\x1b[1m" not in out.getvalue() and "\x1b[33m" not in out.getvalue()
    assert "push: 1.0 MB/2.0 MB [0s]" in out.getvalue()
    quiet = Terminal()
    silent = Reporter(stream=quiet)
    silent.set_mode("quiet")
    with silent.step("nix: evaluating"):
        silent("nix: 3 derivation(s) to build")
        silent.warning("still said")
    assert quiet.getvalue() == "envnix: warning: still said\n"


def test_a_stage_given_a_plain_callable_gets_lines_only() -> None:
    lines: list[str] = []
    status(lines.append, "nix: 1/2")
    transfer(lines.append, "download x", 1, 2)
    assert lines == []
    assert [human_bytes(n) for n in (999, 1000, 12_345_678, 3e9)] == [
        "999 B", "1.0 kB", "12.3 MB", "3.0 GB"]


def test_progress_flag_as_buildx_spells_it() -> None:
    runner = CliRunner()
    bad = runner.invoke(cli, ["lock", "--progress", "fancy", "."])
    assert bad.exit_code == 2 and "'fancy' is not one of 'auto', 'plain', 'tty', 'quiet'" in \
        bad.output
    for command in ("build", "lock", "render", "push"):
        assert "--progress [auto|plain|tty|quiet]" in runner.invoke(
            cli, [command, "--help"]).output

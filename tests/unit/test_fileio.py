"""envnix.core.fileio: whole files or none, with the mode open() would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from envnix.core.fileio import atomic_write, atomic_writer


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a", "x")
        os.umask(0o077)
        atomic_write(tmp_path / "b", b"y")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a") == 0o644
    assert _mode(tmp_path / "b") == 0o600
    atomic_write(tmp_path / "c", "z", mode=0o755)
    assert _mode(tmp_path / "c") == 0o755


def test_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "envnix.lock"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_writer(target) as fh:
        fh.write(b"half")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envnix.lock"]


def test_skip_unchanged_keeps_mtime(tmp_path: Path) -> None:
    target = tmp_path / "f"
    assert atomic_write(target, "same", skip_unchanged=True)
    os.utime(target, (1, 1))
    assert not atomic_write(target, "same", skip_unchanged=True)
    assert target.stat().st_mtime == 1
    assert atomic_write(target, "other", skip_unchanged=True)
    assert target.read_text() == "other"

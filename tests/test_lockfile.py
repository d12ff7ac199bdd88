"""envnix.lock: deterministic bytes, atomic writes, and one-line staleness reasons."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envnix.errors import LockError
from envnix.lock.lockfile import Lock, read_lock, stale_reason, write_lock


def sample(**over: object) -> Lock:
    inputs = {"apt": {"packages": ["libc6", "dash"], "release": "bookworm"},
              "pip": {"requirements": ["six"], "python": "3.11"}}
    lock = Lock(
        inputs=inputs,
        apt_packages=[{"name": "libc6", "url": "http://m/l.deb", "sha256": "a" * 64, "size": 1},
                      {"name": "dash", "url": "http://m/d.deb", "sha256": "b" * 64, "size": 2}],
        pip_wheels=[{"name": "six", "url": "http://p/six.whl", "sha256": "c" * 64, "size": 3}],
    )
    for key, value in over.items():
        setattr(lock, key, value)
    return lock


def test_bytes_are_deterministic_and_sorted() -> None:
    a, b = sample(), sample()
    b.apt_packages = list(reversed(b.apt_packages))
    assert a.dumps() == b.dumps()
    assert a.dumps().index('"dash"') < a.dumps().index('"libc6"')
    assert a.digest == b.digest and a.digest.startswith("sha256:")
    assert Lock.loads(a.dumps()).dumps() == a.dumps()


def test_write_is_atomic_and_reports_change(tmp_path: Path) -> None:
    path = tmp_path / "envnix.lock"
    assert write_lock(path, sample()) is True
    assert write_lock(path, sample()) is False
    assert read_lock(path) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envnix.lock"]


def test_failed_write_leaves_old_lock_and_no_temp(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "envnix.lock"
    write_lock(path, sample())
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    changed = sample()
    changed.pip_wheels = []
    with pytest.raises(OSError):
        write_lock(path, changed)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envnix.lock"]


def test_stale_reason_names_what_changed() -> None:
    lock = sample()
    assert stale_reason(lock, lock.inputs) is None
    inputs = {"apt": {"packages": ["libc6", "dash", "jq"], "release": "bookworm"},
              "pip": {"requirements": [], "python": "3.11"}}
    assert stale_reason(lock, inputs) == "apt packages changed: added jq"
    inputs["apt"]["packages"] = ["libc6", "dash"]
    assert stale_reason(lock, inputs) == "pip requirements changed: removed six"


def test_corrupt_or_foreign_lock_is_one_clear_error() -> None:
    with pytest.raises(LockError, match=r"envnix.lock: not valid JSON \(line 1\)"):
        Lock.loads("{nope")
    with pytest.raises(LockError, match="lock-version 7 is not 1"):
        Lock.loads('{"lock-version": 7}')

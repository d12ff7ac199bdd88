"""A corrupt envnix.lock, tried through the real CLI (issue 11, items 7 and 8).

``lock --check`` and ``build --locked`` stop with one line naming the file and the field;
``envnix lock`` keeps the bad file as envnix.lock.bak, says so in one line, and writes a fresh
lock. Locking resolves against this machine's Debian mirror, as the other lock tests do.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from _cli import envnix

from envnix.lock.model import read_lock

pytestmark = pytest.mark.network

BUILD_ENVD = """\
def build():
    base(os="debian12", language="python3.11")
"""


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    context = tmp_path_factory.mktemp("recovery") / "app"
    context.mkdir()
    (context / "build.envd").write_text(BUILD_ENVD)
    envnix("lock", str(context))
    return context


def _bad_sha(text: str) -> bytes:
    data = json.loads(text)
    data["apt"]["packages"][3]["sha256"] = "0123"
    return json.dumps(data, indent=2).encode()


def _twice(text: str) -> bytes:
    data = json.loads(text)
    data["apt"]["packages"].insert(5, dict(data["apt"]["packages"][4]))
    return json.dumps(data, indent=2).encode()


CORRUPTIONS: dict[str, tuple[Callable[[str], bytes], str]] = {
    "not-utf8": (lambda text: text.encode()[:100] + b"\xff\xfe" + text.encode()[100:],
                 "not UTF-8 text (byte 100 is 0xff)"),
    "truncated": (lambda text: text.encode()[: len(text) // 2], "not valid JSON: "),
    "bad-sha256": (_bad_sha, "apt.packages[3].sha256: expected 64 hex digits, got '0123'"),
    "duplicate": (_twice, "apt.packages[5].name: "),
}


def _corrupt(locked: Path, tmp_path: Path, kind: str) -> tuple[Path, bytes, str]:
    context = tmp_path / "app"
    shutil.copytree(locked, context)
    make, message = CORRUPTIONS[kind]
    bad = make((context / "envnix.lock").read_text())
    (context / "envnix.lock").write_bytes(bad)
    return context, bad, message


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_check_and_locked_build_stop_with_one_line(locked: Path, tmp_path: Path,
                                                   kind: str) -> None:
    context, bad, message = _corrupt(locked, tmp_path, kind)
    lock = context / "envnix.lock"
    for args in (["lock", "--check"], ["build", "--locked"], ["render", "--locked"]):
        proc = envnix(*args, str(context), check=False)
        assert proc.returncode == 5, proc.stderr
        lines = proc.stderr.splitlines()
        assert lines[0].startswith(f"envnix: {lock}"), lines
        assert message in lines[0], lines
        assert lines[1:] == ["  hint: run envnix lock to re-lock (it keeps this file as "
                             "envnix.lock.bak)"]
        assert lock.read_bytes() == bad
        assert sorted(p.name for p in context.iterdir()) == ["build.envd", "envnix.lock"]


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_lock_recovers_keeping_the_old_file(locked: Path, tmp_path: Path, kind: str) -> None:
    context, bad, message = _corrupt(locked, tmp_path, kind)
    proc = envnix("lock", str(context))
    notes = [ln for ln in proc.stderr.splitlines() if "envnix.lock.bak" in ln]
    assert len(notes) == 1 and notes[0].startswith("lock: envnix.lock was unusable ("), notes
    assert message in notes[0]
    assert notes[0].endswith("); kept it as envnix.lock.bak")
    assert (context / "envnix.lock.bak").read_bytes() == bad
    fresh, good = read_lock(context / "envnix.lock"), read_lock(locked / "envnix.lock")
    assert fresh is not None and good is not None
    assert [p["name"] for p in fresh.apt_packages] == [p["name"] for p in good.apt_packages]
    assert envnix("lock", "--check", str(context)).returncode == 0


@pytest.mark.parametrize("kind", ["not-utf8", "duplicate"])
def test_render_without_locked_relocks_keeping_the_old_file(locked: Path, tmp_path: Path,
                                                             kind: str) -> None:
    """build/render re-lock a stale lock unless --locked; an unusable one is treated alike."""
    context, bad, message = _corrupt(locked, tmp_path, kind)
    proc = envnix("render", str(context))
    assert any(ln.startswith("lock: envnix.lock is unusable (") and message in ln
               for ln in proc.stderr.splitlines()), proc.stderr
    assert (context / "envnix.lock.bak").read_bytes() == bad
    assert envnix("lock", "--check", str(context)).returncode == 0

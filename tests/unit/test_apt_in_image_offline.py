"""The offline tests of tests/integration/test_apt_in_image.py (no network, no program started).

apt inside a dev image works as on a Debian system: ``sudo apt-get install`` of one more
package, against the archive the image was locked from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envnix.lock.model import CorruptLockError, Lock, read_lock
from envnix.render import render
from envnix.spec import ImageSpec, PythonSpec, release_for

MAIN = {"uri": "http://mirror.invalid/debian/20260101T000000Z", "suite": "bookworm",
        "components": ["main"], "snapshot": "20260101T000000Z"}
SECURITY = {"uri": "http://mirror.invalid/debian-security", "suite": "bookworm-security",
            "components": ["main", "contrib"]}
FLAT = {"uri": "http://vendor.invalid/repos/debian12/x86_64", "suite": "/", "components": [],
        "flat": True}


def rendered_plan(tmp_path: Path, sources: list[dict], files: dict | None = None) -> Path:
    spec = ImageSpec(name="demo", manifest="build.envd", function="build",
                     os=release_for("debian12"), python=PythonSpec("system", "3.11"),
                     workdir="/home/envd/demo", files=files or {})
    (tmp_path / "ctx").mkdir()
    out = render(spec, Lock(inputs={}, apt_sources=sources), tmp_path / "ctx" / ".envnix",
                 "demo:dev", context=tmp_path / "ctx").directory
    return out / "envnix.lock"


def read_plan(lock_path: Path) -> dict:
    """The layer plan of a rendered lock, read back checked as envnix reads every lock."""
    lock = read_lock(lock_path)
    assert lock is not None and lock.image is not None
    return lock.image["plan"]


def test_the_plan_carries_the_locks_archives_without_flat_repositories(tmp_path: Path) -> None:
    plan = read_plan(rendered_plan(tmp_path, [MAIN, SECURITY, FLAT]))
    # A flat vendor repository's key is not in the image: apt-get update would fail on it.
    assert plan["aptSources"] == [MAIN, SECURITY]


def test_config_apt_source_stays_apts_only_list(tmp_path: Path) -> None:
    # envd's config.apt_source replaces sources.list: the user chose the mirror apt uses.
    mine = {"/etc/apt/sources.list": "deb http://mine.invalid/debian bookworm main\n"}
    assert read_plan(rendered_plan(tmp_path, [MAIN], mine))["aptSources"] == []


@pytest.mark.parametrize(("entry", "message"), [
    ({**SECURITY, "uri": "file:///srv/mirror"}, "aptSources[0].uri: expected an http(s) URL"),
    ({**SECURITY, "suite": "bookworm main"}, "aptSources[0].suite: expected a word without"),
    ({**SECURITY, "components": "main"}, "aptSources[0].components: expected a list"),
    ({"uri": SECURITY["uri"], "suite": "bookworm"}, "aptSources[0].components: missing"),
])
def test_a_bad_plan_apt_source_is_one_line(tmp_path: Path, entry: dict, message: str) -> None:
    path = rendered_plan(tmp_path, [SECURITY])
    lock = json.loads(path.read_text())
    lock["image"]["plan"]["aptSources"] = [entry]
    path.write_text(json.dumps(lock))
    with pytest.raises(CorruptLockError) as info:
        read_plan(path)
    assert str(info.value).startswith(f"{path}: image.plan.{message}"), str(info.value)

"""--platform: the names a platform goes by, and the lock's platform dimension, read and
written without resolving anything (the arm64 lock itself is tests/integration/test_arm64.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from envnix.core.errors import UsageError
from envnix.lock.model import CorruptLockError, Lock
from envnix.spec.platform import AMD64, ARM64, parse_platforms

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "envnix.lock"


def test_parse_platforms_spellings_and_order() -> None:
    assert parse_platforms(None) == (AMD64,)
    assert parse_platforms("linux/amd64,linux/arm64") == (AMD64, ARM64)
    assert parse_platforms("arm64") == (ARM64,)
    assert parse_platforms("linux/arm64/v8") == (ARM64,)
    with pytest.raises(UsageError, match="linux/riscv64"):
        parse_platforms("linux/riscv64")
    with pytest.raises(UsageError, match="twice"):
        parse_platforms("linux/arm64,arm64")


def test_platform_names() -> None:
    assert ARM64.manylinux("2.36") == "aarch64-manylinux_2_36"
    assert AMD64.manylinux("2.36") == "x86_64-manylinux_2_36"
    assert (ARM64.conda_subdir, ARM64.multiarch, ARM64.qemu) == (
        "linux-aarch64", "aarch64-linux-gnu", "qemu-aarch64-static")


def test_a_lock_without_platforms_is_amd64_and_keeps_its_bytes() -> None:
    raw = QUICKSTART.read_text()
    lock = Lock.loads(raw)
    assert lock.platform == "linux/amd64"
    assert lock.platform_names == ("linux/amd64",)
    assert lock.dumps() == raw
    with pytest.raises(Exception, match="not linux/arm64"):
        lock.for_platform("linux/arm64")


def _two_platform_data() -> dict:
    data = json.loads(QUICKSTART.read_text())
    arm = {k: copy.deepcopy(data[k]) for k in ("inputs", "apt", "pip", "conda", "image")}
    arm["inputs"]["apt"]["architecture"] = "arm64"
    arm["image"]["config"]["architecture"] = "arm64"
    for p in arm["apt"]["packages"]:
        p["url"] = p["url"].replace("_amd64.deb", "_arm64.deb").replace("_all.deb", "_all.deb#a")
    for w in arm["pip"]["wheels"]:
        w["url"] += "#arm64"
    data["platforms"] = {"linux/arm64": arm}
    return data


def test_two_platforms_round_trip() -> None:
    raw = json.dumps(_two_platform_data(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    lock = Lock.loads(raw)
    assert lock.platform_names == ("linux/amd64", "linux/arm64")
    arm = lock.for_platform("linux/arm64")
    assert arm.platform == "linux/arm64"
    assert arm.toolchain == lock.toolchain  # one toolchain: the builders run on the host
    assert arm.image is not None and arm.image["config"]["architecture"] == "arm64"
    assert lock.dumps() == raw


def test_a_platform_section_is_checked_like_the_top_level() -> None:
    data = _two_platform_data()
    data["platforms"]["linux/arm64"]["pip"]["wheels"][0]["sha256"] = "short"
    with pytest.raises(CorruptLockError, match=r'linux/arm64"\]\.pip\.wheels\[0\]\.sha256'):
        Lock.loads(json.dumps(data))
    data = _two_platform_data()
    data["platforms"]["linux/amd64"] = data["platforms"].pop("linux/arm64")
    data["platforms"]["linux/amd64"]["inputs"]["apt"]["architecture"] = "amd64"
    with pytest.raises(CorruptLockError, match="listed again"):
        Lock.loads(json.dumps(data))

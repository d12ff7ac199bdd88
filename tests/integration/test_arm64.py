"""--platform linux/arm64: the lock resolves arm64 artifacts from the same mirror and index
(Debian's binary-arm64, manylinux aarch64 wheels) and a two-platform lock holds both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli import envnix

BUILD_ENVD = '''\
def build():
    base(os="debian12", language="python3.11")
    install.python_packages(name=["six"])
'''


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "arm"
    ctx.mkdir()
    (ctx / "build.envd").write_text(BUILD_ENVD)
    return ctx


@pytest.mark.network
def test_lock_for_arm64_and_for_two_platforms(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    envnix("lock", "--platform", "linux/arm64", str(ctx))
    data = json.loads((ctx / "envnix.lock").read_text())
    assert "platforms" not in data
    assert data["inputs"]["apt"]["architecture"] == "arm64"
    assert data["inputs"]["pip"]["platform"].startswith("aarch64-manylinux_")
    assert data["image"]["config"]["architecture"] == "arm64"
    assert all("/binary-arm64/" in i["url"] for i in data["apt"]["indexes"])
    arches = {p["arch"] for p in data["apt"]["packages"]}
    assert arches == {"arm64", "all"}
    python = next(p for p in data["apt"]["packages"] if p["name"] == "python3.11-minimal")
    assert python["url"].endswith("_arm64.deb")
    # Without --platform, the lock's platform is kept: it is up to date, not re-locked.
    assert "up to date" in envnix("lock", "--check", str(ctx)).stdout
    stale = envnix("lock", "--check", "--platform", "linux/amd64", str(ctx), check=False)
    assert stale.returncode != 0
    assert "platforms changed: linux/arm64 -> linux/amd64" in stale.stderr

    envnix("lock", "--platform", "linux/amd64,linux/arm64", str(ctx))
    both = json.loads((ctx / "envnix.lock").read_text())
    assert both["inputs"]["apt"]["architecture"] == "amd64"
    arm = both["platforms"]["linux/arm64"]
    assert arm["apt"]["packages"] == data["apt"]["packages"]
    assert arm["pip"] == data["pip"]
    assert arm["image"]["config"]["architecture"] == "arm64"
    assert "toolchain" not in arm and "toolchain" in both
    amd = {p["name"]: p["url"] for p in both["apt"]["packages"]}
    assert amd["python3.11-minimal"].endswith("_amd64.deb")
    assert "up to date" in envnix("lock", "--check", str(ctx)).stdout

"""--platform: the names a platform goes by, and the lock's platform dimension, read and
written without resolving anything (the arm64 lock itself is tests/integration/test_arm64.py)."""

from __future__ import annotations

import copy
import json
import os
import sys
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


# ---------------------------------------------------------------------------------------------
# builders/mkindex.py: several platforms' image outputs to one image index

BUILDERS = Path(__file__).resolve().parents[2] / "envnix" / "builders"
sys.path.insert(0, str(BUILDERS))  # the builders import their siblings as top-level modules
import mkimage  # noqa: E402
import mkindex  # noqa: E402


def _image_output(store: Path, name: str, arch: str) -> tuple[Path, str]:
    """An image output as mkimage writes it (one layer, blobs as files); its manifest digest."""
    out = store / name
    blobs = out / "oci" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer = f"layer of {arch}".encode()
    config = mkimage.canonical_json({"architecture": arch, "os": "linux"})
    manifest = mkimage.canonical_json({
        "schemaVersion": 2, "mediaType": mkimage.MT_MANIFEST,
        "config": {"mediaType": mkimage.MT_CONFIG, "digest": mkimage.sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": mkimage.MT_LAYER, "digest": mkimage.sha256(layer),
                    "size": len(layer)}]})
    for data in (layer, config, manifest):
        (blobs / mkimage.sha256(data)[7:]).write_bytes(data)
    (out / "oci" / "index.json").write_bytes(mkimage.make_index(manifest, ("app", "1")))
    return out, mkimage.sha256(manifest)


def test_mkindex_names_one_index_of_each_platforms_manifest(tmp_path: Path) -> None:
    amd, amd_manifest = _image_output(tmp_path, "aaa-image-amd64", "amd64")
    arm, arm_manifest = _image_output(tmp_path, "bbb-image-arm64", "arm64")
    out = tmp_path / "ccc-index"
    digest = mkindex.build(str(out), [str(amd), str(arm)], "app:1")
    top = json.loads((out / "oci" / "index.json").read_text())
    (entry,) = top["manifests"]
    assert entry["digest"] == digest and entry["mediaType"] == mkimage.MT_INDEX
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "1"
    nested = json.loads((out / "oci/blobs/sha256" / digest[7:]).read_bytes())
    assert [(m["digest"], m["platform"]) for m in nested["manifests"]] == [
        (amd_manifest, {"architecture": "amd64", "os": "linux"}),
        (arm_manifest, {"architecture": "arm64", "os": "linux"})]
    # Every blob resolves, through a relative link into its sibling image output.
    for m in nested["manifests"]:
        link = out / "oci/blobs/sha256" / m["digest"][7:]
        assert os.readlink(link).startswith("../../../../")
        assert json.loads(link.read_bytes())["layers"]
    # The tag is only an annotation: the index itself is the same for any tag.
    again = mkindex.build(str(tmp_path / "ddd-index"), [str(amd), str(arm)], "other:2")
    assert again == digest


def test_mkindex_refuses_one_image_or_one_platform_twice(tmp_path: Path) -> None:
    amd, _ = _image_output(tmp_path, "aaa-image-amd64", "amd64")
    other, _ = _image_output(tmp_path, "bbb-image-amd64", "amd64")
    with pytest.raises(mkimage.ImageError, match="two or more"):
        mkindex.build(str(tmp_path / "x"), [str(amd)], None)
    with pytest.raises(mkimage.ImageError, match="two images for"):
        mkindex.build(str(tmp_path / "y"), [str(amd), str(other)], None)


def test_a_foreign_program_is_told_apart_before_proot_starts_it(tmp_path: Path) -> None:
    """proot without qemu spins on an aarch64 program: run_steps refuses one first."""
    from _rootfs import HOST_MACHINES, Rootfs, elf_machine

    rootfs = Rootfs(str(tmp_path / "root"))
    root = Path(rootfs.root)
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    elf = b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little")
    (root / "usr/bin/bash").write_bytes(elf + (183).to_bytes(2, "little") + bytes(40))
    (root / "usr/bin/sh").write_bytes(elf + (62).to_bytes(2, "little") + bytes(40))
    (root / "usr/bin/script").write_bytes(b"#!/bin/sh\n")
    assert elf_machine(rootfs, "/bin/bash") == 183 not in HOST_MACHINES
    assert elf_machine(rootfs, "/usr/bin/sh") == 62 in HOST_MACHINES
    assert elf_machine(rootfs, "/usr/bin/script") is None
    assert elf_machine(rootfs, "/usr/bin/missing") is None

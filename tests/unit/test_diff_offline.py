"""envnix diff, offline: two locks (the committed quickstart lock and a re-lock of it moved by
hand), and two OCI layouts written here with real tar layers (whiteouts, opaque directories,
gzip and zstd). The integration half runs the CLI on images envnix built."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import zstandard

from envnix.core.errors import PublishError, UsageError
from envnix.lock.diff import diff_locks
from envnix.lock.model import Lock
from envnix.oci.imagediff import diff_images, flatten, read_layout

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART_LOCK = ROOT / "examples" / "quickstart" / "envnix.lock"


def relocked() -> tuple[Lock, Lock]:
    """The quickstart lock, and the same after a re-lock that moved one .deb, dropped one
    wheel, added one and re-uploaded another under the same version."""
    old = Lock.loads(QUICKSTART_LOCK.read_bytes())
    new = copy.deepcopy(old)
    deb = next(p for p in new.apt_packages if p["name"] == "sudo")
    deb.update(version="1.9.13p3-1+deb12u9", sha256="11" * 32,
               url=deb["url"].replace(".deb", "u9.deb"))
    new.pip_wheels = [w for w in new.pip_wheels if w["name"] != "six"]
    new.pip_wheels.append({"name": "tqdm", "version": "4.67.1", "sha256": "22" * 32,
                           "size": 1, "filename": "tqdm-4.67.1-py3-none-any.whl",
                           "url": "https://pypi.example/tqdm-4.67.1-py3-none-any.whl"})
    numpy = next(w for w in new.pip_wheels if w["name"] == "numpy")
    numpy["sha256"] = "33" * 32
    return old, new


def test_lock_diff_names_what_moved() -> None:
    old, new = relocked()
    sudo_was = next(p["version"] for p in old.apt_packages if p["name"] == "sudo")
    result = diff_locks(old, new)
    assert result
    data = result.to_dict()
    assert data["apt"] == {"added": [], "removed": [], "changed": [
        {"name": "sudo", "from": sudo_was, "to": "1.9.13p3-1+deb12u9"}]}
    assert data["pip"]["added"] == [{"name": "tqdm", "version": "4.67.1"}]
    assert data["pip"]["removed"] == [{"name": "six", "version": "1.17.0"}]
    assert data["pip"]["changed"] == [{"name": "numpy", "from": "2.4.6 (sha256 89cd468399cf)",
                                       "to": "2.4.6 (sha256 333333333333)"}]
    assert data["base"] is None
    assert result.lines() == [
        "apt: 0 added, 0 removed, 1 changed",
        f"  ~ sudo {sudo_was} -> 1.9.13p3-1+deb12u9",
        "pip: 1 added, 1 removed, 1 changed",
        "  ~ numpy 2.4.6 (sha256 89cd468399cf) -> 2.4.6 (sha256 333333333333)",
        "  - six 1.17.0",
        "  + tqdm 4.67.1",
    ]
    # Backwards is the mirror image, and a lock equals itself.
    assert diff_locks(new, old).to_dict()["pip"]["added"] == [{"name": "six",
                                                               "version": "1.17.0"}]
    same = diff_locks(old, old)
    assert not same and same.lines() == ["no differences"]


def test_lock_diff_sees_the_base_image() -> None:
    old, _ = relocked()
    new = copy.deepcopy(old)
    new.base = {"ref": "registry.example/base:1@sha256:" + "aa" * 32,
                "digest": "sha256:" + "aa" * 32}
    result = diff_locks(old, new)
    assert result.to_dict()["base"] == {"from": None,
                                        "to": "registry.example/base:1@sha256:" + "aa" * 32}
    assert result.lines()[0].startswith("base: (none) -> registry.example/base:1@")


# --- images -------------------------------------------------------------------------------

def _tar(entries: list[tuple[str, bytes | str | None]]) -> bytes:
    """A layer: (name, bytes) is a file, (name, None) a directory, (name, "->x") a symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            elif isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data.removeprefix("->")
                tf.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_layout(layout: Path, layers: list[bytes], env: list[str], tag: str = "t") -> Path:
    """An OCI image layout holding one image of ``layers`` (already compressed or not)."""
    config = {"architecture": "amd64", "os": "linux", "config": {"Env": env},
              "rootfs": {"type": "layers", "diff_ids": []}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **_blob(layout, json.dumps(config).encode())},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            **_blob(layout, data)} for data in layers]}
    desc = _blob(layout, json.dumps(manifest).encode())
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **desc,
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return layout


BASE = _tar([("etc", None), ("etc/os-release", b"debian\n"), ("usr", None),
             ("usr/lib", None), ("usr/lib/a.so", b"a1"), ("usr/lib/b.so", b"b1"),
             ("opt", None), ("opt/cache", None), ("opt/cache/x", b"x"), ("bin", "->usr/bin")])


def test_image_diff_applies_whiteouts_and_compares_files(tmp_path: Path) -> None:
    top = _tar([("usr/lib/.wh.b.so", b""), ("usr/lib/a.so", b"a2"), ("opt/cache", None),
                ("opt/cache/.wh..wh..opq", b""), ("opt/cache/y", b"y"),
                ("./etc/new.conf", b"n")])
    old = read_layout(write_layout(tmp_path / "a", [gzip.compress(BASE, mtime=0)], ["A=1"]),
                      "t", "oci:a")
    new = read_layout(write_layout(tmp_path / "b", [gzip.compress(BASE, mtime=0),
                                                    zstandard.compress(top)], ["A=2"]),
                      None, "oci:b")
    tree = flatten(new)
    assert "/usr/lib/b.so" not in tree and "/opt/cache/x" not in tree
    assert tree["/usr/lib/a.so"][-1] == hashlib.sha256(b"a2").hexdigest()
    assert tree["/bin"][0] == "symlink"
    result = diff_images(old, new)
    assert result
    assert result.files_added == ["/etc/new.conf", "/opt/cache/y"]
    assert result.files_removed == ["/opt/cache/x", "/usr/lib/b.so"]
    assert result.files_changed == [("/usr/lib/a.so", ["content"])]
    assert result.layers_kept == 1 and len(result.layers_added) == 1
    assert result.layers_removed == []
    assert result.config_changed == ["config.Env"]
    text = "\n".join(result.lines())
    assert "files: 2 added, 2 removed, 1 changed" in text and "  ~ /usr/lib/a.so (content)" in text
    data = result.to_dict()
    assert data["manifest"] == {"from": old.digest, "to": new.digest}
    assert data["files"]["changed"] == [{"path": "/usr/lib/a.so", "what": ["content"]}]


def test_same_image_has_no_differences(tmp_path: Path) -> None:
    layout = write_layout(tmp_path / "a", [BASE], ["A=1"])
    result = diff_images(read_layout(layout, "t", "x"), read_layout(layout, "t", "y"))
    assert not result and result.lines()[0].startswith("no differences")


def test_layouts_are_checked(tmp_path: Path) -> None:
    layout = write_layout(tmp_path / "a", [BASE], ["A=1"])
    with pytest.raises(UsageError, match="no image tagged other"):
        read_layout(layout, "other", "oci:a:other")
    with pytest.raises(UsageError, match="not an OCI layout"):
        read_layout(tmp_path, None, "oci:x")
    index = json.loads((layout / "index.json").read_text())
    blob = layout / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]
    blob.write_bytes(blob.read_bytes() + b" ")
    with pytest.raises(PublishError, match="does not match its digest"):
        read_layout(layout, "t", "oci:a")


def test_a_layer_that_is_not_a_tar_is_one_error(tmp_path: Path) -> None:
    image = read_layout(write_layout(tmp_path / "a", [b"\x1f\x8bnot gzip at all"], []), "t",
                        "oci:a")
    with pytest.raises(PublishError, match="cannot be read as a tar"):
        flatten(image)

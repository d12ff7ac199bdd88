"""The rootfs tar (``-o type=tar``) keeps a layer's hard links, and turns one into a copy when
a later layer replaced its target (a link would then give the replacement's content)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from envnix.oci.export import write_rootfs_tar
from envnix.oci.layout import Blob, BuiltImage


def layer(root: Path, members: list[tuple[str, str, bytes | str]]) -> Blob:
    """A gzip layer blob in ``root``'s OCI layout: (name, "file"|"link", content|target)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            if kind == "link":
                assert isinstance(value, str)
                info.type, info.linkname = tarfile.LNKTYPE, value
                tf.addfile(info)
            else:
                assert isinstance(value, bytes)
                info.size = len(value)
                tf.addfile(info, io.BytesIO(value))
    data = gzip.compress(raw.getvalue(), mtime=0)
    digest = hashlib.sha256(data).hexdigest()
    blobs = root / "oci" / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest).write_bytes(data)
    return Blob(f"sha256:{digest}", len(data))


def rootfs(tmp_path: Path, *layers: list[tuple[str, str, bytes | str]]) -> dict[str, tuple]:
    blobs = tuple(layer(tmp_path, m) for m in layers)
    image = BuiltImage(tmp_path, tmp_path, None, None, "sha256:" + "0" * 64,
                       Blob("sha256:" + "1" * 64, 0), blobs, 0)
    out = io.BytesIO()
    write_rootfs_tar(image, out)
    out.seek(0)
    got = {}
    with tarfile.open(fileobj=out) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isreg() else None
            got[m.name] = ("link", m.linkname) if m.islnk() else ("file", f.read() if f else b"")
    return got


def test_hard_links_stay_links(tmp_path: Path) -> None:
    got = rootfs(tmp_path, [("usr/bin/a", "file", b"A"), ("usr/bin/b", "link", "usr/bin/a")])
    assert got == {"usr/bin/a": ("file", b"A"), "usr/bin/b": ("link", "usr/bin/a")}


def test_a_link_whose_target_a_later_layer_replaced_is_a_copy(tmp_path: Path) -> None:
    got = rootfs(tmp_path,
                 [("usr/bin/a", "file", b"A"), ("usr/bin/b", "link", "usr/bin/a")],
                 [("usr/bin/a", "file", b"new")])
    assert got == {"usr/bin/a": ("file", b"new"), "usr/bin/b": ("file", b"A")}

"""How mklayer packs a layer beyond the default: zstd blobs (`compression=zstd`) and slim
layers (`pathFilter`, dpkg's path-exclude/-include lines), and mkimage's media types for them.

The builders run as Nix runs them (a fresh process, only the documented variables). The host's
python3 has no zstandard, so zstd layers get the venv's copy as `zstdPath`, as envnix's
render does for the host toolchain. The slow test checks the result with podman.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import zstandard
from _podman import have_podman, podman, private_podman
from test_builders_image import (
    BUSYBOX,
    busybox_tree,
    config_template,
    mkimage,
    mklayer,
    run_builder,
    skeleton_tree,
    tar_members,
    write_tree,
)

ZSTD_PATH = str(Path(zstandard.__file__).parent.parent)
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
SLIM = ["path-exclude /usr/share/doc/*", "path-include /usr/share/doc/*/copyright",
        "path-exclude /usr/share/man/*", "path-exclude /usr/share/locale/*"]


def zstd_layer(out: Path, trees: list[Path], **extra: str) -> dict:
    return mklayer(out, trees, compression="zstd", zstdPath=ZSTD_PATH, **extra)


def test_zstd_layer_is_the_same_tar_in_one_checked_frame(tmp_path: Path) -> None:
    tree = skeleton_tree(tmp_path)
    gz = mklayer(tmp_path / "gz", [tree])
    zs = zstd_layer(tmp_path / "zs", [tree])
    assert sorted(os.listdir(tmp_path / "zs")) == ["layer.json", "layer.tar.zst"]
    assert zs["compression"] == "zstd" and "compression" not in gz
    assert (zs["diff_id"], zs["tar_size"], zs["paths"]) == (gz["diff_id"], gz["tar_size"],
                                                            gz["paths"])
    data = (tmp_path / "zs/layer.tar.zst").read_bytes()
    params = zstandard.get_frame_parameters(data)
    assert params.has_checksum and params.content_size == zstandard.CONTENTSIZE_UNKNOWN
    tar = zstandard.ZstdDecompressor().stream_reader(data).read()
    assert len(tar) == zs["tar_size"] and len(data) == zs["size"]
    # Two builds, same bytes (what `same lock => same digest` needs).
    assert zstd_layer(tmp_path / "again", [tree]) == zs
    assert (tmp_path / "again/layer.tar.zst").read_bytes() == data


def test_zstd_bytes_do_not_depend_on_how_writes_are_split() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "envnix/builders"))
    from _zstd import ZstdWriter

    payload = os.urandom(1 << 16) * 40 + b"tail" * 100_000  # ~3 MiB, some of it repetitive

    def compress(step: int) -> bytes:
        chunks: list[bytes] = []

        class Sink:
            def write(self, data: bytes) -> None:
                chunks.append(bytes(data))

        w = ZstdWriter(Sink())
        for i in range(0, len(payload), step):
            w.write(payload[i:i + step])
        w.close()
        return b"".join(chunks)

    first = compress(1 << 20)
    assert compress(512) == first and compress(3_000_001) == first
    assert zstandard.ZstdDecompressor().stream_reader(first).read() == payload


def test_unknown_compression_is_one_line(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, "t", {"a": b"x"}, {})
    proc = run_builder("mklayer.py", {"out": str(tmp_path / "l"), "compression": "xz",
                                      "trees": json.dumps([str(tree)])})
    assert proc.returncode == 1
    assert proc.stderr == "envnix-builder: layer: compression='xz': use gzip or zstd\n"


def test_mkimage_gives_each_layer_its_media_type(tmp_path: Path) -> None:
    if not BUSYBOX.exists():
        pytest.skip("needs /bin/busybox (Debian busybox-static)")
    gz = tmp_path / "layer-skeleton"
    zs = tmp_path / "layer-busybox"
    mklayer(gz, [skeleton_tree(tmp_path)])
    zstd_layer(zs, [busybox_tree(tmp_path)])
    image = tmp_path / "image"
    digests = mkimage(image, [gz, zs], config_template(tmp_path / "config.json"), tag="t:dev")
    blobs = image / "oci/blobs/sha256"
    manifest = json.loads((blobs / digests["manifest"][7:]).read_text())
    assert [layer["mediaType"] for layer in manifest["layers"]] == [MT_GZIP, MT_ZSTD]
    link = os.readlink(blobs / digests["layers"][1][7:])
    assert link == "../../../../layer-busybox/layer.tar.zst"


def test_slim_filter_drops_docs_but_copyright_and_keeps_hard_links(tmp_path: Path) -> None:
    mo = b"\xde\x12\x04\x95 catalog" * 50
    files = {
        "usr/bin/tool": ("x", b"#!/bin/sh\n"),
        "usr/share/doc/pkg/copyright": b"GPL\n",
        "usr/share/doc/pkg/changelog.Debian.gz": b"log",
        "usr/share/doc/pkg/examples/ex.py": b"print()\n",
        "usr/share/doc/other/README": b"read me\n",
        "usr/share/man/man1/tool.1.gz": b"man",
        "usr/share/locale/de/LC_MESSAGES/pkg.mo": mo,
        "usr/share/pkg/pkg.mo": mo,
        "usr/share/pkg/data": b"kept\n",
    }
    # The first name of the group in archive order is dropped: the next one holds the bytes.
    tree = write_tree(tmp_path, "t", files, {}, hardlinks=[
        ["usr/share/locale/de/LC_MESSAGES/pkg.mo", "usr/share/pkg/pkg.mo"]])
    layer = mklayer(tmp_path / "l", [tree], pathFilter=json.dumps(SLIM))
    members = tar_members(tmp_path / "l")
    assert sorted(members) == [
        "usr", "usr/bin", "usr/bin/tool", "usr/share", "usr/share/doc", "usr/share/doc/pkg",
        "usr/share/doc/pkg/copyright", "usr/share/locale", "usr/share/man", "usr/share/pkg",
        "usr/share/pkg/data", "usr/share/pkg/pkg.mo"]
    assert members["usr/share/pkg/pkg.mo"].isreg() and members["usr/share/pkg/pkg.mo"].size
    # dropped: 5 files; doc/other, doc/pkg/examples, man/man1, locale/de{,/LC_MESSAGES}
    assert layer["dropped"] == 10 and layer["paths"] == len(members)
    assert "dropped" not in mklayer(tmp_path / "full", [tree])


def test_bad_path_filter_is_one_line(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, "t", {"a": b"x"}, {})
    proc = run_builder("mklayer.py", {"out": str(tmp_path / "l"), "trees": json.dumps([str(tree)]),
                                      "pathFilter": json.dumps(["exclude /usr/share/doc"])})
    assert proc.returncode == 1
    assert proc.stderr.startswith("envnix-builder: layer: path filter 'exclude /usr/share/doc' "
                                  "is not 'path-exclude /GLOB'"), proc.stderr


@pytest.mark.slow
def test_podman_runs_a_zstd_image(tmp_path: Path) -> None:
    if not BUSYBOX.exists() or not have_podman():
        pytest.skip("needs /bin/busybox, podman and runc")
    layers = [tmp_path / "layer-skeleton", tmp_path / "layer-busybox"]
    zstd_layer(layers[0], [skeleton_tree(tmp_path)])
    zstd_layer(layers[1], [busybox_tree(tmp_path)])
    image = tmp_path / "image"
    mkimage(image, layers, config_template(tmp_path / "config.json"), tag="zstd:dev",
            archive="1")
    with private_podman(tmp_path / "podman") as env:
        out = podman("run", "--rm", f"oci:{image}/oci:dev", "/usr/bin/sh", "-c",
                     "echo zstd; stat -c '%a' /usr/bin/suidtool", env=env)
        assert out.stdout == "zstd\n4755\n"
        loaded = podman("load", "-i", str(image / "image.tar"), env=env)
        assert "localhost/zstd:dev" in loaded.stdout
        assert podman("run", "--rm", "localhost/zstd:dev", "/usr/bin/echo", "loaded",
                      env=env).stdout == "loaded\n"

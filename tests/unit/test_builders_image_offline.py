"""The offline tests of tests/integration/test_builders_image.py (no network, no program started).

Tests for the layer and image builders (mklayer.py, mkimage.py, _tarwrite.py, _gzip.py).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sys
import tarfile
import zlib
from importlib import resources
from pathlib import Path

import pytest

from envnix.core.errors import UsageError
from envnix.core.reference import image_name

REPO = Path(__file__).resolve().parents[2]

BUILDERS = REPO / "envnix" / "builders"

sys.path.insert(0, str(BUILDERS))  # the builders import their siblings as top-level modules
import _builder as B  # noqa: E402
import mkimage  # noqa: E402
from _gzip import GzipWriter  # noqa: E402
from _tarwrite import Entry, TarError, TarWriter  # noqa: E402

# ---------------------------------------------------------------------------------------------
# helpers


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# tar writer and gzip on their own


def test_tarwriter_matches_tarfile_pax_for_plain_entries() -> None:
    """For ASCII names <= 100 bytes our headers are the ones CPython >= 3.9 writes in PAX
    format (a reference to check field encoding against); we only skip the 10240 padding."""
    ours = io.BytesIO()
    tw = TarWriter(ours)
    tw.add(Entry(b"d", "dir", 0o755))
    tw.add(Entry(b"d/f", "file", 0o644, size=5), io.BytesIO(b"hello"))
    tw.add(Entry(b"d/l", "symlink", 0o777, linkname=b"f"))
    tw.add(Entry(b"d/x", "file", 0o4755, uid=1000, gid=100, size=1), io.BytesIO(b"x"))
    tw.close()
    ref = io.BytesIO()
    with tarfile.open(fileobj=ref, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, mode, data, link, owner in [
            ("d", tarfile.DIRTYPE, 0o755, b"", "", 0), ("d/f", tarfile.REGTYPE, 0o644, b"hello",
            "", 0), ("d/l", tarfile.SYMTYPE, 0o777, b"", "f", 0),
            ("d/x", tarfile.REGTYPE, 0o4755, b"x", "", 1000),
        ]:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.size, ti.linkname, ti.mtime = kind, mode, len(data), link, 0
            ti.uid, ti.gid = owner, 100 if owner else 0
            ti.uname = ti.gname = "" if owner else "root"
            tf.addfile(ti, io.BytesIO(data) if data else None)
    data, padded = ours.getvalue(), ref.getvalue()
    assert len(data) % 512 == 0 and data.endswith(b"\0" * 1024)
    assert padded[: len(data)] == data and not padded[len(data):].strip(b"\0")
    assert tw.digest == sha(data) and tw.size == len(data) and tw.count == 4


def test_tarwriter_pax_only_when_needed() -> None:
    out = io.BytesIO()
    tw = TarWriter(out, mtime=1700000000)
    long_split = b"p" * 120 + b"/" + b"n" * 90  # prefix/name split, no pax
    tw.add(Entry(long_split, "dir", 0o755))
    tw.add(Entry(b"q" * 101, "file", 0o644, size=0), io.BytesIO(b""))  # 101-byte component
    tw.add(Entry("é".encode(), "dir", 0o755))  # non-ASCII
    tw.add(Entry(b"l", "symlink", 0o777, linkname=b"t" * 101))
    tw.add(Entry(b"h", "hardlink", 0o644, linkname=b"q" * 101))
    tw.close()
    raw = out.getvalue()
    assert raw.count(b"ustar\x0000") == 5 + 4  # 5 entries, 4 of them with a pax header
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        got = {m.name: m for m in tf.getmembers()}
    assert got[long_split.decode()].pax_headers == {}
    assert got["q" * 101].pax_headers == {"path": "q" * 101}
    assert got["é"].pax_headers == {"path": "é/"}
    assert got["l"].linkname == "t" * 101
    assert got["h"].islnk() and got["h"].linkname == "q" * 101
    assert {m.mtime for m in got.values()} == {1700000000}
    assert raw.count(b"PaxHeaders/") == 4


@pytest.mark.parametrize("entry", [
    Entry(b"/abs", "dir", 0o755), Entry(b"a/../b", "dir", 0o755), Entry(b"a//b", "dir", 0o755),
    Entry(b"\xff", "dir", 0o755), Entry(b"h", "hardlink", 0o644, linkname=b"nowhere"),
    Entry(b"m", "dir", 0o10000),
])
def test_tarwriter_refuses_bad_entries(entry: Entry) -> None:
    with pytest.raises(TarError):
        TarWriter(io.BytesIO()).add(entry)


def test_tarwriter_refuses_duplicates_and_wrong_sizes() -> None:
    tw = TarWriter(io.BytesIO())
    tw.add(Entry(b"a", "dir", 0o755))
    with pytest.raises(TarError, match="duplicate"):
        tw.add(Entry(b"a", "dir", 0o755))
    with pytest.raises(TarError, match="shrank"):
        tw.add(Entry(b"f", "file", 0o644, size=3), io.BytesIO(b"ab"))
    with pytest.raises(TarError, match="grew"):
        tw.add(Entry(b"g", "file", 0o644, size=1), io.BytesIO(b"ab"))


def test_gzip_header_trailer_and_chunking() -> None:
    """Fixed header bytes; same output however the input is split; gzip can read it."""
    data = os.urandom(300_000) + b"a" * 3_000_000
    outs = []
    for step in (1, 4096, 1 << 20, len(data)):
        buf = io.BytesIO()
        gz = GzipWriter(buf)
        for i in range(0, len(data), step if step > 1 else 777):
            gz.write(data[i : i + (step if step > 1 else 777)])
        gz.close()
        outs.append(buf.getvalue())
        assert gz.digest == sha(buf.getvalue()) and gz.size == len(buf.getvalue())
    for threads in (1, 3):  # blocks are compressed in parallel; the bytes must not show it
        buf = io.BytesIO()
        gz = GzipWriter(buf, threads=threads)
        gz.write(data)
        gz.close()
        outs.append(buf.getvalue())
    assert len(set(outs)) == 1
    out = outs[0]
    assert out[:10] == bytes.fromhex("1f8b08000000000000ff")
    assert out[-8:] == (zlib.crc32(data).to_bytes(4, "little") + len(data).to_bytes(4, "little"))
    assert gzip.decompress(out) == data


def test_builder_inputs_carry_versions_and_newer_ones_are_refused(tmp_path: Path) -> None:
    """meta.json and image-config.json name their version: a file from before versions reads
    as 0, a newer one is one line saying which envnix to use, and image.nix writes the
    version mkimage reads."""
    image_nix = (resources.files("envnix.templates") / "image.nix").read_text("utf-8")
    assert f"schema = {mkimage.CONFIG_SCHEMA};" in image_nix
    assert B.check_version({}, "format", 1, "t/meta.json") == 0
    assert B.check_version({"format": 1}, "format", 1, "t/meta.json") == 1
    with pytest.raises(B.BuilderError, match=r"^t/meta.json: format 2 is newer than this envnix"):
        B.check_version({"format": 2}, "format", 1, "t/meta.json")
    with pytest.raises(B.BuilderError, match="must be a version number"):
        B.check_version({"format": True}, "format", 1, "t/meta.json")


@pytest.mark.parametrize("text", [
    "app", "app:1", "team/app:dev", "127.0.0.1:5000/team/app:1", "[::1]:5000/team/app:1",
    "localhost/a/b", "r.example.com/a__b/c-d:v1.2_3", "Team/app", "app:tâg", "app:", "-app",
    "docker://team/app:1", f"app@sha256:{'a' * 64}", "a/" * 130 + "b", "app:" + "t" * 129,
])
def test_the_image_builder_accepts_exactly_the_names_the_cli_does(text: str) -> None:
    """-t is checked by the CLI (core.reference) and again by mkimage, which cannot import it:
    a name one accepts and the other refuses would fail only after the whole build."""
    try:
        image_name(text, "-t")
        cli_ok = True
    except UsageError:
        cli_ok = False
    try:
        mkimage.parse_tag(text)
        builder_ok = True
    except mkimage.ImageError:
        builder_ok = False
    assert cli_ok == builder_ok, (text, cli_ok, builder_ok)

"""Read one file out of a .deb without unpacking it: the ar archive's ``data.tar.*`` member,
streamed until the wanted path (the lock stage reads a package's copyright file and the
Ubuntu keyring this way; the builders unpack whole packages in the sandbox instead)."""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
from typing import BinaryIO

import zstandard


def ar_member(f: BinaryIO, prefix: str) -> tuple[str, int] | None:
    """Seek ``f`` (a .deb: an ar archive) to the first member named ``prefix*``; its name and
    size, or None when there is none or ``f`` is not an ar archive."""
    if f.read(8) != b"!<arch>\n":
        return None
    while len(header := f.read(60)) == 60:
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip() or "0")
        except ValueError:
            return None
        if name.startswith(prefix):
            return name, size
        f.seek(size + (size & 1), 1)
    return None


def decompressed(f: BinaryIO, name: str) -> BinaryIO:
    """``f`` read through the compression its member *name*'s suffix says."""
    if name.endswith(".xz"):
        return lzma.LZMAFile(f)  # type: ignore[return-value]
    if name.endswith(".zst"):
        return zstandard.ZstdDecompressor().stream_reader(f)  # type: ignore[return-value]
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    return f


def read_deb_file(f: BinaryIO, path: str, limit: int) -> bytes | None:
    """The first *limit* bytes of regular file *path* (relative, no leading ``./``) in the
    .deb open as *f*; None when it is missing or not a regular file. Damaged archives raise
    OSError, EOFError, lzma.LZMAError, tarfile.TarError or zstandard.ZstdError."""
    want = {f"./{path}", path}
    member = ar_member(f, "data.tar")
    if member is None:
        return None
    with decompressed(f, member[0]) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:
        for m in tf:
            if m.name in want:
                data = tf.extractfile(m) if m.isreg() else None
                return data.read(limit) if data else None
    return None


def deb_file(deb: bytes, path: str, limit: int) -> bytes | None:
    """:func:`read_deb_file` of a .deb held in memory; a damaged one reads as None."""
    try:
        return read_deb_file(io.BytesIO(deb), path, limit)
    except (OSError, EOFError, lzma.LZMAError, tarfile.TarError, zstandard.ZstdError):
        return None

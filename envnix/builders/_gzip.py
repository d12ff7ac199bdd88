"""Deterministic streaming gzip (stdlib `zlib` only) that hashes what it writes.

Why not `gzip.GzipFile`/`gzip.compress`: their header bytes depend on arguments and on the
Python version (`gzip.compress` writes OS=3 on 3.11/3.12 and 255 elsewhere), and a layer's
registry digest is the sha256 of these exact bytes. Here the member is fixed:
header `1f 8b 08 00 00000000 00 ff` (deflate, no flags, MTIME 0, XFL 0, OS 255 "unknown"; no
name), a raw deflate stream from `zlib.compressobj(level, DEFLATED, -15)` (level 6 by
default), then CRC32 and ISIZE (little-endian). Input is fed to zlib in fixed 1 MiB blocks, so
the output does not depend on how callers split their writes. The deflate bytes still depend
on the zlib implementation (zlib 1.2.13 here; zlib-ng would differ); the diffID does not.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Protocol

HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
BLOCK = 1 << 20

Buffer = bytes | bytearray | memoryview


class Sink(Protocol):
    """Where the compressed stream goes (a file opened "wb")."""

    def write(self, data: bytes, /) -> object: ...


class GzipWriter:
    """File-like `write()` target; `close()` finishes the member but leaves `sink` open."""

    def __init__(self, sink: Sink, *, level: int = 6) -> None:
        self._sink = sink
        self._comp = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._crc = 0
        self._isize = 0
        self._hash = hashlib.sha256()
        self._size = 0
        self._buf = bytearray()
        self._closed = False
        self._emit(HEADER)

    @property
    def digest(self) -> str:
        """`sha256:<hex>` of the compressed bytes written so far (final after `close()`)."""
        return "sha256:" + self._hash.hexdigest()

    @property
    def size(self) -> int:
        """Compressed bytes written so far."""
        return self._size

    def _emit(self, data: bytes) -> None:
        if data:
            self._hash.update(data)
            self._size += len(data)
            self._sink.write(data)

    def _feed(self, block: Buffer) -> None:
        self._crc = zlib.crc32(block, self._crc)
        self._isize += len(block)
        self._emit(self._comp.compress(block))

    def write(self, data: Buffer) -> int:
        """Buffer `data` and compress every full 1 MiB block. Does not keep a reference."""
        if self._closed:
            raise ValueError("write to a closed GzipWriter")
        view = memoryview(data).cast("B")
        n = len(view)
        if self._buf:
            take = BLOCK - len(self._buf)
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) < BLOCK:
                return n
            self._feed(self._buf)
            self._buf = bytearray()
        while len(view) >= BLOCK:
            self._feed(view[:BLOCK])
            view = view[BLOCK:]
        self._buf += view
        return n

    def close(self) -> None:
        """Compress what is buffered, flush zlib and write CRC32 + ISIZE."""
        if self._closed:
            return
        if self._buf:
            self._feed(self._buf)
            self._buf = bytearray()
        self._emit(self._comp.flush(zlib.Z_FINISH))
        self._emit(struct.pack("<II", self._crc & 0xFFFFFFFF, self._isize & 0xFFFFFFFF))
        self._closed = True

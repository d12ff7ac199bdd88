"""Deterministic streaming gzip (stdlib `zlib` only), compressed on every core, that hashes
what it writes.

Why not `gzip.GzipFile`/`gzip.compress`: their header bytes depend on arguments and on the
Python version (`gzip.compress` writes OS=3 on 3.11/3.12 and 255 elsewhere), and a layer's
registry digest is the sha256 of these exact bytes. Here the member is fixed:
header `1f 8b 08 00 00000000 00 ff` (deflate, no flags, MTIME 0, XFL 0, OS 255 "unknown"; no
name), a raw deflate stream, then CRC32 and ISIZE (little-endian).

Why blocks: a multi-GB CUDA layer took minutes on one core. The input is cut into fixed 1 MiB
blocks; each is deflated on its own (level 6 by default) with the previous 32 KiB of input as
its dictionary and ends with a sync flush, so the blocks concatenate into one valid stream
that still finds matches across block edges (pigz's scheme), and an empty final block ends it.
Blocks are compressed by a thread pool (zlib releases the GIL) and written in order, so the
output depends neither on how callers split their writes nor on the number of threads. The
deflate bytes still depend on the zlib implementation (zlib 1.2.13 here; zlib-ng would
differ); the diffID does not.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from _hashsink import Buffer, HashingWriter, Sink

HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
BLOCK = 1 << 20
WINDOW = 1 << 15  # deflate's window: how far back a block may match
FINAL_BLOCK = b"\x03\x00"  # an empty fixed-Huffman block with the final bit set

def _deflate_block(level: int, block: bytes, dictionary: bytes) -> bytes:
    """One block as raw deflate, primed with ``dictionary``, ending byte-aligned (sync flush)."""
    if dictionary:
        comp = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=dictionary)
    else:
        comp = zlib.compressobj(level, zlib.DEFLATED, -15)
    return comp.compress(block) + comp.flush(zlib.Z_SYNC_FLUSH)


class GzipWriter(HashingWriter):
    """File-like `write()` target; `close()` finishes the member but leaves `sink` open.
    `digest` and `size` are those of the compressed bytes."""

    def __init__(self, sink: Sink, *, level: int = 6, threads: int | None = None) -> None:
        super().__init__(sink)
        self._level = level
        # Nix says how many cores a build may use (0: all of them).
        workers = (threads or int(os.environ.get("NIX_BUILD_CORES") or 0)
                   or len(os.sched_getaffinity(0)))
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._in_flight = 2 * workers  # blocks queued at most: bounds memory to a few MiB
        self._pending: deque[Future[bytes]] = deque()
        self._tail = b""  # the last WINDOW bytes of input: the next block's dictionary
        self._crc = 0
        self._isize = 0
        self._buf = bytearray()
        self._closed = False
        self._emit(HEADER)

    def _feed(self, block: Buffer) -> None:
        data = bytes(block)
        self._crc = zlib.crc32(data, self._crc)
        self._isize += len(data)
        self._pending.append(self._pool.submit(_deflate_block, self._level, data, self._tail))
        self._tail = data[-WINDOW:] if len(data) >= WINDOW else (self._tail + data)[-WINDOW:]
        while len(self._pending) > self._in_flight:
            self._emit(self._pending.popleft().result())

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
        while self._pending:
            self._emit(self._pending.popleft().result())
        self._pool.shutdown()
        self._emit(FINAL_BLOCK)
        self._emit(struct.pack("<II", self._crc & 0xFFFFFFFF, self._isize & 0xFFFFFFFF))
        self._closed = True

"""The hashing end of mklayer's and mkimage's writers: bytes go on to a sink while their
sha256 and count are kept, since a layer's diffID and digest are the sha256 of exactly the
tar and gzip bytes written.

Not a builder itself: _tarwrite.py and _gzip.py import it (standard library only).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

Buffer = bytes | bytearray | memoryview


class Sink(Protocol):
    """Where the bytes go: a file opened "wb", or (for the tar) a GzipWriter. Must not keep
    `data`."""

    def write(self, data: Buffer, /) -> object: ...


class HashingWriter:
    """Writes to `sink` and keeps the sha256 and byte count of what it wrote."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._hash = hashlib.sha256()
        self._size = 0

    @property
    def digest(self) -> str:
        """`sha256:<hex>` of the bytes written so far (final after `close()`)."""
        return "sha256:" + self._hash.hexdigest()

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def _emit(self, data: Buffer) -> None:
        if data:
            self._hash.update(data)
            self._size += len(data)
            self._sink.write(data)

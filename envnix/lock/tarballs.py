"""Release tarballs pinned at lock time: downloaded once, hashed, and their members listed.

Why list them: what of a tool's archive goes where in the image is read from the archive
itself, not guessed from its version (npm packages and release archives change layout between
releases), and the lock records it, so the builder only does what the lock says. One pass over
the download does both; nothing is kept on disk or in memory.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.parse
from dataclasses import dataclass
from typing import Any

from envnix.core import http
from envnix.core.errors import FetchError, LockError
from envnix.core.progress import Progress, transfer

MAX_TARBALL = 2 << 30
"""Bytes a tarball may have: a server that streams on past it is refused."""


@dataclass(frozen=True)
class Tarball:
    """One tarball as the lock pins it, with what it holds."""

    url: str
    filename: str
    sha256: str
    size: int
    files: tuple[str, ...]  # regular files, symbolic and hard links, in archive order
    also: str = ""  # the hex digest asked for with ``also``


class _Hashing(io.RawIOBase):
    """A body read through every digest, for tarfile's stream mode."""

    def __init__(self, body: Any, digests: list[Any], label: str, total: int | None,
                 progress: Progress | None) -> None:
        self.body, self.digests, self.size = body, digests, 0
        self.label, self.total, self.progress = label, total, progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self.body.read(len(buffer))
        self.size += len(chunk)
        if self.size > MAX_TARBALL:
            raise LockError(f"{self.label} goes on past {MAX_TARBALL >> 30} GB")
        for digest in self.digests:
            digest.update(chunk)
        transfer(self.progress, self.label, self.size, self.total)
        buffer[:len(chunk)] = chunk
        return len(chunk)


def pin_tar(url: str, what: str, progress: Progress | None = None, *, also: str = "",
            hint: str | None = None) -> Tarball:
    """Download the (gzip'd, xz'd or plain) tar at ``url``: its sha256, size and members,
    and the ``also`` digest (``sha512``, ``sha1``) when asked. ``what`` prefixes errors."""
    sha256 = hashlib.sha256()
    digests = [sha256, *([hashlib.new(also)] if also else [])]
    filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    try:
        with http.open_url(url) as resp:
            stream = _Hashing(resp.body, digests, f"download {filename}", resp.length,
                              progress)
            with tarfile.open(fileobj=io.BufferedReader(stream, http.CHUNK), mode="r|*") as tf:
                files = tuple(m.name for m in tf if m.isreg() or m.issym() or m.islnk())
            while stream.readinto(bytearray(http.CHUNK)):  # what follows the archive's end
                pass
    except http.RequestError as err:
        raise FetchError(f"{what}: cannot download {url}: {http.reason(err)}",
                         hint=hint) from None
    except (tarfile.TarError, EOFError, OSError) as err:
        raise LockError(f"{what}: {url} is not a tar archive ({err})") from None
    return Tarball(url, filename, sha256.hexdigest(), stream.size, files,
                   digests[1].hexdigest() if also else "")

"""HTTP for the lock step: stream a URL, ask for a size, hash a download, say why it failed.

One place for what conda channels and pip indexes both need: a timeout on every request (a
mirror that accepts the connection and then stalls must not hang ``envnix lock``), 404/410
told apart from "the server is down", and failures turned into a short reason for a
one-line error.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

HTTP_TIMEOUT = 30.0
"""Seconds before a mirror that accepted the connection but stopped answering is given up."""

CHUNK = 1 << 20
USER_AGENT = "envnix (lock)"


def reason(err: BaseException) -> str:
    """A short, lower-case reason for a failed request (``HTTP 503``, ``connection refused``)."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code}"
    if isinstance(err, urllib.error.URLError):
        why = err.reason
        if isinstance(why, OSError) and why.strerror:
            return why.strerror.lower()
        return str(why)
    if isinstance(err, TimeoutError):
        return f"no answer in {HTTP_TIMEOUT:.0f}s"
    return str(err) or type(err).__name__


class NotFound(Exception):
    """The server answered 404/410: the file is not there (as opposed to the server is down)."""


@dataclass
class Response:
    """An open download: ``status`` is 200 or 304; ``body`` is a file object to stream."""

    status: int
    body: BinaryIO
    etag: str | None = None
    last_modified: str | None = None
    length: int | None = None
    """Content-Length when the server sent one."""


def _context(insecure: bool) -> ssl.SSLContext | None:
    """--trusted-host / allow-insecure-host: TLS without certificate checks for that host."""
    if not insecure:
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _length(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


@contextlib.contextmanager
def open_url(url: str, headers: dict[str, str] | None = None, *, method: str = "GET",
             insecure: bool = False, user_agent: str = USER_AGENT) -> Iterator[Response]:
    """Open ``url`` for streaming; 404/410 raise NotFound, other failures OSError & co.

    Streaming matters: a big channel's repodata.json is hundreds of MB, and a package that
    must be hashed can be a GB.
    """
    if url.startswith("file:"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
        if not path.is_file():
            raise NotFound(url)
        with path.open("rb") as f:
            yield Response(200, f, length=path.stat().st_size)
        return
    request = urllib.request.Request(url, method=method,
                                     headers={"User-Agent": user_agent, **(headers or {})})
    try:
        resp = urllib.request.urlopen(request, timeout=HTTP_TIMEOUT, context=_context(insecure))
    except urllib.error.HTTPError as err:
        if err.code == 304:
            yield Response(304, io.BytesIO(), err.headers.get("ETag"),
                           err.headers.get("Last-Modified"))
            return
        if err.code in (404, 410):
            raise NotFound(url) from None
        raise
    with resp:
        encoded = resp.headers.get("Content-Encoding", "identity") not in ("", "identity")
        yield Response(resp.status, resp, resp.headers.get("ETag"),
                       resp.headers.get("Last-Modified"),
                       None if encoded else _length(resp.headers.get("Content-Length")))


def content_length(url: str, *, insecure: bool = False) -> int | None:
    """The size a HEAD request reports for ``url``, or None when the server does not say
    (no Content-Length, a compressed answer, HEAD refused): then the caller downloads."""
    try:
        with open_url(url, method="HEAD", insecure=insecure) as resp:
            return resp.length if resp.status == 200 else None
    except (OSError, http.client.HTTPException, NotFound, ValueError):
        return None


def hash_url(url: str, *, insecure: bool = False) -> tuple[str, int]:
    """sha256 and size of what ``url`` serves, streamed (never held in memory whole).

    Raises NotFound, OSError or http.client.HTTPException like :func:`open_url`, and
    OSError when the body is shorter or longer than the Content-Length the server announced.
    """
    digest, size = hashlib.sha256(), 0
    with open_url(url, insecure=insecure) as resp:
        while chunk := resp.body.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        if resp.length is not None and size != resp.length:
            raise OSError(f"got {size} bytes of the {resp.length} announced")
    return digest.hexdigest(), size

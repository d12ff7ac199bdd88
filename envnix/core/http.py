"""The one HTTP client of envnix (the builders apart): indexes, channels, mirrors, registry
probes and pinned downloads all go through here.

Why one: each stage used to open URLs its own way, so timeouts, proxies, TLS options,
redirect rules and retries depended on which file a download happened in. Here, for all:

* a timeout on every request (a mirror that accepts the connection and then stalls must not
  hang envnix);
* proxies (``http_proxy``, ``https_proxy``, ``no_proxy``) and the CA bundle (``SSL_CERT_FILE``,
  ``SSL_CERT_DIR``, else the system's) from the environment, as urllib does; ``insecure`` for
  hosts the user said to trust without certificate checks;
* redirects followed only to URLs envnix would fetch itself (``url_problem``: http(s), no
  credentials);
* a few retries with backoff when the server says it is briefly unable (429, 502, 503, 504)
  or drops the connection before answering; a refused, unresolvable or silent server is not
  retried (it would only multiply the wait);
* ``file:`` URLs read from disk, for local mirrors and channels;
* the login the user's netrc holds for the host (``NETRC``, ``~/.netrc``), as pip, uv, curl
  and Nix send it; an ``Authorization`` header is never sent on to a redirect's host;
* failures as FetchError subclasses: :class:`HttpError` (an error status; :class:`NotFound`
  for 404/410, told apart from "the server is down") and :class:`Unreachable` (no whole
  answer). Each keeps the underlying error in ``cause``: callers word their own one-line
  messages from it, and those texts are what users and tests know.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import io
import json
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from envnix.core.credentials import Login, netrc_login
from envnix.core.errors import FetchError, HashMismatchError, LockError, os_reason
from envnix.core.fileio import atomic_writer
from envnix.core.nixexpr import shown_url, url_problem
from envnix.core.progress import Progress, transfer

TIMEOUT = 30.0
"""Seconds before a server that accepted the connection but stopped answering is given up."""

CHUNK = 1 << 20
USER_AGENT = "envnix"
RETRIES = 2
"""Extra attempts after a transient failure (see :func:`_transient`)."""
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_BACKOFF = 0.5
"""Seconds before the first retry; doubled for each further one."""
_MAX_RETRY_AFTER = 10.0
"""The longest ``Retry-After`` honoured: a server asking for minutes gets its error shown."""


class RequestError(FetchError):
    """A request failed. ``cause`` is what urllib, the socket or the file system raised."""

    def __init__(self, message: str, url: str, cause: BaseException) -> None:
        super().__init__(message)
        self.url = url
        self.cause = cause

    @property
    def why(self) -> object:
        """The innermost reason: the OSError (or text) inside urllib's URLError wrapper."""
        if isinstance(self.cause, urllib.error.URLError):
            return self.cause.reason
        return self.cause


class HttpError(RequestError):
    """The server answered with an error status ``code`` (None: a ``file:`` URL's error)."""

    def __init__(self, url: str, code: int | None, reason: str, cause: BaseException) -> None:
        what = f"HTTP {code} {reason}".strip() if code is not None else reason
        super().__init__(f"cannot fetch {shown_url(url)}: {what}", url, cause)
        self.code = code
        self.reason = reason


class Unauthorized(HttpError):
    """401/403: the server wants a login, or refused the one sent (``login_sent``)."""

    def __init__(self, url: str, code: int, reason: str, cause: BaseException,
                 login_sent: bool) -> None:
        super().__init__(url, code, reason, cause)
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc
        self.host = parts.hostname or host  # a netrc's "machine" (no port)
        self.login_sent = login_sent
        self.message = (f"{host} refused the login envnix sent (HTTP {code}) for "
                        f"{shown_url(url)}" if login_sent else
                        f"{host} needs a login (HTTP {code}) for {shown_url(url)}")
        self.args = (self.message,)


class NotFound(HttpError):
    """404/410, or a ``file:`` URL naming no file: it is not there (the server is up)."""


class Unreachable(RequestError):
    """No whole answer: refused, unresolvable, timed out, TLS refused, connection broken."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"cannot reach {shown_url(url)}: {os_reason(cause)}", url, cause)


def reason(err: BaseException) -> str:
    """A short, lower-case reason for a failed request (``HTTP 503``, ``connection refused``)."""
    if isinstance(err, RequestError):
        err = err.cause
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code}"
    if isinstance(err, urllib.error.URLError):
        why = err.reason
        if isinstance(why, OSError) and why.strerror:
            return why.strerror.lower()
        return str(why)
    if isinstance(err, TimeoutError):
        return f"no answer in {TIMEOUT:.0f}s"
    return str(err) or type(err).__name__


def no_answer(err: Unreachable) -> str | None:
    """Why nobody answered at all (refused, unresolvable, silent), or None when a server did
    speak: HTTP, however broken, or TLS (a certificate problem is a server that is there)."""
    if isinstance(err.cause, http.client.HTTPException):
        return None
    why = err.why
    if isinstance(why, ssl.SSLError | ssl.CertificateError):
        return None
    return os_reason(why) if isinstance(why, OSError) else None


@dataclass
class Response:
    """An open answer: ``status`` is 2xx, or 304 when a conditional request's copy is current;
    ``body`` streams it (a read that fails raises :class:`Unreachable`)."""

    url: str
    status: int
    body: BinaryIO
    etag: str | None = None
    last_modified: str | None = None
    length: int | None = None
    """Content-Length when the server sent one (and the body is not compressed)."""
    content_type: str = ""


class _Body(io.BufferedIOBase):
    """A response body whose failed reads (a reset, a timeout, a short body) are Unreachable."""

    def __init__(self, url: str, raw: BinaryIO) -> None:
        super().__init__()
        self._url, self._raw = url, raw

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._raw.read(None if size is None or size < 0 else size)
        except (OSError, http.client.HTTPException) as err:
            raise Unreachable(self._url, err) from None


def local_path(url: str) -> str:
    """The file a ``file:`` URL names, percent-decoded, as urllib reads it."""
    return urllib.request.url2pathname(urllib.parse.urlsplit(url).path)


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to a URL envnix would fetch itself (http(s), no credentials):
    not to ftp:, nor to a URL that would send a password (urllib itself refuses file:)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        problem = url_problem(newurl)
        if problem:
            raise urllib.error.URLError(f"redirected to a URL envnix does not fetch ({problem})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _context(insecure: bool, ca_files: Sequence[Path]) -> ssl.SSLContext | None:
    """None (urllib's default context: the environment's CA bundle) unless extra CAs are
    given or the host is trusted without certificate checks (``--trusted-host``, a registry
    with TLS verification off)."""
    if not insecure and not ca_files:
        return None
    context = ssl.create_default_context()
    for ca_file in ca_files:
        context.load_verify_locations(cafile=str(ca_file))
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _opener(insecure: bool, ca_files: Sequence[Path],
            proxies: bool) -> urllib.request.OpenerDirector:
    """urllib's default handlers minus ftp:, file: and data:, with envnix's redirect rule;
    ``proxies=False`` ignores the environment's proxies (loopback registries)."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(None if proxies else {}),
                    urllib.request.UnknownHandler(), urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(context=_context(insecure, ca_files)),
                    urllib.request.HTTPDefaultErrorHandler(), _SafeRedirects(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _transient(err: BaseException) -> bool:
    """A failure worth another try: the server is briefly unable, or hung up before answering."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code in _RETRY_STATUSES
    why = err.reason if isinstance(err, urllib.error.URLError) else err
    return isinstance(why, ConnectionResetError | ConnectionAbortedError
                      | http.client.RemoteDisconnected)


def _delay(attempt: int, err: BaseException) -> float:
    headers = err.headers if isinstance(err, urllib.error.HTTPError) else None
    after = headers.get("Retry-After", "") if headers is not None else ""
    if after.strip().isdigit():
        return min(float(after), _MAX_RETRY_AFTER)
    return _BACKOFF * 2 ** attempt


def _length(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


@contextlib.contextmanager
def _open_file(url: str) -> Iterator[Response]:
    path = Path(local_path(url))
    if not path.is_file():
        missing = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        raise NotFound(url, None, "No such file or directory", missing)
    try:
        f = path.open("rb")
    except OSError as err:
        raise Unreachable(url, err) from None
    with f:
        yield Response(url, 200, _Body(url, f), length=path.stat().st_size)


_SMALL_ANSWER = 1 << 16
"""The largest answer :class:`Connections` reads through to keep its connection."""


class Connections:
    """Kept-alive HTTP/1.1 connections, one per scheme://host:port, for one thread's downloads:
    many files from one mirror over one connection, as apt and curl do. A new connection (and
    TLS handshake) per file is what Nix's fetches and urllib pay; on a network that admits a
    few new connections a second that alone made 166 small downloads take 26 s (0.5 s reused).

    Only the plain case goes this way: GET, no proxy, a 200 answer. Anything else (a
    redirect, an error status, a proxy, a connection that fails) is left to urllib's full path
    in :func:`open_url`, with its redirect rule, retries and error messages."""

    def __init__(self) -> None:
        self._open: dict[str, http.client.HTTPConnection] = {}

    def close(self) -> None:
        for conn in self._open.values():
            conn.close()
        self._open.clear()

    def request(self, url: str, headers: Mapping[str, str],
                timeout: float) -> http.client.HTTPResponse | None:
        """A 200 answer to GET ``url`` over a kept connection, or None (see the class)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or _proxied(parts):
            return None
        key = f"{parts.scheme}://{parts.netloc}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        for _ in range(2):
            conn = self._open.get(key)
            new = conn is None
            if conn is None:
                kind = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
                conn = self._open[key] = kind(parts.hostname, parts.port, timeout=timeout)
            try:
                conn.request("GET", target, headers=dict(headers))
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException):
                self._drop(key)
                if new:
                    return None
                continue  # the server closed the kept connection meanwhile: once, anew
            identity = resp.getheader("Content-Encoding", "identity") in ("", "identity")
            if resp.status == 200 and identity:
                return resp
            if (resp.length or 0) <= _SMALL_ANSWER:  # a redirect or an error page: read it,
                resp.read()                          # so the connection can carry the next
            self.release(url, resp)
            return None
        return None

    def release(self, url: str, resp: http.client.HTTPResponse) -> None:
        """After an answer from :meth:`request`: its connection is kept only when the whole
        body was read and the server keeps it open."""
        if not resp.isclosed() or resp.will_close:
            parts = urllib.parse.urlsplit(url)
            self._drop(f"{parts.scheme}://{parts.netloc}")

    def _drop(self, key: str) -> None:
        conn = self._open.pop(key, None)
        if conn is not None:
            conn.close()


def _proxied(parts: urllib.parse.SplitResult) -> bool:
    """Whether the environment sends requests for this URL through a proxy."""
    return (parts.scheme in urllib.request.getproxies()
            and not urllib.request.proxy_bypass(parts.netloc))


@contextlib.contextmanager
def open_url(url: str, headers: Mapping[str, str] | None = None, *, method: str = "GET",
             timeout: float = TIMEOUT, insecure: bool = False, ca_files: Sequence[Path] = (),
             proxies: bool = True, retries: int = RETRIES,
             user_agent: str = USER_AGENT, login: Login | None = None,
             reuse: Connections | None = None) -> Iterator[Response]:
    """Open ``url`` for streaming: the answer, or HttpError/NotFound/Unauthorized/Unreachable.

    ``login`` is sent with basic auth; without one (and without an ``Authorization`` header),
    the user's netrc login for the host, if any. ``reuse``: a plain GET tries that thread's
    kept connection first (:class:`Connections`).

    Streaming matters: a big channel's repodata.json is hundreds of MB, and a package that
    must be hashed can be a GB. ValueError for a URL urllib cannot parse, as urllib does.
    """
    if urllib.parse.urlsplit(url).scheme == "file":
        with _open_file(url) as response:
            yield response
        return
    headers = dict(headers or {})
    authorization = headers.pop("Authorization", None)
    if authorization is None:
        login = login or netrc_login(urllib.parse.urlsplit(url).hostname or "")
        authorization = login.basic() if login else None
    request = urllib.request.Request(url, method=method,
                                     headers={"User-Agent": user_agent, **headers})
    if authorization:  # kept off redirects: a blob's CDN must not see the registry's token
        request.add_unredirected_header("Authorization", authorization)
    if reuse is not None and method == "GET" and proxies and not insecure and not ca_files:
        kept = reuse.request(url, dict(request.header_items()), timeout)
        if kept is not None:
            try:
                yield Response(url, 200, _Body(url, kept), kept.getheader("ETag"),
                               kept.getheader("Last-Modified"),
                               _length(kept.getheader("Content-Length")),
                               kept.getheader("Content-Type", ""))
            finally:
                reuse.release(url, kept)
            return
    opener = _opener(insecure, ca_files, proxies)
    attempt = 0
    while True:
        try:
            resp = opener.open(request, timeout=timeout)
            break
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            failure: BaseException = err
        if attempt < retries and _transient(failure):
            if isinstance(failure, urllib.error.HTTPError):
                failure.close()  # the error page's connection
            time.sleep(_delay(attempt, failure))
            attempt += 1
            continue
        if not isinstance(failure, urllib.error.HTTPError):
            raise Unreachable(url, failure) from None
        if failure.code == 304:
            resp = None
            break
        if failure.code in (401, 403):
            raise Unauthorized(url, failure.code, str(failure.reason), failure,
                               bool(authorization)) from None
        kind = NotFound if failure.code in (404, 410) else HttpError
        raise kind(url, failure.code, str(failure.reason), failure) from None
    if resp is None:  # 304: the caller's copy is current
        yield Response(url, 304, io.BytesIO(), failure.headers.get("ETag"),
                       failure.headers.get("Last-Modified"))
        return
    with resp:
        encoded = resp.headers.get("Content-Encoding", "identity") not in ("", "identity")
        yield Response(url, resp.status, _Body(url, resp), resp.headers.get("ETag"),
                       resp.headers.get("Last-Modified"),
                       None if encoded else _length(resp.headers.get("Content-Length")),
                       resp.headers.get("Content-Type", ""))


_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def registry_headers(url: str, login: Login | None, *,
                     insecure: bool = False) -> dict[str, str]:
    """The ``Authorization`` a registry wants for the blob ``url``, as docker and skopeo work
    it out: none when an anonymous request is answered; for a token service's challenge
    (``WWW-Authenticate: Bearer realm=...``), the bearer token it gives for the scope named,
    asked with ``login`` if there is one, else anonymously (public repositories on such
    registries take anonymous tokens); basic auth from ``login`` for any other challenge.

    Empty without a login when the registry wants basic auth: the caller's own request then
    gets the 401 to report. A token service that refuses (the login, or anonymous access to a
    private repository) raises :class:`Unauthorized`, as the blob itself would."""
    try:
        with open_url(url, {"Authorization": ""}, method="HEAD", insecure=insecure):
            return {}  # anonymous pulls allowed
    except Unauthorized as exc:
        cause = exc.cause
        challenge = (cause.headers.get("WWW-Authenticate", "")
                     if isinstance(cause, urllib.error.HTTPError) else "")
    scheme = challenge.split(" ", 1)[0].lower()
    if scheme != "bearer":
        return {"Authorization": login.basic()} if login else {}
    fields = dict(_CHALLENGE.findall(challenge))
    realm = fields.pop("realm", "")
    if url_problem(realm):
        raise FetchError(f"{urllib.parse.urlsplit(url).netloc}: its token service "
                         f"{shown_url(realm)} is not a URL envnix fetches")
    query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
    token_url = realm + ("&" if "?" in realm else "?") + query
    try:  # "" keeps a netrc's login for the realm's host out of an anonymous request
        answer = json.loads(get(token_url, {"Authorization": login.basic() if login else ""},
                                insecure=insecure))
        token = answer.get("token") or answer.get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise FetchError(f"{urllib.parse.urlsplit(url).netloc}: its token service gave no token")
    return {"Authorization": f"Bearer {token}"}


def get(url: str, headers: Mapping[str, str] | None = None, *, timeout: float = TIMEOUT,
        insecure: bool = False, user_agent: str = USER_AGENT, limit: int | None = None,
        what: str = "what was asked for") -> bytes:
    """The whole body of ``url`` (an index page, a Release file: small enough to hold). With
    ``limit``, a body over that many bytes is a LockError saying it is not ``what``: a
    server's answer read into memory must not be as big as the server likes."""
    with open_url(url, headers, timeout=timeout, insecure=insecure,
                  user_agent=user_agent) as resp:
        if limit is None:
            return resp.body.read()
        body = resp.body.read(limit + 1)
    if len(body) > limit:
        raise LockError(f"{url} is over {limit >> 20} MB, not {what}")
    return body


def content_length(url: str, *, insecure: bool = False) -> int | None:
    """The size a HEAD request reports for ``url``, or None when the server does not say
    (no Content-Length, a compressed answer, HEAD refused): then the caller downloads."""
    try:
        with open_url(url, method="HEAD", insecure=insecure) as resp:
            return resp.length if resp.status == 200 else None
    except (RequestError, ValueError):
        return None


def hash_url(url: str, *, insecure: bool = False) -> tuple[str, int]:
    """sha256 and size of what ``url`` serves, streamed (never held in memory whole).

    Raises NotFound, HttpError or Unreachable like :func:`open_url`; Unreachable too when
    the body is shorter or longer than the Content-Length the server announced.
    """
    digest, size = hashlib.sha256(), 0
    with open_url(url, insecure=insecure) as resp:
        while chunk := resp.body.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        if resp.length is not None and size != resp.length:
            raise Unreachable(url, OSError(f"got {size} bytes of the {resp.length} announced"))
    return digest.hexdigest(), size


def download(url: str, sha256: str, dest: Path, *, timeout: float = 120,
             progress: Progress | None = None,
             headers: Mapping[str, str] | None = None,
             reuse: Connections | None = None) -> None:
    """``url`` to ``dest``, which appears only whole and matching ``sha256``; else a one-line
    FetchError or HashMismatchError (LockError for a URL envnix does not fetch at all).
    ``progress`` hears one line per file once it is in place, with its size. ``reuse``: the
    calling thread's kept connections, for many files from one host."""
    problem = url_problem(url)  # the caller checked; this function must not rely on it
    if problem:
        raise LockError(f"refusing to download {url[:200]!r}: {problem}")
    digest = hashlib.sha256()
    done = 0
    try:
        with open_url(url, headers, timeout=timeout, reuse=reuse) as resp, \
                atomic_writer(dest) as out:
            while chunk := resp.body.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                transfer(progress, f"download {dest.name}", done, resp.length)
            if digest.hexdigest() != sha256:
                raise HashMismatchError(
                    f"hash mismatch for {dest.name}: envnix.lock pins sha256:{sha256} but the "
                    f"download is sha256:{digest.hexdigest()}",
                    hint="the artifact changed upstream or the mirror is serving different "
                         "bytes; check the source, then run envnix lock to re-pin")
    except Unauthorized as exc:
        raise FetchError(exc.message, hint="check the login stored for it (netrc, or the "
                         "registry auth file)") from None
    except HttpError as exc:
        raise FetchError(f"cannot download {url}: HTTP {exc.code} {exc.reason}",
                         hint="check the mirror in envnix.lock, or re-lock") from None
    except (Unreachable, OSError) as exc:
        raise FetchError(f"cannot download {url}: "
                         f"{os_reason(exc.cause if isinstance(exc, Unreachable) else exc)}",
                         hint="check the network or the mirror in envnix.lock") from None
    if progress:
        progress(f"downloaded {dest.name} ({dest.stat().st_size / 1e6:.1f} MB)")

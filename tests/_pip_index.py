"""A PEP 503 / PEP 691 package index of real wheel files, served over loopback HTTP.

Private indexes and mirrors (devpi, Artifactory, nginx autoindex, ``python -m http.server``
over a PEP 503 tree) often serve only the HTML pages: no JSON, no file sizes, sometimes not
even a ``#sha256=`` fragment. This server serves the same wheels in each of those styles so
the lock can be tried against every one:

* ``html``: PEP 503 pages with relative hrefs (``../../files/<file>#sha256=...``),
  ``data-requires-python`` (HTML-escaped) and ``data-yanked``;
* ``html-nohash``: the same without the hash fragments;
* ``json``: PEP 691 JSON with ``size`` and ``hashes`` (what the public index serves).

``ranges`` makes file URLs answer HTTP Range requests (then uv reads only a wheel's METADATA
and never sees its hash); ``head_length=False`` makes HEAD answer without Content-Length, as
some proxies do. ``login=(user, password)`` makes every path answer 401 without that basic
auth, as a private index behind a password does. ``requests`` records (method, path) of every
request; ``agents`` the User-Agent of each file request that got its file. ``file_delay``
holds each file answer back that many seconds, and ``most_at_once`` is the largest number of
file answers that were being served at the same time (how parallel the downloads were).
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True)
class Dist:
    """One file of a project: a real wheel on disk plus what the index says about it."""

    project: str
    path: Path
    requires_python: str | None = None
    yanked: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class PipIndex:
    """Serve ``dists`` at ``<url>/simple/`` (see the module docstring for the styles)."""

    def __init__(self, dists: list[Dist], style: str = "html", *, ranges: bool = False,
                 head_length: bool = True, login: tuple[str, str] | None = None,
                 file_delay: float = 0.0) -> None:
        if style not in ("html", "html-nohash", "json"):
            raise ValueError(style)
        self.dists, self.style, self.ranges, self.head_length = dists, style, ranges, head_length
        self.requests: list[tuple[str, str]] = []
        self.agents: list[str] = []
        self.login = login
        self.files = {d.path.name: d for d in dists}
        self.file_delay = file_delay
        self.at_once = self.most_at_once = 0
        self._counting = threading.Lock()
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                index._handle(self, head=True)

            def do_GET(self) -> None:
                index._handle(self, head=False)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/simple"

    def publish(self, dists: list[Dist]) -> None:
        """Serve ``dists`` from now on: upstream moved (new releases, deleted files)."""
        self.dists = list(dists)
        self.files = {d.path.name: d for d in self.dists}

    def hits(self, method: str, prefix: str = "/files/") -> list[str]:
        return [p for m, p in self.requests if m == method and p.startswith(prefix)]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    # -- pages -----------------------------------------------------------------------------

    def _project_page(self, project: str) -> tuple[str, bytes] | None:
        dists = [d for d in self.dists if _normalize(d.project) == project]
        if not dists:
            return None
        if self.style == "json":
            files = [{"filename": d.path.name, "url": f"../../files/{d.path.name}",
                      "hashes": {"sha256": d.sha256}, "size": d.size,
                      **({"requires-python": d.requires_python} if d.requires_python else {}),
                      **({"yanked": d.yanked} if d.yanked else {})} for d in dists]
            body = {"meta": {"api-version": "1.1"}, "name": project, "files": files}
            return JSON_TYPE, json.dumps(body).encode()
        links = []
        for d in dists:
            href = f"../../files/{d.path.name}"
            if self.style == "html":
                href += f"#sha256={d.sha256}"
            attrs = f' href="{html.escape(href)}"'
            if d.requires_python:
                attrs += f' data-requires-python="{html.escape(d.requires_python)}"'
            if d.yanked is not None:
                attrs += f' data-yanked="{html.escape(d.yanked)}"'
            links.append(f"<a{attrs}>{html.escape(d.path.name)}</a><br/>")
        page = ("<!DOCTYPE html><html><head><title>Links for " + project + "</title></head>"
                "<body><h1>Links for " + project + "</h1>\n" + "\n".join(links)
                + "\n</body></html>\n")
        return "text/html", page.encode()

    def _root_page(self) -> bytes:
        names = sorted({_normalize(d.project) for d in self.dists})
        return ("<!DOCTYPE html><html><body>\n"
                + "\n".join(f'<a href="{n}/">{n}</a>' for n in names)
                + "\n</body></html>\n").encode()

    def _handle(self, req: http.server.BaseHTTPRequestHandler, head: bool) -> None:
        path = req.path.split("?", 1)[0]
        self.requests.append((req.command, path))
        if self.login is not None:
            want = "Basic " + base64.b64encode(":".join(self.login).encode()).decode()
            if req.headers.get("Authorization") != want:
                req.send_response(401)
                req.send_header("WWW-Authenticate", 'Basic realm="private index"')
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
        status, ctype, body = 404, "text/plain", b"not found\n"
        m = re.fullmatch(r"/simple/([^/]+)/?", path)
        if path in ("/simple", "/simple/"):
            status, ctype, body = 200, "text/html", self._root_page()
        elif m and (page := self._project_page(_normalize(m[1]))):
            status, (ctype, body) = 200, page
        elif path.startswith("/files/") and path[len("/files/"):] in self.files:
            status, ctype = 200, "application/octet-stream"
            body = self.files[path[len("/files/"):]].path.read_bytes()
            self.agents.append(req.headers.get("User-Agent", ""))
            if not head and self.file_delay:
                with self._counting:
                    self.at_once += 1
                    self.most_at_once = max(self.most_at_once, self.at_once)
                time.sleep(self.file_delay)
                with self._counting:
                    self.at_once -= 1
        ranged = self._range(req, body) if status == 200 and path.startswith("/files/") else None
        if ranged is not None:
            start, end = ranged
            req.send_response(206)
            req.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
            body = body[start:end + 1]
        else:
            req.send_response(status)
        if self.ranges and path.startswith("/files/"):
            req.send_header("Accept-Ranges", "bytes")
        req.send_header("Content-Type", ctype)
        if not head or self.head_length:
            req.send_header("Content-Length", str(len(body)))
        else:  # no length on HEAD, as some proxies answer; the connection must then close
            req.send_header("Connection", "close")
            req.close_connection = True
        req.end_headers()
        if not head:
            req.wfile.write(body)

    def _range(self, req: http.server.BaseHTTPRequestHandler,
               body: bytes) -> tuple[int, int] | None:
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", req.headers.get("Range", ""))
        if not self.ranges or not m or (not m[1] and not m[2]):
            return None
        if not m[1]:  # suffix: the last N bytes
            return max(0, len(body) - int(m[2])), len(body) - 1
        return int(m[1]), min(int(m[2]) if m[2] else len(body) - 1, len(body) - 1)


@contextmanager
def serve_index(dists: list[Dist], style: str = "html",
                **options: bool | tuple[str, str]) -> Iterator[PipIndex]:
    index = PipIndex(dists, style, **options)  # type: ignore[arg-type]
    try:
        yield index
    finally:
        index.stop()

"""envnix's one HTTP client (envnix/core/http.py) against a real loopback HTTP server.

Each test scripts the server's answers per path and checks what the client made of them:
retries on a briefly unavailable server, a download that never leaves a wrong or partial
file, redirects followed only to URLs envnix would fetch itself, and the environment's proxy.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from envnix.core.errors import FetchError, HashMismatchError, LockError
from envnix.core.http import (
    Connections,
    HttpError,
    NotFound,
    Unreachable,
    content_length,
    download,
    get,
    hash_url,
    no_answer,
    open_url,
    reason,
)

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Server:
    """Answers each path with the next scripted (status, headers, body), the last one again
    once the script runs out; ``seen`` records every request line's target, in order."""

    script: dict[str, list[Answer]]
    seen: list[str] = field(default_factory=list)
    port: int = 0
    connections: int = 0  # accepted, over the server's life (HTTP/1.1: kept alive)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server({})

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            state.connections += 1
            super().setup()

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, head: bool) -> None:
            state.seen.append(self.path)
            answers = state.script.get(self.path) or [(404, {}, b"not here\n")]
            status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(head=False)

        def do_HEAD(self) -> None:
            self._answer(head=True)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _dead_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/x"


def test_a_briefly_unavailable_server_is_asked_again(server: Server) -> None:
    server.script["/index"] = [(503, {"Retry-After": "0"}, b"busy"),
                               (502, {"Retry-After": "0"}, b"bad gateway"), (200, {}, b"the index")]
    assert get(server.url("/index")) == b"the index"
    assert server.seen == ["/index"] * 3


def test_retries_end_with_the_servers_last_answer(server: Server) -> None:
    server.script["/down"] = [(503, {"Retry-After": "0"}, b"busy")]
    with pytest.raises(HttpError) as info:
        get(server.url("/down"))
    assert info.value.code == 503 and reason(info.value) == "HTTP 503"
    assert info.value.exit_code == 8  # a network failure: running again may work
    assert len(server.seen) == 3  # the first try and two retries


def test_not_found_is_told_apart_and_not_retried(server: Server) -> None:
    with pytest.raises(NotFound) as info:
        get(server.url("/missing"))
    assert info.value.code == 404
    assert str(info.value) == f"cannot fetch {server.url('/missing')}: HTTP 404 Not Found"
    assert server.seen == ["/missing"]


def test_a_refused_connection_is_unreachable_at_once() -> None:
    url = _dead_url()
    with pytest.raises(Unreachable) as info:
        get(url)
    assert reason(info.value) == "connection refused"
    assert no_answer(info.value) == "connection refused"
    assert str(info.value) == f"cannot reach {url}: connection refused"


def test_conditional_request_gets_304_as_an_answer(server: Server) -> None:
    server.script["/repodata.json"] = [(304, {"ETag": '"v1"'}, b"")]
    with open_url(server.url("/repodata.json"), {"If-None-Match": '"v1"'}) as resp:
        assert (resp.status, resp.etag, resp.body.read()) == (304, '"v1"', b"")


def test_a_bounded_get_refuses_a_body_over_its_limit(server: Server) -> None:
    server.script["/meta"] = [(200, {}, b"x" * (1 << 20)), (200, {}, b"x" * ((1 << 20) + 1))]
    assert get(server.url("/meta"), limit=1 << 20) == b"x" * (1 << 20)
    with pytest.raises(LockError, match=r"/meta is over 1 MB, not a package's metadata"):
        get(server.url("/meta"), limit=1 << 20, what="a package's metadata")


def test_size_and_hash_of_what_a_url_serves(server: Server) -> None:
    data = b"wheel bytes" * 1000
    server.script["/w.whl"] = [(200, {}, data)]
    assert content_length(server.url("/w.whl")) == len(data)
    assert hash_url(server.url("/w.whl")) == (hashlib.sha256(data).hexdigest(), len(data))
    assert content_length(server.url("/nothing")) is None


def test_download_writes_only_verified_bytes(server: Server, tmp_path: Path) -> None:
    data = b"a pinned artifact"
    server.script["/a.deb"] = [(200, {}, data)]
    dest = tmp_path / "a.deb"
    lines: list[str] = []
    download(server.url("/a.deb"), hashlib.sha256(data).hexdigest(), dest, progress=lines.append)
    assert dest.read_bytes() == data
    assert lines == ["downloaded a.deb (0.0 MB)"]  # one line per file, once it is in place


def test_download_with_the_wrong_sha256_leaves_no_file(server: Server, tmp_path: Path) -> None:
    server.script["/a.deb"] = [(200, {}, b"other bytes than pinned")]
    with pytest.raises(HashMismatchError, match=r"^hash mismatch for a\.deb: envnix\.lock pins "
                                                r"sha256:0{64} but the download is sha256:"):
        download(server.url("/a.deb"), "0" * 64, tmp_path / "a.deb")
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one


def test_download_failures_are_one_line_fetch_errors(server: Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"HTTP 404 Not Found$") as info:
        download(server.url("/gone"), "0" * 64, tmp_path / "gone")
    assert info.value.hint == "check the mirror in envnix.lock, or re-lock"
    url = _dead_url()
    with pytest.raises(FetchError, match=f"^cannot download {url}: connection refused$"):
        download(url, "0" * 64, tmp_path / "x")
    with pytest.raises(LockError, match=r"refusing to download 'file:///etc/passwd'"):
        download("file:///etc/passwd", "0" * 64, tmp_path / "passwd")
    assert list(tmp_path.iterdir()) == []


def test_redirects_followed_only_to_what_envnix_fetches(server: Server, tmp_path: Path) -> None:
    server.script["/moved"] = [(302, {"Location": "/here"}, b"")]
    server.script["/here"] = [(200, {}, b"moved content")]
    assert get(server.url("/moved")) == b"moved content"
    secret = tmp_path / "secret"
    secret.write_bytes(b"a local file")
    server.script["/sneaky"] = [(302, {"Location": secret.as_uri()}, b"")]
    with pytest.raises(HttpError, match=r"HTTP 302 .*is not allowed"):  # urllib's own rule
        get(server.url("/sneaky"))
    server.script["/ftp"] = [(302, {"Location": "ftp://127.0.0.1/pub/x"}, b"")]
    with pytest.raises(Unreachable, match=r"redirected to a URL envnix does not fetch "
                                          r"\(only http\(s\) URLs are fetched, not ftp URLs\)$"):
        get(server.url("/ftp"))
    server.script["/creds"] = [(302, {"Location": "http://user:pw@127.0.0.1/x"}, b"")]
    for path in ("/sneaky", "/ftp", "/creds"):
        with pytest.raises(FetchError, match=r"^cannot download .*(not allowed|envnix does not "
                                             r"fetch \((only http|the URL carries credentials))"):
            download(server.url(path), hashlib.sha256(b"a local file").hexdigest(),
                     tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_downloads_from_one_host_share_one_kept_connection(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections: many files from one host over one connection, as apt does; what is not a
    plain 200 (a redirect, a 404) takes urllib's full path, with its rules and messages, and
    a server that closes the connection gets a new one for the next file."""
    monkeypatch.delenv("http_proxy", raising=False)
    bodies = {f"/f{i}": f"file {i}\n".encode() * 4000 for i in range(5)}
    for path, body in bodies.items():
        server.script[path] = [(200, {}, body)]
    reuse = Connections()
    try:
        for path, body in bodies.items():
            download(server.url(path), hashlib.sha256(body).hexdigest(), tmp_path / path[1:],
                     reuse=reuse)
            assert (tmp_path / path[1:]).read_bytes() == body
        assert server.connections == 1
        server.script["/moved"] = [(302, {"Location": "/f0"}, b"")]
        download(server.url("/moved"), hashlib.sha256(bodies["/f0"]).hexdigest(),
                 tmp_path / "moved", reuse=reuse)
        assert (tmp_path / "moved").read_bytes() == bodies["/f0"]
        with pytest.raises(FetchError, match=r"^cannot download .*/nothing: HTTP 404"):
            download(server.url("/nothing"), "0" * 64, tmp_path / "nothing", reuse=reuse)
        assert not (tmp_path / "nothing").exists()
        server.script["/bye"] = [(200, {"Connection": "close"}, b"bye")]
        before = server.connections
        download(server.url("/bye"), hashlib.sha256(b"bye").hexdigest(), tmp_path / "bye",
                 reuse=reuse)
        download(server.url("/f1"), hashlib.sha256(bodies["/f1"]).hexdigest(),
                 tmp_path / "again", reuse=reuse)
        assert server.connections == before + 1  # /bye's was kept, then closed by the server
    finally:
        reuse.close()


def test_file_urls_are_read_from_disk(tmp_path: Path) -> None:
    (tmp_path / "Release").write_bytes(b"Suite: bookworm\n")
    assert get((tmp_path / "Release").as_uri()) == b"Suite: bookworm\n"
    with pytest.raises(NotFound) as info:
        get((tmp_path / "InRelease").as_uri())
    assert info.value.code is None and info.value.why.strerror == "No such file or directory"


def test_the_environments_proxy_is_used(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _dead_url()  # nothing listens there: only the proxy can answer for it
    server.script[target] = [(200, {}, b"via the proxy")]
    monkeypatch.setenv("http_proxy", server.url(""))
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert get(target) == b"via the proxy"
    assert server.seen == [target]  # a proxy request carries the absolute URL
    with pytest.raises(Unreachable, match="connection refused"), \
            open_url(target, proxies=False):  # as for a loopback registry: no proxy
        pass
    assert server.seen == [target]

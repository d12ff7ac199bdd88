"""A real git repository served on loopback by ``git daemon`` (git:// protocol) or by git's
own ``git-http-backend`` behind a small CGI server (smart HTTP), for include(git=URL): the
tests commit to it while envnix fetches from it.

    with served_repository(tmp_path / "srv", {"src/lib.envd": "..."}) as served:
        served.url            # git://127.0.0.1:PORT/envdlib (http=True: http://...)
        served.commit({"src/lib.envd": "..."})   # a new HEAD

git runs with no user or system config, so the host's settings play no part.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _cli import stop
from _tiny import dead_port

NAME = "envdlib"
HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


def git_env(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid"}


@dataclass
class Served:
    root: Path
    url: str

    @property
    def work(self) -> Path:
        return self.root / NAME

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.work), *args], check=True, text=True,
                              capture_output=True, env=git_env(self.root)).stdout.strip()

    def commit(self, files: Mapping[str, str], message: str = "change") -> str:
        """Write ``files`` into the repository and commit them; the new HEAD."""
        for rel, text in files.items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


@contextmanager
def served_repository(root: Path, files: Mapping[str, str], *,
                      http: bool = False) -> Iterator[Served]:
    """``files`` committed to a new repository under ``root``, served until the block ends."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(root / NAME)], check=True,
                   env=git_env(root))
    if http:
        with _http_backend(root) as base:
            served = Served(root, f"{base}/{NAME}")
            served.commit(files, "first")
            yield served
        return
    port = dead_port()
    served = Served(root, f"git://127.0.0.1:{port}/{NAME}")
    served.commit(files, "first")
    daemon = subprocess.Popen(
        ["git", "daemon", "--listen=127.0.0.1", f"--port={port}", f"--base-path={root}",
         "--export-all", "--reuseaddr", "--informative-errors", str(root)],
        env=git_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise
                time.sleep(0.05)
        yield served
    finally:
        stop(daemon)


@contextmanager
def _http_backend(root: Path) -> Iterator[str]:
    """git-http-backend as CGI: each request runs it with the CGI variables it reads."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _cgi(self) -> None:
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {**git_env(root), "GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1",
                   "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
                   "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                   "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", "")}
            out = subprocess.run([HTTP_BACKEND], input=body, env=env, capture_output=True,
                                 check=False).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = out.partition(b"\n\n")
            headers = [line.split(":", 1) for line in head.decode().splitlines() if ":" in line]
            status = next((v.strip() for k, v in headers if k.lower() == "status"), "200 OK")
            self.send_response(int(status.split()[0]))
            for key, value in headers:
                if key.lower() != "status":
                    self.send_header(key, value.strip())
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _cgi

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

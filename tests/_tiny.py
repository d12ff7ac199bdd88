"""A tiny build context with a lock written directly: it renders and builds in seconds, offline.

The lock answers the context's inputs (so ``--locked`` accepts it) and lists only the artifacts
a test puts in it; an image with none builds from envnix's own skeleton and metadata layers.
``Server`` serves bytes on loopback, optionally never answering, for downloads that fail,
mismatch or hang.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from envnix.core.errors import EnvnixError
from envnix.frontend import load_spec
from envnix.lock import Lock, lock_inputs
from envnix.render import image_section

TINY_ENVD = 'def build():\n    base(os="debian12", language="python3.11")\n'


def tiny_context(parent: Path, name: str = "tiny", envd: str = TINY_ENVD,
                 wheels: list[dict[str, Any]] | None = None) -> Path:
    """``parent/name`` with build.envd and a matching envnix.lock holding ``wheels`` only.

    When the frontend refuses ``envd`` no lock is written: the CLI then fails at evaluation.
    """
    context = parent / name
    context.mkdir(parents=True, exist_ok=True)
    (context / "build.envd").write_text(envd)
    try:
        spec = load_spec(context, "build.envd:build")
    except EnvnixError:
        return context
    # Written as is, not through write_lock (which refuses a lock it would not read back):
    # tests hand envnix hostile locks on purpose. With its image section, as `envnix lock`
    # writes it, unless a hostile entry makes envnix refuse to describe the image.
    lock = Lock(inputs=lock_inputs(spec, context), pip_wheels=list(wheels or []))
    with suppress(EnvnixError):
        lock = dataclasses.replace(lock, image=image_section(spec, lock, context))
    (context / "envnix.lock").write_text(lock.dumps())
    return context


def wheel(url: str, data: bytes = b"not a wheel", sha256: str | None = None,
          name: str = "envnixprobe") -> dict[str, Any]:
    """A lock entry for a wheel at ``url`` pinned to ``sha256`` (default: that of ``data``)."""
    return {"name": name, "version": "1.0", "filename": f"{name}-1.0-py3-none-any.whl",
            "url": url, "size": len(data),
            "sha256": sha256 or hashlib.sha256(data).hexdigest()}


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """Loopback HTTP: GET /<anything> answers ``data``, or after ``delay`` seconds; a client
    whose User-Agent holds ``refuse_agent`` gets a 404 at once (envnix's own download fails,
    Nix's fetch then waits)."""

    def __init__(self, data: bytes, delay: float = 0.0, refuse_agent: str | None = None) -> None:
        self.data, self.delay, self.requests = data, delay, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if refuse_agent and refuse_agent in self.headers.get("User-Agent", ""):
                    self.send_error(404)
                    return
                outer.requests += 1
                end = time.monotonic() + outer.delay
                while time.monotonic() < end and not outer.closing:
                    time.sleep(0.1)
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.data)))
                self.end_headers()
                self.wfile.write(outer.data)

            def log_message(self, *args: object) -> None:
                pass

        self.closing = False
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[Server]:
        thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.closing = True
            self.httpd.shutdown()
            self.httpd.server_close()


def lock_text(context: Path) -> str:
    return (context / "envnix.lock").read_text()


def image_of(out_dir: Path) -> dict[str, Any]:
    """The image section of the lock a render wrote into ``out_dir`` (what image.nix reads)."""
    return json.loads((out_dir / "envnix.lock").read_text())["image"]

"""Real parts for binary-cache tests: a signing key from ``nix-store
--generate-binary-cache-key``, a user's nix.conf given to Nix the way a user gives it
(NIX_USER_CONF_FILES, and NIX_CONF_DIR for the machine's, here an empty one), a directory served
over HTTP on loopback, and a tiny context whose image is new to every store."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _tiny import tiny_context

NIX = ["nix", "--extra-experimental-features", "nix-command"]


def nix_env(tmp_path: Path, conf: str) -> dict[str, str]:
    """The environment of a user whose nix.conf is ``conf`` (and no machine-wide one)."""
    machine = tmp_path / f"etc-nix-{uuid.uuid4().hex[:8]}"
    machine.mkdir()
    user_conf = machine.parent / f"{machine.name}-user.conf"
    user_conf.write_text(conf)
    env = {k: v for k, v in os.environ.items() if k not in ("NIX_REMOTE", "NIX_CONFIG")}
    return env | {"NIX_CONF_DIR": str(machine), "NIX_USER_CONF_FILES": str(user_conf)}


def nonce_context(parent: Path, nonce: str) -> Path:
    """A tiny context whose image is new to every store (the nonce is in its config)."""
    return tiny_context(parent, envd='def build():\n    base(os="debian12", language="python3.11")'
                                      f'\n    runtime.environ(env={{"NONCE": "{nonce}"}})\n')


def signing_key(tmp_path: Path, name: str) -> tuple[Path, str]:
    """(secret key file, public key text) of a new binary-cache key pair."""
    secret, public = tmp_path / f"{name}.sec", tmp_path / f"{name}.pub"
    subprocess.run(["nix-store", "--generate-binary-cache-key", name, str(secret), str(public)],
                   check=True)
    return secret, public.read_text().strip()


@contextmanager
def serve(directory: Path) -> Iterator[tuple[str, list[str]]]:
    """``directory`` over HTTP on loopback; yields its URL and the paths requested so far."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()

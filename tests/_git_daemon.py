"""A real git repository served on loopback by ``git daemon`` (git:// protocol), for
include(git=URL): the tests commit to it while envnix fetches from it.

    with served_repository(tmp_path / "srv", {"src/lib.envd": "..."}) as served:
        served.url            # git://127.0.0.1:PORT/envdlib
        served.commit({"src/lib.envd": "..."})   # a new HEAD

git runs with no user or system config, so the host's settings play no part.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _cli import stop
from _tiny import dead_port

NAME = "envdlib"


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
def served_repository(root: Path, files: Mapping[str, str]) -> Iterator[Served]:
    """``files`` committed to a new repository under ``root``, served until the block ends."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(root / NAME)], check=True,
                   env=git_env(root))
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

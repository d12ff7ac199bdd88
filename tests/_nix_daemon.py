"""A real nix-daemon for tests, and a way to run envnix as an unprivileged user through it.

The daemon gets its own NIX_CONF_DIR and socket in a directory other users can traverse (pytest's
own tmp directories are private to root). It serves the machine's /nix/store, as scripts/setup's
daemon does; only its settings and socket are its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _cli import stop

ROOT = Path(__file__).resolve().parents[1]
DAEMON_CONF = ROOT / "scripts" / "nix-daemon.conf"
SOCKET_GROUP = "nix-users"
PING = ["nix", "--extra-experimental-features", "nix-command", "store", "ping", "--store",
        "daemon"]


@dataclass(frozen=True)
class NixDaemon:
    """A running daemon: ``client_env`` is what a client adds to its environment to use it."""

    client_env: dict[str, str]
    log: Path | None


def answers(client_env: dict[str, str]) -> bool:
    """Whether a daemon answers for a client (run as root) with ``client_env``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NIX_REMOTE", "NIX_DAEMON_SOCKET_PATH")}
    proc = subprocess.run(PING, env={**env, **client_env}, capture_output=True, text=True,
                          timeout=30, check=False)
    return proc.returncode == 0


@contextmanager
def running_daemon(directory: Path, conf: str) -> Iterator[NixDaemon]:
    """Start ``nix-daemon`` with ``conf`` as its nix.conf and its socket under ``directory``
    (root:nix-users 0770, as scripts/setup makes the default one); stop it on exit."""
    conf_dir = directory / "conf"
    conf_dir.mkdir()
    (conf_dir / "nix.conf").write_text(conf)
    socket_dir = directory / "socket"
    socket_dir.mkdir()
    shutil.chown(socket_dir, group=SOCKET_GROUP)
    socket_dir.chmod(0o770)
    client_env = {"NIX_REMOTE": "daemon", "NIX_DAEMON_SOCKET_PATH": str(socket_dir / "socket")}
    env = {k: v for k, v in os.environ.items() if k != "NIX_REMOTE"}
    env |= {"NIX_CONF_DIR": str(conf_dir), "NIX_DAEMON_SOCKET_PATH": client_env[
        "NIX_DAEMON_SOCKET_PATH"]}
    log = directory / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["nix-daemon"], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while not answers(client_env):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nix-daemon did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield NixDaemon(client_env, log)
    finally:
        stop(proc)


@contextmanager
def setup_conf_daemon() -> Iterator[NixDaemon]:
    """A daemon with exactly scripts/setup's settings (scripts/nix-daemon.conf), its own
    NIX_CONF_DIR and socket in a temporary directory, removed afterwards."""
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="envnix-daemon-"))
    directory.chmod(0o755)  # the socket's own directory restricts access to nix-users
    try:
        with running_daemon(directory, DAEMON_CONF.read_text()) as daemon:
            yield daemon
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def envnix_command(user: str) -> list[str]:
    """How ``user`` runs this checkout's envnix: the venv's interpreter when ``user`` may run it;
    else Debian's python (same version) with the venv's site-packages, for a venv made from a
    python under root's home. Raises when ``user`` can read neither."""
    site_packages = next(p for p in sys.path if p.endswith("site-packages")
                         and p.startswith(sys.prefix))
    bootstrap = ("import runpy, site, sys; site.addsitedir(sys.argv.pop(1)); "
                 "runpy.run_module('envnix', run_name='__main__', alter_sys=True)")
    candidates = [[sys.executable, "-m", "envnix"],
                  ["/usr/bin/python3", "-c", bootstrap, site_packages]]
    for command in candidates:
        probe = subprocess.run(["runuser", "-u", user, "--", *command, "--version"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return command
    raise RuntimeError(f"user {user} can run neither {sys.executable} nor /usr/bin/python3 with "
                       f"{site_packages}: the checkout or its venv is not readable by other "
                       "users (clone it where they can read it, and run ./scripts/setup)")


def run_as(user: str, command: list[str], home: Path, extra_env: dict[str, str],
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``command`` as ``user`` with a regular user's environment: PATH, HOME, ``extra_env``."""
    env = ["PATH=/usr/local/bin:/usr/bin:/bin", f"HOME={home}",
           *(f"{k}={os.environ[k]}" for k in ("ENVNIX_LOAD",) if k in os.environ),  # conftest
           *(f"{k}={v}" for k, v in extra_env.items())]
    return subprocess.run(["runuser", "-u", user, "--", "env", "-i", *env, *command], cwd=cwd,
                          capture_output=True, text=True, check=False)

"""scripts/setup's Nix part, run for real (as .ci/run runs it: root, no terminal, output in a pipe).

It must leave Nix working for root single-user (no daemon) and for members of nix-users through
a nix-daemon, say what it did in a few lines, and change nothing on a second run.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from _nix_daemon import DAEMON_CONF, PING, SOCKET_GROUP, answers

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "setup"
INSTALLED_CONF = Path("/etc/nix/envnix-daemon/nix.conf")
PIDFILE = Path("/run/envnix-nix-daemon.pid")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sets up this machine: needs root")


def setup_nix() -> list[str]:
    """``scripts/setup nix`` with no terminal and its output in pipes; its stderr lines.

    A daemon that kept setup's pipes open would make this wait until the timeout, as a CI job
    reading setup's output would wait forever."""
    try:
        proc = subprocess.run([str(SETUP), "nix"], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("scripts/setup nix did not finish: does the daemon it starts hold "
                             "its output open?") from exc
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.splitlines()


def daemon_pid() -> int | None:
    if not PIDFILE.exists():
        return None
    pid = int(PIDFILE.read_text())
    comm = Path(f"/proc/{pid}/comm")
    return pid if comm.exists() and comm.read_text().strip() == "nix-daemon" else None


def test_setup_leaves_a_daemon_for_users_and_root_single_user() -> None:
    first = setup_nix()
    assert first and all(line.startswith("setup: ") for line in first), first
    assert len(first) <= 6, first

    assert INSTALLED_CONF.read_text() == DAEMON_CONF.read_text()
    socket_dir = Path("/nix/var/nix/daemon-socket").stat()
    assert stat.S_IMODE(socket_dir.st_mode) == 0o770 and socket_dir.st_uid == 0
    group = subprocess.run(["getent", "group", SOCKET_GROUP], capture_output=True, text=True,
                           check=True).stdout
    assert int(group.split(":")[2]) == socket_dir.st_gid
    for i in range(1, 11):
        subprocess.run(["id", f"nixbld{i}"], capture_output=True, check=True)

    # A daemon answers on the default socket, and root (NIX_REMOTE unset) still uses the store
    # directly: single-user, its per-build options apply.
    assert answers({"NIX_REMOTE": "daemon"})
    env = {k: v for k, v in os.environ.items() if k not in ("NIX_REMOTE",
                                                             "NIX_DAEMON_SOCKET_PATH")}
    ping = subprocess.run(PING[:-2], env=env, capture_output=True, text=True, check=True)
    assert "Store URL: local" in ping.stderr  # Nix 2.8 prints it there

    # A second run changes nothing and says so.
    pid = daemon_pid()
    second = setup_nix()
    if pid is not None:  # this script's own daemon (not systemd's, not someone else's)
        assert f"setup: nix-daemon already running (pid {pid})" in second
        assert daemon_pid() == pid
    assert not any(line.startswith(("setup: wrote", "setup: creating", "setup: started"))
                   for line in second), second


def test_changed_daemon_settings_restart_the_daemon() -> None:
    setup_nix()
    pid = daemon_pid()
    if pid is None:
        pytest.skip("the nix-daemon here was not started by scripts/setup (systemd's, or another)")
    INSTALLED_CONF.write_text(INSTALLED_CONF.read_text() + "max-jobs = 1\n")
    lines = setup_nix()
    assert any(line.startswith("setup: wrote /etc/nix/envnix-daemon/nix.conf") for line in lines)
    restarted = next(line for line in lines if line.startswith("setup: restarted nix-daemon"))
    new_pid = int(re.search(r"pid (\d+)", restarted)[1])
    assert new_pid != pid and daemon_pid() == new_pid
    assert INSTALLED_CONF.read_text() == DAEMON_CONF.read_text()
    assert answers({"NIX_REMOTE": "daemon"})


def test_unknown_argument_is_a_usage_error() -> None:
    proc = subprocess.run([str(SETUP), "nixx"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "usage: scripts/setup [nix]"

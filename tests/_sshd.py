"""A real sshd on loopback acting as a team's shared Nix builder, for tests and benchmarks.

It runs as root (``/usr/sbin/sshd -D -e``) with its own config, host key and authorized_keys in a
directory of its own, on a free 127.0.0.1 port; nothing of the machine's ssh setup is read or
changed. The one authorized key (made here) may run only ``nix-store --serve --write`` on a
chroot store of the builder's own, with the builder's own (empty) nix.conf: what Nix builds
there lands in a store that is not the client's, as on a separate machine.

The client side is what a user writes: an ssh config (port, known_hosts with the builder's host
key, no agent, no prompt) handed to Nix through ``NIX_SSHOPTS``, and a ``builders`` line naming
``ssh://root@127.0.0.1``, the system, the key and the number of jobs.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _cli import stop

SSHD = Path("/usr/sbin/sshd")
HOST = "127.0.0.1"
URI = f"ssh://root@{HOST}"  # not "localhost": Nix 2.8 runs that one locally, without ssh
# sshd's privilege-separated child chroots here; Debian makes it when its service starts.
PRIVSEP_DIR = Path("/run/sshd")


@dataclass(frozen=True)
class Builder:
    """A running builder: where it listens, the client's key and ssh config, its store."""

    port: int
    key: Path
    ssh_config: Path
    store: Path
    log: Path

    def machine(self, jobs: int = 1) -> str:
        """A ``builders`` entry (Nix 2.8's machine format: URI, system, key, jobs)."""
        return f"{URI} x86_64-linux {self.key} {jobs}"

    @property
    def client_env(self) -> dict[str, str]:
        """What Nix's environment needs to reach the builder (its ssh runs with these)."""
        return {"NIX_SSHOPTS": f"-F {self.ssh_config}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def write_ssh_config(path: Path, port: int, known_hosts: Path) -> Path:
    """A client ssh config for ``HOST``: this port, only this known_hosts (checked strictly),
    only the key Nix names, and never a prompt (Nix runs ssh without a terminal)."""
    path.write_text(f"Host {HOST}\n"
                    f"  Port {port}\n"
                    f"  UserKnownHostsFile {known_hosts}\n"
                    "  GlobalKnownHostsFile /dev/null\n"
                    "  StrictHostKeyChecking yes\n"
                    "  IdentitiesOnly yes\n"
                    "  BatchMode yes\n"
                    "  ConnectTimeout 5\n")
    return path


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True)
    return path.with_name(path.name + ".pub").read_text().strip()


@contextmanager
def running_builder(directory: Path) -> Iterator[Builder]:
    """Start sshd for a builder whose files live in ``directory``; stop it on exit. The
    builder's store stays in ``directory`` (read-only files: chmod -R u+w before removal)."""
    if not SSHD.exists():
        raise RuntimeError(f"{SSHD} is missing: run ./scripts/setup (it installs openssh-server)")
    directory.mkdir(parents=True, exist_ok=True)
    host_key = _keygen(directory / "host_ed25519", "envnix-test-builder")
    client_key = _keygen(directory / "client_ed25519", "envnix-test-client")
    store = directory / "builder-store"
    conf_dir = directory / "builder-nix"
    conf_dir.mkdir()
    (conf_dir / "nix.conf").write_text("sandbox = true\n")
    nix_store = shutil.which("nix-store") or "nix-store"
    serve = (f"env NIX_CONF_DIR={shlex.quote(str(conf_dir))} NIX_USER_CONF_FILES= "
             f"{shlex.quote(nix_store)} --serve --write --store {shlex.quote(str(store))}")
    (directory / "authorized_keys").write_text(f'command="{serve}",restrict {client_key}\n')

    port = free_port()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[{HOST}]:{port} {' '.join(host_key.split()[:2])}\n")
    config = directory / "sshd_config"
    config.write_text(f"ListenAddress {HOST}:{port}\n"
                      f"HostKey {directory / 'host_ed25519'}\n"
                      f"AuthorizedKeysFile {directory / 'authorized_keys'}\n"
                      "PidFile none\n"
                      "PermitRootLogin prohibit-password\n"
                      "AllowUsers root\n"
                      "PubkeyAuthentication yes\n"
                      "PasswordAuthentication no\n"
                      "KbdInteractiveAuthentication no\n"
                      "UsePAM no\n"
                      # pytest's tmp directories sit under the world-writable /tmp
                      "StrictModes no\n"
                      "LogLevel VERBOSE\n")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    log = directory / "sshd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while f"Server listening on {HOST} port {port}" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Builder(port, directory / "client_ed25519",
                      write_ssh_config(directory / "ssh_config", port, known_hosts), store, log)
    finally:
        stop(proc)

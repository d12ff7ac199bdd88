"""Shared fixtures: run envnix as a user does (the CLI, in a subprocess) on copies of examples."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

sys.path.insert(0, str(Path(__file__).parent))
from _apt_signing import trust_test_archives  # noqa: E402
from _conda_channel import (  # noqa: E402
    ChannelInfo,
    ChannelServer,
    build_channel,
    python_available,
    serve,
)
from _nix_daemon import SOCKET_GROUP, NixDaemon, setup_conf_daemon  # noqa: E402
from _nix_daemon import answers as daemon_answers  # noqa: E402
from _podman import podman_env  # noqa: E402


@dataclass
class Built:
    """What `envnix build` printed, parsed."""

    context: Path
    stdout: str
    stderr: str
    store_path: Path
    config: str
    manifest: str

    @property
    def layout(self) -> Path:
        return self.store_path / "oci"


def envnix(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "envnix", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"envnix {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def parse_build(context: Path, proc: subprocess.CompletedProcess[str]) -> Built:
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", proc.stdout, flags=re.M))
    return Built(context, proc.stdout, proc.stderr, Path(fields["store"]), fields["config"],
                 fields["manifest"])


def build(context: Path, *extra: str, env: dict[str, str] | None = None) -> Built:
    return parse_build(context, envnix("build", str(context), *extra, env=env))


def copy_example(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(EXAMPLES / name, target,
                    ignore=shutil.ignore_patterns(".envnix", "envnix.lock"))
    return target


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The quickstart image, locked fresh and built once for the whole session."""
    context = copy_example("quickstart", tmp_path_factory.mktemp("qs"))
    return build(context, "-t", "quickstart:dev")


@pytest.fixture(scope="session")
def podman_environ(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not shutil.which("podman"):
        pytest.fail("podman is not installed: run ./scripts/setup")
    return podman_env(tmp_path_factory.mktemp("podman"))


def without_nix_path() -> dict[str, str]:
    """The current environment with every directory holding nix-build removed from PATH."""
    env = dict(os.environ)
    dirs = [d for d in env.get("PATH", "").split(os.pathsep)
            if d and not (Path(d) / "nix-build").exists()]
    env["PATH"] = os.pathsep.join(dirs)
    return env


def pytest_configure(config: pytest.Config) -> None:
    # The fixture archives are signed with a key made for this session (tests/_apt_signing.py):
    # trust it as a user would configure their archive's keyring.
    trust_test_archives(os.environ)


@pytest.fixture(scope="session")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChannelInfo,
                                                                        ChannelServer]]:
    """The conda fixture channel (tests/_conda_channel.py), built once per session and served
    on loopback under three prefixes, each looking like a separate mirror."""
    if not python_available():
        pytest.fail("the fixture channel repackages /usr/bin/python3.11: run ./scripts/setup")
    info = build_channel(tmp_path_factory.mktemp("channel") / "fixture")
    with serve(info.root, prefixes=("mirror-a/fixture", "mirror-b/fixture",
                                    "conda/fixture")) as server:
        yield info, server


@pytest.fixture(scope="session")
def nix_daemon() -> Iterator[NixDaemon]:
    """A nix-daemon regular users build through: the one scripts/setup started when it answers
    on the default socket, else one started here with setup's settings (scripts/nix-daemon.conf),
    its own NIX_CONF_DIR and socket. Root only: it serves this machine's /nix/store."""
    if os.geteuid() != 0:
        pytest.skip("a nix-daemon for this machine's store needs root")
    if subprocess.run(["getent", "group", SOCKET_GROUP], capture_output=True).returncode != 0:
        pytest.fail(f"group {SOCKET_GROUP} does not exist: run ./scripts/setup")
    if daemon_answers({"NIX_REMOTE": "daemon"}):
        yield NixDaemon({"NIX_REMOTE": "daemon"}, None)
        return
    with setup_conf_daemon() as daemon:
        yield daemon

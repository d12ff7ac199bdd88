"""Fixtures both tiers share: built examples, the fixture channel, podman, a nix-daemon, chroot
stores made removable, and the golden-file check with its --update-golden flag.

The helpers that run the CLI are in _cli.py; tests/unit/conftest.py adds the unit tier's guard.
"""

from __future__ import annotations

import atexit
import difflib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _apt_signing import trust_test_archives
from _cli import Built, build, copy_example
from _conda_channel import (
    ChannelInfo,
    ChannelServer,
    build_channel,
    python_available,
    serve,
)
from _nix_daemon import SOCKET_GROUP, NixDaemon, setup_conf_daemon
from _nix_daemon import answers as daemon_answers
from _podman import private_podman

from envnix.core import options
from envnix.core.errors import LockError
from envnix.lock.apt.sources import machine_apt_sources
from envnix.spec.apt import AptSource


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The quickstart image, locked fresh and built once for the whole session."""
    context = copy_example("quickstart", tmp_path_factory.mktemp("qs"))
    return build(context, "-t", "quickstart:dev")


@pytest.fixture(scope="session")
def podman_environ(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not shutil.which("podman"):
        pytest.fail("podman is not installed: run ./scripts/setup")
    with private_podman(tmp_path_factory.mktemp("podman")) as env:
        yield env


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite the golden files (tests/golden/, tests/corpus/golden/) from "
                          "what envnix makes now, instead of comparing; review the diff")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether this run rewrites the golden files (``pytest --update-golden``)."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def golden(update_golden: bool) -> Callable[[Path, bytes], None]:
    """``golden(path, got)``: ``got`` must equal the file byte for byte; with --update-golden
    it is written there instead, for a reviewed commit."""
    def check(path: Path, got: bytes) -> None:
        if update_golden:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(got)
            return
        if not path.exists():
            pytest.fail(f"{path} is missing: run pytest --update-golden and review it",
                        pytrace=False)
        want = path.read_bytes()
        if got != want:
            diff = difflib.unified_diff(want.decode(errors="replace").splitlines(),
                                        got.decode(errors="replace").splitlines(),
                                        str(path), "now", lineterm="", n=2)
            shown = "\n".join(list(diff)[:80])
            pytest.fail(f"{path} differs from what envnix makes now:\n{shown}\nIf the change "
                        "is intended, run pytest --update-golden and commit the reviewed diff.",
                        pytrace=False)
    return check


def _empty_conda_channel() -> Path:
    """A conda channel with no packages (linux-64, linux-aarch64 and noarch), removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="envnix-empty-channel-"))
    for subdir in ("linux-64", "linux-aarch64", "noarch"):
        (root / subdir).mkdir()
        (root / subdir / "repodata.json").write_text(json.dumps(
            {"info": {"subdir": subdir}, "packages": {}, "packages.conda": {}}))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def pytest_configure(config: pytest.Config) -> None:
    # The fixture archives are signed with a key made for this session (tests/_apt_signing.py):
    # trust it as a user would configure their archive's keyring.
    trust_test_archives(os.environ)
    # A file that names a conda channel also reads the defaults after it, as envd's conda
    # does (conda-forge, out of reach here). The tests' defaults are an empty channel served on
    # loopback, as a user points them at a mirror; tests about the defaults set their own.
    server = ChannelServer({"defaults/empty": _empty_conda_channel()})
    config.add_cleanup(server.stop)
    os.environ[options.CONDA_DEFAULT_CHANNELS.name] = server.url("defaults/empty")
    # envnix build loads into docker or podman by default; tests build hundreds of images and
    # must not fill the machine's engine. A test about loading passes --load (and its own
    # podman storage, _podman.podman_env).
    os.environ[options.LOAD.name] = "0"


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
def real_sources() -> list[AptSource]:
    """This machine's Debian bookworm apt sources (both tiers: reading them is local)."""
    try:
        return machine_apt_sources("bookworm")
    except LockError as e:
        pytest.skip(f"no Debian bookworm apt source on this machine: {e}")


@pytest.fixture
def no_cuda_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each CUDA-apt test says whether NVIDIA's repository is configured."""
    monkeypatch.delenv(options.CUDA_APT_REPO.name, raising=False)
    monkeypatch.delenv(options.CUDA_PROVIDER.name, raising=False)


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


@pytest.fixture
def cleanup_stores(tmp_path: Path) -> Iterator[None]:
    """Chroot stores (``--store DIR``) are read-only trees: make them removable for pytest
    afterwards."""
    yield
    subprocess.run(["chmod", "-R", "u+w", str(tmp_path)], check=False)

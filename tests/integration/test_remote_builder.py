"""envnix builds on a team's shared builder over SSH when nix.conf (or a flag) says so.

Real parts only: sshd on loopback with its own host key and one authorized key, which may only
run ``nix-store --serve --write`` on a store of the builder's own (tests/_sshd.py); Nix's own
build hook ships the derivations there and copies the outputs back into the client's fresh
chroot store. The image must be the one a local build makes.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import envnix, parse_build
from _sshd import URI, Builder, free_port, running_builder, write_ssh_config
from _tiny import tiny_context

from envnix.core.errors import BuildError
from envnix.nix import NixConfig, build_options

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="starts sshd for root logins: needs root")


@pytest.fixture(scope="session")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builder]:
    directory = tmp_path_factory.mktemp("builder")
    try:
        with running_builder(directory) as running:
            yield running
    finally:  # the builder's store is read-only files
        subprocess.run(["chmod", "-R", "u+w", str(directory)], check=False)


@pytest.fixture
def cleanup_stores(tmp_path: Path) -> Iterator[None]:
    """Chroot stores are read-only trees: make them removable for pytest afterwards."""
    yield
    subprocess.run(["chmod", "-R", "u+w", str(tmp_path)], check=False)


def _user_env(tmp_path: Path, conf: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a user whose nix.conf is ``conf`` (no machine-wide one)."""
    machine = tmp_path / f"etc-nix-{uuid.uuid4().hex[:8]}"
    machine.mkdir()
    (machine / "user.conf").write_text(conf)
    env = {k: v for k, v in os.environ.items() if k not in ("NIX_REMOTE", "NIX_CONFIG")}
    return env | {"NIX_CONF_DIR": str(machine), "NIX_USER_CONF_FILES": str(machine / "user.conf"),
                  **extra}


def _context(parent: Path, nonce: str) -> Path:
    """A tiny context whose image is new to every store (the nonce is in its config)."""
    return tiny_context(parent, envd='def build():\n    base(os="debian12", language="python3.11")'
                                      f'\n    runtime.environ(env={{"NONCE": "{nonce}"}})\n')


def _valid(store: Path, path: Path) -> bool:
    return subprocess.run(["nix-store", "--store", str(store), "--check-validity", str(path)],
                          capture_output=True, check=False).returncode == 0


def test_users_builders_and_max_jobs_are_passed_through(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """envnix forces neither ``builders ''`` nor a max-jobs over the user's remote setup; its
    own max-jobs default applies only where nix.conf leaves Nix's (1), and flags win."""
    monkeypatch.setenv("NIX_CONF_DIR", str(tmp_path))
    monkeypatch.setenv("NIX_USER_CONF_FILES", str(tmp_path / "user.conf"))
    (tmp_path / "user.conf").write_text(f"builders = {URI} x86_64-linux\nmax-jobs = 0\n"
                                        "substituters =\n")

    def options(config: NixConfig) -> dict[str, str]:
        opts = build_options("pinned", config)
        return dict(opts[i + 1:i + 3] for i, o in enumerate(opts) if o == "--option")

    mine = options(NixConfig())
    assert "builders" not in mine and "max-jobs" not in mine, mine
    flagged = options(NixConfig(builders="", max_jobs="auto"))
    assert (flagged["builders"], flagged["max-jobs"]) == ("", "auto")
    (tmp_path / "user.conf").write_text(f"builders = {URI} x86_64-linux\nsubstituters =\n")
    assert "builders" not in options(NixConfig())


@pytest.mark.slow
def test_build_on_a_remote_builder_gives_the_local_image(builder: Builder, tmp_path: Path,
                                                         cleanup_stores: None) -> None:
    """nix.conf's ``builders`` + ``max-jobs = 0``: every derivation is built on the builder,
    in the builder's store, and the client's fresh store gets the local build's image."""
    nonce = uuid.uuid4().hex
    context = _context(tmp_path / "local", nonce)
    local = parse_build(context, envnix("build", str(context), "--locked", "--no-substitute",
                                        "--store", str(tmp_path / "store-local")))

    env = _user_env(tmp_path, f"builders = {builder.machine()}\nmax-jobs = 0\nsubstituters =\n",
                    builder.client_env)
    context = _context(tmp_path / "remote", nonce)
    proc = envnix("build", str(context), "--locked", "--store", str(tmp_path / "store-client"),
                  "-v", env=env)
    remote = parse_build(context, proc)
    assert (remote.config, remote.manifest) == (local.config, local.manifest)
    assert remote.store_path == local.store_path

    built = re.findall(r"^building '\S+\.drv'(.*)$", proc.stderr, re.M)
    assert built and all(where == f" on '{URI}'..." for where in built), built
    assert any("-envnix-image-" in line for line in re.findall(r"^building '(\S+)' on",
                                                              proc.stderr, re.M))
    # The builder's store made the image; the client's holds the copy; the host's has neither.
    assert _valid(builder.store, remote.store_path)
    assert _valid(tmp_path / "store-client", remote.store_path)
    assert not remote.store_path.exists()
    log = builder.log.read_text()
    assert "Accepted publickey for root from 127.0.0.1" in log
    assert f"--serve --write --store {builder.store}" in log


@pytest.mark.slow
@pytest.mark.parametrize("case", ["builder-down", "no-builder"])
def test_max_jobs_zero_without_a_usable_builder_is_one_line(builder: Builder, tmp_path: Path,
                                                            cleanup_stores: None,
                                                            case: str) -> None:
    """``--max-jobs 0`` builds nothing here: a builder whose port is closed, or none at all,
    fails the build in one line naming the builder (Nix's own words blame "system features")."""
    closed = write_ssh_config(tmp_path / "ssh_config", free_port(), tmp_path / "known_hosts")
    env = {**os.environ, "NIX_SSHOPTS": f"-F {closed}"}
    spec = builder.machine() if case == "builder-down" else ""
    context = _context(tmp_path, uuid.uuid4().hex)
    proc = envnix("build", str(context), "--locked", "--no-substitute", "--store",
                  str(tmp_path / "store"), "--builders", spec, "--max-jobs", "0", env=env,
                  check=False)
    assert proc.returncode == BuildError.exit_code, proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.startswith("envnix: ")]
    assert len(said) == 1, proc.stderr
    if case == "builder-down":
        assert said[0].startswith(f"envnix: cannot build on the remote builder {URI}: "), said
        assert "Connection refused" in said[0], said
    else:
        assert said[0] == ("envnix: max-jobs = 0 builds nothing on this machine and no remote "
                           "builder can take this build"), proc.stderr
    assert "hint: " in proc.stderr

"""A regular user builds through the nix-daemon that scripts/setup starts: a real daemon, a real
unprivileged user (in group nix-users), the real envnix CLI.

The daemon drops the restricted options of a client it does not trust (the sandbox, sandbox
paths), so its own settings (scripts/nix-daemon.conf) turn the sandbox on; they give it no host
path, and the pinned toolchain needs none. Root keeps building single-user, and both give the
same images from the same locks: a tiny one, the quickstart and examples/serving.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import Built, envnix, parse_build
from _nix_daemon import (
    DAEMON_CONF,
    SOCKET_GROUP,
    NixDaemon,
    envnix_command,
    run_as,
    setup_conf_daemon,
)
from _tiny import tiny_context

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="creates a user and starts a nix-daemon: needs root")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ROOT_ENV_DROPS = ("NIX_REMOTE", "NIX_DAEMON_SOCKET_PATH")


@pytest.fixture(scope="module")
def setup_daemon() -> Iterator[NixDaemon]:
    """A nix-daemon with exactly scripts/setup's settings (scripts/nix-daemon.conf), which give
    the sandbox no host path; the machine's own daemon may still run older ones."""
    with setup_conf_daemon() as daemon:
        yield daemon


@pytest.fixture(scope="module")
def user() -> Iterator[str]:
    """An unprivileged user in group nix-users, removed afterwards."""
    name = f"envnix-t{os.getpid()}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", "--groups", SOCKET_GROUP, name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)


@pytest.fixture
def shared(user: str) -> Iterator[Path]:
    """A directory the user can traverse (pytest's tmp_path is private to root), with a HOME
    owned by the user; removed afterwards, also what root's chroot store left read-only."""
    directory = Path(tempfile.mkdtemp(prefix="envnix-daemon-test-"))
    directory.chmod(0o755)
    (directory / "home").mkdir()
    shutil.chown(directory / "home", user=user)
    try:
        yield directory
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(directory)], check=False)
        shutil.rmtree(directory, ignore_errors=True)


def test_setup_gives_the_sandbox_no_host_path(setup_daemon: NixDaemon, user: str,
                                              shared: Path) -> None:
    """Setup's daemon settings grant no host path, so the (non-reproducible) host toolchain
    cannot work for a user the daemon does not trust: envnix says so in one line and points at
    the pinned toolchain."""
    settings = [ln.split("=")[0].strip() for ln in DAEMON_CONF.read_text().splitlines()
                if "=" in ln and not ln.startswith("#")]
    assert "sandbox" in settings and not any("sandbox-paths" in s for s in settings)
    context = tiny_context(shared / "user", "host")
    subprocess.run(["chown", "-R", user, str(shared / "user")], check=True)
    proc = run_as(user, [*envnix_command(user), "build", str(context), "--locked",
                         "--toolchain", "host"], shared / "home", setup_daemon.client_env)
    assert proc.returncode == 6, proc.stderr
    first, hint = proc.stderr.splitlines()[-2:]
    assert first == ("envnix: --toolchain host: the host's /usr/bin/python3 is not visible in "
                     "the nix-daemon's sandbox"), proc.stderr
    assert "--toolchain pinned" in hint


TINY = """def build():
    base(os="debian12", language="python3.11")
    io.copy(host_path="stamp.txt", envd_path="/etc/envnix-stamp")
    runtime.environ(env={{"ENVNIX_STAMP": "{nonce}"}})
"""


def _locked_twins(user: str, shared: Path) -> dict[str, Path]:
    """The same tiny context twice, for root and for ``user`` (who owns its copy), with one
    lock made by root; a fresh stamp, so the daemon really runs envnix's builders."""
    nonce = uuid.uuid4().hex
    contexts = {}
    for who in ("root", "user"):
        context = shared / who / "tiny"  # the same directory name: it is the image's workdir
        context.mkdir(parents=True)
        (context / "build.envd").write_text(TINY.format(nonce=nonce))
        (context / "stamp.txt").write_text(f"{nonce}\n")
        contexts[who] = context
    envnix("lock", str(contexts["root"]))
    shutil.copy(contexts["root"] / "envnix.lock", contexts["user"] / "envnix.lock")
    subprocess.run(["chown", "-R", user, str(shared / "user")], check=True)
    return contexts


def _as_user(user: str, shared: Path, daemon: NixDaemon, context: Path, tag: str) -> Built:
    # The same SOURCE_DATE_EPOCH as root's build, if any (it must change nothing anyway).
    epoch = {k: v for k, v in os.environ.items() if k == "SOURCE_DATE_EPOCH"}
    proc = run_as(user, [*envnix_command(user), "build", str(context), "--locked", "-t", tag],
                  shared / "home", {**daemon.client_env, **epoch})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return parse_build(context, proc)


def _as_root(context: Path, tag: str, store: Path) -> Built:
    """Root, single-user (no daemon), in a chroot store of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ROOT_ENV_DROPS}
    return parse_build(context, envnix("build", str(context), "--locked", "-t", tag, "--store",
                                       str(store), env=env))


@pytest.mark.slow
@pytest.mark.network
def test_unprivileged_user_builds_the_image_root_builds(setup_daemon: NixDaemon, user: str,
                                                        shared: Path) -> None:
    """Through a daemon with setup's settings (no host path, sandbox on, user not trusted) the
    user's build gives the digests root gets single-user in a fresh chroot store (which
    extracts the toolchain afresh). A fresh stamp makes the daemon run envnix's builders
    itself (layers and image), not just find paths root built earlier."""
    contexts = _locked_twins(user, shared)
    by_user = _as_user(user, shared, setup_daemon, contexts["user"], "tiny:dev")
    count = re.search(r"^build: (\d+) derivation\(s\) built", by_user.stderr, re.M)
    assert count and int(count[1]) >= 2, by_user.stderr  # at least the stamp's layer and image

    by_root = _as_root(contexts["root"], "tiny:dev", shared / "store")
    assert (by_user.config, by_user.manifest) == (by_root.config, by_root.manifest)
    assert by_user.store_path == by_root.store_path

    # The user wrote only inside its context and its HOME.
    owned = subprocess.run(["find", str(shared), "-user", user], capture_output=True, text=True,
                           check=True).stdout.split()
    assert all(Path(p).is_relative_to(shared / "user") or Path(p).is_relative_to(shared / "home")
               for p in owned), owned


@pytest.mark.slow
@pytest.mark.network
def test_user_and_root_build_both_examples_to_one_digest(setup_daemon: NixDaemon, user: str,
                                                         shared: Path) -> None:
    """The quickstart (its committed lock) and examples/serving (locked here by root): the user
    through setup's daemon and root single-user in a fresh chroot store get the same digests,
    and the quickstart's are the ones committed in expected-digests.json."""
    for name in ("quickstart", "serving"):
        for who in ("root", "user"):
            shutil.copytree(EXAMPLES / name, shared / who / name,
                            ignore=shutil.ignore_patterns(".envnix", "result"))
    envnix("lock", str(shared / "root" / "serving"))
    shutil.copy(shared / "root" / "serving" / "envnix.lock",
                shared / "user" / "serving" / "envnix.lock")
    subprocess.run(["chown", "-R", user, str(shared / "user")], check=True)

    digests = {}
    for name in ("quickstart", "serving"):
        by_user = _as_user(user, shared, setup_daemon, shared / "user" / name, f"{name}:dev")
        by_root = _as_root(shared / "root" / name, f"{name}:dev", shared / "store")
        assert (by_user.config, by_user.manifest) == (by_root.config, by_root.manifest), name
        assert by_user.store_path == by_root.store_path
        digests[name] = {"config": by_root.config, "manifest": by_root.manifest}
    expected = json.loads((EXAMPLES / "quickstart" / "expected-digests.json").read_text())
    assert digests["quickstart"] == {k: expected[k] for k in ("config", "manifest")}
    assert digests["serving"] != digests["quickstart"]

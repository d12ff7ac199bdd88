"""A regular user builds through the nix-daemon that scripts/setup starts: a real daemon, a real
unprivileged user (in group nix-users), the real envnix CLI.

The daemon drops what an untrusted client asks for — envnix's per-build sandbox,
extra-sandbox-paths and max-jobs options — so the daemon's own settings (scripts/nix-daemon.conf)
must carry what envnix's builders need. Root keeps building single-user, and both give the same
image from the same lock.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _nix_daemon import DAEMON_CONF, SOCKET_GROUP, NixDaemon, envnix_command, run_as, running_daemon
from conftest import envnix, parse_build

from envnix.nix import _translate_failure
from envnix.render import nix_options

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="creates a user and starts a nix-daemon: needs root")

PROBE = """derivation {{
  name = "envnix-daemon-probe-{nonce}";
  system = builtins.currentSystem;
  builder = "/usr/bin/python3";
  args = [ "-c" "import os; open(os.environ['out'], 'w').write('{nonce}')" ];
}}
"""


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


def _probe(user: str, shared: Path, daemon: NixDaemon) -> subprocess.CompletedProcess[str]:
    """Build, as ``user``, a derivation whose builder is the host's python (as envnix's are),
    passing envnix's own per-build options; a fresh name each time, so it really builds."""
    nonce = uuid.uuid4().hex
    expr = shared / f"probe-{nonce}.nix"
    expr.write_text(PROBE.format(nonce=nonce))
    expr.chmod(0o644)
    return run_as(user, ["nix-build", str(expr), "--no-out-link", *nix_options("host")],
                  shared / "home", daemon.client_env)


def test_untrusted_user_builds_with_host_python_only_by_the_daemons_settings(
        nix_daemon: NixDaemon, user: str, shared: Path) -> None:
    built = _probe(user, shared, nix_daemon)
    assert built.returncode == 0, built.stderr
    out = Path(built.stdout.strip())
    assert out.read_text() == out.name.rsplit("-", 1)[1]

    # The same client options against a daemon whose settings lack extra-sandbox-paths: the
    # client's own --option extra-sandbox-paths is dropped without a word, and the sandbox has
    # no /usr/bin/python3.
    bare_conf = _settings_without_host_paths()
    bare_dir = shared / "bare"
    bare_dir.mkdir(mode=0o755)
    with running_daemon(bare_dir, bare_conf) as bare:
        failed = _probe(user, shared, bare)
    assert failed.returncode != 0
    assert "executing '/usr/bin/python3': No such file or directory" in failed.stderr
    # What envnix makes of that log: one line that says what to do.
    error = _translate_failure(failed.stderr)
    assert "not visible in the nix-daemon's sandbox" in error.message
    assert error.hint and "scripts/setup" in error.hint


TINY = """def build():
    base(os="debian12", language="python3.11")
    io.copy(host_path="stamp.txt", envd_path="/etc/envnix-stamp")
    runtime.environ(env={{"ENVNIX_STAMP": "{nonce}"}})
"""


def _settings_without_host_paths() -> str:
    """setup's daemon settings minus extra-sandbox-paths: a daemon as most Nix users run it."""
    return "".join(line for line in DAEMON_CONF.read_text().splitlines(keepends=True)
                   if not line.startswith("extra-sandbox-paths"))


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


@pytest.mark.slow
@pytest.mark.network
def test_unprivileged_user_builds_the_image_root_builds(nix_daemon: NixDaemon, user: str,
                                                        shared: Path) -> None:
    """The user's build through the daemon and root's single-user build in a fresh chroot store
    give the same digests. A fresh stamp makes the daemon run envnix's builders itself (layers
    and image), not just find paths root built earlier."""
    contexts = _locked_twins(user, shared)

    # As the user; the same SOURCE_DATE_EPOCH as root's build below, if any.
    epoch = {k: v for k, v in os.environ.items() if k == "SOURCE_DATE_EPOCH"}
    proc = run_as(user, [*envnix_command(user), "build", str(contexts["user"]), "--locked",
                         "-t", "tiny:dev"], shared / "home", {**nix_daemon.client_env, **epoch})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    by_user = parse_build(contexts["user"], proc)
    count = re.search(r"^build: (\d+) derivation\(s\) built", proc.stderr, re.M)
    assert count and int(count[1]) >= 2, proc.stderr  # at least the stamp's layer and the image

    # Root, single-user (no daemon), in a store of its own.
    env = {k: v for k, v in os.environ.items() if k not in ("NIX_REMOTE",
                                                             "NIX_DAEMON_SOCKET_PATH")}
    root_proc = envnix("build", str(contexts["root"]), "--locked", "-t", "tiny:dev", "--store",
                       str(shared / "store"), env=env)
    by_root = parse_build(contexts["root"], root_proc)
    assert (by_user.config, by_user.manifest) == (by_root.config, by_root.manifest)
    assert by_user.store_path == by_root.store_path

    # The user wrote only inside its context and its HOME.
    owned = subprocess.run(["find", str(shared), "-user", user], capture_output=True, text=True,
                           check=True).stdout.split()
    assert all(Path(p).is_relative_to(shared / "user") or Path(p).is_relative_to(shared / "home")
               for p in owned), owned


@pytest.mark.slow
@pytest.mark.network
def test_unprivileged_user_builds_pinned_without_extra_sandbox_paths(user: str,
                                                                     shared: Path) -> None:
    """With the pinned toolchain no builder needs a host path: a daemon whose settings lack
    extra-sandbox-paths builds the user's image, to the digests root gets single-user in a
    store of its own (which extracts the toolchain afresh)."""
    contexts = _locked_twins(user, shared)

    bare_conf = _settings_without_host_paths()
    assert "sandbox = true" in bare_conf
    bare_dir = shared / "bare"
    bare_dir.mkdir(mode=0o755)
    with running_daemon(bare_dir, bare_conf) as bare:
        proc = run_as(user, [*envnix_command(user), "build", str(contexts["user"]), "--locked",
                             "-t", "tiny:dev", "--toolchain", "pinned"], shared / "home",
                      bare.client_env)
    assert proc.returncode == 0, proc.stderr
    by_user = parse_build(contexts["user"], proc)
    count = re.search(r"^build: (\d+) derivation\(s\) built", proc.stderr, re.M)
    assert count and int(count[1]) >= 2, proc.stderr  # the daemon ran the builders itself

    env = {k: v for k, v in os.environ.items() if k not in ("NIX_REMOTE",
                                                             "NIX_DAEMON_SOCKET_PATH")}
    root_proc = envnix("build", str(contexts["root"]), "--locked", "-t", "tiny:dev", "--store",
                       str(shared / "store"), "--toolchain", "pinned", env=env)
    by_root = parse_build(contexts["root"], root_proc)
    assert (by_user.config, by_user.manifest) == (by_root.config, by_root.manifest)
    assert by_user.store_path == by_root.store_path

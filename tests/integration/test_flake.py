"""envnix as a flake: the project's flake.nix builds envnix from its pinned wheels on the pinned
toolchain with Nix alone, and `nix run` starts it with a PATH that holds only Nix's programs.

Real Nix, a fresh chroot store of the test's own (nothing comes from this machine's store or a
cache: every wheel, .deb and stage 0 is fetched and built there), and `nix run --store` runs
the result with that store mounted at /nix/store. The flake is a copy of the working tree's
files (tracked and new, not ignored ones: a `path:` flake of the checkout would copy .venv).

HTTPS from this machine goes through an egress proxy that signs with its own CA, which only the
host's bundle holds: the tests pass the host's SSL_CERT_FILE/SSL_CERT_DIR on (as a user behind
such a proxy must), except where they check the flake's own CA bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import EXAMPLES, ROOT, build, copy_example, envnix, parse_build
from _registry import Registry, have_registry_tools
from _tiny import tiny_context

from envnix import __version__

pytestmark = [pytest.mark.network, pytest.mark.slow]

FLAKES = ["--extra-experimental-features", "nix-command flakes"]
NO_CACHE = ["--option", "substituters", "", "--option", "sandbox", "true"]
NETWORK_ENV = {"SSL_CERT_FILE", "SSL_CERT_DIR", "http_proxy", "https_proxy", "no_proxy",
               "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}


@pytest.fixture(scope="module")
def nix_only_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A bin directory with Nix's programs and nothing else (this machine's nix is in /usr/bin,
    next to every other tool, so PATH=/usr/bin would prove nothing)."""
    nix = Path(shutil.which("nix") or pytest.fail("nix is not on PATH")).resolve()
    bin_dir = tmp_path_factory.mktemp("nix-only-bin")
    for program in sorted(Path(shutil.which("nix") or "").parent.glob("nix*")):
        if program.resolve() == nix:
            (bin_dir / program.name).symlink_to(nix)
    return str(bin_dir)


@pytest.fixture(scope="module")
def flake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    listed = subprocess.run(["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout
    dest = tmp_path_factory.mktemp("flake") / "envnix"
    for name in sorted({n for n in listed.decode().split("\0") if n}):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, flake: Path) -> Iterator[Path]:
    """A fresh chroot store holding envnix built by the flake."""
    store = tmp_path_factory.mktemp("store")
    proc = subprocess.run(["nix", "build", *FLAKES, "--store", str(store), *NO_CACHE,
                           "--no-link", f"path:{flake}#default"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    yield store
    subprocess.run(["chmod", "-R", "u+w", str(store)], check=False)
    shutil.rmtree(store, ignore_errors=True)


def nix_run(store: Path, flake: Path, path: str, *args: str, cwd: Path | None = None,
            network: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
    """`nix run` of the flake's default app, PATH holding only ``path`` (Nix's programs) and
    ``extra`` variables; the network settings pass through (this machine's CA bundle and
    proxies) unless ``network`` is false."""
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/root"), **extra,
           **{k: v for k, v in os.environ.items() if network and k in NETWORK_ENV}}
    nix = f"{path.split(os.pathsep)[0]}/nix"
    return subprocess.run([nix, "run", *FLAKES, "--store", str(store), *NO_CACHE,
                           f"path:{flake}", "--", *args],
                          capture_output=True, text=True, check=False, env=env, cwd=cwd)


def test_flake_metadata_and_show(flake: Path, tmp_path: Path) -> None:
    store = ["--store", str(tmp_path / "eval-store")]
    meta = subprocess.run(["nix", "flake", "metadata", *FLAKES, *store, "--json",
                           f"path:{flake}"], capture_output=True, text=True, check=False)
    assert meta.returncode == 0, meta.stderr
    assert json.loads(meta.stdout)["locks"]["nodes"] == {"root": {}}  # no inputs: no nixpkgs
    shown = subprocess.run(["nix", "flake", "show", *FLAKES, *store, "--json",
                            f"path:{flake}"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    outputs = json.loads(shown.stdout)
    assert outputs["packages"]["x86_64-linux"]["default"]["name"] == f"envnix-{__version__}"
    assert outputs["apps"]["x86_64-linux"]["default"]["type"] == "app"
    assert outputs["packages"]["x86_64-linux"]["quickstart"]["name"] == \
        "envnix-image-quickstart-dev"
    assert "default" in outputs["templates"] and "lib" in outputs
    # The committed quickstart lock is current. In this machine's store: Nix 2.8's check of a
    # template's path fails in a chroot store ("template '%s' has a bad 'path' attribute").
    check = subprocess.run(["nix", "flake", "check", *FLAKES, *NO_CACHE, f"path:{flake}"],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    subprocess.run(["chmod", "-R", "u+w", str(tmp_path / "eval-store")], check=False)


def test_nix_run_version(store: Path, flake: Path, nix_only_path: str) -> None:
    proc = nix_run(store, flake, nix_only_path, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == envnix("--version").stdout
    assert __version__ in proc.stdout


def test_nix_run_spec_matches_the_venvs(store: Path, flake: Path, nix_only_path: str,
                                        tmp_path: Path) -> None:
    context = copy_example("quickstart", tmp_path)
    proc = nix_run(store, flake, nix_only_path, "spec", str(context))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(envnix("spec", str(context)).stdout)
    assert proc.stdout == envnix("spec", str(context)).stdout


def test_nix_run_lock_matches_the_venvs(store: Path, flake: Path, nix_only_path: str,
                                        tmp_path: Path) -> None:
    """`lock` from the flake's envnix with no program of the host but Nix: the bundled uv
    resolves the pip part on the pinned python, the bundled gpgv checks Debian's signatures
    against the bundled debian-archive-keyring."""
    ours = copy_example("quickstart", tmp_path / "flake")
    proc = nix_run(store, flake, nix_only_path, "lock", str(ours))
    assert proc.returncode == 0, proc.stderr
    assert "with uv" in proc.stderr
    venvs = copy_example("quickstart", tmp_path / "venv")
    envnix("lock", str(venvs))
    assert (ours / "envnix.lock").read_text() == (venvs / "envnix.lock").read_text()


def test_nix_run_checks_debian_with_the_keyring_envnix_names(store: Path, flake: Path,
                                                              nix_only_path: str,
                                                              tmp_path: Path) -> None:
    """The machine's Signed-By names Debian's keyring at its standard path: the flake's envnix
    takes ENVNIX_DEBIAN_KEYRING for it (its own pinned copy unless the user sets another), so
    a keyring without Debian's keys fails the lock, naming that keyring."""
    empty = tmp_path / "empty.gpg"
    empty.write_bytes(b"")
    context = copy_example("quickstart", tmp_path)
    proc = nix_run(store, flake, nix_only_path, "lock", str(context),
                   ENVNIX_DEBIAN_KEYRING=str(empty))
    assert proc.returncode == 4, proc.stderr
    assert f"signature check failed against {empty}" in proc.stderr


def test_nix_run_uses_its_own_ca_bundle(store: Path, flake: Path, nix_only_path: str,
                                        tmp_path: Path) -> None:
    """Without SSL_CERT_FILE/SSL_CERT_DIR the flake's envnix trusts Debian's CA certificates,
    not the host's /etc/ssl/certs: the lock that passes above with the host's CA settings
    cannot reach the package index here, whose TLS this machine's proxy signs with a CA only
    the host trusts (uv's cause: "invalid peer certificate: UnknownIssuer")."""
    context = copy_example("quickstart", tmp_path)
    proc = nix_run(store, flake, nix_only_path, "lock", str(context), network=False)
    assert proc.returncode == 8, proc.stderr
    assert "pip: cannot reach the index https://" in proc.stderr, proc.stderr


def test_nix_run_push_with_the_bundled_skopeo(store: Path, flake: Path, nix_only_path: str,
                                              tmp_path: Path) -> None:
    """`push` from the flake's envnix runs its own skopeo: a tiny image built (by the venv's
    envnix) in the flake's store goes to a TLS registry on loopback and is proved there."""
    if not have_registry_tools():
        pytest.fail("docker-registry, htpasswd or openssl missing: run ./scripts/setup")
    context = tiny_context(tmp_path)
    built = parse_build(context, envnix("build", str(context), "--locked", "-t", "tiny:1",
                                        "--store", str(store)))
    reg = Registry(tmp_path / "reg", tls=True).start()
    try:
        proc = nix_run(store, flake, nix_only_path, "push", "-p", str(context), "--store",
                       str(store), "--cert-dir", str(reg.cert_dir), f"{reg.host}/team/tiny:1")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"{reg.host}/team/tiny:1@{built.manifest}"
        assert reg.manifest_digest("team/tiny", "1") == built.manifest
    finally:
        reg.stop()


# --- a user's own repository: envnix as a flake input, `nix build .#image` -------------------


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                    "-c", "init.defaultBranch=main", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def user_repo(tmp_path: Path, flake: Path) -> Path:
    """A git repository holding build.envd, its envnix.lock and the flake `envnix init --flake`
    writes, taking envnix from the checkout's files (path:)."""
    repo = tiny_context(tmp_path, "myimage")
    envnix("render", str(repo))  # adds the image section to the lock, resolving nothing
    envnix("init", "--flake", "--envnix-input", f"path:{flake}", "-p", str(repo))
    shutil.rmtree(repo / ".envnix")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "image")
    return repo


@pytest.fixture(scope="module")
def nix_git_path(nix_only_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Nix's programs and git (Nix reads a git flake with it), and no envnix."""
    bin_dir = tmp_path_factory.mktemp("git-bin")
    (bin_dir / "git").symlink_to(shutil.which("git") or pytest.fail("git is not on PATH"))
    path = f"{nix_only_path}{os.pathsep}{bin_dir}"
    assert shutil.which("envnix", path=path) is None
    return path


def nix_in(repo: Path, path: str, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`nix ARGS` in ``repo`` as a Nix user without envnix would run it, in ``store``."""
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/root"),
           **{k: v for k, v in os.environ.items() if k in NETWORK_ENV}}
    return subprocess.run([f"{path.split(os.pathsep)[0]}/nix", *args[:1], *FLAKES,
                           "--store", str(store), *NO_CACHE, *args[1:]],
                          cwd=repo, capture_output=True, text=True, check=False, env=env)


def test_nix_build_in_a_users_repository_gives_envnix_builds_digest(
        store: Path, user_repo: Path, nix_git_path: str) -> None:
    """Issue 15, item 2: the same digest from `envnix build` and from `nix build .#image` with
    no envnix on PATH (one code path: image.nix reads the lock), and `nix flake check` passes
    until build.envd changes without a new lock."""
    built = parse_build(user_repo, envnix("build", str(user_repo), "--locked", "--store",
                                          str(store)))
    proc = nix_in(user_repo, nix_git_path, store, "build", ".#image", "--json", "--no-link")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)[0]["outputs"]["out"]
    assert out == str(built.store_path)  # the very same derivation
    digests = json.loads(Path(f"{store}{out}/digests.json").read_text())
    assert (digests["config"], digests["manifest"]) == (built.config, built.manifest)
    index = json.loads(Path(f"{store}{out}/oci/index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "dev"
    check = nix_in(user_repo, nix_git_path, store, "flake", "check")
    assert check.returncode == 0, check.stderr[-3000:]

    with (user_repo / "build.envd").open("a") as fh:  # edited, committed, not re-locked
        fh.write("# a change envnix lock has not seen\n")
    _git(user_repo, "commit", "-qam", "edit")
    for command in (("flake", "check"), ("build", ".#image", "--no-link")):
        stale = nix_in(user_repo, nix_git_path, store, *command)
        assert stale.returncode == 1, stale.stderr
        assert "envnix.lock is stale: build.envd changed since it was locked; run `envnix " \
               "lock`" in stale.stderr, stale.stderr
    envnix("lock", str(user_repo))  # re-locked: current again
    _git(user_repo, "commit", "-qam", "lock")
    assert nix_in(user_repo, nix_git_path, store, "flake", "check").returncode == 0


def test_copy_to_pushes_with_the_pinned_skopeo(store: Path, user_repo: Path,
                                               nix_git_path: str, tmp_path: Path) -> None:
    """`nix run .#image.copyTo -- docker://REF`, as nix2container users push, with skopeo
    from envnix's pins; the registry serves the digest envnix build made."""
    if not have_registry_tools():
        pytest.fail("docker-registry, htpasswd or openssl missing: run ./scripts/setup")
    built = parse_build(user_repo, envnix("build", str(user_repo), "--locked", "--store",
                                          str(store)))
    reg = Registry(tmp_path / "reg", tls=True).start()
    try:
        proc = nix_in(user_repo, nix_git_path, store, "run", ".#image.copyTo", "--",
                      "--dest-cert-dir", str(reg.cert_dir), f"docker://{reg.host}/team/me:1")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert reg.manifest_digest("team/me", "1") == built.manifest
    finally:
        reg.stop()


def test_the_flakes_quickstart_package_is_envnix_builds_image(flake: Path,
                                                               tmp_path: Path) -> None:
    """packages.x86_64-linux.quickstart: lib.buildImage of examples/quickstart, the derivation
    `envnix build examples/quickstart --locked -t quickstart:dev` builds."""
    context = tmp_path / "quickstart"
    shutil.copytree(EXAMPLES / "quickstart", context, ignore=shutil.ignore_patterns(".envnix"))
    built = build(context, "--locked", "-t", "quickstart:dev")
    proc = subprocess.run(["nix", "build", *FLAKES, "--option", "sandbox", "true", "--json",
                           "--no-link", f"path:{flake}#quickstart"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)[0]["outputs"]["out"] == str(built.store_path)


def test_the_flake_template_is_what_envnix_init_writes(flake: Path, tmp_path: Path) -> None:
    """`nix flake init -t <envnix>` and `envnix init --flake` give a repository the same files."""
    by_nix, by_envnix = tmp_path / "nix", tmp_path / "envnix"
    for d in (by_nix, by_envnix):
        d.mkdir()
    proc = subprocess.run(["nix", "flake", "init", *FLAKES, "-t", f"path:{flake}"],
                          cwd=by_nix, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    envnix("init", "--flake", "-p", str(by_envnix))
    names = {p.name for p in by_nix.iterdir()}
    assert names == {"flake.nix", "build.envd", ".gitignore"}
    assert names == {p.name for p in by_envnix.iterdir()}
    for name in names:
        assert (by_nix / name).read_text() == (by_envnix / name).read_text(), name
    # an existing build.envd is the project's: --flake alone leaves it
    (by_envnix / "build.envd").write_text("# mine\n")
    envnix("init", "--flake", "--force", "-p", str(by_envnix))
    assert (by_envnix / "build.envd").read_text() == "# mine\n"

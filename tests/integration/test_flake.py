"""envnix as a flake: the project's flake.nix builds envnix from its pinned wheels on the pinned
toolchain with Nix alone, and `nix run` starts it with a PATH that holds only Nix's programs.

Real Nix, a fresh chroot store of the test's own (nothing comes from this machine's store or a
cache: every wheel, .deb and stage 0 is fetched and built there), and `nix run --store` runs
the result with that store mounted at /nix/store. The flake is a copy of the working tree's
files (tracked and new, not ignored ones: a `path:` flake of the checkout would copy .venv).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import ROOT, copy_example, envnix

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


def nix_run(store: Path, flake: Path, path: str, *args: str,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`nix run` of the flake's default app, PATH holding only ``path`` (Nix's programs); the
    network settings pass through (this machine's CA bundle and proxies)."""
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/root"),
           **{k: v for k, v in os.environ.items() if k in NETWORK_ENV}}
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
    """`lock` from the flake's envnix: the bundled uv resolves the pip part on the pinned
    python; of the host it needs only gpgv (Debian's signatures) and the archive keyring."""
    gpgv_dir = tmp_path / "gpgv-bin"
    gpgv_dir.mkdir()
    (gpgv_dir / "gpgv").symlink_to(shutil.which("gpgv") or pytest.fail("gpgv is not on PATH"))
    ours = copy_example("quickstart", tmp_path / "flake")
    proc = nix_run(store, flake, f"{nix_only_path}:{gpgv_dir}", "lock", str(ours))
    assert proc.returncode == 0, proc.stderr
    assert "with uv" in proc.stderr
    venvs = copy_example("quickstart", tmp_path / "venv")
    envnix("lock", str(venvs))
    assert (ours / "envnix.lock").read_text() == (venvs / "envnix.lock").read_text()

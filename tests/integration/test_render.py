"""Render: the generated Nix project evaluates, for both toolchains, without building anything."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from test_render_offline import small_lock, small_spec

from envnix.lock.toolchain_pin import load_pin
from envnix.render import lock_artifacts, render
from envnix.toolchain import store_path


def nix_eval(directory: Path, expr: str) -> str:
    proc = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
                          cwd=directory, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(proc.stderr)
    return json.loads(proc.stdout)


def test_generated_project_evaluates_for_both_toolchains(tmp_path: Path) -> None:
    out = render(small_spec(), small_lock(), tmp_path / "gen", "demo:dev").directory
    assert {p.name for p in out.iterdir()} >= {"default.nix", "image.nix", "envnix.lock",
                                              "builders", "toolchain.nix"}
    assert (out / "builders/unpack_deb.py").is_file()
    assert not (out / "builders/__init__.py").exists()
    host = nix_eval(out, "(import ./default.nix { toolchain = \"host\"; })"
                         ".trees.\"deb:libc6\".builder")
    assert host == "/usr/bin/python3"
    # The default: the pinned toolchain's loader, a store path named by the pin alone.
    pinned = nix_eval(out, "(import ./default.nix {}).trees.\"deb:libc6\".builder")
    assert pinned == f"{store_path(load_pin())}/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    args = nix_eval(out, "(import ./default.nix {}).trees.\"deb:libc6\".args")
    assert args[:3] == ["--library-path", f"{store_path(load_pin())}/lib/x86_64-linux-gnu:"
                        f"{store_path(load_pin())}/usr/lib/x86_64-linux-gnu",
                        f"{store_path(load_pin())}/usr/bin/python3.11"]
    # nixpkgs is not reachable here; a stand-in attrset proves the branch is wired correctly.
    stand_in = '{ python3.withPackages = f: "/nixpkgs-python"; }'
    builder = nix_eval(out, f'(import ./default.nix {{ toolchain = "nixpkgs"; '
                            f'pkgs = {stand_in}; }}).image.builder')
    assert builder == "/nixpkgs-python/bin/python3"
    fetch_hash = nix_eval(out, '(import ./default.nix {}).trees."wheel:six".src.outputHash')
    assert fetch_hash == "3" * 64
    # image.nix derives the fetches from the lock as --store seeding does (lock_artifacts)
    fetches = nix_eval(out, "builtins.mapAttrs (k: t: { inherit (t.src) name url; }) "
                            "(import ./default.nix {}).trees")
    assert fetches == {k: {"name": a["storeName"], "url": a["url"]}
                       for k, a in lock_artifacts(small_lock()).items()}
    layers = nix_eval(out, "map (l: l.name) (import ./default.nix {}).layers")
    assert layers == ["z-envnix-layer-skeleton", "z-envnix-layer-os",
                      "z-envnix-layer-os-libllvm15", "z-envnix-layer-pip", "z-envnix-layer-meta"]


@pytest.mark.parametrize("name", ["six-1.17.0-py2.py3-none-any.whl", "libc6_2.36-9_amd64.deb",
                                  "base-0123456789abcdef.tar.gz"])
def test_fixed_output_path_is_nixs(name: str) -> None:
    """build --store seeds artifacts by their fixed-output paths, computed in Python."""
    from envnix.nix.seed import fixed_output_path

    sha = hashlib.sha256(name.encode()).hexdigest()
    nix = subprocess.run(["nix-store", "--print-fixed-path", "sha256", sha, name],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert fixed_output_path(sha, name) == nix

"""Render: the generated Nix project evaluates, for both toolchains, without building anything."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from envnix.core.errors import SpecError
from envnix.lock.lockfile import Lock
from envnix.render import MAX_LAYERS, OWN_LAYER_BYTES, plan_layers, render, store_name
from envnix.spec import ImageSpec, PipRequest, PythonSpec, release_for
from envnix.toolchain import load_pin, store_path


def small_spec() -> ImageSpec:
    return ImageSpec(name="demo", manifest="build.envd", function="build",
                     os=release_for("debian12"), python=PythonSpec("system", "3.11"),
                     pip=PipRequest(packages=["six"]), workdir="/home/envd/demo")


def small_lock() -> Lock:
    return Lock(
        inputs={},
        apt_packages=[{"name": "libc6", "version": "2.36-9", "size": 2_000_000,
                       "url": "http://mirror.invalid/pool/libc6_2.36-9_amd64.deb",
                       "sha256": "1" * 64},
                      {"name": "libllvm15", "version": "1:15.0.6-4", "size": OWN_LAYER_BYTES,
                       "url": "http://mirror.invalid/pool/libllvm15_1%3a15.0.6-4_amd64.deb",
                       "sha256": "2" * 64}],
        pip_wheels=[{"name": "six", "version": "1.17.0", "size": 11050,
                     "filename": "six-1.17.0-py2.py3-none-any.whl",
                     "url": "https://files.invalid/six-1.17.0-py2.py3-none-any.whl",
                     "sha256": "3" * 64}],
    )


def test_store_names_are_valid() -> None:
    assert store_name("libllvm15_1%3a15.0.6-4_amd64.deb") == "libllvm15_1-3a15.0.6-4_amd64.deb"
    assert store_name(".hidden~x") == "hidden-x"


def test_layer_plan_orders_stable_first_and_isolates_big_artifacts() -> None:
    artifacts = {
        "deb:libc6": {"kind": "deb", "name": "libc6", "size": 10},
        "deb:libllvm15": {"kind": "deb", "name": "libllvm15", "size": OWN_LAYER_BYTES},
        "wheel:six": {"kind": "wheel", "name": "six", "size": 10},
    }
    layers = plan_layers(artifacts)
    assert [layer["name"] for layer in layers] == ["skeleton", "os", "os-libllvm15", "pip",
                                                   "meta"]
    assert layers[1]["trees"] == ["deb:libc6"]


def test_too_many_layers_is_an_envnix_error_with_a_hint() -> None:
    """Every big artifact is a layer of its own; past the limit the user is told why (exit 3),
    not shown a traceback."""
    artifacts = {f"deb:big{i}": {"kind": "deb", "name": f"big{i}", "size": OWN_LAYER_BYTES}
                 for i in range(MAX_LAYERS)}
    with pytest.raises(SpecError, match=f"more than the limit of {MAX_LAYERS}") as info:
        plan_layers(artifacts)
    assert info.value.exit_code == 3 and "base image" in (info.value.hint or "")


def nix_eval(directory: Path, expr: str) -> str:
    proc = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
                          cwd=directory, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(proc.stderr)
    return json.loads(proc.stdout)


def test_generated_project_evaluates_for_both_toolchains(tmp_path: Path) -> None:
    out = render(small_spec(), small_lock(), tmp_path / "gen", "demo:dev").directory
    assert {p.name for p in out.iterdir()} >= {"default.nix", "flake.nix", "plan.json",
                                              "image-config.json", "envnix.lock", "builders"}
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
    layers = nix_eval(out, "map (l: l.name) (import ./default.nix {}).layers")
    assert layers == ["envnix-layer-skeleton", "envnix-layer-os", "envnix-layer-os-libllvm15",
                      "envnix-layer-pip", "envnix-layer-meta"]


def test_render_is_deterministic(tmp_path: Path) -> None:
    a = render(small_spec(), small_lock(), tmp_path / "a", "demo:dev").directory
    b = render(small_spec(), small_lock(), tmp_path / "b", "demo:dev").directory
    for name in ("default.nix", "flake.nix", "plan.json", "image-config.json", "envnix.lock"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    config = json.loads((a / "image-config.json").read_text())
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["config"]["Labels"]["io.envnix.lock.digest"] == small_lock().digest


@pytest.mark.parametrize("name", ["six-1.17.0-py2.py3-none-any.whl", "libc6_2.36-9_amd64.deb",
                                  "base-0123456789abcdef.tar.gz"])
def test_fixed_output_path_is_nixs(name: str) -> None:
    """build --store seeds artifacts by their fixed-output paths, computed in Python."""
    from envnix.nix import fixed_output_path

    sha = hashlib.sha256(name.encode()).hexdigest()
    nix = subprocess.run(["nix-store", "--print-fixed-path", "sha256", sha, name],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert fixed_output_path(sha, name) == nix

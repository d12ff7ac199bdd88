"""The offline tests of tests/integration/test_render.py (no network, no program started).

Render: the generated Nix project evaluates, for both toolchains, without building anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envnix.core.errors import SpecError
from envnix.core.nixexpr import store_name
from envnix.lock.model import Lock
from envnix.render import MAX_LAYERS, OWN_LAYER_BYTES, plan_layers, render
from envnix.spec import ImageSpec, PipRequest, PythonSpec, release_for


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


def test_render_is_deterministic(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    a = render(small_spec(), small_lock(), tmp_path / "ctx" / "a", "demo:dev",
               context=tmp_path / "ctx").directory
    b = render(small_spec(), small_lock(), tmp_path / "ctx" / "b", "demo:dev",
               context=tmp_path / "ctx").directory
    for name in ("default.nix", "image.nix", "toolchain.nix", "toolchain-pin.json",
                 "envnix.lock"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    config = json.loads((a / "envnix.lock").read_text())["image"]["config"]
    assert config["created"] == "1970-01-01T00:00:00Z"
    # image.nix labels the image with the digest of the lock's own bytes: not in the lock
    assert "io.envnix.lock.digest" not in config["config"]["Labels"]

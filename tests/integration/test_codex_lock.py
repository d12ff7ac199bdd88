"""install.codex() locked from an npm registry on loopback (tests/_npm_registry.py): the native
build of the platform is chosen and pinned, checked against the registry's integrity, and what
the registry does wrong is one line. The real registry and the real codex running in podman
are tests/integration/test_tools_e2e.py's."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from _cli import envnix
from _conda_channel import dead_url, serve
from _npm_registry import npm_tarball, publish

V0 = 'def build():\n    base(os="debian12", language="python3.11")\n'
VENDOR = "vendor/x86_64-unknown-linux-musl/"
NATIVE = npm_tarball({"package.json": b"{}", VENDOR + "bin/codex": b"#!/bin/sh\necho codex\n",
                      VENDOR + "codex-path/rg": b"#!/bin/sh\n"},
                     frozenset({VENDOR + "bin/codex", VENDOR + "codex-path/rg"}))
WRAPPER = npm_tarball({"package.json": b"{}", "bin/codex.js": b"// the node launcher\n"})
OLD = npm_tarball({"package.json": b"{}", "bin/codex.js": b"",
                   VENDOR + "codex/codex": b"#!/bin/sh\n",
                   "vendor/aarch64-unknown-linux-musl/codex/codex": b"#!/bin/sh\n"})


def _lock(tmp_path: Path, call: str, registry: str) -> tuple[int, str, dict | None]:
    context = tmp_path / "codex"
    context.mkdir(exist_ok=True)
    (context / "build.envd").write_text(V0 + f"    {call}\n")
    env = {**os.environ, "ENVNIX_NPM_REGISTRY": registry}
    proc = envnix("lock", str(context), env=env, check=False)
    path = context / "envnix.lock"
    return proc.returncode, proc.stderr, json.loads(path.read_text()) if path.exists() else None


@pytest.fixture
def registry(tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "registry"
    root.mkdir()
    with serve({"npm": root}) as server:
        yield root, server.url("npm")


def test_the_native_build_is_pinned_by_sha256_and_laid_out(tmp_path: Path, registry) -> None:
    root, url = registry
    publish(root, url, "@openai/codex", {"0.171.0": WRAPPER, "0.171.0-linux-x64": NATIVE,
                                         "0.98.0": OLD}, latest="0.171.0")
    code, stderr, lock = _lock(tmp_path, "install.codex()", url)
    assert code == 0, stderr
    assert lock is not None
    (tool,) = lock["tools"]
    assert (tool["name"], tool["version"], tool["source"]) == ("codex", "0.171.0", "npm")
    assert tool["url"] == f"{url}/@openai/codex/-/codex-0.171.0-linux-x64.tgz"
    assert (tool["sha256"], tool["size"]) == (hashlib.sha256(NATIVE).hexdigest(), len(NATIVE))
    assert tool["paths"] == [[f"package/{VENDOR}", "opt/codex/"]]
    assert tool["links"] == [["usr/bin/codex", "../../opt/codex/bin/codex"]]
    assert "tools: codex 0.171.0 from codex-0.171.0-linux-x64.tgz" in stderr
    # an older release without a native package: its own tarball, the old layout inside
    code, stderr, lock = _lock(tmp_path, 'install.codex(version="rust-v0.98.0")', url)
    assert code == 0, stderr
    assert lock is not None
    (tool,) = lock["tools"]
    assert tool["filename"] == "codex-0.98.0.tgz"
    assert tool["links"] == [["usr/bin/codex", "../../opt/codex/codex/codex"]]


def test_what_the_registry_gets_wrong_is_one_line(tmp_path: Path, registry) -> None:
    root, url = registry
    publish(root, url, "@openai/codex", {"0.171.0": WRAPPER, "0.171.0-linux-x64": NATIVE,
                                         "0.170.0": WRAPPER},
            latest="0.171.0", wrong_integrity=frozenset({"0.171.0-linux-x64"}))

    def refused(call: str, registry_url: str = url) -> str:
        code, stderr, lock = _lock(tmp_path, call, registry_url)
        lines = [ln for ln in stderr.splitlines() if ln.startswith("envnix: ")]
        assert code != 0 and lock is None, stderr
        assert "Traceback" not in stderr
        return lines[0]

    assert "does not match the registry's sha512 for it" in refused("install.codex()")
    line = refused('install.codex(version="0.1.0")')
    assert 'install.codex(version="0.1.0"): the registry has no release 0.1.0' in line
    assert "0.170.0, 0.171.0" in line
    # a release whose only tarball is the node launcher: no Linux build in it
    assert "has no codex binary for linux/amd64" in refused('install.codex(version="0.170.0")')
    dead = dead_url("npm")
    assert f"cannot read {dead}/@openai%2Fcodex" in refused("install.codex()", dead)

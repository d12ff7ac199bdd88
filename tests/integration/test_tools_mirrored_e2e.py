"""The tools whose hosts these machines cannot reach, each from a mirror on loopback.

install.julia() and envd v0's base(language="julia"): Julia's release archive pinned at lock
time and laid out as envd's julia.sh does (/opt/julia-<version>, /usr/local/bin/julia); the
mirror (ENVNIX_JULIA_MIRROR, tests/_conda_channel.py's server) holds an archive of the
release's layout: a julia launcher, a library with its soname links and a hard link.
install.pixi(): pixi's conda package from the channels envd's conda reads, here a channel on
loopback (ENVNIX_CONDA_DEFAULT_CHANNELS) holding a pixi package in .conda format.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from _cli import build, envnix
from _conda_channel import GLIBC_DEP, Package, build_channel, serve
from _podman import podman

pytestmark = pytest.mark.slow
TOP = "julia-1.10.10"


def _archive() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tf:
        def add(name: str, data: bytes = b"", mode: int = 0o644, kind: bytes = tarfile.REGTYPE,
                link: str = "") -> None:
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size, info.mode, info.type, info.linkname = len(data), mode, kind, link
            info.uid = info.gid = 1000  # as the release's archives: the builder's owner
            tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("bin", mode=0o755, kind=tarfile.DIRTYPE)
        add("bin/julia", b'#!/bin/sh\nd=$(dirname "$(readlink -f "$0")")\n'
                         b'echo "julia version 1.10.10 from $d"\n', 0o755)
        add("lib/libjulia.so.1.10.10", b"\x7fELF", 0o755)
        add("lib/libjulia.so.1.10", kind=tarfile.SYMTYPE, link="libjulia.so.1.10.10")
        add("share/julia/base/version_git.jl", b"# the same bytes twice\n")
        add("share/julia/base/version.jl", kind=tarfile.LNKTYPE,
            link=f"{TOP}/share/julia/base/version_git.jl")
    return raw.getvalue()


def _julia_mirror(tmp_path: Path, archive: bytes, envd: str) -> tuple[Path, Path]:
    """(mirror root holding ``archive`` as Julia's linux x64 release, context of ``envd``)."""
    mirror = tmp_path / "mirror"
    release = mirror / "linux" / "x64" / "1.10"
    release.mkdir(parents=True)
    (release / f"{TOP}-linux-x86_64.tar.gz").write_bytes(archive)
    context = tmp_path / "julia"
    context.mkdir()
    (context / "build.envd").write_text(envd)
    return mirror, context


def test_julia_comes_from_its_pinned_release_archive(tmp_path: Path,
                                                     podman_environ: dict) -> None:
    data = _archive()
    mirror, context = _julia_mirror(tmp_path, data, 'def build():\n    base(os="debian12", '
                                                    'language="julia")\n')
    with serve({"julia": mirror}) as server:
        env = {**os.environ, "ENVNIX_JULIA_MIRROR": server.url("julia")}
        built = build(context, "-t", "julia:dev", env=env)
    assert 'base(language="julia"): Julia 1.10.10 as install.julia() installs it' \
        in built.stderr
    (tool,) = json.loads((context / "envnix.lock").read_text())["tools"]
    assert (tool["name"], tool["version"], tool["source"]) == ("julia", "1.10.10", "release")
    assert (tool["sha256"], tool["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
    assert tool["paths"] == [[f"{TOP}/", f"opt/{TOP}/"]]
    out = podman("run", "--rm", f"oci:{built.layout}", "sh", "-c",
                 "julia; readlink /opt/julia-1.10.10/lib/libjulia.so.1.10; "
                 "stat -c '%U %h' /opt/julia-1.10.10/bin/julia "
                 "/opt/julia-1.10.10/share/julia/base/version.jl", env=podman_environ)
    assert out.stdout.splitlines() == ["julia version 1.10.10 from /opt/julia-1.10.10/bin",
                                       "libjulia.so.1.10.10", "root 1", "root 2"]
    # the lock alone rebuilds it, mirror gone: nothing of it is fetched again from the lock's URL
    again = build(context, "-t", "julia:dev", "--locked")
    assert (again.config, again.manifest) == (built.config, built.manifest)


def test_an_archive_without_julia_is_one_line(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tf:
        tf.addfile(tarfile.TarInfo("README"))
    mirror, context = _julia_mirror(tmp_path, raw.getvalue(), '# syntax=v1\ndef build():\n'
                                    '    base(image="debian:12")\n    install.julia()\n')
    with serve({"julia": mirror}) as server:
        env = {**os.environ, "ENVNIX_JULIA_MIRROR": server.url("julia")}
        proc = envnix("lock", str(context), env=env, check=False)
        gone = envnix("lock", str(context), env={**env, "ENVNIX_JULIA_MIRROR":
                                                  server.url("nothing-here")}, check=False)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("envnix: ")
              and "warning" not in ln]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert f"has no {TOP}/bin/julia" in errors[0]
    assert gone.returncode != 0 and "install.julia(): cannot download" in gone.stderr
    assert "HTTP 404" in gone.stderr and not (context / "envnix.lock").exists()


def test_pixi_comes_from_its_conda_package(tmp_path: Path, podman_environ: dict) -> None:
    def pixi(version: str) -> Package:
        return Package("pixi", version, build="h0_0", subdir="linux-64", noarch=None,
                       depends=[GLIBC_DEP], formats=(".conda",),
                       files={"bin/pixi": f"#!/bin/sh\necho pixi {version}\n".encode()},
                       executables={"bin/pixi"})
    info = build_channel(tmp_path / "channel", packages=[pixi("0.40.0"), pixi("0.62.2")])
    context = tmp_path / "pixi"
    context.mkdir()
    (context / "build.envd").write_text(
        '# syntax=v1\ndef build():\n    base(image="debian:12")\n'
        '    install.pixi(pypi_index="https://pypi.example/simple")\n')
    with serve({"forge": info.root}) as server:
        env = {**os.environ, "ENVNIX_CONDA_DEFAULT_CHANNELS": server.url("forge")}
        built = build(context, "-t", "pixi:dev", env=env)
    (tool,) = json.loads((context / "envnix.lock").read_text())["tools"]
    assert (tool["name"], tool["version"], tool["source"]) == ("pixi", "0.62.2", "conda")
    assert tool["filename"] == "pixi-0.62.2-h0_0.conda"
    assert tool["sha256"] == info.get("pixi", "0.62.2").sha256
    out = podman("run", "--rm", f"oci:{built.layout}", "sh", "-c",
                 "pixi; cat /etc/pixi/config.toml", env=podman_environ)
    assert out.stdout == ('pixi 0.62.2\n[pypi-config]\n'
                          'index-url = "https://pypi.example/simple"\n')


def test_vscode_extensions_come_from_open_vsx_pinned(tmp_path: Path,
                                                     podman_environ: dict) -> None:
    """install.vscode_extensions in a dev image: the newest release Open VSX names (here a
    stand-in of its API on loopback: ENVNIX_OPENVSX_URL), its .vsix pinned by sha256 and its
    extension/ directory where envd copies it; a version Open VSX lacks is one line."""
    import zipfile
    vsx = tmp_path / "openvsx"
    (vsx / "files").mkdir(parents=True)
    (vsx / "api" / "ms-python").mkdir(parents=True)
    with zipfile.ZipFile(vsx / "files" / "python.vsix", "w") as zf:
        zf.writestr("extension.vsixmanifest", "<PackageManifest/>")
        zf.writestr("extension/package.json", '{"name": "python", "version": "2024.1.0"}')
    data = (vsx / "files" / "python.vsix").read_bytes()
    context = tmp_path / "dev"
    context.mkdir()
    with serve({"vsx": vsx}) as server:
        (vsx / "api" / "ms-python" / "python").write_text(json.dumps({
            "version": "2024.1.0",
            "files": {"download": server.url("vsx") + "/files/python.vsix"}}))
        env = {**os.environ, "ENVNIX_OPENVSX_URL": server.url("vsx")}
        (context / "build.envd").write_text(
            'def build():\n    base(os="debian12", language="python3.11")\n'
            '    install.vscode_extensions(["ms-python.python-9.9.9"])\n')
        missing = envnix("lock", str(context), env=env, check=False)
        (context / "build.envd").write_text(
            'def build():\n    base(os="debian12", language="python3.11")\n'
            '    install.vscode_extensions(["ms-python.python"])\n')
        built = build(context, "-t", "vscode:dev", env=env)
    assert missing.returncode != 0 and "install.vscode_extensions(['ms-python.python-9.9.9'])" \
        f": {server.url('vsx')} has no such extension at that version" in missing.stderr
    (tool,) = json.loads((context / "envnix.lock").read_text())["tools"]
    assert (tool["name"], tool["version"], tool["source"]) == ("vscode-ms-python.python",
                                                               "2024.1.0", "openvsx")
    assert (tool["sha256"], tool["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
    out = podman("run", "--rm", f"oci:{built.layout}", "sh", "-c",
                 "cat /home/envd/.vscode-server/extensions/ms-python.python-2024.1.0/"
                 "package.json", env=podman_environ)
    assert out.stdout == '{"name": "python", "version": "2024.1.0"}'

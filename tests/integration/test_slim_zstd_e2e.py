"""`envnix build --slim --compression zstd` of a real Debian image (issue 17): zstd layers
with their media type that podman runs, docs/man pages/locales left out but the copyright
files kept, dpkg told to keep leaving them out, and the image.tar export (a second build of
the same Nix project) making the same image."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from _cli import build
from _podman import podman

pytestmark = [pytest.mark.network, pytest.mark.slow]

ENVD = ('def build():\n    base(os="debian12", language="python3.11")\n'
        '    install.apt_packages(name=["bzip2"])\n')
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def test_slim_zstd_image_runs_without_docs(tmp_path: Path, podman_environ: dict) -> None:
    context = tmp_path / "slim"
    context.mkdir()
    (context / "build.envd").write_text(ENVD)
    archive = tmp_path / "image.tar"
    built = build(context, "-t", "slim:dev", "--slim", "--compression", "zstd",
                  "-o", f"type=oci,dest={archive}")

    blobs = built.layout / "blobs" / "sha256"
    index = json.loads((built.layout / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    assert {layer["mediaType"] for layer in manifest["layers"]} == {MT_ZSTD}
    with tarfile.open(archive) as tf:  # the export: the same manifest, built again
        exported = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
    assert exported["manifests"][0]["digest"] == index["manifests"][0]["digest"]

    script = ("python3 -c 'import bz2, sys; print(sys.version_info[:2])'; "
              "ls /usr/share/doc/*/changelog* 2>/dev/null | wc -l; "
              "find /usr/share/man /usr/share/locale /usr/share/info ! -type d 2>/dev/null "
              "| wc -l; "
              "test -s /usr/share/doc/bzip2/copyright && test -s /usr/share/doc/libc6/copyright"
              " && echo copyright; "
              "grep -c '^path-' /etc/dpkg/dpkg.cfg.d/envnix-slim")
    out = podman("run", "--rm", f"oci:{built.layout}", "sh", "-c", script,
                 env=podman_environ).stdout.splitlines()
    assert out == ["(3, 11)", "0", "0", "copyright", "8"]


def test_a_slim_base_is_packed_slim_without_the_flag(tmp_path: Path, podman_environ: dict) -> None:
    """base(image="debian:12-slim") leaves out what that image's dpkg filters leave out, as
    `--slim` does, with no flag: the lock's image section says so, so any build of that lock
    (envnix build, a Nix-only build) packs it the same way."""
    context = tmp_path / "slimbase"
    context.mkdir()
    (context / "build.envd").write_text('def build():\n    base(image="debian:12-slim")\n'
                                        '    install.apt_packages(name=["bzip2"])\n')
    built = build(context, "-t", "slimbase:dev")
    assert json.loads((context / "envnix.lock").read_text())["image"]["slim"] is True
    script = ("bzip2 --help 2>&1 | head -c 5; echo; "
              "find /usr/share/doc /usr/share/man /usr/share/locale ! -type d "
              "! -name copyright 2>/dev/null | wc -l; "
              "test -s /usr/share/doc/bzip2/copyright && echo copyright; "
              "grep -c '^path-' /etc/dpkg/dpkg.cfg.d/envnix-slim")
    out = podman("run", "--rm", f"oci:{built.layout}", "sh", "-c", script,
                 env=podman_environ).stdout.splitlines()
    assert out == ["bzip2", "0", "copyright", "8"]

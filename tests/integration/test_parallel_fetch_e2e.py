"""envnix build downloads what the build needs before nix-build runs, several files at once
(envnix/nix/seed.py), not max-jobs at a time as Nix's own fetch derivations would: on a
two-core machine Nix fetches two files at a time, in the slots the builds need.

Real wheels built here, served by a loopback index that holds each file answer back, so the
downloads overlap only if they run at once; the image is checked to hold every wheel."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import pytest
from _cli import build
from _cli import envnix as run_envnix
from _pip_index import Dist, serve_index
from test_builders_unpack import make_wheel

pytestmark = [pytest.mark.network, pytest.mark.slow]

WHEELS = 6
DELAY = 1.5  # seconds each file answer is held back


def test_missing_artifacts_download_at_once_and_once(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex[:12]  # new bytes: no store holds these wheels yet
    dists = []
    for i in range(WHEELS):
        name = f"pf{i}x{marker}"
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
        path = make_wheel(tmp_path / f"{name}-1.0-py3-none-any.whl",
                          {f"{name}.py": f"MARK = {marker!r}\n".encode(),
                           f"{name}-1.0.dist-info/METADATA": meta}, dist=f"{name}-1.0")
        dists.append(Dist(name, path))
    with serve_index(dists, "json") as index:
        context = tmp_path / "pf"
        context.mkdir()
        names = ", ".join(f'"{d.project}"' for d in dists)
        (context / "build.envd").write_text(
            'def build():\n    base(os="debian12", language="python3.11")\n'
            f'    config.pip_index(url="{index.url}")\n'
            f"    install.python_packages(name=[{names}])\n")
        run_envnix("lock", str(context))
        assert len(json.loads((context / "envnix.lock").read_text())["pip"]["wheels"]) == WHEELS

        index.file_delay = DELAY
        before = len(index.hits("GET"))
        built = build(context, "-t", "pf:1")
        fetched = index.hits("GET")[before:]
        assert sorted(fetched) == sorted(f"/files/{d.path.name}" for d in dists)  # once each
        assert index.most_at_once >= 4, index.most_at_once  # not two (max-jobs) at a time
        assert all("envnix" in agent for agent in index.agents[-WHEELS:]), index.agents
        assert f"{WHEELS} to download" in built.stderr, built.stderr

        again = build(context, "-t", "pf:1")  # everything is in the store: nothing fetched
        assert index.hits("GET")[before:] == fetched
        assert again.manifest == built.manifest
    layers = [p.read_bytes() for p in (built.layout / "blobs" / "sha256").iterdir()]
    image = b"".join(gzip.decompress(b) for b in layers if b[:2] == b"\x1f\x8b")
    assert all(f"{d.project}.py".encode() in image for d in dists)

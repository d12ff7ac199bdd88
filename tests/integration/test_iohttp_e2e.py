"""io.http end to end: a file served on loopback is pinned by the lock (downloaded through
envnix's HTTP client), fetched by Nix as a fixed-output derivation and found, byte for byte,
at /home/envd/extra_source/NAME of the built image; a wrong checksum stops `envnix lock`.

The image is the tiny one (tests/_tiny.py: no packages, builds in seconds), its lock written
with the real io.http pins, so the test needs no archive or index.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest
from _cli import build, envnix
from _tiny import TINY_ENVD, Server

from envnix.frontend import load_spec
from envnix.lock import Lock, lock_inputs
from envnix.lock.downloads import lock_downloads
from envnix.oci.imagediff import flatten, read_layout
from envnix.render import image_section

DATA = b"weights \x00\x01\x02 of a model\n" * 100


def _context(parent: Path, calls: str) -> Path:
    context = parent / "dl"
    context.mkdir()
    (context / "build.envd").write_text(TINY_ENVD + calls)
    return context


@pytest.mark.slow
def test_a_download_is_pinned_and_lands_in_extra_source(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digest = hashlib.sha256(DATA).hexdigest()
    with Server(DATA).running() as server:
        context = _context(tmp_path, (
            f'    io.http(url="{server.url}/files/model.bin")\n'
            f'    io.http(url="{server.url}/files/model.bin", checksum="sha256:{digest}", '
            'filename="weights.bin")\n'))
        spec = load_spec(context, "build.envd:build")
        files = lock_downloads(spec.downloads, {})
        assert server.requests == 1  # one URL, hashed once for both calls
        lock = Lock(inputs=lock_inputs(spec, context), http_files=files)
        lock = dataclasses.replace(lock, image=image_section(spec, lock, context))
        (context / "envnix.lock").write_text(lock.dumps())
        # Nix fetches each file (unless its store has the fixed-output path already).
        built = build(context, "--locked")
        copy = tmp_path / "elsewhere" / "dl"  # the same files elsewhere: the same image
        shutil.copytree(context, copy, ignore=shutil.ignore_patterns(".envnix"))
        again = build(copy, "--locked")
    assert (again.config, again.manifest) == (built.config, built.manifest)
    assert files == [
        {"url": f"{server.url}/files/model.bin", "sha256": digest, "size": len(DATA),
         "filename": name} for name in ("model.bin", "weights.bin")]
    assert (f"build.envd:3: io.http('{server.url}/files/model.bin') gives no checksum: "
            f"envnix.lock pins the sha256 downloaded now, sha256:{digest}"
            ) in capsys.readouterr().err
    tree = flatten(read_layout(built.layout, None, "built"))
    for name in ("model.bin", "weights.bin"):
        kind, mode, uid, gid, size, sha256 = tree[f"/home/envd/extra_source/{name}"]
        assert (kind, mode & 0o7777, uid, gid, size, sha256) == (
            "file", 0o600, 1000, 1000, len(DATA), digest)  # as envd: 0600, the dev user's
    assert tree["/home/envd/extra_source"][0] == "dir"


@pytest.mark.slow
def test_a_wrong_checksum_stops_the_lock_naming_url_and_both_digests(tmp_path: Path) -> None:
    wrong = "0" * 64
    with Server(DATA).running() as server:
        context = _context(tmp_path, f'    io.http(url="{server.url}/m.bin", '
                                     f'checksum="sha256:{wrong}")\n')
        proc = envnix("lock", str(context), "--apt-mirror", "http://127.0.0.1:1/debian",
                      check=False)
    got = hashlib.sha256(DATA).hexdigest()
    assert proc.returncode != 0
    assert (f"build.envd:3: io.http: {server.url}/m.bin has sha256:{got}, but the checksum "
            f"is sha256:{wrong}") in proc.stderr
    assert "Traceback" not in proc.stderr and not (context / "envnix.lock").exists()

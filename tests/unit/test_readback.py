"""Files envnix writes and reads back: the lock's image section (what lib.buildImage builds
from, issue 15) and digests.json (issue 11, item 7). Each is checked field by field before
use; a bad one is one line."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_lockfile import conda, deb, wheel

from envnix.core.errors import BuildError
from envnix.lock.model import IMAGE_FORMAT, LOCK_HINT, CorruptLockError, Lock, read_lock
from envnix.nix.seed import seed_chroot_store
from envnix.oci.layout import DIGESTS_SCHEMA, read_digests
from envnix.render import lock_artifacts, render
from envnix.spec import ImageSpec, PipRequest, PythonSpec, release_for


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    """The lock as `envnix render` writes it into .envnix, for debs, conda and a wheel."""
    spec = ImageSpec(name="demo", manifest="build.envd", function="build",
                     os=release_for("debian12"), python=PythonSpec("system", "3.11"),
                     pip=PipRequest(packages=["six"]), workdir="/home/envd/demo")
    lock = Lock(inputs={}, apt_packages=[deb("libc6"), deb("dash", "b")],
                conda_packages=[conda("zlib")], pip_wheels=[wheel("six")])
    (tmp_path / "ctx").mkdir()
    out = render(spec, lock, tmp_path / "ctx" / ".envnix", "demo:dev",
                 context=tmp_path / "ctx").directory
    return out / "envnix.lock"


def test_the_rendered_image_section_has_a_format_and_reads_back(lock_path: Path) -> None:
    lock = read_lock(lock_path)
    assert lock is not None and lock.image is not None
    assert lock.image["format"] == IMAGE_FORMAT
    assert set(lock_artifacts(lock)) == {"deb:dash", "deb:libc6", "conda:zlib", "wheel:six"}


def _edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
    return change


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["image"].pop("format"), "image: format: missing"),
    (_edit("image/format", 2), "image: format 2 is not 1: made by another envnix version (a "
                               "newer one: upgrade envnix to read it)"),
    (_edit("pip/wheels/0/url", "file:///etc/shadow"),
     "pip.wheels[0].url: expected an http(s) URL, got 'file:///etc/shadow'"),
    (_edit("image/plan/baseLayers", [{"url": "http://r.invalid/b"}]),
     "image.plan.baseLayers[0].sha256: missing"),
    (_edit("image/plan/users", [["envd", "1000", 1000, "/home/envd", "/bin/bash"]]),
     "image.plan.users[0][1]: expected a non-negative integer, got '1000'"),
    (_edit("image/plan/users", [["envd"]]),
     'image.plan.users[0]: expected a list of 5, got ["envd"]'),
    (_edit("image/plan/layers", [{"name": "os", "trees": [1]}]),
     "image.plan.layers[0].trees[0]: expected a string, got an integer"),
    (_edit("image/plan/runs", [{"commands": ["cat <<EOF\nmulti-line is fine\nEOF", "nul\x00"]}]),
     "image.plan.runs[0].commands[1]: control character in 'nul\\x00'"),
    (_edit("image/plan/runEnv", {"PATH": 1}),
     "image.plan.runEnv.PATH: expected a string, got an integer"),
    (_edit("image/files", {"../etc/passwd": ["x", 420, 0, 0]}), "image.files"),
    (_edit("image/sources", {"build.envd": "xx"}), 'image.sources["build.envd"]: expected 64'),
    (_edit("image/copyOwner", [0]), "image.copyOwner: expected a list of 2"),
])
def test_a_bad_image_field_is_one_line(lock_path: Path, change: Any, message: str) -> None:
    data = json.loads(lock_path.read_text())
    change(data)
    lock_path.write_text(json.dumps(data))
    with pytest.raises(CorruptLockError) as info:
        read_lock(lock_path)
    assert str(info.value).startswith(f"{lock_path}: {message}"), str(info.value)
    assert info.value.hint == LOCK_HINT


def test_store_seeding_checks_the_lock_before_downloading(lock_path: Path,
                                                          tmp_path: Path) -> None:
    """--store seeding downloads each artifact outside the sandbox: a rendered lock changed to
    name a host file stops it before any download or nix-store call."""
    data = json.loads(lock_path.read_text())
    data["pip"]["wheels"][0]["url"] = "file:///etc/passwd"
    lock_path.write_text(json.dumps(data))
    store = tmp_path / "store"
    with pytest.raises(BuildError, match=r"url: expected an http\(s\) URL") as info:
        seed_chroot_store(lock_path, str(store))
    assert info.value.exit_code == 6
    assert not store.exists()
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(BuildError, match="not a regular file"):
        seed_chroot_store(tmp_path / "fifo.json", str(store))


def test_digests_json_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "digests.json"
    good = {"schema": DIGESTS_SCHEMA, "config": "sha256:" + "1" * 64,
            "manifest": "sha256:" + "2" * 64, "layers": ["sha256:" + "3" * 64]}
    path.write_text(json.dumps(good))
    assert read_digests(path) == good
    older = {k: v for k, v in good.items() if k != "schema"}  # an image built before the field
    path.write_text(json.dumps(older))
    assert read_digests(path) == older
    for bad, message in [({**good, "manifest": "sha256:zz"}, "manifest: expected sha256:"),
                         ({"config": good["config"]}, "manifest: missing"),
                         ([good], "expected a JSON object, got a list"),
                         ({**good, "schema": 2}, "schema 2 is not 1: written by another envnix "
                                                 r"version \(a newer one: upgrade envnix"),
                         ({**good, "schema": "1"}, "schema '1' is not 1")]:
        path.write_text(json.dumps(bad))
        with pytest.raises(BuildError, match=f"digests.json: {message}"):
            read_digests(path)
    path.write_bytes(b"\x00\xff")
    with pytest.raises(BuildError, match=r"digests.json: not UTF-8"):
        read_digests(path)


def _image_output(root: Path, manifest: bytes, desc: dict | None = None) -> Path:
    """A damaged image output: digests.json as mkimage writes it, then index and manifest."""
    import hashlib

    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    blobs = root / "oci" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / digest.removeprefix("sha256:")).write_bytes(manifest)
    (root / "digests.json").write_text(json.dumps(
        {"config": "sha256:" + "1" * 64, "manifest": digest, "layers": []}))
    (root / "oci" / "index.json").write_text(json.dumps(
        {"manifests": [desc if desc is not None else {"digest": digest}]}))
    return root


@pytest.mark.parametrize(("manifest", "desc", "message"), [
    (b"\xff\xfe not json", None, "is not an OCI image manifest"),
    (b'{"config": {}}', None, "is not an OCI image manifest"),
    (b"{}", {}, "names manifest None"),
    (b"{}", {"digest": "sha256:../../etc"}, "names manifest"),
])
def test_a_damaged_image_output_is_one_publish_error(tmp_path: Path, manifest: bytes,
                                                      desc: dict | None, message: str) -> None:
    from envnix.core.errors import PublishError
    from envnix.oci.layout import read_image

    root = _image_output(tmp_path / "out", manifest, desc)
    with pytest.raises(PublishError, match=re.escape(message)):
        read_image(root)

"""Files envnix writes and reads back besides the lock: .envnix/plan.json and digests.json
(issue 11, item 7). Each is checked field by field before use; a bad one is one line."""

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
from envnix.lock.lockfile import Lock
from envnix.nix import seed_chroot_store
from envnix.oci.layout import DIGESTS_SCHEMA, read_digests
from envnix.render import render
from envnix.render.plan import PLAN_SCHEMA, read_plan
from envnix.spec import ImageSpec, PipRequest, PythonSpec, release_for


@pytest.fixture
def plan_path(tmp_path: Path) -> Path:
    """plan.json as `envnix render` writes it, for a lock with debs, conda and a wheel."""
    spec = ImageSpec(name="demo", manifest="build.envd", function="build",
                     os=release_for("debian12"), python=PythonSpec("system", "3.11"),
                     pip=PipRequest(packages=["six"]), workdir="/home/envd/demo")
    lock = Lock(inputs={}, apt_packages=[deb("libc6"), deb("dash", "b")],
                conda_packages=[conda("zlib")], pip_wheels=[wheel("six")])
    (tmp_path / "ctx").mkdir()
    out = render(spec, lock, tmp_path / "ctx" / ".envnix", "demo:dev",
                 context=tmp_path / "ctx").directory
    return out / "plan.json"


def test_the_rendered_plan_has_a_schema_and_reads_back(plan_path: Path) -> None:
    plan = read_plan(plan_path)
    assert plan["schema"] == PLAN_SCHEMA
    assert set(plan["artifacts"]) == {"deb:dash", "deb:libc6", "conda:zlib", "wheel:six"}


def _edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(plan: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = plan
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
    return change


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p.pop("schema"), "schema: missing: rendered by an older envnix"),
    (_edit("schema", 2), "schema 2 is not 1: rendered by another envnix version (a newer one: "
                         "upgrade envnix to read it)"),
    (_edit("schema", 0), "schema 0 is not 1: rendered by another envnix version"),
    (_edit("artifacts/wheel:six/url", "file:///etc/shadow"),
     'artifacts["wheel:six"].url: expected an http(s) URL, got \'file:///etc/shadow\''),
    (_edit("artifacts/deb:libc6/sha256", "xx"),
     'artifacts["deb:libc6"].sha256: expected 64 hex digits'),
    (_edit("artifacts/deb:libc6/storeName", "../../x"),
     'artifacts["deb:libc6"].storeName: expected a Nix store name'),
    (_edit("artifacts/deb:libc6/size", -5),
     'artifacts["deb:libc6"].size: expected a non-negative integer'),
    (_edit("artifacts/deb:libc6/kind", "script"), 'artifacts["deb:libc6"].kind: expected'),
    (_edit("baseLayers", [{"url": "http://r.invalid/b"}]), "baseLayers[0].sha256: missing"),
    (_edit("users", [["envd", "1000", 1000, "/home/envd", "/bin/bash"]]),
     "users[0][1]: expected a non-negative integer, got '1000'"),
    (_edit("users", [["envd"]]), 'users[0]: expected a list of 5, got ["envd"]'),
    (_edit("layers", [{"name": "os", "trees": [1]}]),
     "layers[0].trees[0]: expected a string, got an integer"),
    (_edit("runs", [{"commands": ["cat <<EOF\nmulti-line is fine\nEOF", "nul\x00"]}]),
     "runs[0].commands[1]: control character in 'nul\\x00'"),
    (_edit("runEnv", {"PATH": 1}), "runEnv.PATH: expected a string, got an integer"),
])
def test_a_bad_plan_field_is_one_line(plan_path: Path, change: Any, message: str) -> None:
    plan = json.loads(plan_path.read_text())
    change(plan)
    plan_path.write_text(json.dumps(plan))
    with pytest.raises(BuildError) as info:
        read_plan(plan_path)
    assert str(info.value).startswith(f"{plan_path}: {message}"), str(info.value)
    assert info.value.hint == "it is generated: run envnix render (or envnix build) again"


@pytest.mark.parametrize(("raw", "message"), [
    (b"\xff", "not UTF-8 text (byte 0 is 0xff)"),
    (b'{"schema": 1,', "1:14: not valid JSON: Expecting property name"),
    (b"[1]", "expected a JSON object, got a list"),
])
def test_unreadable_plan_bytes(plan_path: Path, raw: bytes, message: str) -> None:
    plan_path.write_bytes(raw)
    with pytest.raises(BuildError, match="^" + str(plan_path) + ":? ?" + message[:6]):
        read_plan(plan_path)


def test_store_seeding_checks_the_plan_before_downloading(plan_path: Path,
                                                          tmp_path: Path) -> None:
    """--store seeding downloads each artifact outside the sandbox: a plan.json changed to name
    a host file stops it before any download or nix-store call."""
    plan = json.loads(plan_path.read_text())
    plan["artifacts"]["wheel:six"]["url"] = "file:///etc/passwd"
    plan_path.write_text(json.dumps(plan))
    store = tmp_path / "store"
    with pytest.raises(BuildError, match=r"url: expected an http\(s\) URL") as info:
        seed_chroot_store(plan_path, str(store))
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

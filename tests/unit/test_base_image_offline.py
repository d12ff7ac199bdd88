"""The offline tests of tests/integration/test_base_image.py (no network, no program started).

base(image=...) of an arbitrary image: pinned by digest at lock time, its layers fetched by
Nix as fixed-output blobs and built upon (io.copy, run(), config), its config inherited.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from envnix.core.errors import FrontendError, LockError, SpecError
from envnix.frontend import load_spec
from envnix.lock import lock_inputs
from envnix.lock.image import parse_image_ref
from envnix.lock.model import Lock
from envnix.render import image_config, image_plan

DIGEST = "sha256:" + "ab" * 32


def _spec(tmp_path: Path, body: str, name: str = "app") -> Any:
    context = tmp_path / name
    context.mkdir(exist_ok=True)
    (context / "build.envd").write_text("# syntax=v1\ndef build():\n" + body)
    return load_spec(context, warn=lambda _m: None)


def _fake_base(ref: str = "r.example/team/base:1") -> dict[str, Any]:
    layers = [{"digest": "sha256:" + c * 64, "size": 10 + i,
               "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
              for i, c in enumerate("12")]
    return {
        "ref": ref, "digest": DIGEST,
        "manifest": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": layers},
        "config": {"digest": "sha256:" + "cc" * 32,
                   "diff_ids": ["sha256:" + "d" * 64, "sha256:" + "e" * 64],
                   "Env": ["PATH=/opt/base/bin:/usr/bin:/bin", "BASE_VAR=1", "LANG=en_US.UTF-8"],
                   "WorkingDir": "/srv", "User": "app", "Entrypoint": ["/entry"],
                   "Cmd": ["serve"]},
        "blob_urls": [f"https://r.example/v2/team/base/blobs/{la['digest']}" for la in layers],
    }


# --------------------------------------------------------------------------------------------
# no network: frontend, lock inputs, plan, image config, the layer builder
# --------------------------------------------------------------------------------------------


def test_frontend_records_the_base_image(
        tmp_path: Path) -> None:
    spec = _spec(tmp_path, '    base(image="r.example:5000/team/base:1")\n')
    assert spec.base_image == "r.example:5000/team/base:1" and spec.dev is None
    assert spec.os.distro == "image" and spec.apt_roots() == []
    assert lock_inputs(spec, tmp_path / "app")["base"] == {
        "ref": "r.example:5000/team/base:1", "architecture": "amd64"}
    # release images keep building from their archives
    assert _spec(tmp_path, '    base(image="debian:12")\n', "rel").base_image is None
    # apt packages and the dev stack are resolved against the base's dpkg status at lock
    dev = _spec(tmp_path, '    base(image="r.example/b:1", dev=True)\n'
                '    install.apt_packages(name=["jq"])\n', "dev")
    assert dev.dev is not None and dev.apt_roots() == ["sudo", "bash", "coreutils", "jq"]
    cases = {'    base(image="Not A Ref")\n': "is not a valid image reference"}
    for i, (body, message) in enumerate(cases.items()):
        with pytest.raises((SpecError, FrontendError), match=re.escape(message)):
            _spec(tmp_path, body, f"bad{i}")


def test_v0_custom_image_path_is_the_same_build(tmp_path: Path) -> None:
    context = tmp_path / "v0"
    context.mkdir()
    (context / "build.envd").write_text(
        'def build():\n    base(image="r.example/b:1", language="python3.11")\n'
        '    io.copy(host_path="build.envd", envd_path="/opt/x")\n')
    spec = load_spec(context, warn=lambda _m: None)
    assert (spec.syntax, spec.base_image, spec.dev) == ("v0", "r.example/b:1", None)
    assert spec.python is not None and spec.python.provider == "conda"


def test_image_refs() -> None:
    r = parse_image_ref("python:3.11-slim")
    assert (r.host, r.ref.path, r.ref.tag, r.api_host) == (
        "docker.io", "library/python", "3.11-slim", "registry-1.docker.io")
    assert r.ref.transport == "docker://docker.io/library/python:3.11-slim"
    r = parse_image_ref(f"127.0.0.1:5000/team/base@{DIGEST}")
    assert (r.host, r.ref.path, r.ref.tag, r.ref.digest) == (
        "127.0.0.1:5000", "team/base", None, DIGEST)
    assert r.ref.transport == f"docker://127.0.0.1:5000/team/base@{DIGEST}"
    assert parse_image_ref("localhost/a/b:2").host == "localhost"
    for bad in ("UPPER/case", "docker://python:3.11"):  # as base(image=) refuses them
        with pytest.raises(LockError):
            parse_image_ref(bad)


def test_plan_puts_base_layers_first_and_drops_skeleton_and_meta(tmp_path: Path) -> None:
    spec = _spec(tmp_path, '    base(image="r.example/team/base:1")\n'
                           '    run(commands=["echo hi > /opt/hi"])\n'
                           '    runtime.environ(env={"MINE": "2"}, extra_path=["/x/bin"])\n')
    lock = Lock(inputs=lock_inputs(spec, tmp_path / "app"), base=_fake_base())
    plan = image_plan(spec, lock)
    assert [la["name"] for la in plan["layers"]] == []  # no skeleton/os/meta on a base
    assert [(b["sha256"], b["diffId"], b["size"]) for b in plan["baseLayers"]] == [
        ("1" * 64, "sha256:" + "d" * 64, 10), ("2" * 64, "sha256:" + "e" * 64, 11)]
    assert plan["runEnv"]["PATH"] == ("/opt/base/bin:/usr/bin:/bin:/usr/local/sbin:"
                                      "/usr/local/bin:/usr/sbin:/sbin:/x/bin")
    config = image_config(spec, lock)["config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["BASE_VAR"] == "1" and env["MINE"] == "2" and env["LANG"] == "C.UTF-8"
    assert (config["WorkingDir"], config["User"], config["Entrypoint"], config["Cmd"]) == (
        "/srv", "app", ["/entry"], ["serve"])
    assert config["Labels"]["io.envnix.base"] == f"r.example/team/base:1@{DIGEST}"
    # config.entrypoint wins (and drops the base's Cmd, as a Dockerfile ENTRYPOINT does)
    spec = _spec(tmp_path, '    base(image="r.example/team/base:1")\n'
                           '    install.python()\n    config.entrypoint(["/bin/run"])\n', "ep")
    config = image_config(spec, Lock(inputs={}, base=_fake_base()))["config"]
    assert config["Entrypoint"] == ["/bin/run"] and "Cmd" not in config
    path = dict(item.split("=", 1) for item in config["Env"])["PATH"].split(":")
    assert path[:3] == ["/opt/conda/envs/envd/bin", "/opt/conda/bin", "/opt/base/bin"]


def test_pip_on_a_base_without_install_python_uses_the_bases_python(tmp_path: Path) -> None:
    from envnix.core.errors import LockError
    from envnix.lock.basesystem import BaseSystem, base_python
    from envnix.spec import with_base_python

    spec = _spec(tmp_path, '    base(image="r.example/b:1", dev=True)\n'
                 '    install.python_packages(name=["via"])\n', "slim")
    assert spec.python is not None and spec.python.provider == "base"
    assert lock_inputs(spec, tmp_path / "slim")["pip"]["python"] == "base"

    def unread() -> BaseSystem:
        raise AssertionError("the Env named the Python: no layer needs reading")

    # the official python images: a python.org build in /usr/local, named in the Env
    slim = {"ref": "python:3.11-slim", "config": {"Env": ["PATH=/usr/local/bin:/usr/bin",
                                                          "PYTHON_VERSION=3.11.9"]}}
    slim["python"] = base_python(slim, unread)
    assert slim["python"] == {"provider": "local", "version": "3.11"}
    python = with_base_python(spec, slim).python
    assert python is not None
    assert (python.interpreter, python.site_packages) == (
        "/usr/local/bin/python3.11", "/usr/local/lib/python3.11/site-packages")

    def status(text: str) -> BaseSystem:
        return BaseSystem("debian", "bookworm", "12", text, "0" * 64)

    plain = {"ref": "r.example/b:1", "config": {"Env": None}}
    both = status("".join(f"Package: python3.{v}-minimal\nStatus: install ok installed\n"
                          f"Architecture: amd64\nVersion: 3.{v}.2-1\n\n" for v in (9, 11)))
    assert base_python(plain, lambda: both) == {"provider": "system", "version": "3.11"}
    with pytest.raises(LockError, match="has no Python envnix can find"):
        base_python(plain, lambda: status(""))


def test_apt_on_a_base_reads_the_archive_of_its_release() -> None:
    from envnix.core.errors import LockError
    from envnix.lock.basesystem import BaseSystem

    def system(distro: str, codename: str, status: str = "Package: dpkg\n") -> BaseSystem:
        return BaseSystem(distro, codename, "", status, "0" * 64)

    assert system("debian", "bookworm").release("b").label == "debian12"  # a known release
    bullseye = system("debian", "bullseye").release("b")  # any other Debian or Ubuntu one
    assert (bullseye.distro, bullseye.codename, bullseye.components) == (
        "debian", "bullseye", ("main",))
    assert system("ubuntu", "bionic").release("b").components == ("main", "universe")
    with pytest.raises(LockError, match="runs alpine"):
        system("alpine", "").release("b")
    with pytest.raises(LockError, match="has no dpkg database"):
        system("debian", "bookworm", status="").release("b")

"""base(image=...) of an arbitrary image: pinned by digest at lock time, its layers fetched by
Nix as fixed-output blobs and built upon (io.copy, run(), config), its config inherited.

The end-to-end tests are real: envnix builds a small Debian 12 + python3.11 image, pushes it to
Debian's docker-registry on 127.0.0.1 (plain HTTP), and a second build.envd builds on it; podman
runs the result. The unit tests at the top need no network.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from _cli import Built, build, envnix, parse_build
from _podman import podman
from _registry import Registry, have_registry_tools
from test_base_image_offline import DIGEST

ROOT = Path(__file__).resolve().parents[2]
SMALL_ENVD = 'def build():\n    base(os="debian12", language="python3.11")\n'


# --------------------------------------------------------------------------------------------
# no network: frontend, lock inputs, plan, image config, the layer builder
# --------------------------------------------------------------------------------------------


def _run_builder(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = ROOT / "envnix" / "builders" / "unpack_layer.py"
    return subprocess.run([sys.executable, "-E", "-s", "-B", str(script)],
                          env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True,
                          check=False)


def test_unpack_layer_keeps_whiteouts_and_links_the_blob(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("etc/.wh.old.conf", b""), ("etc/new.conf", b"x\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("etc/same.conf")
        link.type, link.linkname = tarfile.LNKTYPE, "etc/new.conf"
        tar.addfile(link)
    blob = tmp_path / "blob.tar.gz"
    blob.write_bytes(buf.getvalue())
    proc = _run_builder({"src": str(blob), "out": str(tmp_path / "tree"), "output": "tree"})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "tree/root/etc/.wh.old.conf").is_file()
    assert (tmp_path / "tree/root/etc/new.conf").read_bytes() == b"x\n"
    meta = json.loads((tmp_path / "tree/meta.json").read_text())
    assert meta["kind"] == "base"
    assert meta["hardlinks"] == [["etc/new.conf", "etc/same.conf"]]  # the layer's hard links
    layer_env = {"src": str(blob), "out": str(tmp_path / "layer"), "output": "layer",
                 "digest": DIGEST, "diffId": DIGEST, "size": str(blob.stat().st_size)}
    proc = _run_builder(layer_env)
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(tmp_path / "layer/layer.tar.gz") == "../blob.tar.gz"
    assert json.loads((tmp_path / "layer/layer.json").read_text())["size"] == len(
        buf.getvalue())
    proc = _run_builder({**layer_env, "out": str(tmp_path / "bad"), "size": "1"})
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("envnix-builder: base layer:") and "says 1" in \
        proc.stderr


# --------------------------------------------------------------------------------------------
# end to end: a real registry, Nix builds, podman
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if not have_registry_tools():
        pytest.fail("docker-registry, htpasswd or openssl missing: run ./scripts/setup")
    reg = Registry(tmp_path_factory.mktemp("basereg")).start()
    yield reg
    reg.stop()


def _pushed_base(tmp_path_factory: pytest.TempPathFactory, registry: Registry, name: str,
                 envd: str, tag: str, repository: str) -> Built:
    """An envnix image built from ``envd`` in a context called ``name``, pushed as
    ``repository`` to the loopback registry."""
    context = tmp_path_factory.mktemp(name) / name
    context.mkdir()
    (context / "build.envd").write_text(envd)
    built = build(context, "-t", tag)
    envnix("push", "-p", str(context), f"{registry.host}/{repository}", "--tls-verify=false")
    return built


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Built:
    """A small envnix image (Debian 12 + python3.11, a dev image) pushed as team/base:1."""
    return _pushed_base(tmp_path_factory, registry, "small", SMALL_ENVD, "small:dev",
                        "team/base:1")


def _insecure(registry: Registry) -> dict[str, str]:
    return {**os.environ, "ENVNIX_INSECURE_REGISTRIES": registry.host}


def _derived(dest: Path, ref: str) -> Path:
    context = dest / "derived"
    context.mkdir(parents=True)
    (context / "greeting.txt").write_text("hello from the context\n")
    (context / "build.envd").write_text(
        "# syntax=v1\ndef build():\n"
        f'    base(image="{ref}")\n'
        '    io.copy(source="greeting.txt", target="/opt/greeting.txt")\n'
        '    run(commands=["mkdir -p /opt/out", "echo hi > /opt/out/hi.txt"])\n'
        '    config.entrypoint(["/usr/bin/python3.11"])\n')
    return context


@pytest.fixture(scope="module")
def derived(tmp_path_factory: pytest.TempPathFactory, registry: Registry,
            base_image: Built) -> Built:
    context = _derived(tmp_path_factory.mktemp("derived"), f"{registry.host}/team/base:1")
    envnix("lock", str(context), env=_insecure(registry))
    mark = registry.mark()
    built = parse_build(context, envnix("build", str(context), "--locked", "-t", "derived:1"))
    # --locked reads the lock only: no manifest or tag request, just the pinned blobs
    assert all("/blobs/sha256:" in a.uri for a in registry.access_log()[mark:])
    return built


def _one_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("envnix:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.slow
def test_lock_pins_the_base_by_digest(registry: Registry, base_image: Built,
                                      derived: Built) -> None:
    lock = json.loads((derived.context / "envnix.lock").read_text())
    base = lock["base"]
    assert base["digest"] == base_image.manifest == registry.manifest_digest("team/base", "1")
    assert base["ref"] == f"{registry.host}/team/base:1"
    pushed = json.loads((base_image.layout / "blobs/sha256" / base_image.manifest[7:])
                        .read_text())
    assert [la["digest"] for la in base["manifest"]["layers"]] == [
        la["digest"] for la in pushed["layers"]]
    assert base["blob_urls"][0] == (f"http://{registry.host}/v2/team/base/blobs/"
                                    f"{pushed['layers'][0]['digest']}")
    assert lock["apt"]["packages"] == [] and lock["inputs"]["base"]["ref"] == base["ref"]


@pytest.mark.slow
def test_built_image_runs_on_the_base(derived: Built, base_image: Built,
                                      podman_environ: dict[str, str]) -> None:
    manifest = json.loads((derived.layout / "blobs/sha256" / derived.manifest[7:]).read_text())
    base_manifest = json.loads((base_image.layout / "blobs/sha256" / base_image.manifest[7:])
                               .read_text())
    n = len(base_manifest["layers"])
    assert manifest["layers"][:n] == base_manifest["layers"]  # the base's blobs, unchanged
    assert len(manifest["layers"]) == n + 2  # + io.copy context + run()
    config = json.loads((derived.layout / "blobs/sha256" / manifest["config"]["digest"][7:])
                        .read_text())["config"]
    assert config["User"] == "envd" and config["WorkingDir"] == "/home/envd/small"
    assert config["Entrypoint"] == ["/usr/bin/python3.11"]
    assert "ENVD_WORKDIR=/home/envd/small" in config["Env"]
    out = podman("run", "--rm", f"oci:{derived.layout}", "-c",
                 "import os, sys; print(sys.version_info[:2], open('/opt/out/hi.txt').read(),"
                 " open('/opt/greeting.txt').read(), os.getcwd(), os.getuid(), sep='|')",
                 env=podman_environ)
    assert out.stdout.strip() == ("(3, 11)|hi\n|hello from the context\n|/home/envd/small|"
                                  "1000")


@pytest.mark.slow
def test_stale_lock_and_missing_image(registry: Registry, derived: Built,
                                      tmp_path: Path) -> None:
    context = derived.context
    assert envnix("lock", str(context), "--check").returncode == 0
    text = (context / "build.envd").read_text()
    (context / "build.envd").write_text(text.replace("team/base:1", "team/base:2"))
    try:
        proc = envnix("lock", str(context), "--check", check=False)
        assert proc.returncode == 5 and "base ref changed" in _one_error(proc)
        proc = envnix("build", str(context), "--locked", check=False)
        assert proc.returncode == 5, proc.stderr
    finally:
        (context / "build.envd").write_text(text)
    missing = _derived(tmp_path, f"{registry.host}/team/nope:1")
    proc = envnix("lock", str(missing), env=_insecure(registry), check=False)
    line = _one_error(proc)
    assert proc.returncode == 4 and f"{registry.host}/team/nope:1" in line, proc.stderr
    assert "the registry has no such image" in line, proc.stderr
    proc = envnix("lock", str(missing), check=False)  # plain HTTP without the opt-in
    assert proc.returncode == 8 and "ENVNIX_INSECURE_REGISTRIES" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_fresh_store_fetches_only_the_locked_blobs(registry: Registry, derived: Built,
                                                   tmp_path: Path) -> None:
    """A store without the blobs gets exactly the locked layer blobs (seeded by envnix from
    this machine's store, or downloaded by URL: never a manifest or a tag) and gives the same
    image: the lock is all the build reads."""
    lock = json.loads((derived.context / "envnix.lock").read_text())
    mark = registry.mark()
    again = parse_build(derived.context, envnix(
        "build", str(derived.context), "--locked", "-t", "derived:1", "--store",
        str(tmp_path / "store"), "--out-dir", str(tmp_path / "gen")))
    assert (again.config, again.manifest) == (derived.config, derived.manifest)
    fetched = registry.access_log()[mark:]
    assert all(a.method == "GET" and a.status == 200 for a in fetched), fetched
    assert {f"http://{registry.host}{a.uri}" for a in fetched} <= set(lock["base"]["blob_urls"])
    for layer in lock["base"]["manifest"]["layers"]:
        blob = next((tmp_path / "store/nix/store").glob(f"*-base-{layer['digest'][7:23]}.tar.gz"))
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == layer["digest"][7:]


# --------------------------------------------------------------------------------------------
# apt packages and dev=True on a base: resolved against the base's own dpkg status
# --------------------------------------------------------------------------------------------

# A serving Debian 12 image: its Essential set and dpkg database, no sudo, no user envd.
SERVING_BASE_ENVD = ('# syntax=v1\ndef build():\n    base(image="debian:12", dev=False)\n'
                     '    install.apt_packages(name=["less"])\n')


@pytest.fixture(scope="module")
def serving_base(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Built:
    return _pushed_base(tmp_path_factory, registry, "plain", SERVING_BASE_ENVD, "plain:1",
                        "team/plain:1")


def _locked_on_base(context: Path, registry: Registry, base_args: str, body: str) -> Path:
    """A v1 build.envd calling base(<base_args>) (``{registry}`` is the loopback registry),
    then ``body``, written to ``context`` and locked."""
    context.mkdir(parents=True)
    (context / "build.envd").write_text(
        "# syntax=v1\ndef build():\n"
        f"    base({base_args.format(registry=registry.host)})\n" + body)
    envnix("lock", str(context), env=_insecure(registry))
    return context


@pytest.fixture(scope="module")
def dev_on_base(tmp_path_factory: pytest.TempPathFactory, registry: Registry,
                serving_base: Built) -> Built:
    context = _locked_on_base(tmp_path_factory.mktemp("devbase") / "devtools", registry,
                              'image="{registry}/team/plain:1", dev=True',
                              '    install.apt_packages(name=["jq", "less"])\n')
    return parse_build(context, envnix("build", str(context), "--locked", "-t", "devtools:1"))


@pytest.mark.slow
def test_apt_on_a_base_adds_only_what_it_lacks(dev_on_base: Built, serving_base: Built) -> None:
    lock = json.loads((dev_on_base.context / "envnix.lock").read_text())
    system = lock["base"]["system"]
    assert (system["distro"], system["codename"]) == ("debian", "bookworm")
    names = {p["name"] for p in lock["apt"]["packages"]}
    assert {"jq", "sudo"} <= names  # asked for, and the dev stack's
    base_lock = json.loads((serving_base.context / "envnix.lock").read_text())
    assert not names & {p["name"] for p in base_lock["apt"]["packages"]}, \
        "a package the base has installed was pinned again"
    assert {"less", "bash", "coreutils", "libc6"} <= {
        p["name"] for p in base_lock["apt"]["packages"]}


@pytest.mark.slow
def test_dev_image_on_a_base_runs_with_both_package_sets(
        dev_on_base: Built, serving_base: Built, podman_environ: dict[str, str]) -> None:
    manifest = json.loads((dev_on_base.layout / "blobs/sha256" / dev_on_base.manifest[7:])
                          .read_text())
    base_manifest = json.loads((serving_base.layout / "blobs/sha256"
                                / serving_base.manifest[7:]).read_text())
    n = len(base_manifest["layers"])
    assert manifest["layers"][:n] == base_manifest["layers"]  # the base's blobs, unchanged
    config = json.loads((dev_on_base.layout / "blobs/sha256" / manifest["config"]["digest"][7:])
                        .read_text())["config"]
    assert config["User"] == "envd" and config["WorkingDir"] == "/home/envd/devtools"
    script = ("set -e; id -un; id -u; echo '{\"a\": 7}' | jq .a; sudo -n id -u; "
              "dpkg-query -W -f='${Package} ${Status}\\n' jq less bash sudo; "
              "dpkg --audit && echo audit-clean; grep -c '^Package:' /var/lib/dpkg/status; "
              "getent passwd root | cut -d: -f7; ldconfig -p | grep -c libjq")
    out = podman("run", "--rm", f"oci:{dev_on_base.layout}", "/bin/bash", "-c", script,
                 env=podman_environ).stdout.splitlines()
    assert out[:4] == ["envd", "1000", "7", "0"], out
    assert out[4:8] == [f"{p} install ok installed"  # dpkg-query sorts by name
                        for p in ("bash", "jq", "less", "sudo")]
    assert out[8] == "audit-clean"
    lock = json.loads((dev_on_base.context / "envnix.lock").read_text())
    base_lock = json.loads((serving_base.context / "envnix.lock").read_text())
    assert int(out[9]) == len(lock["apt"]["packages"]) + len(base_lock["apt"]["packages"])
    assert out[10] == "/bin/bash" and int(out[11]) >= 1, out


@pytest.mark.slow
def test_apt_on_a_base_is_reproducible_and_checks_the_base(
        dev_on_base: Built, tmp_path: Path) -> None:
    again = parse_build(dev_on_base.context, envnix(
        "build", str(dev_on_base.context), "--locked", "-t", "devtools:1", "--store",
        str(tmp_path / "store"), "--out-dir", str(tmp_path / "gen")))
    assert (again.config, again.manifest) == (dev_on_base.config, dev_on_base.manifest)
    lock_path = dev_on_base.context / "envnix.lock"
    text = lock_path.read_text()
    lock = json.loads(text)
    real = lock["base"]["system"]["dpkg_status"]
    lock_path.write_text(text.replace(real, "0" * 64))
    try:
        proc = envnix("build", str(dev_on_base.context), "--locked", "-t", "devtools:1",
                      check=False)
        assert proc.returncode != 0 and "lock again" in proc.stderr, proc.stderr
    finally:
        lock_path.write_text(text)


@pytest.mark.slow
def test_pip_packages_go_to_the_bases_own_python(
        registry: Registry, base_image: Built, tmp_path: Path,
        podman_environ: dict[str, str]) -> None:
    """As envd's pip in the base: no install.python(), so the wheels are locked for the
    base's python3.11 (Debian's, found in its dpkg status) and land where it imports them."""
    context = _locked_on_base(tmp_path / "withsix", registry, 'image="{registry}/team/base:1"',
                              '    install.python_packages(name=["six"])\n')
    lock = json.loads((context / "envnix.lock").read_text())
    assert lock["base"]["python"] == {"provider": "system", "version": "3.11"}
    assert [w["name"] for w in lock["pip"]["wheels"]] == ["six"]
    built = parse_build(context, envnix("build", str(context), "--locked", "-t", "withsix:1"))
    out = podman("run", "--rm", f"oci:{built.layout}", "/usr/bin/python3.11", "-c",
                 "import six; print(six.__file__)", env=podman_environ)
    assert out.stdout.strip() == "/usr/local/lib/python3.11/dist-packages/six.py"

"""--platform linux/arm64: the lock resolves arm64 artifacts from the same mirror and index
(Debian's binary-arm64, manylinux aarch64 wheels) and a two-platform lock holds both; the
arm64 image builds on this amd64 machine (its triggers under the pinned qemu-user-static)
and its python runs under qemu-user; two platforms make one image index, pushed whole to a
real registry on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from _cli import build, envnix
from _conda_channel import build_channel, serve, trivial
from _podman import podman
from _registry import Registry, have_registry_tools

BUILD_ENVD = '''\
def build():
    base(os="debian12", language="python3.11")
    install.python_packages(name=["six"])
'''


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "arm"
    ctx.mkdir()
    (ctx / "build.envd").write_text(BUILD_ENVD)
    return ctx


@pytest.mark.network
def test_lock_for_arm64_and_for_two_platforms(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    (ctx / "build.envd").write_text(BUILD_ENVD.replace('["six"]', '["six", "numpy"]'))
    envnix("lock", "--platform", "linux/arm64", str(ctx))
    data = json.loads((ctx / "envnix.lock").read_text())
    assert "platforms" not in data
    assert data["inputs"]["apt"]["architecture"] == "arm64"
    assert data["inputs"]["pip"]["platform"].startswith("aarch64-manylinux_")
    assert data["image"]["config"]["architecture"] == "arm64"
    assert all("/binary-arm64/" in i["url"] for i in data["apt"]["indexes"])
    arches = {p["arch"] for p in data["apt"]["packages"]}
    assert arches == {"arm64", "all"}
    python = next(p for p in data["apt"]["packages"] if p["name"] == "python3.11-minimal")
    assert python["url"].endswith("_arm64.deb")
    numpy = next(w for w in data["pip"]["wheels"] if w["name"] == "numpy")
    assert numpy["filename"].endswith("_aarch64.whl") and "-cp311-" in numpy["filename"]
    # Without --platform, the lock's platform is kept: it is up to date, not re-locked.
    assert "up to date" in envnix("lock", "--check", str(ctx)).stdout
    stale = envnix("lock", "--check", "--platform", "linux/amd64", str(ctx), check=False)
    assert stale.returncode != 0
    assert "platforms changed: linux/arm64 -> linux/amd64" in stale.stderr

    envnix("lock", "--platform", "linux/amd64,linux/arm64", str(ctx))
    both = json.loads((ctx / "envnix.lock").read_text())
    assert both["inputs"]["apt"]["architecture"] == "amd64"
    arm = both["platforms"]["linux/arm64"]
    assert arm["apt"]["packages"] == data["apt"]["packages"]
    assert arm["pip"] == data["pip"]
    assert arm["image"]["config"]["architecture"] == "arm64"
    assert "toolchain" not in arm and "toolchain" in both
    amd = {p["name"]: p["url"] for p in both["apt"]["packages"]}
    assert amd["python3.11-minimal"].endswith("_amd64.deb")
    assert next(w for w in both["pip"]["wheels"] if w["name"] == "numpy")[
        "filename"].endswith("_x86_64.whl")
    assert "up to date" in envnix("lock", "--check", str(ctx)).stdout


@pytest.mark.network  # the image's Debian packages come from this machine's apt sources
def test_conda_packages_are_locked_for_each_platforms_subdir(tmp_path: Path) -> None:
    root = tmp_path / "channel"
    build_channel(root, [trivial("python", "3.11.2"),  # only solved here, never run
                         trivial("archpkg", "1.0", "linux-64", build="amd_0"),
                         trivial("archpkg", "1.0", "linux-aarch64", build="arm_0")])
    with serve(root, prefixes=("plat",)) as server:
        ctx = _context(tmp_path)
        (ctx / "build.envd").write_text(
            "def build():\n"
            '    base(os="debian12", language="python3.11")\n'
            f'    install.conda_packages(name=["archpkg"], channel=["{server.url("plat")}"])\n')
        envnix("lock", "--platform", "linux/amd64,linux/arm64", str(ctx))
    data = json.loads((ctx / "envnix.lock").read_text())
    arm = data["platforms"]["linux/arm64"]
    assert (data["inputs"]["conda"]["platform"], arm["inputs"]["conda"]["platform"]) == (
        "linux-64", "linux-aarch64")

    def archpkg(section: dict) -> tuple[str, str]:
        p = next(p for p in section["conda"]["packages"] if p["name"] == "archpkg")
        return p["subdir"], p["build"]

    assert archpkg(data) == ("linux-64", "amd_0")
    assert archpkg(arm) == ("linux-aarch64", "arm_0")


def _qemu() -> str:
    qemu = shutil.which("qemu-aarch64-static")
    if qemu is None:
        pytest.fail("qemu-aarch64-static is not installed: run ./scripts/setup")
    return qemu


def _rootfs(layout: str, tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", layout, str(bundle)], check=True,
                   capture_output=True)
    return bundle / "rootfs"


def _arm64_python(rootfs: Path, code: str) -> str:
    """The image's own python3, an aarch64 program, run by qemu-user with the image as its
    library root (what binfmt would do; the machine need not register it)."""
    proc = subprocess.run([_qemu(), "-L", str(rootfs), str(rootfs / "usr/bin/python3"), "-c",
                           code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.network
@pytest.mark.slow
def test_arm64_image_builds_and_its_python_runs_under_qemu(tmp_path: Path) -> None:
    _qemu()
    ctx = _context(tmp_path)
    (ctx / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n')
    built = build(ctx, "--platform", "linux/arm64", "--no-load")
    manifest = json.loads((built.layout / "blobs/sha256" / built.manifest[7:]).read_text())
    config = json.loads((built.layout / "blobs/sha256" / manifest["config"]["digest"][7:])
                        .read_text())
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    rootfs = _rootfs(f"{built.layout}:dev", tmp_path)
    assert (rootfs / "usr/bin/python3.11").read_bytes()[18] == 183  # e_machine: EM_AARCH64
    assert (rootfs / "var/lib/dpkg/arch").read_text() == "arm64\n"
    out = _arm64_python(rootfs, "import platform, ssl, sys; print(platform.machine(), "
                                "sys.version_info[:2], ssl.OPENSSL_VERSION)")
    assert out.startswith("aarch64 (3, 11) OpenSSL 3.")
    # The triggers ran the image's own py_compile under qemu: the stdlib has its bytecode.
    assert (rootfs / "usr/lib/python3.11/__pycache__/os.cpython-311.pyc").is_file()
    # ld.so.cache is what the image's own (aarch64) ldconfig writes, byte for byte.
    subprocess.run([_qemu(), "-L", str(rootfs), str(rootfs / "usr/sbin/ldconfig"), "-r",
                    str(rootfs), "-X", "-C", "/etc/ld.so.cache.ldconfig"], check=True)
    assert (rootfs / "etc/ld.so.cache.ldconfig").read_bytes() == (
        rootfs / "etc/ld.so.cache").read_bytes()


@pytest.mark.network
@pytest.mark.slow
def test_two_platforms_make_one_index_pushed_whole(tmp_path: Path,
                                                   podman_environ: dict[str, str]) -> None:
    if not have_registry_tools():
        pytest.fail("docker-registry, htpasswd or openssl missing: run ./scripts/setup")
    _qemu()
    ctx = _context(tmp_path)
    with Registry(tmp_path / "reg").start() as reg:
        env = {**os.environ, "ENVNIX_REGISTRY_TLS_VERIFY": "false"}
        dest = f"{reg.host}/team/py:1"
        proc = envnix("build", str(ctx), "--platform", "linux/amd64,linux/arm64", "--no-load",
                      "--metadata-file", str(tmp_path / "meta.json"),
                      "--output", f"type=image,name={dest},push=true", env=env)
        meta = json.loads((tmp_path / "meta.json").read_text())
        index = meta["containerimage.digest"]
        assert f"pushed:   {dest}@{index}" in proc.stdout
        assert reg.manifest_digest("team/py", "1") == index
        _, body = reg.manifest("team/py", "1")
        pushed = json.loads(body)
        assert pushed["mediaType"] == "application/vnd.oci.image.index.v1+json"
        platforms = {m["platform"]["architecture"]: m["digest"] for m in pushed["manifests"]}
        assert platforms == {"amd64": meta["envnix.platforms"]["linux/amd64"],
                             "arm64": meta["envnix.platforms"]["linux/arm64"]}
        # Each platform's image is in the registry: the arm64 one pulled as a user would.
        pulled = tmp_path / "pulled"
        subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                        "--override-arch", "arm64", f"docker://{dest}", f"oci:{pulled}:arm"],
                       check=True, capture_output=True)
    rootfs = _rootfs(f"{pulled}:arm", tmp_path)
    assert _arm64_python(rootfs, "import platform; print(platform.machine())") == "aarch64"
    # The host's engine picks its own platform from the index.
    layout = meta["envnix.oci.layout"].removeprefix("oci:")
    out = podman("run", "--rm", f"oci:{layout}:1", "python3", "-c",
                 "import platform; print(platform.machine())", env=podman_environ)
    assert out.stdout.strip() == "x86_64"

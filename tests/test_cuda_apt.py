"""install.cuda from apt packages (--cuda-provider apt): Debian 12's own non-free CUDA 11.8, or
NVIDIA's CUDA apt repository named by ENVNIX_CUDA_APT_REPO.

Offline: the package names per component (serving vs dev), the errors that list what can be
satisfied, flat repositories and the resolver's driver and version-glob handling, the image
config. Network: locks against Debian's real non-free archive and against a flat repository in
NVIDIA's layout whose cuda-cudart-12-4 .deb is repackaged from NVIDIA's PyPI runtime wheel
(tests/_nvidia_apt_repo.py). End to end (slow): both images built and run under podman, no GPU.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from _conda_channel import ChannelInfo, ChannelServer
from _nvidia_apt_repo import LIBRARY_DIR, PREFIX, NvidiaRepo, build_repo, serve_repo
from _podman import podman
from conftest import Built, build, envnix
from test_cuda import DRIVER_DIRS, NO_DRIVER, image_config_of, layer_paths
from test_cuda import error_of as cuda_error_of
from test_cuda import spec_of as cuda_spec_of

from envnix.core import options
from envnix.core.errors import LockError, PackageNotFoundError, UsageError
from envnix.lock.apt import lock_apt
from envnix.lock.apt.index import DebIndex, DebPackage, IndexSnapshot
from envnix.lock.apt.resolver import resolve
from envnix.lock.apt.sources import AptSource, flat_source, machine_apt_sources
from envnix.lock.lockfile import Lock
from envnix.render import cuda_library_dirs, image_config
from envnix.spec import CudaSpec, ImageSpec, cuda_apt

REPO = "http://127.0.0.1:9/cuda/repos/debian12/x86_64"  # never fetched by offline tests
TARGET_LIB = "/usr/local/cuda-12.4/targets/x86_64-linux/lib"


@pytest.fixture(autouse=True)
def no_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says whether NVIDIA's repository is configured."""
    monkeypatch.delenv(options.CUDA_APT_REPO.name, raising=False)
    monkeypatch.delenv("ENVNIX_CUDA_PROVIDER", raising=False)


def spec_of(tmp_path: Path, source: str) -> ImageSpec:
    return cuda_spec_of(tmp_path, source, cuda_provider="apt")


def error_of(tmp_path: Path, source: str) -> str:
    return cuda_error_of(tmp_path, source, cuda_provider="apt")


V0 = 'def build():\n    base(os="{os}", language="python3.11")\n    install.cuda({args})\n'
V1 = ('# syntax=v1\ndef build():\n    base(image="{image}", dev={dev})\n'
      '    install.python()\n    install.cuda({args})\n')


def env_of(spec: ImageSpec, library_dirs: list[str] | None = None) -> dict[str, str]:
    return dict(e.split("=", 1) for e in spec.env_list(library_dirs or []))


# ------------------------------------------------------------------------------------------
# spec: Debian's non-free CUDA 11.8 (debian12, no repository configured)
# ------------------------------------------------------------------------------------------


def test_apt_cuda_alone_brings_no_python(tmp_path: Path) -> None:
    """Unlike the wheels, apt packages need no Python: a v1 image without install.python()
    gets none (and so needs no conda channel)."""
    spec = spec_of(tmp_path, '# syntax=v1\ndef build():\n    base(image="debian:12", dev=False)\n'
                             '    install.cuda(version="11.8", cudnn="")\n')
    assert spec.python is None and spec.cuda is not None and spec.cuda.provider == "apt"


def test_debian_serving_image_gets_the_runtime_alone(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, V1.format(image="debian:12", dev="False",
                                       args='version="11.8", cudnn=""'))
    cuda = spec.cuda
    assert cuda is not None
    assert (cuda.provider, cuda.variant, cuda.components, cuda.requirements) == (
        "apt", "base", ["cudart"], ["libcudart11.0"])
    assert "libcudart11.0" in spec.apt_roots()
    env = env_of(spec, cuda_apt.library_dirs(cuda, ["libcudart11.0"]))
    assert env["LD_LIBRARY_PATH"] == DRIVER_DIRS  # /usr/lib/x86_64-linux-gnu: default path
    assert env["NVIDIA_REQUIRE_CUDA"] == "cuda>=11.8"
    assert "CUDA_HOME" not in env


def test_debian_dev_image_adds_nvrtc_nvcc_and_headers(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, V0.format(os="debian12", args='version="11.8.0", cudnn=""'))
    assert spec.cuda is not None and spec.dev is not None
    assert spec.cuda.requirements == ["libcudart11.0", "libnvrtc11.2", "nvidia-cuda-toolkit",
                                      "libthrust-dev", "libcub-dev", "libcu++-dev"]
    env = env_of(spec)
    assert "cuda" not in env["PATH"] and "CUDA_HOME" not in env  # nvcc is /usr/bin/nvcc


@pytest.mark.parametrize(("args", "message", "hint"), [
    ('version="12.4", cudnn=""',
     "CUDA 12.4 is not in Debian's non-free archive for bookworm; versions that can be "
     "satisfied: 11.8",
     'write version="11.8", or set ENVNIX_CUDA_APT_REPO to NVIDIA\'s CUDA repository for '
     "your release (debian12/x86_64), or a mirror of it"),
    ('version="11.8"',  # envd's default cudnn="8"
     "cuDNN 8 is not in Debian's non-free archive for bookworm (its nvidia-cudnn downloads "
     'cuDNN at install time); versions that can be satisfied: CUDA 11.8 without cuDNN '
     '(cudnn="")',
     'write cudnn="", or set ENVNIX_CUDA_APT_REPO'),
    ('version="11.8.1", cudnn=""', "CUDA 11.8.1 is not in Debian's non-free archive", ""),
])
def test_debian_lists_what_it_can_satisfy(tmp_path: Path, args: str, message: str,
                                          hint: str) -> None:
    text = error_of(tmp_path, V0.format(os="debian12", args=args))
    first, second = text.split("\n", 1)
    assert first.startswith(f"build.envd:3:5: {message}")
    assert second.startswith(hint)


# ------------------------------------------------------------------------------------------
# spec: NVIDIA's repository
# ------------------------------------------------------------------------------------------


def test_ubuntu_without_the_repository_is_a_clear_error(tmp_path: Path) -> None:
    text = error_of(tmp_path, V0.format(os="ubuntu22.04", args='version="12.4", cudnn=""'))
    assert text == (
        "build.envd:3:5: --cuda-provider apt on ubuntu22.04 needs NVIDIA's CUDA apt "
        "repository: ENVNIX_CUDA_APT_REPO is not set\n"
        "set ENVNIX_CUDA_APT_REPO to NVIDIA's CUDA repository for your release "
        "(ubuntu2204/x86_64), or a mirror of it; debian12 also has CUDA 11.8 in Debian's "
        "non-free component")


def test_nvidia_serving_image_with_cudnn(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(options.CUDA_APT_REPO.name, REPO)
    spec = spec_of(tmp_path, V1.format(image="ubuntu:22.04", dev="False",
                                       args='version="12.4", cudnn="8"'))
    assert spec.cuda is not None
    assert (spec.cuda.variant, spec.cuda.requirements) == ("cudnn-runtime", [
        "cuda-cudart-12-4", "libcublas-12-4", "libcudnn8=8.*+cuda12.*", "libnccl2=*+cuda12.4"])
    roots = spec.apt_roots()
    assert {"cuda-cudart-12-4", "libnccl2=*+cuda12.4", "zlib1g"} <= set(roots)
    assert not any("-dev" in r or "nvcc" in r for r in roots)  # serving: runtime only
    env = env_of(spec, cuda_apt.library_dirs(spec.cuda, []))
    assert env["LD_LIBRARY_PATH"] == f"{TARGET_LIB}:{DRIVER_DIRS}"
    assert "CUDA_HOME" not in env and "cuda" not in env["PATH"]


def test_nvidia_dev_image_adds_nvcc_headers_and_nvrtc(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(options.CUDA_APT_REPO.name, REPO)
    dev = spec_of(tmp_path, V1.format(image="debian:12", dev="True",
                                      args='version="12.4", cudnn="9.1"'))
    serving = spec_of(tmp_path, V1.format(image="debian:12", dev="False",
                                          args='version="12.4", cudnn="9.1"'))
    assert dev.cuda is not None and serving.cuda is not None
    assert serving.cuda.requirements == ["cuda-cudart-12-4", "libcublas-12-4",
                                         "libcudnn9-cuda-12=9.1.*", "libnccl2=*+cuda12.4"]
    assert [r for r in dev.cuda.requirements if r not in serving.cuda.requirements] == [
        "libcublas-dev-12-4", "libcudnn9-dev-cuda-12=9.1.*", "libnccl-dev=*+cuda12.4",
        "cuda-nvrtc-12-4", "cuda-nvrtc-dev-12-4", "cuda-nvcc-12-4", "cuda-cudart-dev-12-4",
        "cuda-cccl-12-4"]
    env = env_of(dev)
    assert env["PATH"].endswith(":/usr/local/cuda-12.4/bin")
    assert env["CUDA_HOME"] == "/usr/local/cuda-12.4"


@pytest.mark.parametrize(("args", "message"), [
    ('version="12.4.1", cudnn=""',
     "CUDA 12.4.1: NVIDIA's apt packages are named by MAJOR.MINOR (cuda-cudart-12-4), so the "
     "update cannot be chosen; versions that can be satisfied: 12.4"),
    ('version="12.4", cudnn="7"',
     "cuDNN 7 has no packages in NVIDIA's CUDA repositories (libcudnn8, libcudnn9-cuda-X); "
     "versions that can be satisfied: cuDNN 8, 9"),
    ('version="12"', "CUDA version '12' is not MAJOR.MINOR or MAJOR.MINOR.PATCH"),
])
def test_nvidia_request_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: str,
                               message: str) -> None:
    monkeypatch.setenv(options.CUDA_APT_REPO.name, REPO)
    assert error_of(tmp_path, V0.format(os="ubuntu20.04", args=args)).startswith(
        f"build.envd:3:5: {message}")


def test_custom_base_image_has_no_archive(tmp_path: Path) -> None:
    text = error_of(tmp_path, '# syntax=v1\ndef build():\n'
                              '    base(image="registry.test/team/base:1", dev=False)\n'
                              '    install.python()\n    install.cuda(version="12.4", cudnn="")\n')
    assert "--cuda-provider apt needs a distribution base" in text


def test_library_dirs_come_from_the_lock(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """NVIDIA's packages of another release in the lock (install.apt_packages) get their
    directory too, after the requested release's."""
    monkeypatch.setenv(options.CUDA_APT_REPO.name, REPO)
    spec = spec_of(tmp_path, V1.format(image="debian:12", dev="False",
                                       args='version="12.4", cudnn=""'))
    lock = Lock(inputs={}, apt_packages=[
        {"name": n} for n in ("cuda-cudart-12-4", "cuda-toolkit-12-4-config-common",
                              "libcublas-12-1", "libc6", "libnvjitlink-12-4")])
    assert cuda_library_dirs(spec, lock) == [
        TARGET_LIB, "/usr/local/cuda-12.1/targets/x86_64-linux/lib"]
    env = dict(e.split("=", 1) for e in image_config(spec, lock)["config"]["Env"])
    assert env["LD_LIBRARY_PATH"] == (
        f"{TARGET_LIB}:/usr/local/cuda-12.1/targets/x86_64-linux/lib:{DRIVER_DIRS}")


# ------------------------------------------------------------------------------------------
# lock plumbing, resolver and flat repositories (offline)
# ------------------------------------------------------------------------------------------


def cuda_spec(requirements: list[str], version: str = "12.4", cudnn: str = "") -> CudaSpec:
    return CudaSpec(version=version, cudnn=cudnn, provider="apt",
                    variant="cudnn-runtime" if cudnn else "base",
                    components=["cudart"], requirements=requirements)


def test_lock_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = [AptSource("http://m.test/debian", "bookworm"),
               AptSource("http://m.test/debian-security", "bookworm-security",
                                ("main", "non-free"))]
    with_nonfree = cuda_apt.lock_sources(cuda_spec(["libcudart11.0"], "11.8"), machine)
    assert [s.components for s in with_nonfree] == [("main", "non-free"), ("main", "non-free")]
    nvidia = cuda_spec(["cuda-cudart-12-4"])
    with pytest.raises(UsageError, match="ENVNIX_CUDA_APT_REPO is not set now"):
        cuda_apt.lock_sources(nvidia, machine)
    monkeypatch.setenv(options.CUDA_APT_REPO.name, REPO + "/")
    sources = cuda_apt.lock_sources(nvidia, machine)
    assert sources[:2] == machine
    assert sources[2].to_lock_dict() == {"uri": REPO, "suite": "/", "components": [],
                                         "flat": True}
    assert "flat" not in machine[0].to_lock_dict()  # other locks keep their bytes
    assert cuda_apt.lock_sources(None, machine) == machine
    assert {"libcuda1", "libcuda.so.1", "libnvidia-ml1", "libcuda-12.4-1"} <= set(
        cuda_apt.host_provided(nvidia))
    assert cuda_apt.host_provided(None) == ()


def test_flat_source_urls() -> None:
    flat = flat_source("http://r.test/repo/", "ENVNIX_CUDA_APT_REPO")
    assert (flat.flat, flat.dist_url, flat.files_url) == (
        True, "http://r.test/repo", "http://r.test/repo")
    sub = AptSource("http://r.test/repo", "./sub/", ())
    assert (sub.dist_url, sub.files_url) == ("http://r.test/repo/sub", "http://r.test/repo/sub")
    plain = AptSource("http://m.test/debian", "bookworm")
    assert (plain.flat, plain.dist_url) == (False, "http://m.test/debian/dists/bookworm")
    with pytest.raises(UsageError, match="ENVNIX_CUDA_APT_REPO: an apt repository must be"):
        flat_source("ftp://r.test/repo", "ENVNIX_CUDA_APT_REPO")


def stanza(name: str, version: str, depends: str = "", filename: str | None = None) -> str:
    return (f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
            + (f"Depends: {depends}\n" if depends else "")
            + f"Filename: {filename or f'./{name}_{version}_amd64.deb'}\nSize: 10\n"
            f"SHA256: {'ab' * 32}\n")


def test_resolver_leaves_the_driver_to_the_host_and_takes_version_globs() -> None:
    index = DebIndex.from_packages_text("\n".join([
        stanza("nvidia-cuda-dev", "11.8.89~11.8.0-5~deb12u1",
               "libcudart11.0, libcuda1 (>= 520) | libnvidia-tesla-cuda1 (>= 520) | "
               "libcuda.so.1 (>= 520) | libcuda-11.8-1"),
        stanza("libcudart11.0", "11.8.89~11.8.0-5~deb12u1"),
        stanza("libcuda1", "535.261.03-1", "nvidia-support"),
        stanza("libcudnn8", "8.9.7.29-1+cuda12.2"),
        stanza("libcudnn8", "8.9.7.29-1+cuda11.8"),
        stanza("libcudnn8", "8.9.6.50-1+cuda12.2"),
    ]), REPO, "/")
    with pytest.raises(LockError, match="nvidia-support"):
        resolve(index, ["nvidia-cuda-dev"])  # the driver's own closure
    pins = resolve(index, ["nvidia-cuda-dev"], ("libcuda1", "libcuda.so.1"))
    assert [p.name for p in pins] == ["libcudart11.0", "nvidia-cuda-dev"]
    assert pins[0].url == f"{REPO}/libcudart11.0_11.8.89~11.8.0-5~deb12u1_amd64.deb"
    (cudnn,) = resolve(index, ["libcudnn8=8.*+cuda11.*"])
    assert cudnn.version == "8.9.7.29-1+cuda11.8"
    assert resolve(index, ["libcudnn8=8.9.6.*"])[0].version == "8.9.6.50-1+cuda12.2"
    with pytest.raises(PackageNotFoundError) as info:
        resolve(index, ["libcudnn8=9.*"])
    assert str(info.value) == (
        "apt package libcudnn8=9.* not found in / (amd64); available versions: "
        "8.9.7.29-1+cuda12.2, 8.9.7.29-1+cuda11.8, 8.9.6.50-1+cuda12.2")


def test_index_check_lists_what_the_repository_has() -> None:
    index = DebIndex.from_packages_text("\n".join([
        stanza("cuda-cudart-11-8", "11.8.89-1"), stanza("cuda-cudart-12-1", "12.1.105-1"),
        stanza("cuda-cudart-12-2", "12.2.140-1"), stanza("cuda-cudart-12-4", "12.4.127-1"),
        stanza("libcublas-12-4", "12.4.5.8-1"),
        stanza("libcudnn8", "8.9.7.29-1+cuda12.2"), stanza("libcudnn8", "8.9.7.29-1+cuda11.8"),
        stanza("libcudnn9-cuda-12", "9.1.0.70-1"),
        stanza("libnccl2", "2.21.5-1+cuda12.4"), stanza("libnccl2", "2.20.5-1+cuda12.2"),
        stanza("libcudart11.0", "11.8.89~11.8.0-5~deb12u1"),
    ]), REPO, "/")
    where = f"the CUDA apt repository {REPO}"

    def check(spec: CudaSpec) -> str:
        verify = cuda_apt.index_check(spec, where)
        assert verify is not None
        with pytest.raises(LockError) as info:
            verify(index)
        return str(info.value)

    assert check(cuda_spec(["cuda-cudart-12-6"], "12.6")) == (
        f"CUDA 12.6 is not in {where} (no cuda-cudart-12-6); versions that can be satisfied "
        "there: 11.8, 12.1-12.2, 12.4")
    assert check(cuda_spec(["cuda-cudart-12-4", "libcublas-12-4", "libcudnn9-cuda-12=9.3.*"],
                           cudnn="9.3")) == (
        f"cuDNN 9.3 for CUDA 12 is not in {where} (no libcudnn9-cuda-12=9.3.*); versions that "
        "can be satisfied there: cuDNN 8 (CUDA 11.8, 12.2), 9 (CUDA 12)")
    assert check(cuda_spec(["cuda-cudart-12-1", "libnccl2=*+cuda12.1"], "12.1")) == (
        f"NCCL for CUDA 12.1 is not in {where} (no libnccl2=*+cuda12.1); builds there: "
        "CUDA 12.2, 12.4")
    assert check(cuda_spec(["cuda-cudart-12-2", "libcublas-12-2"], "12.2")).startswith(
        f"{where} has no libcublas-12-2 (CUDA 12.2")
    lines: list[str] = []
    ok = cuda_apt.index_check(cuda_spec(["cuda-cudart-12-4", "libnccl2=*+cuda12.4"]), where,
                              lines.append)
    assert ok is not None
    ok(index)
    assert lines == [f"cuda: CUDA 12.4 from {where}: cuda-cudart-12-4 12.4.127-1"]
    assert cuda_apt.index_check(None, where) is None


# ------------------------------------------------------------------------------------------
# lock against real archives (network)
# ------------------------------------------------------------------------------------------


def lock_cuda_apt(spec: ImageSpec, sources: list[AptSource],
                  progress: list[str] | None = None
                  ) -> tuple[list[AptSource], list[IndexSnapshot],
                             list[DebPackage]]:
    """The apt part of envnix.lock.make_lock for a CUDA spec (without its conda solve)."""
    sources = cuda_apt.lock_sources(spec.cuda, sources)
    indexes, packages = lock_apt(
        sources, spec.apt_roots(), progress=progress.append if progress is not None else None,
        host_provided=cuda_apt.host_provided(spec.cuda),
        check=cuda_apt.index_check(spec.cuda, cuda_apt.describe_source(spec.cuda, sources),
                                   progress.append if progress is not None else None))
    return sources, indexes, packages


@pytest.mark.network
def test_debian_nonfree_dev_closure_has_no_driver(tmp_path: Path) -> None:
    """Debian's nvidia-cuda-toolkit depends on the driver (libcuda1, NVML) through
    nvidia-cuda-dev; those are the host's, so the ~1.6 GB closure must hold neither."""
    spec = spec_of(tmp_path, V0.format(os="debian12", args='version="11.8", cudnn=""'))
    lines: list[str] = []
    sources, indexes, packages = lock_cuda_apt(spec, machine_apt_sources("bookworm"),
                                               lines)
    assert all("non-free" in s.components for s in sources)
    assert ("bookworm", "non-free") in {(i.suite, i.component) for i in indexes}
    pins = {p.name: p for p in packages}
    assert {"libcudart11.0", "libnvrtc11.2", "nvidia-cuda-toolkit", "nvidia-cuda-dev",
            "libcublas11"} <= set(pins)
    assert not {"libcuda1", "libnvidia-ml1", "nvidia-alternative"} & set(pins)
    cudart = pins["libcudart11.0"]
    assert cudart.url.endswith("/pool/non-free/n/nvidia-cuda-toolkit/"
                               f"libcudart11.0_{cudart.version}_amd64.deb")
    assert re.fullmatch(r"[0-9a-f]{64}", cudart.sha256) and cudart.size > 100_000
    assert any(line.startswith("cuda: CUDA 11.8 from Debian's non-free component on ")
               for line in lines)


@pytest.fixture(scope="module")
def nvidia_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NvidiaRepo,
                                                                          ChannelServer]]:
    repo = build_repo(tmp_path_factory.mktemp("nvidia-repo") / "x86_64")
    with serve_repo(repo.root) as server:
        yield repo, server


@pytest.mark.network
def test_lock_from_the_flat_repository(nvidia_repo: tuple[NvidiaRepo, ChannelServer],
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, server = nvidia_repo
    url = server.url(PREFIX)
    monkeypatch.setenv(options.CUDA_APT_REPO.name, url)
    spec = spec_of(tmp_path, V1.format(image="debian:12", dev="False",
                                       args='version="12.4", cudnn=""'))
    sources, indexes, packages = lock_cuda_apt(spec, machine_apt_sources("bookworm"))
    assert sources[-1] == AptSource(url, "/", ())
    flat = indexes[-1]
    assert (flat.uri, flat.suite, flat.url) == (url, "/", f"{url}/Packages.gz")
    pins = {p.name: p for p in packages}
    for name in ("cuda-cudart-12-4", "cuda-toolkit-config-common",
                 "cuda-toolkit-12-config-common", "cuda-toolkit-12-4-config-common"):
        deb = repo.get(name)
        assert (pins[name].url, pins[name].sha256, pins[name].size) == (
            f"{url}/{deb.filename}", deb.sha256, deb.size)
    assert pins["libc6"].url.startswith(sources[0].uri)


@pytest.mark.network
def test_a_release_the_repository_lacks_lists_what_it_has(
        nvidia_repo: tuple[NvidiaRepo, ChannelServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = nvidia_repo[1].url(PREFIX)
    monkeypatch.setenv(options.CUDA_APT_REPO.name, url)
    for args, message in [
        ('version="12.6", cudnn=""',
         f"CUDA 12.6 is not in the CUDA apt repository {url} (no cuda-cudart-12-6); versions "
         "that can be satisfied there: 12.4"),
        ('version="12.4", cudnn="9"',
         f"the CUDA apt repository {url} has no libcublas-12-4 (CUDA 12.4, component packages "
         "of a cudnn-runtime image); CUDA releases there: 12.4"),
    ]:
        spec = spec_of(tmp_path, V1.format(image="debian:12", dev="False", args=args))
        with pytest.raises(LockError) as info:
            lock_cuda_apt(spec, machine_apt_sources("bookworm"))
        assert str(info.value) == message
    monkeypatch.setenv(options.CUDA_APT_REPO.name, url + "/missing")
    spec = spec_of(tmp_path, V1.format(image="debian:12", dev="False",
                                       args='version="12.4", cudnn=""'))
    # The repository answered without the file: a setting to fix (4), not a retry (8).
    with pytest.raises(LockError, match=r"carry a flat apt repository .*\? check "
                                         "ENVNIX_CUDA_APT_REPO$"):
        lock_cuda_apt(spec, machine_apt_sources("bookworm"))


# ------------------------------------------------------------------------------------------
# end to end: images built with Nix, run under podman (no GPU here, none needed)
# ------------------------------------------------------------------------------------------

# ld.so --list of every packaged CUDA library (only libcuda.so.1, the driver's, may be
# missing), then the runtime loaded by soname as an application would: its version, the file
# the loader took, and cudaGetDeviceCount without a driver.
CHECK_APT = r'''
import ctypes, glob, json, os, subprocess, sys
libs = sorted({os.path.realpath(p) for pattern in sys.argv[1:] for p in glob.glob(pattern)})
missing = {}
for lib in libs:
    out = subprocess.run(["/lib64/ld-linux-x86-64.so.2", "--list", lib],
                         capture_output=True, text=True)
    bad = [l.split()[0] for l in out.stdout.splitlines()
           if "not found" in l and not l.split()[0].startswith("libcuda.so")]
    if out.returncode or bad:
        missing[lib] = bad or [out.stderr.strip()]
rt = ctypes.CDLL(os.environ["CUDART"])
version, count = ctypes.c_int(), ctypes.c_int()
rv = rt.cudaRuntimeGetVersion(ctypes.byref(version))
rc = rt.cudaGetDeviceCount(ctypes.byref(count))
loaded = sorted({l.split()[-1] for l in open("/proc/self/maps") if "libcudart" in l})
nvrtc = None
if os.environ.get("NVRTC"):  # NVRTC answers its version and compiles to PTX without a driver
    lib = ctypes.CDLL(os.environ["NVRTC"])
    major, minor, prog = ctypes.c_int(), ctypes.c_int(), ctypes.c_void_p()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    src = b'extern "C" __global__ void k(float *x) { x[threadIdx.x] *= 2; }'
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src, b"k.cu", 0, None, None) == 0
    rc_compile = lib.nvrtcCompileProgram(prog, 0, None)
    size = ctypes.c_size_t()
    lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetPTX(prog, ptx)
    nvrtc = [major.value, minor.value, rc_compile, b".entry k" in ptx.value]
print(json.dumps({"libs": libs, "missing": missing, "runtime": [rv, version.value],
                  "device_count": rc, "loaded": loaded, "nvrtc": nvrtc}))
'''



def serving_context(root: Path, channel_url: str, cuda_args: str,
                    apt: tuple[str, ...] = ()) -> Path:
    """A v1 serving image on debian:12: conda Python from the fixture channel (needing
    libexpat1; ctypes needs libffi8), install.cuda."""
    context = root / "cudaapt"
    context.mkdir()
    names = json.dumps(["libffi8", "libexpat1", *apt])
    (context / "build.envd").write_text(f'''# syntax=v1
def build():
    base(image="debian:12", dev=False)
    install.python()
    install.apt_packages(name={names})
    install.conda_packages(channel=["{channel_url}"])
    install.cuda({cuda_args})
''')
    return context


def run_check(built: Built, podman_environ: dict[str, str], cudart: str,
              *patterns: str, nvrtc: str = "") -> dict:
    """What every apt CUDA image must satisfy; returns the in-image report."""
    paths = layer_paths(built)
    assert not [p for p in paths
                if re.fullmatch(r"libcuda\.so(\.\d+)*", p.rsplit("/", 1)[-1])], \
        "a driver library is baked into the image"
    config = image_config_of(built)["config"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert (env["NVIDIA_VISIBLE_DEVICES"], env["NVIDIA_DRIVER_CAPABILITIES"]) == (
        "all", "compute,utility")
    assert config["Labels"]["ai.tensorchord.envd.gpu"] == "true"
    out = podman("run", "--rm", "-e", f"CUDART={cudart}", "-e", f"NVRTC={nvrtc}",
                 f"oci:{built.layout}", "python", "-c", CHECK_APT, *patterns,
                 env=podman_environ)
    report = json.loads(out.stdout)
    assert report["libs"], f"no packaged library matches {patterns}"
    assert report["missing"] == {}, "shared libraries that do not resolve"
    assert report["device_count"] in NO_DRIVER
    return {**report, "env": env}


@pytest.mark.network
@pytest.mark.slow
def test_debian_nonfree_image_runs_cuda_11_8_without_a_gpu(
        channel: tuple[ChannelInfo, ChannelServer], tmp_path: Path,
        podman_environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVNIX_CUDA_PROVIDER", "apt")
    context = serving_context(tmp_path, channel[1].url("conda/fixture"),
                              'version="11.8", cudnn=""', apt=("libnvrtc11.2",))
    locked = envnix("lock", str(context))
    assert "cuda: CUDA 11.8 from Debian's non-free component on " in locked.stderr
    lock = json.loads((context / "envnix.lock").read_text())
    assert all("non-free" in s["components"] for s in lock["apt"]["sources"])
    debs = {p["name"]: p for p in lock["apt"]["packages"]}
    for name in ("libcudart11.0", "libnvrtc11.2", "libnvrtc-builtins11.8"):
        assert "/pool/non-free/n/nvidia-cuda-toolkit/" in debs[name]["url"], name
        assert re.fullmatch(r"[0-9a-f]{64}", debs[name]["sha256"]), name
    assert not {"libcuda1", "libnvidia-ml1"} & set(debs)
    assert lock["pip"]["wheels"] == []  # no NVIDIA wheels: the apt provider only
    built = build(context, "--locked", "-t", "cudaapt-debian:dev")
    report = run_check(built, podman_environ, "libcudart.so.11.0",
                       "/usr/lib/x86_64-linux-gnu/libcudart.so*",
                       "/usr/lib/x86_64-linux-gnu/libnvrtc*.so*", nvrtc="libnvrtc.so.11.2")
    # CUDA 11's cudaRuntimeGetVersion asks the driver: without one it returns 35
    # (cudaErrorInsufficientDriver), as NVIDIA's own 11.8.89 wheel does; CUDA 12's answers
    # without. The release shows in NVRTC's version and the runtime's file name instead.
    assert report["runtime"] == [35, 0]
    assert report["nvrtc"] == [11, 8, 0, True]
    assert report["loaded"] == ["/usr/lib/x86_64-linux-gnu/libcudart.so.11.8.89"]
    assert {Path(p).name for p in report["libs"]} >= {"libcudart.so.11.8.89",
                                                      "libnvrtc.so.11.8.89"}
    assert report["env"]["LD_LIBRARY_PATH"] == DRIVER_DIRS  # Debian's: the default path
    assert report["env"]["NVIDIA_REQUIRE_CUDA"] == "cuda>=11.8"


@pytest.mark.network
@pytest.mark.slow
def test_nvidia_repository_image_runs_cuda_12_4_without_a_gpu(
        channel: tuple[ChannelInfo, ChannelServer],
        nvidia_repo: tuple[NvidiaRepo, ChannelServer], tmp_path: Path,
        podman_environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    repo, server = nvidia_repo
    url = server.url(PREFIX)
    monkeypatch.setenv("ENVNIX_CUDA_PROVIDER", "apt")
    monkeypatch.setenv(options.CUDA_APT_REPO.name, url)
    context = serving_context(tmp_path, channel[1].url("conda/fixture"),
                              'version="12.4", cudnn=""')
    locked = envnix("lock", str(context))
    assert f"cuda: CUDA 12.4 from the CUDA apt repository {url}: cuda-cudart-12-4 " \
           "12.4.127-1" in locked.stderr
    lock = json.loads((context / "envnix.lock").read_text())
    assert lock["apt"]["sources"][-1] == {"uri": url, "suite": "/", "components": [],
                                          "flat": True}
    cudart = next(p for p in lock["apt"]["packages"] if p["name"] == "cuda-cudart-12-4")
    deb = repo.get("cuda-cudart-12-4")
    assert (cudart["url"], cudart["sha256"]) == (f"{url}/{deb.filename}", deb.sha256)
    built = build(context, "--locked", "-t", "cudaapt-nvidia:dev")
    report = run_check(built, podman_environ, "libcudart.so.12", f"{LIBRARY_DIR}/*.so*")
    assert report["runtime"] == [0, 12040]
    assert report["loaded"] == [f"{LIBRARY_DIR}/libcudart.so.12.4.127"]
    # the packaged directory first, then where the toolkit mounts the driver
    assert report["env"]["LD_LIBRARY_PATH"] == f"{LIBRARY_DIR}:{DRIVER_DIRS}"
    assert report["env"]["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.4"
    assert image_config_of(built)["config"]["Labels"]["ai.tensorchord.envd.gpu.cuda"] == "12.4"

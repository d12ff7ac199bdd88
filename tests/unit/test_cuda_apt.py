"""install.cuda from apt packages (--cuda-provider apt): Debian 12's own non-free CUDA 11.8, or
NVIDIA's CUDA apt repository named by ENVNIX_CUDA_APT_REPO.

Offline: the package names per component (serving vs dev), the errors that list what can be
satisfied, flat repositories and the resolver's driver and version-glob handling, the image
config. Network: locks against Debian's real non-free archive and against a flat repository in
NVIDIA's layout whose cuda-cudart-12-4 .deb is repackaged from NVIDIA's PyPI runtime wheel
(tests/_nvidia_apt_repo.py). End to end (slow): both images built and run under podman, no GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cuda_offline import DRIVER_DIRS
from test_cuda_offline import error_of as cuda_error_of
from test_cuda_offline import spec_of as cuda_spec_of

from envnix.core import options
from envnix.core.errors import LockError, PackageNotFoundError, UsageError
from envnix.lock.apt.index import DebIndex
from envnix.lock.apt.resolver import resolve
from envnix.lock.model import Lock
from envnix.render import cuda_library_dirs, image_config
from envnix.spec import KNOWN_RELEASES, CudaSpec, ImageSpec, cuda_apt
from envnix.spec.apt import AptSource, flat_source

REPO = "http://127.0.0.1:9/cuda/repos/debian12/x86_64"  # never fetched by offline tests
TARGET_LIB = "/usr/local/cuda-12.4/targets/x86_64-linux/lib"

BOOKWORM = KNOWN_RELEASES["debian12"]
JAMMY = KNOWN_RELEASES["ubuntu22.04"]


pytestmark = pytest.mark.usefixtures("no_cuda_repo")


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


def test_ubuntu_takes_nvidias_repository_unless_one_is_set(tmp_path: Path) -> None:
    """envd's CUDA bases are Ubuntu with NVIDIA's packages: without ENVNIX_CUDA_APT_REPO an
    Ubuntu image takes them from NVIDIA's repository for its release."""
    spec = spec_of(tmp_path, V0.format(os="ubuntu22.04", args='version="12.4", cudnn=""'))
    assert spec.cuda is not None and spec.cuda.requirements[0] == "cuda-cudart-12-4"
    assert cuda_apt.repository(spec.os) == f"{cuda_apt.NVIDIA_CUDA_REPOS}/ubuntu2204/x86_64"
    assert cuda_apt.repository(BOOKWORM) is None  # Debian keeps its own non-free CUDA


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
    with_nonfree = cuda_apt.lock_sources(cuda_spec(["libcudart11.0"], "11.8"), machine,
                                         BOOKWORM)
    assert [s.components for s in with_nonfree] == [("main", "non-free"), ("main", "non-free")]
    nvidia = cuda_spec(["cuda-cudart-12-4"])
    with pytest.raises(UsageError, match="ENVNIX_CUDA_APT_REPO is not set now"):
        cuda_apt.lock_sources(nvidia, machine, BOOKWORM)
    # Ubuntu: NVIDIA's own repository for the release, checked against NVIDIA's pinned key
    monkeypatch.delenv(options.CUDA_APT_KEYRING.name, raising=False)
    default = cuda_apt.lock_sources(nvidia, machine, JAMMY)[2]
    assert (default.uri, default.suite, default.anchor) == (
        f"{cuda_apt.NVIDIA_CUDA_REPOS}/ubuntu2204/x86_64", "/", "nvidia")
    monkeypatch.setenv(options.CUDA_APT_REPO.name, REPO + "/")
    monkeypatch.setenv(options.CUDA_APT_KEYRING.name, "/keys/cuda.gpg")
    sources = cuda_apt.lock_sources(nvidia, machine, BOOKWORM)
    assert sources[:2] == machine
    assert sources[2].to_lock_dict() == {"uri": REPO, "suite": "/", "components": [],
                                         "flat": True}
    assert (sources[2].keyring, sources[2].anchor) == ("/keys/cuda.gpg", "")
    assert "flat" not in machine[0].to_lock_dict()  # other locks keep their bytes
    assert cuda_apt.lock_sources(None, machine, BOOKWORM) == machine
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

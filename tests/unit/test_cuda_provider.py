"""The CUDA providers behind one protocol (envnix.spec.cuda_provider).

Every provider --cuda-provider accepts is registered and has the protocol's shape, and what the
stages get through it is what they computed per provider before: the same requirements, the
same errors, the same apt sources, driver packages, index check, library directories and Nix
plan entry. The apt index check reads a real DebIndex, through cuda_apt.PackageIndex only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envnix.core import options
from envnix.core.errors import LockError, SpecError
from envnix.frontend import load_spec
from envnix.lock.apt.index import DebIndex
from envnix.spec import CudaSpec, OsRelease, release_for
from envnix.spec.apt import AptSource
from envnix.spec.cuda import PROVIDERS, components_for, variant_for
from envnix.spec.cuda_apt import DRIVER_PACKAGES, NVIDIA_CUDA_REPOS
from envnix.spec.cuda_provider import CudaProvider, choose, provider

DEBIAN = release_for("debian12")
UBUNTU = release_for("ubuntu22.04")
SITE = "/usr/lib/python3/dist-packages"
MIRROR = [AptSource("http://m.test/debian", "bookworm", ("main",))]


@pytest.fixture(autouse=True)
def no_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian's own CUDA 11.8 for the apt provider unless a test names NVIDIA's repository."""
    monkeypatch.delenv(options.CUDA_APT_REPO.name, raising=False)


def cuda_of(name: str, version: str = "12.4", cudnn: str = "9", dev: bool = False,
            os_release: OsRelease = DEBIAN) -> CudaSpec:
    """The CudaSpec the frontend makes for install.cuda with this provider."""
    components = components_for(cudnn, dev)
    return CudaSpec(version=version, cudnn=cudnn, provider=name,
                    variant=variant_for(cudnn, dev), components=components,
                    requirements=provider(name).requirements(version, cudnn, components,
                                                             os_release))


def error_of(name: str, version: str, cudnn: str, os_release: OsRelease = DEBIAN) -> str:
    with pytest.raises(SpecError) as info:
        provider(name).check_request(version, cudnn, os_release)
    return str(info.value)


def test_every_provider_is_registered_with_the_protocol() -> None:
    for name in PROVIDERS:
        found = provider(name)
        assert isinstance(found, CudaProvider)
        assert found.name == name
    assert [provider(n).installer for n in PROVIDERS] == ["pip", "conda", "apt", "nix"]
    with pytest.raises(SpecError) as info:
        provider("rocm")
    assert str(info.value) == "the rocm CUDA provider is not supported yet"
    assert info.value.hint == "--cuda-provider pypi (NVIDIA's PyPI wheels)"


def test_requirements_per_provider() -> None:
    serving = components_for("9", dev=False)
    assert provider("pypi").requirements("12.4", "9", serving, DEBIAN) == [
        "cuda-toolkit[cublas,cudart]==12.4.*", "nvidia-cudnn-cu12==9.*", "nvidia-nccl-cu12"]
    assert provider("conda").requirements("12.4.1", "9", serving, DEBIAN) == [
        "cuda-version 12.4.*", "cuda-cudart", "libcublas", "cudnn 9.*", "nccl"]
    assert provider("conda").requirements("11.8", "", ["cudart"], DEBIAN) == [
        "cudatoolkit 11.8.*"]
    assert provider("nixpkgs").requirements("12.4", "9", components_for("9", dev=True),
                                            DEBIAN) == [
        "cuda_cudart", "libcublas", "cudnn", "nccl", "cuda_nvrtc", "cuda_nvcc", "cuda_cccl"]
    assert provider("apt").requirements("11.8", "", components_for("", dev=False),
                                        DEBIAN) == ["libcudart11.0"]


def test_requirements_of_nvidia_apt_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(options.CUDA_APT_REPO.name, "http://127.0.0.1:9/cuda")
    assert provider("apt").requirements("12.4", "9", components_for("9", dev=False),
                                        UBUNTU) == [
        "cuda-cudart-12-4", "libcublas-12-4", "libcudnn9-cuda-12", "libnccl2=*+cuda12.4"]


def test_check_request_keeps_each_providers_message() -> None:
    assert error_of("pypi", "10.2", "").startswith(
        "CUDA 10.2 has no NVIDIA wheels on PyPI; versions that can be satisfied: 11.8, ")
    assert error_of("apt", "12.4", "") == (
        "CUDA 12.4 is not in Debian's non-free archive for bookworm; versions that can be "
        "satisfied: 11.8")
    for name in PROVIDERS:
        assert error_of(name, "twelve", "") == (
            "CUDA version 'twelve' is not MAJOR.MINOR or MAJOR.MINOR.PATCH")
    for name in ("conda", "nixpkgs"):  # format only: the channels / nixpkgs decide the rest
        provider(name).check_request("10.2", "7", DEBIAN)


def test_apt_sources_driver_and_index_check_only_for_apt() -> None:
    for name in ("pypi", "conda", "nixpkgs"):
        cuda = cuda_of(name)
        assert provider(name).apt_sources(cuda, MIRROR, DEBIAN) == MIRROR
        assert provider(name).host_provided(cuda) == ()
        assert provider(name).index_check(cuda, MIRROR) is None
    apt = provider("apt")
    cuda = cuda_of("apt", "11.8", "")
    sources = apt.apt_sources(cuda, MIRROR, DEBIAN)
    assert [s.components for s in sources] == [("main", "non-free")]
    assert apt.host_provided(cuda) == (*DRIVER_PACKAGES, "libcuda-11.8-1")
    check = apt.index_check(cuda, sources)
    assert check is not None
    index = DebIndex.from_packages_text(
        "Package: libcudart12\nVersion: 12.0.146~12.0.1-4\nArchitecture: amd64\n"
        f"Filename: ./libcudart12.deb\nSize: 10\nSHA256: {'ab' * 32}\n", "http://m.test", "/")
    with pytest.raises(LockError) as info:
        check(index)
    assert str(info.value) == (
        "CUDA 11.8 is not in Debian's non-free component on http://m.test/debian (no "
        "libcudart11.0); versions that can be satisfied there: 12.0")


def test_library_dirs_and_nix_plan_per_provider() -> None:
    wheels = ["torch", "nvidia-cuda-runtime-cu12", "nvidia-cudnn-cu12", "nvidia-cuda-nvcc-cu12",
              "nvidia-cuda-runtime-cu12"]
    pypi = cuda_of("pypi")
    assert provider("pypi").library_dirs(pypi, SITE, [], wheels) == [
        f"{SITE}/nvidia/cuda_runtime/lib", f"{SITE}/nvidia/cudnn/lib"]
    assert provider("pypi").library_dirs(pypi, None, [], wheels) == []
    assert provider("conda").library_dirs(cuda_of("conda"), SITE, ["libc6"], wheels) == []
    assert provider("apt").library_dirs(cuda_of("apt", "11.8", ""), None,
                                        ["libcudart11.0"], []) == []
    nixpkgs = cuda_of("nixpkgs", dev=True)
    assert provider("nixpkgs").library_dirs(nixpkgs, SITE, [], wheels) == [
        "/usr/local/cuda/lib64"]
    assert provider("nixpkgs").nix_plan(nixpkgs) == {
        "version": "12.4", "packageSet": "cudaPackages_12_4",
        "attrs": ["cuda_cudart", "libcublas", "cudnn", "nccl", "cuda_nvrtc", "cuda_nvcc",
                  "cuda_cccl"],
        "binAttrs": ["cuda_nvcc"], "cudnnMajor": "9"}
    assert [provider(n).nix_plan(cuda_of(n, "11.8", "")) for n in ("pypi", "conda", "apt")] == [
        None, None, None]


def test_library_dirs_of_nvidia_apt_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(options.CUDA_APT_REPO.name, "http://127.0.0.1:9/cuda")
    cuda = cuda_of("apt", "12.4", "", os_release=UBUNTU)
    assert provider("apt").library_dirs(cuda, None, ["cuda-cudart-12-4", "libcublas-12-2"],
                                        []) == [
        "/usr/local/cuda-12.4/targets/x86_64-linux/lib",
        "/usr/local/cuda-12.2/targets/x86_64-linux/lib"]


def test_tools_dir_and_cuda_home_per_provider() -> None:
    def tools(name: str, version: str, site: str | None = SITE) -> tuple[str | None, bool]:
        cuda = cuda_of(name, version, "", dev=True)
        return provider(name).tools_dir(cuda, site), provider(name).is_toolkit(cuda)

    assert tools("pypi", "12.4") == (f"{SITE}/nvidia/cuda_nvcc", False)
    assert tools("pypi", "13.0") == (f"{SITE}/nvidia/cu13", True)
    assert tools("pypi", "13.0", site=None) == (None, True)
    assert tools("conda", "12.4") == (None, False)
    assert tools("nixpkgs", "12.4") == ("/usr/local/cuda", False)
    assert tools("nixpkgs", "13.0") == ("/usr/local/cuda", True)
    assert tools("apt", "11.8") == (None, True)  # Debian's nvcc is /usr/bin/nvcc already


def test_tools_dir_of_nvidia_apt_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(options.CUDA_APT_REPO.name, "http://127.0.0.1:9/cuda")
    cuda = cuda_of("apt", "12.4", "", dev=True, os_release=UBUNTU)
    assert provider("apt").tools_dir(cuda, None) == "/usr/local/cuda-12.4"


def test_choose_falls_back_to_apt_for_a_release_without_wheels(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """NVIDIA's wheels start at 11.8: older releases come from NVIDIA's apt repository (its
    own for an Ubuntu release, or the one ENVNIX_CUDA_APT_REPO names), and the note says so."""
    monkeypatch.delenv(options.CUDA_APT_REPO.name, raising=False)
    assert choose(None, False, "12.4", "9", UBUNTU) == ("pypi", "12.4", None)
    assert choose(None, True, "12.4", "9", UBUNTU)[:2] == ("conda", "12.4")
    name, version, note = choose(None, False, "11.3.1", "8", UBUNTU)
    assert (name, version) == ("apt", "11.3")
    assert note == ("CUDA 11.3.1 has no NVIDIA wheels on PyPI: it comes from NVIDIA's CUDA apt "
                    f"repository {NVIDIA_CUDA_REPOS}/ubuntu2204/x86_64, as CUDA 11.3 (its newest "
                    "packages) (--cuda-provider chooses another)")
    with pytest.raises(SpecError) as info:  # Debian: no repository unless one is named
        choose(None, False, "11.3.1", "8", DEBIAN)
    assert str(info.value).startswith("CUDA 11.3.1 has no NVIDIA wheels on PyPI; versions "
                                      "that can be satisfied: 11.8, ")
    assert info.value.hint == (
        'write e.g. install.cuda(version="12.1", cudnn="8"); or set ENVNIX_CUDA_APT_REPO to '
        "NVIDIA's CUDA repository for your release (debian12/x86_64), or a mirror of it: "
        "envnix then takes CUDA 11.3 from it")
    monkeypatch.setenv(options.CUDA_APT_REPO.name, "http://repo.test/cuda")
    assert "repository http://repo.test/cuda, as CUDA 11.3" in choose(
        None, False, "11.3.1", "8", UBUNTU)[2]
    with pytest.raises(SpecError, match=r"^CUDA 11\.3\.1 has no NVIDIA wheels"):
        choose("pypi", False, "11.3.1", "8", UBUNTU)  # asked for: no second guess
    assert choose("apt", False, "11.3", "8", UBUNTU) == ("apt", "11.3", None)


def test_install_cuda_before_base_is_chosen_with_the_release(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """envd v1 files call install.cuda before base() (or never call base): the choice waits
    until the release is known, so the apt repository is found for an old release then."""
    monkeypatch.delenv(options.CUDA_APT_REPO.name, raising=False)
    assert choose(None, False, "11.6.2", "8", None) == ("pypi", "11.6.2", None)
    (tmp_path / "build.envd").write_text(
        '# syntax=v1\ndef build():\n    install.cuda(version="11.6.2")\n'
        '    base(os="{os}", dev=True)\n    install.python()\n')
    source = (tmp_path / "build.envd").read_text()
    (tmp_path / "build.envd").write_text(source.replace("{os}", "ubuntu22.04"))
    warnings: list[str] = []
    spec = load_spec(tmp_path, warn=warnings.append)
    assert spec.cuda is not None and (spec.cuda.provider, spec.cuda.version) == ("apt", "11.6")
    assert any(f"comes from NVIDIA's CUDA apt repository {NVIDIA_CUDA_REPOS}/ubuntu2204" in w
               for w in warnings)

"""The tests of tests/unit/test_cuda_apt.py that start programs or use the network.

install.cuda from apt packages (--cuda-provider apt): Debian 12's own non-free CUDA 11.8, or
NVIDIA's CUDA apt repository named by ENVNIX_CUDA_APT_REPO.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from _apt_signing import fingerprint
from _cli import Built, build, envnix
from _conda_channel import ChannelInfo, ChannelServer
from _nvidia_apt_repo import LIBRARY_DIR, PREFIX, NvidiaRepo, build_repo, serve_repo
from _podman import podman
from test_cuda import NO_DRIVER, image_config_of, layer_paths
from test_cuda_apt import V0, V1, spec_of
from test_cuda_offline import DRIVER_DIRS

from envnix.core import options
from envnix.core.errors import LockError
from envnix.lock.apt import lock_apt
from envnix.lock.apt.anchors import ANCHORS
from envnix.lock.apt.index import DebPackage, IndexSnapshot
from envnix.lock.apt.sources import machine_apt_sources
from envnix.spec import ImageSpec, cuda_apt
from envnix.spec.apt import AptSource

pytestmark = pytest.mark.usefixtures("no_cuda_repo")

# ------------------------------------------------------------------------------------------
# lock against real archives (network)
# ------------------------------------------------------------------------------------------


def lock_cuda_apt(spec: ImageSpec, sources: list[AptSource],
                  progress: list[str] | None = None
                  ) -> tuple[list[AptSource], list[IndexSnapshot],
                             list[DebPackage]]:
    """The apt part of envnix.lock.make_lock for a CUDA spec (without its conda solve)."""
    sources = cuda_apt.lock_sources(spec.cuda, sources, spec.os)
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
def test_nvidias_key_is_trusted_by_its_pinned_fingerprint(
        nvidia_repo: tuple[NvidiaRepo, ChannelServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ENVNIX_CUDA_APT_KEYRING, envnix takes the key file NVIDIA publishes next to
    InRelease and accepts the repository only when gpgv reports a good signature by NVIDIA's
    pinned fingerprint. The stand-in is signed with the session's test key, so it is refused;
    with the test key's fingerprint pinned instead (NVIDIA's private key being out of
    reach), the same repository verifies and locks."""
    _, server = nvidia_repo
    monkeypatch.setenv(options.CUDA_APT_REPO.name, server.url(PREFIX))
    monkeypatch.delenv(options.CUDA_APT_KEYRING.name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = spec_of(tmp_path, V1.format(image="debian:12", dev="False",
                                       args='version="12.4", cudnn=""'))
    with pytest.raises(LockError, match=r"InRelease: not signed by NVIDIA's CUDA "
                                        r"repository's keys"):
        lock_cuda_apt(spec, machine_apt_sources("bookworm"))
    pinned = dataclasses.replace(ANCHORS["nvidia"], fingerprints=frozenset({fingerprint()}))
    monkeypatch.setitem(ANCHORS, "nvidia", pinned)
    sources, _, packages = lock_cuda_apt(spec, machine_apt_sources("bookworm"))
    assert sources[-1].anchor == "nvidia"
    assert "cuda-cudart-12-4" in {p.name for p in packages}


@pytest.mark.network
def test_a_release_the_repository_lacks_lists_what_it_has(
        nvidia_repo: tuple[NvidiaRepo, ChannelServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = nvidia_repo[1].url(PREFIX)
    monkeypatch.setenv(options.CUDA_APT_REPO.name, url)
    for args, message in [
        ('version="12.6", cudnn=""',
         f"CUDA 12.6 is not in the CUDA apt repository {url} (no cuda-cudart-12-6); versions "
         "that can be satisfied there: 11.7, 12.4"),
        ('version="12.4", cudnn="9"',
         f"the CUDA apt repository {url} has no libcublas-12-4 (CUDA 12.4, component packages "
         "of a cudnn-runtime image); CUDA releases there: 11.7, 12.4"),
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


@pytest.mark.network
@pytest.mark.slow
def test_a_release_without_wheels_comes_from_the_repository_on_its_own(
        channel: tuple[ChannelInfo, ChannelServer],
        nvidia_repo: tuple[NvidiaRepo, ChannelServer], tmp_path: Path,
        podman_environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """install.cuda(version="11.7.1"), as real files write it, and no --cuda-provider:
    NVIDIA's wheels start at 11.8, so envnix takes the repository's 11.7 and says so."""
    repo, server = nvidia_repo
    url = server.url(PREFIX)
    monkeypatch.delenv("ENVNIX_CUDA_PROVIDER", raising=False)
    monkeypatch.setenv(options.CUDA_APT_REPO.name, url)
    context = serving_context(tmp_path, channel[1].url("conda/fixture"),
                              'version="11.7.1", cudnn=""')
    locked = envnix("lock", str(context))
    assert ("warning: CUDA 11.7.1 has no NVIDIA wheels on PyPI: it comes from NVIDIA's CUDA "
            f"apt repository {url}, as CUDA 11.7 (its newest packages) "
            "(--cuda-provider chooses another)") in locked.stderr
    lock = json.loads((context / "envnix.lock").read_text())
    cudart = next(p for p in lock["apt"]["packages"] if p["name"] == "cuda-cudart-11-7")
    deb = repo.get("cuda-cudart-11-7")
    assert (cudart["url"], cudart["sha256"]) == (f"{url}/{deb.filename}", deb.sha256)
    assert lock["pip"]["wheels"] == []
    built = build(context, "--locked", "-t", "cudaapt-auto:dev")
    library_dir = "/usr/local/cuda-11.7/targets/x86_64-linux/lib"
    report = run_check(built, podman_environ, "libcudart.so.11.0", f"{library_dir}/*.so*")
    assert report["runtime"] == [35, 0]  # CUDA 11 asks the driver for its version
    assert report["loaded"] == [f"{library_dir}/libcudart.so.11.7.99"]
    assert report["env"]["LD_LIBRARY_PATH"] == f"{library_dir}:{DRIVER_DIRS}"
    assert report["env"]["NVIDIA_REQUIRE_CUDA"] == "cuda>=11.7"

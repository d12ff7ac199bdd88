"""The tests of tests/unit/test_cuda_conda.py that start programs or use the network.

CUDA from conda packages (the "conda" provider): the spec (provider choice, match specs,
CUDA that env.yaml asks for), the lock against a real channel whose CUDA 12.4 runtime is NVIDIA's
own libcudart repackaged from its PyPI wheel, and an image run under podman without a GPU.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import build, envnix
from _conda_channel import (
    CUDART_WHEEL,
    ChannelInfo,
    ChannelServer,
    build_channel,
    cuda_packages,
    cudart_wheel,
    gcc_available,
    python_available,
    serve,
)
from _podman import podman
from test_cuda import NO_DRIVER, image_config_of, layer_paths
from test_cuda_conda import ENV_FILE_BUILD, SERVING, env_yaml, spec_of
from test_cuda_offline import DRIVER_DIRS

from envnix.core.errors import LockError
from envnix.lock import conda_plan
from envnix.lock.conda import lock_conda
from envnix.spec import CONDA_PREFIX, ImageSpec

GLIBC = "2.36"  # debian12


# ------------------------------------------------------------------------------------------
# lock: the channel with NVIDIA's libcudart (the wheel comes from PyPI)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChannelInfo,
                                                                        ChannelServer]]:
    if not python_available():
        pytest.fail("the fixture channel repackages /usr/bin/python3.11: run ./scripts/setup")
    wheel = cudart_wheel(tmp_path_factory.getbasetemp() / "cudart-wheel")
    work = tmp_path_factory.mktemp("cuda-build")
    info = build_channel(tmp_path_factory.mktemp("channel") / "fixture",
                         extra=cuda_packages(wheel, work))
    with serve(info.root, prefixes=("conda/fixture",)) as server:
        yield info, server


def solve(spec: ImageSpec, context: Path, cache: Path, cuda: str | None = "spec",
          progress: list[str] | None = None) -> dict[str, dict]:
    """lock_conda as make_lock calls it (``cuda="spec"``: the spec's release)."""
    plan = conda_plan(spec)
    assert plan is not None
    release = (spec.cuda.major_minor if spec.cuda else None) if cuda == "spec" else cuda
    entries = lock_conda(plan.specs, plan.channels, glibc=GLIBC, cuda=release, cache_dir=cache,
                         progress=progress.append if progress is not None else None)
    return {e["name"]: e for e in entries}


@pytest.mark.network
def test_lock_pins_the_cuda_packages_by_url_and_sha256(
        channel: tuple[ChannelInfo, ChannelServer], tmp_path: Path) -> None:
    info, server = channel
    url = server.url("conda/fixture")
    spec = spec_of(tmp_path, SERVING.format(names='"cuda12app"', channel=url,
                                            cuda='version="12.4", cudnn=""'))
    lines: list[str] = []
    got = solve(spec, tmp_path, tmp_path / "cache", progress=lines)
    assert {"python", "cuda-version", "cuda-cudart", "cuda12app"} <= set(got)
    cudart = got["cuda-cudart"]
    built = info.get("cuda-cudart")
    assert (cudart["version"], cudart["sha256"], cudart["size"]) == (
        CUDART_WHEEL[1], built.sha256, built.size)
    assert cudart["url"] == f"{url}/linux-64/{built.fn}"
    assert "cudatoolkit" not in got  # cuda-version 12.4 constrains it away
    assert any(line.startswith("cuda: CUDA 12.4 (conda, __cuda 12.4): cuda-cudart 12.4.127, ")
               for line in lines), lines


@pytest.mark.network
def test_env_yaml_pytorch_cuda_sets_the_virtual_package(
        channel: tuple[ChannelInfo, ChannelServer], tmp_path: Path) -> None:
    """pytorch-cuda=12.4 in env.yaml, no install.cuda: __cuda is 12.4, so the package that
    needs a CUDA 12 driver solves; without it the same request fails on __cuda."""
    url = channel[1].url("conda/fixture")
    spec = spec_of(tmp_path, ENV_FILE_BUILD.format(extra=""),
                   env_yaml("pytorch-cuda=12.4", "cuda12app", channel=url))
    got = solve(spec, tmp_path, tmp_path / "cache")
    assert {"pytorch-cuda", "cuda12app", "cuda-cudart", "cuda-version"} <= set(got)
    assert got["cuda-version"]["version"] == "12.4"
    with pytest.raises(LockError) as info:
        solve(spec, tmp_path, tmp_path / "cache", cuda=None)
    assert "__cuda >=12" in str(info.value) and "no __cuda" in str(info.value)


@pytest.mark.network
def test_release_the_channels_lack_lists_the_ones_they_have(
        channel: tuple[ChannelInfo, ChannelServer], tmp_path: Path) -> None:
    url = channel[1].url("conda/fixture")
    spec = spec_of(tmp_path, SERVING.format(names='"pyhello"', channel=url,
                                            cuda='version="12.6", cudnn=""'))
    with pytest.raises(LockError) as info:
        solve(spec, tmp_path, tmp_path / "cache")
    lines = str(info.value).splitlines()
    assert lines[0] == ("conda: CUDA 12.6 cannot be satisfied (linux-64, __glibc 2.36, __cuda "
                        "12.6); versions that can be satisfied there: 11.8 (cudatoolkit), "
                        "12.4 (cuda-version)")
    assert any("cuda-version 12.6.*" in line for line in lines[1:])  # the solver's own words
    assert info.value.hint and "add a channel that has CUDA 12.6" in info.value.hint
    # env.yaml asking for a release the channels lack: the same list.
    spec = spec_of(tmp_path, ENV_FILE_BUILD.format(extra=""),
                   env_yaml("pytorch-cuda=11.8", channel=url))
    with pytest.raises(LockError, match=r"^conda: CUDA 11\.8 cannot be satisfied .*11\.8 "
                                        r"\(cudatoolkit\), 12\.4 \(cuda-version\)\n"):
        solve(spec, tmp_path, tmp_path / "cache")


# ------------------------------------------------------------------------------------------
# end to end: envnix lock / build, the image run under podman (no GPU here, none needed)
# ------------------------------------------------------------------------------------------

CUDART = f"{CONDA_PREFIX}/lib/libcudart.so.12"
CHECK = r'''
import ctypes, json, os, subprocess, sys
lib = sys.argv[1]
out = subprocess.run(["/lib64/ld-linux-x86-64.so.2", "--list", lib], capture_output=True,
                     text=True)
missing = [l.split()[0] for l in out.stdout.splitlines() if "not found" in l]
rt = ctypes.CDLL(lib)
version, count = ctypes.c_int(), ctypes.c_int()
rv = rt.cudaRuntimeGetVersion(ctypes.byref(version))
rc = rt.cudaGetDeviceCount(ctypes.byref(count))
print(json.dumps({"ldso": out.returncode, "missing": missing, "runtime": [rv, version.value],
                  "device_count": rc, "real": os.path.realpath(lib),
                  "ld_library_path": os.environ.get("LD_LIBRARY_PATH")}))
'''


@pytest.mark.network
@pytest.mark.slow
def test_conda_cuda_image_runs_nvidias_runtime_without_a_gpu(
        channel: tuple[ChannelInfo, ChannelServer], tmp_path: Path,
        podman_environ: dict) -> None:
    info, server = channel
    url = server.url("conda/fixture")
    context = tmp_path / "condacuda"
    context.mkdir()
    (context / "build.envd").write_text(SERVING.format(names='"cuda12app"', channel=url,
                                                       cuda='version="12.4", cudnn=""'))
    locked = envnix("lock", str(context))
    assert "cuda: CUDA 12.4 (conda, __cuda 12.4): cuda-cudart 12.4.127" in locked.stderr
    lock = json.loads((context / "envnix.lock").read_text())
    packages = {p["name"]: p for p in lock["conda"]["packages"]}
    built_cudart = info.get("cuda-cudart")
    assert packages["cuda-cudart"]["url"] == f"{url}/linux-64/{built_cudart.fn}"
    assert packages["cuda-cudart"]["sha256"] == built_cudart.sha256
    assert re.fullmatch(r"[0-9a-f]{64}", packages["cuda-version"]["sha256"])
    assert lock["pip"]["wheels"] == []  # no NVIDIA wheel next to the conda runtime
    assert lock["inputs"]["conda"]["cuda"] == "12.4"

    built = build(context, "--locked", "-t", "condacuda:dev")
    paths = layer_paths(built)
    assert not [p for p in paths if re.fullmatch(r"libcuda\.so(\.\d+)*", p.rsplit("/", 1)[-1])]
    config = image_config_of(built)["config"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.4"
    assert (env["NVIDIA_VISIBLE_DEVICES"], env["NVIDIA_DRIVER_CAPABILITIES"]) == (
        "all", "compute,utility")
    assert env["LD_LIBRARY_PATH"] == DRIVER_DIRS  # the env's lib stays off it
    assert config["Labels"]["ai.tensorchord.envd.gpu"] == "true"
    assert config["Labels"]["ai.tensorchord.envd.gpu.cuda"] == "12.4"

    out = podman("run", "--rm", f"oci:{built.layout}", "python", "-c", CHECK, CUDART,
                 env=podman_environ)
    report = json.loads(out.stdout)
    assert (report["ldso"], report["missing"]) == (0, [])
    assert report["runtime"] == [0, 12040]
    assert report["device_count"] in NO_DRIVER
    assert report["real"] == f"{CONDA_PREFIX}/lib/libcudart.so.12.4.127"
    assert report["ld_library_path"] == DRIVER_DIRS
    if gcc_available():  # a conda program finds libcudart through its RPATH alone
        out = podman("run", "--rm", f"oci:{built.layout}", "cuda-runtime-version",
                     env=podman_environ)
        fields = dict(f.split("=") for f in out.stdout.split())
        assert (fields["runtime"], fields["version"]) == ("0", "12040")
        assert int(fields["device_count"]) in NO_DRIVER
    shutil.rmtree(context / ".envnix", ignore_errors=True)

"""CUDA that comes with the pip packages (torch's NVIDIA wheels) and no install.cuda: the lock
names the release, and the image gets NVIDIA's env, library path and envd's GPU labels for it,
exactly as install.cuda of that release would give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli import build, envnix
from test_cuda import check_image, image_config_of
from test_cuda_offline import DRIVER_DIRS, SYSTEM_SITE


def _context(root: Path, packages: str) -> Path:
    context = root / "torchserve"
    context.mkdir()
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        f'    install.python_packages(name=[{packages}])\n')
    return context


@pytest.mark.network
def test_torch_from_pypi_gets_the_gpu_config_of_its_release(tmp_path: Path) -> None:
    """Locked and rendered, not built: torch's CUDA wheels are ~3 GB."""
    context = _context(tmp_path, '"torch==2.5.1"')
    proc = envnix("render", str(context))
    assert ("cuda: CUDA 12.4 comes with the pip packages (nvidia-cuda-runtime-cu12 12.4.127)"
            in proc.stderr)
    config = json.loads((context / "envnix.lock").read_text())["image"]["config"]["config"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.4"
    dirs = env["LD_LIBRARY_PATH"].split(":")
    assert dirs[-2:] == DRIVER_DIRS.split(":")
    for lib in ("cuda_runtime", "cudnn", "cublas", "nccl"):
        assert f"{SYSTEM_SITE}/nvidia/{lib}/lib" in dirs, lib
    assert config["Labels"]["ai.tensorchord.envd.gpu.cuda"] == "12.4"
    assert config["Labels"]["ai.tensorchord.envd.gpu.cudnn"] == "9"
    spec = json.loads(envnix("spec", str(context)).stdout)
    assert spec["cuda"] is None  # only the lock knows; spec says what build.envd asked


@pytest.mark.network
@pytest.mark.slow
def test_runtime_wheel_alone_runs_like_install_cuda(tmp_path: Path,
                                                    podman_environ: dict) -> None:
    context = _context(tmp_path, '"nvidia-cuda-runtime-cu12==12.4.127"')
    built = build(context, "-t", "impliedcuda:dev")
    check_image(built, podman_environ, SYSTEM_SITE, "python3", "libcudart.so.12", 12040)
    env = dict(e.split("=", 1) for e in image_config_of(built)["config"]["Env"])
    assert env["LD_LIBRARY_PATH"] == f"{SYSTEM_SITE}/nvidia/cuda_runtime/lib:{DRIVER_DIRS}"

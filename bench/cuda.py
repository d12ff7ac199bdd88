#!/usr/bin/env python3
"""Benchmark a CUDA 12 serving image with cuDNN (NVIDIA's PyPI wheels): size and cold build.

Figures, each next to a baseline measured in the same run:
- lock vs. nothing (reported as is);
- cold build in a fresh Nix store vs. the download floor (fetching every artifact of the lock
  with urllib + sha256, the network cost any builder pays);
- image size (compressed layers) vs. the artifacts' own bytes, and vs. the library set that
  NVIDIA's ``cudnn-runtime`` image defines (its runtime flavour installs every CUDA shared
  library: cudart, cuBLAS, cuFFT, cuRAND, cuSOLVER, cuSPARSE, NPP, nvJPEG, nvrtc, nvJitLink,
  plus NCCL and cuDNN), resolved here as the same release's wheels: the published image
  itself cannot be pulled from these machines.

Python comes from the conda fixture channel (a v1 serving image has a conda Python), served
on loopback as in the tests. Downloads ~1.5 GB; needs ~8 GB of disk for the fresh store.
envnix seeds the fresh store with the locked artifacts, copied from this machine's store when
it already has them, so a second run's cold build leaves out the download.

Usage:  .venv/bin/python bench/cuda.py [--version 12.4] [--cudnn 9] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from _common import download_floor, envnix, field, image_bytes, print_table, work_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from _conda_channel import build_channel, serve  # noqa: E402

# NVIDIA's runtime image: every CUDA shared library (the cuda-toolkit extras that hold them).
RUNTIME_EXTRAS = ("cudart", "cublas", "cufft", "curand", "cusolver", "cusparse", "npp",
                  "nvjpeg", "nvrtc", "nvjitlink")

MB = 1e6


def nvidia_runtime_set_bytes(version: str, cudnn: str, work: Path) -> tuple[int, int]:
    """(bytes, wheel count) of NVIDIA's cudnn-runtime library set as this release's wheels."""
    from envnix.lock.cuda import lock_cuda_pip
    from envnix.spec import CudaSpec, PipRequest

    major = version.split(".")[0]
    requirements = [f"cuda-toolkit[{','.join(RUNTIME_EXTRAS)}]=={version}.*",
                    f"nvidia-cudnn-cu{major}=={cudnn}.*", f"nvidia-nccl-cu{major}"]
    cuda = CudaSpec(version=version, cudnn=cudnn, provider="pypi", variant="cudnn-runtime",
                    components=[], requirements=requirements)
    wheels = lock_cuda_pip(PipRequest(packages=requirements), work, cuda, "3.11", "2.36")
    return sum(w.size for w in wheels), len(wheels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="12.4", help="CUDA release (default 12.4)")
    parser.add_argument("--cudnn", default="9", help="cuDNN major (default 9)")
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: temp)")
    args = parser.parse_args()
    with work_dir(args.keep, "cuda") as work:
        store = work / "store"
        info = build_channel(work / "channel" / "fixture")
        with serve(info.root, prefixes=("conda/fixture",)) as server:
            context = work / "cudaserve"
            context.mkdir(exist_ok=True)
            (context / "build.envd").write_text(f'''# syntax=v1
def build():
    base(image="debian:12", dev=False)
    install.python()
    install.apt_packages(name=["libffi8", "libexpat1"])
    install.conda_packages(channel=["{server.url("conda/fixture")}"])
    install.cuda(version="{args.version}", cudnn="{args.cudnn}")
''')
            t_lock, _, lock_log = envnix("lock", str(context))
            lock = json.loads((context / "envnix.lock").read_text())
            cuda_wheels = [w for w in lock["pip"]["wheels"]
                           if w["name"].startswith("nvidia-")]
            downloads = work / "downloads"
            downloads.mkdir(exist_ok=True)
            t_floor, artifact_bytes = download_floor(lock, downloads)
            shutil.rmtree(downloads)
            t_cold, out, _ = envnix("build", str(context), "--locked", "--store", str(store))
        compressed, uncompressed, layers = image_bytes(store, field(out, "store"))
        nvidia_bytes, nvidia_count = nvidia_runtime_set_bytes(args.version, args.cudnn, work)

    cuda_bytes = sum(w["size"] for w in cuda_wheels)
    print(next(line for line in lock_log.splitlines() if line.startswith("cuda: cudnn-")))
    print_table([
        ("lock", f"{t_lock:.1f} s", ""),
        ("download floor (urllib + sha256)", f"{t_floor:.1f} s",
         f"{artifact_bytes / MB:.1f} MB of artifacts"),
        ("cold build (fresh store)", f"{t_cold:.1f} s", f"{t_cold / t_floor:.2f}x download floor"),
        ("image, compressed", f"{compressed / MB:.1f} MB",
         f"{layers} layers; {compressed / artifact_bytes:.2f}x the artifacts"),
        ("image, uncompressed", f"{uncompressed / MB:.1f} MB", ""),
        ("CUDA wheels in the image", f"{cuda_bytes / MB:.1f} MB", f"{len(cuda_wheels)} wheels"),
        ("NVIDIA cudnn-runtime library set", f"{nvidia_bytes / MB:.1f} MB",
         f"{nvidia_count} wheels; the image's CUDA is {cuda_bytes / nvidia_bytes:.2f}x of it"),
    ])


if __name__ == "__main__":
    main()

"""--cuda-provider nixpkgs: CUDA from nixpkgs' cudaPackages sets, with their closure in one layer.

nixpkgs is not reachable here, so the generated expression is built against a stand-in nixpkgs
(found through NIX_PATH exactly as the real one would be) that offers what the expression uses:
a ``cudaPackages_12_4`` set whose ``cuda_cudart`` (a multi-output derivation, like nixpkgs')
holds NVIDIA's real libcudart from its PyPI wheel, and ``closureInfo`` built on Nix's
exportReferencesGraph, as nixpkgs' own is. Everything after that is envnix's real path: the
set and attribute selection, the unfree opt-in, builders/nix_closure.py, the layer, the image
config, and the image running under podman.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _cli import build, envnix
from _podman import podman
from test_cuda import check_image, image_config_of
from test_cuda_offline import DRIVER_DIRS, SYSTEM_SITE

from envnix.lock.pip import lock_pip
from envnix.spec import PipRequest
from envnix.toolchain import ensure

CUDART_WHEEL = "nvidia-cuda-runtime-cu12==12.4.127"

STAND_IN = r'''
# A stand-in for nixpkgs (unreachable here) with just what envnix's expression uses.
{ config ? { }, ... }:
let
  system = "x86_64-linux";
  # No host path: the stand-in's builders run on envnix's pinned toolchain, as a real
  # nixpkgs' run on its own python.
  tc = builtins.storePath "@TOOLCHAIN@";
  python = "${tc}/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
  py = [ "--library-path" "${tc}/lib/x86_64-linux-gnu:${tc}/usr/lib/x86_64-linux-gnu"
         "${tc}/usr/bin/python3.11" "-E" "-s" ];
  wheel = import <nix/fetchurl.nix> { url = "@URL@"; sha256 = "@SHA256@"; };
  unpackCudart = ''
import os, zipfile
lib = os.environ["lib"] + "/lib"
os.makedirs(lib)
with zipfile.ZipFile(os.environ["wheel"]) as z:
    for name in z.namelist():
        if name.startswith("nvidia/cuda_runtime/lib/") and ".so" in name:
            path = lib + "/" + name.rsplit("/", 1)[1]
            with open(path, "wb") as f:
                f.write(z.read(name))
            os.chmod(path, 0o755)
os.makedirs(os.environ["out"] + "/share")
with open(os.environ["out"] + "/share/README", "w") as f:
    f.write("cuda_cudart (stand-in)\n")
'';
  marker = name: derivation {
    inherit name system;
    builder = python;
    args = py ++ [ "-c" ''
import os
os.makedirs(os.environ["out"] + "/bin")
path = os.environ["out"] + "/bin/${name}"
with open(path, "w") as f:
    f.write("#!/bin/sh\necho ${name} stand-in\n")
os.chmod(path, 0o755)
'' ];
  } // { version = "12.4.0"; };
  closureScript = ''
import glob, os
paths = set()
for graph in glob.glob("graph*"):
    lines = iter(open(graph).read().splitlines())
    for path in lines:
        next(lines)  # deriver
        for _ in range(int(next(lines))):
            next(lines)
        paths.add(path)
os.makedirs(os.environ["out"])
with open(os.environ["out"] + "/store-paths", "w") as f:
    f.write("".join(p + "\n" for p in sorted(paths)))
'';
in {
  cudaPackages_12_4 = {
    cuda_cudart = derivation {
      name = "cuda_cudart-12.4.127";
      inherit system wheel;
      builder = python;
      args = py ++ [ "-c" unpackCudart ];
      outputs = [ "out" "lib" ];
    } // { version = "12.4.127"; };
    cuda_nvrtc = marker "nvrtc";
    cuda_nvcc = marker "nvcc";
    cuda_cccl = marker "cccl";
    cudnn = marker "cudnn" // { version = "9.1.0"; };
  };
  closureInfo = { rootPaths }: derivation {
    name = "closure-info";
    inherit system;
    builder = python;
    args = py ++ [ "-c" closureScript ];
    exportReferencesGraph = builtins.concatLists (builtins.genList
      (i: [ "graph${toString i}" (builtins.elemAt rootPaths i) ]) (builtins.length rootPaths));
  };
}
'''


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in nixpkgs directory, its cudart from NVIDIA's wheel (locked like any wheel)."""
    root = tmp_path_factory.mktemp("nixpkgs-stand-in")
    [wheel] = lock_pip(PipRequest(packages=[CUDART_WHEEL]), root, "3.11", "2.36")
    (root / "default.nix").write_text(
        STAND_IN.replace("@URL@", wheel.url).replace("@SHA256@", wheel.sha256)
        .replace("@TOOLCHAIN@", ensure()))
    return root


def _context(root: Path, args: str) -> Path:
    context = root / "cudanix"
    context.mkdir()
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        f"    install.cuda({args})\n")
    return context


def _environ(stand_in: Path, allow_unfree: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NIXPKGS_ALLOW_UNFREE"}
    env.update(NIX_PATH=f"nixpkgs={stand_in}", ENVNIX_CUDA_PROVIDER="nixpkgs")
    if allow_unfree:
        env["NIXPKGS_ALLOW_UNFREE"] = "1"
    return env


def test_spec_names_the_set_attributes(tmp_path: Path) -> None:
    context = _context(tmp_path, 'version="12.4.1", cudnn="9"')
    spec = json.loads(envnix("spec", str(context), "--cuda-provider", "nixpkgs").stdout)
    assert spec["cuda"]["provider"] == "nixpkgs"
    assert spec["cuda"]["requirements"] == ["cuda_cudart", "libcublas", "cudnn", "nccl",
                                            "cuda_nvrtc", "cuda_nvcc", "cuda_cccl"]


@pytest.mark.network
def test_unfree_needs_the_users_opt_in(stand_in: Path, tmp_path: Path) -> None:
    context = _context(tmp_path, 'version="12.4", cudnn=""')
    proc = envnix("render", str(context), env=_environ(stand_in, allow_unfree=False),
                  check=False)
    assert proc.returncode == 2, proc.stderr
    assert "CUDA from nixpkgs is unfree" in proc.stderr and "NIXPKGS_ALLOW_UNFREE=1" in proc.stderr
    assert not (context / ".envnix" / "default.nix").exists()


@pytest.mark.network
@pytest.mark.parametrize(("args", "message"), [
    ('version="12.7", cudnn=""',
     "envnix: this nixpkgs has no cudaPackages_12_7 for CUDA 12.7; it has cudaPackages_12_4"),
    ('version="12.4", cudnn="8"',
     "envnix: cudaPackages_12_4.cudnn is 9.1.0, build.envd asks for cuDNN 8"),
])
def test_what_the_nixpkgs_revision_lacks_is_one_line(stand_in: Path, tmp_path: Path,
                                                    args: str, message: str) -> None:
    context = _context(tmp_path, args)
    proc = envnix("build", str(context), env=_environ(stand_in), check=False)
    assert proc.returncode == 6, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.network
@pytest.mark.slow
def test_image_runs_cudart_from_the_store_closure(stand_in: Path, tmp_path: Path,
                                                 podman_environ: dict) -> None:
    context = _context(tmp_path, 'version="12.4", cudnn=""')
    built = build(context, "-t", "cudanix:dev", env=_environ(stand_in))
    check_image(built, podman_environ, SYSTEM_SITE, "python3", "libcudart.so.12", 12040)
    config = image_config_of(built)["config"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["LD_LIBRARY_PATH"] == f"/usr/local/cuda/lib64:{DRIVER_DIRS}"
    assert env["PATH"].endswith(":/usr/local/cuda/bin")
    assert config["Labels"]["ai.tensorchord.envd.gpu.cuda"] == "12.4"
    out = podman("run", "--rm", f"oci:{built.layout}", "python3", "-c",
                 "import os; p = os.path.realpath('/usr/local/cuda/lib64/libcudart.so.12'); "
                 "print(p, os.path.isfile(p), os.path.realpath('/usr/local/cuda/bin/nvcc'))",
                 env=podman_environ).stdout.split()
    assert out[0].startswith("/nix/store/") and out[0].endswith("-lib/lib/libcudart.so.12")
    assert out[1] == "True" and out[2].startswith("/nix/store/")
    # image.nix imports nixpkgs with CUDA's unfree licence accepted only for this set.
    image_nix = (context / ".envnix" / "image.nix").read_text()
    assert "config = { allowUnfree = true; cudaSupport = true; };" in image_nix

"""CUDA from nixpkgs' ``cudaPackages_X_Y`` sets (``--cuda-provider nixpkgs``).

Why a provider of its own: where nixpkgs is reachable, its CUDA derivations are already pinned
by the nixpkgs revision, so nothing is locked for them here; the generated Nix expression picks
the set for the release, checks it has what the image asks for, and puts the libraries and
their closure into one layer (builders/nix_closure.py). nixpkgs marks CUDA unfree: rendering
needs the user's opt-in (NIXPKGS_ALLOW_UNFREE=1, nixpkgs' own switch), and only the separate
nixpkgs import that provides CUDA allows unfree packages.
"""

from __future__ import annotations

import re

from envnix.core.errors import SpecError

# install.cuda's components as cudaPackages attributes.
ATTRIBUTES = {
    "cudart": "cuda_cudart",
    "cublas": "libcublas",
    "cudnn": "cudnn",
    "nccl": "nccl",
    "nvrtc": "cuda_nvrtc",
    "nvcc": "cuda_nvcc",
    "cccl": "cuda_cccl",
}
TOOL_COMPONENTS = ("nvcc",)  # their bin/ goes on PATH (/usr/local/cuda/bin)

LIBRARY_DIR = "/usr/local/cuda/lib64"
TOOLS_DIR = "/usr/local/cuda"


def package_set(version: str) -> str:
    """'12.4' or '12.4.1' -> 'cudaPackages_12_4' (nixpkgs keeps one set per minor)."""
    major, minor = version.split(".")[:2]
    return f"cudaPackages_{major}_{minor}"


def check_request(version: str, cudnn: str) -> None:
    """Format only: which sets exist depends on the nixpkgs revision, and the generated
    expression lists them when the one asked for is missing."""
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", version):
        raise SpecError(f"CUDA version {version!r} is not MAJOR.MINOR or MAJOR.MINOR.PATCH",
                        hint='write e.g. install.cuda(version="12.4", cudnn="9")')
    if cudnn and not re.fullmatch(r"\d+(\.\d+){0,3}", cudnn):
        raise SpecError(f"cuDNN version {cudnn!r} is not a version like '8' or '9.1'",
                        hint='cudnn="" installs no cuDNN')


def requirements_for(components: list[str]) -> list[str]:
    """The cudaPackages attributes for ``components``."""
    return [ATTRIBUTES[c] for c in components]


def plan_entry(version: str, cudnn: str, components: list[str]) -> dict[str, object]:
    """What the Nix expression needs (plan.json "nixpkgsCuda")."""
    return {
        "version": version,
        "packageSet": package_set(version),
        "attrs": requirements_for(components),
        "binAttrs": [ATTRIBUTES[c] for c in components if c in TOOL_COMPONENTS],
        "cudnnMajor": cudnn.split(".")[0] if cudnn else "",
    }

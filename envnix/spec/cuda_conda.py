"""CUDA from conda packages (the "conda" provider): which packages give each component of a
CUDA release, and which release an env.yaml already asks for.

Why conda packages for conda envs: the env's frameworks (pytorch, jax, cupy, ...) are built
against the channels' CUDA packages, and the solver keeps them consistent with the release only
when CUDA is part of the same solve. The solver's ``__cuda`` virtual package is set from the
requested release (envnix.lock.conda), so builds for that release are chosen whatever GPU the
build host has.

Names follow the conda-forge/NVIDIA channel layout:

* CUDA >= 12 is split per component, and every component package depends on the
  ``cuda-version`` metapackage of its release (``cuda-version >=12.4,<12.5.0a0``). Pinning
  ``cuda-version X.Y`` therefore pins the release of *every* CUDA package in the env, including
  those a framework pulls, so the components can be named without versions: ``cuda-cudart``,
  ``libcublas``, ``cudnn M.*``, ``nccl``, and for dev images ``cuda-nvrtc``, ``cuda-nvcc``,
  ``cuda-cccl``. ``cuda-version`` exists per minor only, so a patch level (``12.4.1``) is read
  as its minor.
* CUDA <= 11 is the monolithic ``cudatoolkit X.Y`` (runtime, cuBLAS, NVRTC, cuFFT, ... in one
  package, no compiler), plus ``cudnn``/``nccl``; dev images add ``cuda-nvcc X.Y`` (only
  NVIDIA's channel has it for CUDA 11).

Library path: conda packages find each other's libraries through their RPATH
(``$ORIGIN/../lib``), as in any conda env, so the env's ``lib`` is deliberately *not* put on
``LD_LIBRARY_PATH``: globally it would shadow the distribution's libraries (libstdc++, libz,
libssl, ...) for every ``/usr/bin`` tool in the image. The image's ``LD_LIBRARY_PATH`` holds
only the driver's mount points, where the NVIDIA container toolkit puts ``libcuda.so.1``
(envnix.render.cuda_library_dirs gives no directories for this provider).

Offline (``envnix spec``) only the format is checked: which releases exist is the channels'
business, and the lock lists the ones they have when a release is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from envnix.core.errors import SpecError

SPLIT_FROM = 12
"""The first CUDA major whose conda packages are split per component (``cuda-version``)."""

RELEASE_PACKAGE = "cuda-version"
TOOLKIT_PACKAGE = "cudatoolkit"

# Component (envnix.spec.cuda.COMPONENTS) -> conda package, CUDA >= 12.
PACKAGES: dict[str, str] = {
    "cudart": "cuda-cudart",
    "cublas": "libcublas",
    "cudnn": "cudnn",
    "nccl": "nccl",
    "nvrtc": "cuda-nvrtc",
    "nvcc": "cuda-nvcc",
    "cccl": "cuda-cccl",
}

# Packages whose version *is* a CUDA release (or names one by its version): an env.yaml
# dependency on one of them asks the image for that release.
REQUEST_PACKAGES = ("pytorch-cuda", "cuda-version", "cudatoolkit", "cuda-toolkit",
                    "cuda-runtime", "cuda-cudart", "cuda-libraries")

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")
_CUDNN_RE = re.compile(r"^(\d+)(?:\.\d+){0,3}$")
# A version spec that names one release: 12.4, 12.4.*, ==12.4.127, 11.3.1.*, 12.4* ...
_RELEASE_SPEC_RE = re.compile(r"^(?:==?)?(\d+)\.(\d+)(?:\.[0-9A-Za-z_]+)*(?:\.?\*)?$")
# ... or a range within one minor, as packages write it: >=12.4,<12.5 (or <12.5.0a0).
_MINOR_RANGE_RE = re.compile(r"^>=(\d+)\.(\d+)(?:\.\d+)*,<(\d+)\.(\d+)(?:\.0)?(?:a0)?$")


def check_request(version: str, cudnn: str) -> None:
    """SpecError unless ``version``/``cudnn`` are well-formed; whether the channels have the
    release is decided at lock time (the lock error lists the releases they have)."""
    m = _VERSION_RE.match(version)
    if not m:
        raise SpecError(f"CUDA version {version!r} is not MAJOR.MINOR or MAJOR.MINOR.PATCH",
                        hint='write e.g. install.cuda(version="12.4", cudnn="9")')
    if cudnn and not _CUDNN_RE.match(cudnn):
        raise SpecError(f"cuDNN version {cudnn!r} is not a version like '8' or '9.1'",
                        hint='cudnn="" installs no cuDNN')


def major_minor(version: str) -> str:
    """'12.4.1' -> '12.4'."""
    return ".".join(version.split(".")[:2])


def requirements_for(version: str, cudnn: str, components: Sequence[str]) -> list[str]:
    """The conda match specs that give ``components`` of CUDA ``version``."""
    major = int(version.split(".")[0])
    release = major_minor(version)
    if major >= SPLIT_FROM:
        lines = [f"{RELEASE_PACKAGE} {release}.*"]
        for component in components:
            name = PACKAGES[component]
            lines.append(f"{name} {cudnn}.*" if component == "cudnn" else name)
        return lines
    # CUDA 11: cudatoolkit holds cudart, cuBLAS and NVRTC; its versions are the release's own
    # (11.3.1), so a patch level is kept.
    toolkit = version if version.count(".") == 2 else release
    lines = [f"{TOOLKIT_PACKAGE} {toolkit}.*"]
    if "cudnn" in components:
        lines.append(f"cudnn {cudnn}.*")
    if "nccl" in components:
        lines.append("nccl")
    if "nvcc" in components:
        lines.append(f"cuda-nvcc {release}.*")
    return lines


def release_pin(version: str) -> list[str]:
    """What keeps a CUDA release that env.yaml asked for consistent, without adding
    components: ``cuda-version X.Y`` for CUDA >= 12 (every component package depends on it).
    CUDA 11 packages share no such pin across channels (a ``cudatoolkit`` requirement would
    add a second, monolithic toolkit next to NVIDIA's split 11.8 packages), so nothing."""
    if int(version.split(".")[0]) >= SPLIT_FROM:
        return [f"{RELEASE_PACKAGE} {major_minor(version)}.*"]
    return []


def _parse(dependency: str) -> tuple[str, str | None] | None:
    """(package name, version spec or None) of a conda match spec; ``chan::`` is dropped."""
    from rattler import MatchSpec  # deferred: only conda users pay for the import

    text = dependency.split("::", 1)[-1].strip()
    try:
        spec = MatchSpec(text, strict=False)
    except Exception:  # the env.yaml reader reports invalid specs with their line
        return None
    if spec.name is None:
        return None
    return spec.name.normalized, (str(spec.version) if spec.version is not None else None)


def _release(dependency: str, name: str, version: str | None, origin: str) -> str:
    """The major.minor that ``version`` (the dependency's version spec) names, or SpecError."""
    example = "11.8" if name == TOOLKIT_PACKAGE else "12.4"  # cudatoolkit stops at 11.8
    hint = f"pin one release, e.g. {name}={example}"
    if version is None:
        raise SpecError(f"{origin}: {dependency!r} asks for CUDA but names no version; "
                        "the image's CUDA release (NVIDIA_REQUIRE_CUDA, the solver's __cuda) "
                        "needs one", hint=hint)
    text = version.replace(" ", "")
    m = _RELEASE_SPEC_RE.match(text)
    r = _MINOR_RANGE_RE.match(text)
    if r and r[1] == r[3] and int(r[2]) + 1 == int(r[4]):
        return f"{int(r[1])}.{int(r[2])}"
    if not m:
        raise SpecError(f"{origin}: {dependency!r} asks for CUDA but names no single release "
                        f"({version})", hint=hint)
    return f"{int(m[1])}.{int(m[2])}"


def implied_request(dependencies: Iterable[str],
                    origin: str = "env.yaml") -> tuple[str, str] | None:
    """The CUDA release that conda dependencies ask for, as (major.minor, the spec as written);
    None when they ask for none.

    ``pytorch-cuda=11.8``, ``cudatoolkit=11.3.1=h2bc3f7f_2``, ``cuda-version=12.4``,
    ``nvidia::cuda-cudart=12.4.127`` ... all name a release by their version. A CUDA package
    without a version, or two that disagree, is a SpecError naming ``origin``.
    """
    found: tuple[str, str] | None = None
    for dependency in dependencies:
        parsed = _parse(dependency)
        if parsed is None or parsed[0] not in REQUEST_PACKAGES:
            continue
        release = _release(dependency, parsed[0], parsed[1], origin)
        if found is None:
            found = (release, dependency)
        elif found[0] != release:
            raise SpecError(f"{origin}: {found[1]!r} and {dependency!r} ask for different CUDA "
                            f"releases ({found[0]} and {release}); an image has one",
                            hint="keep the CUDA packages of one release")
    return found


def implied_cudnn(dependencies: Iterable[str]) -> str:
    """The cuDNN major of a ``cudnn`` dependency (``cudnn=8.9.2.26=cuda11_0`` -> "8"); "" when
    there is none or it names no version (envd's GPU label then says nothing of cuDNN)."""
    for dependency in dependencies:
        parsed = _parse(dependency)
        if parsed and parsed[0] == "cudnn" and parsed[1]:
            m = re.match(r"^(?:==?)?(\d+)", parsed[1])
            if m:
                return m[1]
    return ""


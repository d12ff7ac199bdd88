"""CUDA from NVIDIA's PyPI wheels: which releases exist, which wheels an image gets, and where
their libraries land.

Why PyPI: for a pip or distribution Python these are the wheels torch itself pulls, installed
into site-packages like any other wheel and pinned by URL + sha256 in envnix.lock. NVIDIA's
``cuda-toolkit`` metapackage on PyPI pins every component of each CUDA release (its extras
``cudart``, ``cublas``, ``nvcc``, ... and ``all``); envnix requests components through it, so
the versions of cudart, cuBLAS, nvrtc, ... always belong to one release. cuDNN and NCCL are not
part of the toolkit: they are requested by name for the CUDA major (``nvidia-cudnn-cu12``).

Only this table is consulted offline (``envnix spec``); at lock time the index decides
(``envnix.lock.cuda``), so a release newer than the table still works.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from envnix.core.errors import SpecError

# CUDA releases with NVIDIA wheels, i.e. the versions of the ``cuda-toolkit`` metapackage,
# with the cuDNN majors of ``nvidia-cudnn-cuNN`` for each CUDA major. Measured 2026-11-26 from
# PyPI's simple API:
#   curl -H 'Accept: application/vnd.pypi.simple.v1+json' https://pypi.org/simple/cuda-toolkit/
#   (and .../nvidia-cudnn-cu11/, -cu12/, -cu13/)
# and each CUDA minor with each cuDNN major resolved by
#   uv pip compile --python-platform x86_64-manylinux_2_36 --python-version 3.11 \
#     --only-binary :all:   ('cuda-toolkit[cudart,cublas]==X.Y.*' 'nvidia-cudnn-cuNN==M.*')
# (tests/integration/test_cuda.py::test_table_matches_the_index re-checks it against PyPI).
# There is no CUDA 12.7; CUDA 11.7 has runtime wheels but no cuda-toolkit pins, so it is left out.
TOOLKIT_RELEASES: tuple[str, ...] = (
    "11.8.0",
    "12.0.0", "12.0.1", "12.1.0", "12.1.1", "12.2.0", "12.2.1", "12.2.2",
    "12.3.0", "12.3.1", "12.3.2", "12.4.0", "12.4.1", "12.5.0", "12.5.1",
    "12.6.0", "12.6.1", "12.6.2", "12.6.3", "12.8.0", "12.8.1", "12.8.2.0",
    "12.9.0", "12.9.1", "12.9.2.0",
    "13.0.0", "13.0.1", "13.0.2", "13.0.3.0", "13.1.0", "13.1.1", "13.1.2.0",
    "13.2.0", "13.2.1", "13.2.2", "13.3.0", "13.3.1", "13.4.1.0", "13.4.2", "13.4.3", "13.5.0",
)
CUDNN_MAJORS: dict[int, tuple[int, ...]] = {11: (8, 9), 12: (8, 9), 13: (9,)}

# Where an image's CUDA libraries can come from. "pypi": NVIDIA's wheels in site-packages (what
# torch itself pulls); "conda": conda packages solved with the env (``__cuda`` set from the
# release); "apt": distribution or NVIDIA apt packages; "nixpkgs": cudaPackages (unfree opt-in).
PROVIDERS = ("pypi", "conda", "apt", "nixpkgs")


def choose_provider(asked: str | None, conda_packages: bool) -> str:
    """The provider for an image: what was asked (--cuda-provider), else conda packages when
    the image installs conda packages (the solver then keeps CUDA and the env's frameworks
    consistent), else NVIDIA's wheels (a conda Python with only pip packages gets wheels, as
    it would need a channel for CUDA otherwise)."""
    if asked:
        if asked not in PROVIDERS:
            raise SpecError(f"unknown CUDA provider {asked!r} (known: {', '.join(PROVIDERS)})")
        return asked
    return "conda" if conda_packages else "pypi"


# What each component is, as a cuda-toolkit extra (None: a wheel of its own).
COMPONENTS: dict[str, str | None] = {
    "cudart": "cudart",   # the CUDA runtime, libcudart (+ its headers)
    "cublas": "cublas",   # cuBLAS / cuBLASLt; cuDNN needs it
    "cudnn": None,        # nvidia-cudnn-cuNN, the major asked for
    "nccl": None,         # nvidia-nccl-cuNN, multi-GPU collectives (in NVIDIA's runtime image)
    "nvrtc": "nvrtc",     # runtime compilation (dev: JIT of CUDA C++)
    "nvcc": "nvcc",       # CUDA <= 12: ptxas + libnvvm only; CUDA >= 13: the full nvcc
    "cccl": "cccl",       # Thrust / CUB / libcu++ headers
}
DEV_COMPONENTS = ("nvrtc", "nvcc", "cccl")

# Where the NVIDIA container toolkit mounts the host driver's libraries (libcuda.so.1, ...).
DRIVER_LIBRARY_DIRS = ("/usr/local/nvidia/lib64", "/usr/local/nvidia/lib")

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")
_CUDNN_RE = re.compile(r"^(\d+)(?:\.\d+){0,3}$")


def release_key(version: str) -> tuple[int, ...]:
    """'12.8.2.0' -> (12, 8, 2, 0); the key releases are compared and matched by."""
    return tuple(int(p) for p in version.split("."))


def matches(release: str, requested: str) -> bool:
    """True when the toolkit ``release`` is what ``requested`` ("12.1" or "12.1.1") means."""
    want = release_key(requested)
    return release_key(release)[: len(want)] == want


def satisfiable_summary(releases: Iterable[str] = TOOLKIT_RELEASES) -> str:
    """The CUDA minors in ``releases`` as a short list: '11.8, 12.0-12.6, 12.8-12.9, ...'."""
    minors = sorted({release_key(r)[:2] for r in releases})
    runs: list[list[tuple[int, ...]]] = []
    for minor in minors:
        if runs and runs[-1][-1][0] == minor[0] and runs[-1][-1][1] + 1 == minor[1]:
            runs[-1].append(minor)
        else:
            runs.append([minor])

    def show(m: tuple[int, ...]) -> str:
        return f"{m[0]}.{m[1]}"

    return ", ".join(show(r[0]) if len(r) == 1 else f"{show(r[0])}-{show(r[-1])}"
                     for r in runs)


def check_request(version: str, cudnn: str) -> None:
    """SpecError unless NVIDIA's wheels can give CUDA ``version`` with cuDNN ``cudnn``.

    A release newer than the table, in a CUDA major the table knows, is let through: the
    index is asked at lock time.
    """
    hint = 'write e.g. install.cuda(version="12.1", cudnn="8")'
    m = _VERSION_RE.match(version)
    if not m:
        raise SpecError(f"CUDA version {version!r} is not MAJOR.MINOR or MAJOR.MINOR.PATCH",
                        hint=hint)
    major = int(m[1])
    want = release_key(version)
    known = [r for r in TOOLKIT_RELEASES if release_key(r)[0] == major]
    same_minor = [r for r in known if release_key(r)[:2] == want[:2]]
    # Releases after the table's newest minor (or updates of it) are for the index to judge.
    newer = bool(known) and want[:2] >= max(release_key(r)[:2] for r in known)
    if not any(matches(r, version) for r in known) and not newer:
        also = (f" (CUDA {m[1]}.{m[2]} has updates {', '.join(same_minor)})"
                if same_minor else "")
        raise SpecError(
            f"CUDA {version} has no NVIDIA wheels on PyPI{also}; versions that can be "
            f"satisfied: {satisfiable_summary()}", hint=hint)
    if cudnn:
        c = _CUDNN_RE.match(cudnn)
        if not c:
            raise SpecError(f"cuDNN version {cudnn!r} is not a version like '8' or '9.1'",
                            hint='cudnn="" installs no cuDNN')
        majors = CUDNN_MAJORS.get(major, ())
        if int(c[1]) not in majors:
            have = ", ".join(map(str, majors))
            raise SpecError(
                f"cuDNN {cudnn} has no wheels for CUDA {major} (nvidia-cudnn-cu{major}); "
                f"versions that can be satisfied: cuDNN {have}",
                hint=f'write cudnn="{majors[-1]}", or cudnn="" for no cuDNN' if majors else hint)


def components_for(cudnn: str, dev: bool) -> list[str]:
    """The wheels an image gets; see README "CUDA" for why.

    Serving images get runtime libraries only: with cuDNN (envd's default) the CUDA runtime,
    cuBLAS (cuDNN's own dependency), cuDNN and NCCL, as in NVIDIA's ``cudnn-runtime`` image;
    ``cudnn=""`` asks for the CUDA runtime alone (NVIDIA's ``base`` image), and any other
    library then comes only from pip packages that need it, at the same release's versions.
    Dev images add what compiling for CUDA needs: nvrtc, nvcc (ptxas/nvvm) and CCCL headers.
    """
    parts = ["cudart"] + (["cublas", "cudnn", "nccl"] if cudnn else [])
    if dev:
        parts += DEV_COMPONENTS
    return parts


def variant_for(cudnn: str, dev: bool) -> str:
    """The nvidia/cuda image flavour the components correspond to (for people comparing)."""
    if dev:
        return "cudnn-devel" if cudnn else "devel"
    return "cudnn-runtime" if cudnn else "base"


def requirements_for(version: str, cudnn: str, components: Sequence[str]) -> list[str]:
    """The pip requirement lines for ``components`` of CUDA ``version``.

    ``cuda-toolkit[extras]==X.Y.*`` takes the newest update of the release (the lock may fall
    back to an older update that the image's other packages agree with); X.Y.Z names one.
    """
    major = release_key(version)[0]
    extras = sorted(e for c in components if (e := COMPONENTS[c]))
    toolkit = "==" + (version if version.count(".") == 2 else version + ".*")
    lines = [f"cuda-toolkit[{','.join(extras)}]{toolkit}"]
    if "cudnn" in components:
        lines.append(f"nvidia-cudnn-cu{major}=={cudnn}.*")
    if "nccl" in components:
        lines.append(f"nvidia-nccl-cu{major}")
    return lines


def gpu_labels(version: str, cudnn: str) -> dict[str, str]:
    """envd's labels for a GPU image."""
    labels = {"ai.tensorchord.envd.gpu": "true", "ai.tensorchord.envd.gpu.cuda": version}
    if cudnn:
        labels["ai.tensorchord.envd.gpu.cudnn"] = cudnn
    return labels


def implied_by_wheels(wheels: Iterable[tuple[str, str]]) -> tuple[str, str, str] | None:
    """The CUDA release that locked wheels bring without install.cuda, as (major.minor,
    cuDNN major or "", what says so); None when they bring none.

    torch (and jax, cupy, ...) from PyPI depend on NVIDIA's component wheels, so the
    nvidia-cuda-runtime wheel's version is the release. A framework wheel with a ``+cuXYZ``
    local version bundles its own CUDA libraries: XYZ is the release then.
    """
    wheels = list(wheels)
    cudnn = next((v.split(".")[0] for n, v in wheels
                  if re.fullmatch(r"nvidia-cudnn-cu\d+", _normalise(n))), "")
    for name, version in wheels:
        if re.fullmatch(r"nvidia-cuda-runtime(-cu\d+)?", _normalise(name)):
            return ".".join(version.split(".")[:2]), cudnn, f"{name} {version}"
    for name, version in wheels:
        m = re.search(r"\+cu(\d+)(\d)$", version)
        if m:
            return f"{m[1]}.{m[2]}", cudnn, f"{name} {version}"
    return None


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def library_dir(wheel: str, major: int) -> str | None:
    """Where an NVIDIA wheel keeps its shared libraries, relative to site-packages.

    CUDA <= 12 wheels (and cuDNN/NCCL of every major) are ``nvidia-<x>-cuNN`` with libraries in
    ``nvidia/<x>/lib``; CUDA >= 13 toolkit wheels drop the suffix and share ``nvidia/cuNN/lib``.
    Header- and tool-only wheels have no library directory.
    """
    name = _normalise(wheel)
    if not name.startswith("nvidia-") or name in _NO_LIBRARIES:
        return None
    m = re.fullmatch(r"nvidia-(.+)-cu(\d+)", name)
    if m:
        if m[1] in ("cuda-cccl", "cuda-nvcc"):
            return None
        return f"nvidia/{m[1].replace('-', '_')}/lib"
    if major >= 13:
        return f"nvidia/cu{major}/lib"
    return None


# Unsuffixed nvidia-* wheels that hold no shared libraries (headers, tools, pure Python).
_NO_LIBRARIES = frozenset({"nvidia-cuda-cccl", "nvidia-cuda-crt", "nvidia-cuda-nvcc",
                           "nvidia-ml-py"})

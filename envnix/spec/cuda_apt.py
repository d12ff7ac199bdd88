"""CUDA from apt packages (``--cuda-provider apt``): NVIDIA's CUDA apt repository, or Debian's
own non-free packages, resolved with the same apt resolver as the rest of the image.

Why two sources: NVIDIA's repository (``cuda-cudart-12-4``, ``libcublas-12-4``, ``libcudnn8``,
``libnccl2``) has every release but is not an archive envnix can assume, so the user names it
(or a mirror of it) with ENVNIX_CUDA_APT_REPO; Debian 12 carries one release, CUDA 11.8, in its
non-free component on the mirror the image already uses, so a debian12 image gets it without
any other repository. Ubuntu's archive has no usable CUDA, so Ubuntu bases need the repository.

Where files land decides the loader path: NVIDIA's packages install into
``/usr/local/cuda-X.Y/targets/x86_64-linux/lib`` (found through ld.so.conf.d entries and
``ldconfig`` in a normal install; envnix runs no maintainer scripts, so the image's
LD_LIBRARY_PATH names the directory), cuDNN and NCCL into ``/usr/lib/x86_64-linux-gnu`` like
Debian's own CUDA libraries (the default path). The GPU driver's user-space part (``libcuda1``,
NVML) is never installed: NVIDIA's container toolkit mounts the host's at run time.

Offline (``envnix spec``) only the shape of a request and Debian's one release are checked; the
repository decides the rest when locking (:func:`index_check` lists what it has).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from envnix.core import options
from envnix.core.errors import LockError, SpecError, UsageError
from envnix.core.progress import Progress
from envnix.spec.apt import AptSource, flat_source
from envnix.spec.cuda import satisfiable_summary

if TYPE_CHECKING:
    from envnix.spec import CudaSpec, OsRelease


# Debian's non-free CUDA, per codename: (CUDA release, what each component is). Measured from
# bookworm's non-free/binary-amd64/Packages (nvidia-cuda-toolkit 11.8.89~11.8.0-5~deb12u1):
# no cuDNN (nvidia-cudnn there downloads it at install time) and no NCCL.
DEBIAN_CUDA: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "bookworm": ("11.8", {
        "cudart": ("libcudart11.0",),
        "cublas": ("libcublas11",),
        "nvrtc": ("libnvrtc11.2",),
        # nvcc (and g++-11 as its host compiler, headers, every toolkit library): ~1.6 GB.
        "nvcc": ("nvidia-cuda-toolkit",),
        "cccl": ("libthrust-dev", "libcub-dev", "libcu++-dev"),
    }),
}

# The driver's user-space libraries, by the package names (real and virtual) CUDA packages
# depend on: the host provides them at run time, so they satisfy those dependencies here.
DRIVER_PACKAGES = ("libcuda1", "libcuda1-any", "libcuda.so.1", "libnvidia-tesla-cuda1",
                   "libnvidia-ml1", "libnvidia-tesla-ml1", "libnvidia-ml.so.1", "cuda-drivers")

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")
_CUDNN_RE = re.compile(r"^(\d+)(?:\.\d+){0,3}$")
_NVIDIA_LIB_RE = re.compile(r"^(?:cuda-|libcu|libnv|libnpp).*-(\d+)-(\d+)$")
CUDNN_MAJORS = (8, 9)  # NVIDIA's repositories: libcudnn8, libcudnn9-cuda-X


class PackageIndex(Protocol):
    """What :func:`index_check` reads of the merged apt index (envnix.lock.apt.index.DebIndex)."""

    def names(self) -> list[str]: ...

    def versions(self, name: str) -> list[str]: ...


NVIDIA_CUDA_REPOS = "https://developer.download.nvidia.com/compute/cuda/repos"
"""Where NVIDIA publishes a flat CUDA apt repository per release (``ubuntu2204/x86_64``):
the packages NVIDIA's own CUDA images install."""


def repository(os_release: OsRelease | None) -> str | None:
    """NVIDIA's CUDA repository for *os_release*: ENVNIX_CUDA_APT_REPO when set, else NVIDIA's
    own for an Ubuntu release (envd's CUDA bases are Ubuntu with these packages). Debian keeps
    its own non-free CUDA unless the setting names a repository."""
    if url := options.cuda_apt_repo():
        return url
    if os_release is None or os_release.distro != "ubuntu" or not os_release.codename:
        return None
    return f"{NVIDIA_CUDA_REPOS}/{_repo_dir(os_release)}"


def _repo_dir(os_release: OsRelease) -> str:
    """The release's directory under NVIDIA's repositories: ``ubuntu2204/x86_64``."""
    return f"{os_release.distro}{os_release.release.replace('.', '')}/x86_64"


def repo_hint(os_release: OsRelease | None) -> str:
    """How to name NVIDIA's repository for ``os_release``, for a hint."""
    where = f" ({_repo_dir(os_release)})" if os_release else ""
    return (f"set {options.CUDA_APT_REPO.name} to NVIDIA's CUDA repository for your "
            f"release{where}, or a mirror of it")


def _debian(os_release: OsRelease) -> tuple[str, dict[str, tuple[str, ...]]] | None:
    """Debian's own CUDA for this release, when no NVIDIA repository is named."""
    if repository(os_release) or os_release.distro != "debian":
        return None
    return DEBIAN_CUDA.get(os_release.codename)


def check_request(version: str, cudnn: str, os_release: OsRelease | None) -> None:
    """SpecError unless the apt source for ``os_release`` can give CUDA ``version`` with cuDNN
    ``cudnn``; the message lists what it can give. Without a release yet (install.cuda before
    base()), only the spelling is checked; :func:`requirements_for` checks again."""
    hint = 'write e.g. install.cuda(version="12.4", cudnn="")'
    m = _VERSION_RE.match(version)
    if not m:
        raise SpecError(f"CUDA version {version!r} is not MAJOR.MINOR or MAJOR.MINOR.PATCH",
                        hint=hint)
    c = _CUDNN_RE.match(cudnn)
    if cudnn and not c:
        raise SpecError(f"cuDNN version {cudnn!r} is not a version like '8' or '9.1'",
                        hint='cudnn="" installs no cuDNN')
    if os_release is None:
        return
    if not os_release.codename:  # base(image=...): its own OS, no archive to resolve from
        raise SpecError("--cuda-provider apt needs a distribution base (debian12, ubuntu20.04, "
                        "ubuntu22.04); a base(image=...) brings its own OS",
                        hint="use the pypi provider on this base")
    debian = _debian(os_release)
    if debian is not None:
        release, _ = debian
        where = f"Debian's non-free archive for {os_release.codename}"
        if (int(m[1]), int(m[2])) != tuple(map(int, release.split("."))) or (
                m[3] is not None and int(m[3]) != 0):
            raise SpecError(f"CUDA {version} is not in {where}; versions that can be "
                            f"satisfied: {release}",
                            hint=f'write version="{release}", or {repo_hint(os_release)}')
        if cudnn:
            raise SpecError(f"cuDNN {cudnn} is not in {where} (its nvidia-cudnn downloads "
                            "cuDNN at install time); versions that can be satisfied: CUDA "
                            f"{release} without cuDNN (cudnn=\"\")",
                            hint=f'write cudnn="", or {repo_hint(os_release)}')
        return
    if repository(os_release) is None:
        raise SpecError(f"--cuda-provider apt on {os_release.label} needs NVIDIA's CUDA apt "
                        f"repository: {options.CUDA_APT_REPO.name} is not set",
                        hint=repo_hint(os_release) + (
                            "; debian12 also has CUDA 11.8 in Debian's non-free component"
                            if os_release.distro != "debian" else ""))
    if m[3] is not None:
        raise SpecError(f"CUDA {version}: NVIDIA's apt packages are named by MAJOR.MINOR "
                        f"(cuda-cudart-{m[1]}-{m[2]}), so the update cannot be chosen; "
                        f"versions that can be satisfied: {m[1]}.{m[2]}",
                        hint=f'write version="{m[1]}.{m[2]}": the lock pins the newest '
                             "packages of it in the repository by URL + sha256")
    if c and int(c[1]) not in CUDNN_MAJORS:
        raise SpecError(f"cuDNN {cudnn} has no packages in NVIDIA's CUDA repositories "
                        "(libcudnn8, libcudnn9-cuda-X); versions that can be satisfied: cuDNN "
                        + ", ".join(map(str, CUDNN_MAJORS)),
                        hint='write cudnn="9", or cudnn="" for no cuDNN')


def _cudnn_roots(version: str, cudnn: str, dev: bool) -> list[str]:
    """libcudnn8 is one package for every CUDA major (``8.9.7.29-1+cuda12.2``), so its
    version is globbed to the major; cuDNN 9 names the major in the package."""
    major = version.split(".")[0]
    cudnn_major = int(cudnn.split(".")[0])
    minor = cudnn.count(".") > 0
    if cudnn_major == 8:
        glob = f"={cudnn}.*+cuda{major}.*"
        return [f"libcudnn8{glob}"] + ([f"libcudnn8-dev{glob}"] if dev else [])
    glob = f"={cudnn}.*" if minor else ""
    return ([f"libcudnn{cudnn_major}-cuda-{major}{glob}"]
            + ([f"libcudnn{cudnn_major}-dev-cuda-{major}{glob}"] if dev else []))


def requirements_for(version: str, cudnn: str, components: Sequence[str],
                     os_release: OsRelease) -> list[str]:
    """The apt package names (roots for the resolver) of ``components``.

    NVIDIA: runtime libraries per component (``cuda-cudart-12-4``, ``libcublas-12-4``, cuDNN,
    ``libnccl2`` built for this release); dev images (``nvcc`` among the components) add nvcc,
    the runtime's and libraries' headers, nvrtc and CCCL. Debian: its 11.8 packages.
    """
    check_request(version, cudnn, os_release)
    dev = "nvcc" in components
    debian = _debian(os_release)
    if debian is not None:
        names = debian[1]
        return [n for c in components for n in names[c]]
    major, minor = version.split(".")[:2]
    xy = f"{major}-{minor}"
    nvidia: dict[str, list[str]] = {
        "cudart": [f"cuda-cudart-{xy}"],
        "cublas": [f"libcublas-{xy}"] + ([f"libcublas-dev-{xy}"] if dev else []),
        "cudnn": _cudnn_roots(version, cudnn, dev) if cudnn else [],
        # NCCL is built per CUDA release (2.21.5-1+cuda12.4): the one for this release.
        "nccl": [f"libnccl2=*+cuda{major}.{minor}"]
                + ([f"libnccl-dev=*+cuda{major}.{minor}"] if dev else []),
        "nvrtc": [f"cuda-nvrtc-{xy}", f"cuda-nvrtc-dev-{xy}"],
        "nvcc": [f"cuda-nvcc-{xy}", f"cuda-cudart-dev-{xy}"],
        "cccl": [f"cuda-cccl-{xy}"],
    }
    return [n for c in components for n in nvidia[c]]


def is_nvidia(cuda: CudaSpec) -> bool:
    """True when the spec's packages are NVIDIA's (the repository was set at spec time)."""
    return any(r.startswith("cuda-cudart-") for r in cuda.requirements)


def library_dirs(cuda: CudaSpec, package_names: Iterable[str]) -> list[str]:
    """Where the locked NVIDIA packages keep their libraries, for LD_LIBRARY_PATH: the
    requested release's ``/usr/local/cuda-X.Y/targets/x86_64-linux/lib`` first, then those of
    any other release's libraries in the lock (e.g. from install.apt_packages). Debian's CUDA
    libraries, cuDNN and NCCL are in the default path and need none."""
    if not is_nvidia(cuda):
        return []
    dirs = {_target_lib(cuda.major_minor): None}
    for name in package_names:
        if m := _NVIDIA_LIB_RE.match(name):
            dirs.setdefault(_target_lib(f"{m[1]}.{m[2]}"), None)
    return list(dirs)


def _target_lib(release: str) -> str:
    return f"/usr/local/cuda-{release}/targets/x86_64-linux/lib"


def tools_dir(cuda: CudaSpec, dev: bool) -> str | None:
    """Dev images from NVIDIA's packages: ``/usr/local/cuda-X.Y``, a whole toolkit (its bin/
    goes on PATH, the directory is CUDA_HOME). Debian's nvcc is /usr/bin/nvcc already."""
    if dev and "nvcc" in cuda.components and is_nvidia(cuda):
        return f"/usr/local/cuda-{cuda.major_minor}"
    return None


def host_provided(cuda: CudaSpec | None) -> tuple[str, ...]:
    """Package names the resolver must treat as present: the driver, mounted at run time."""
    if cuda is None or cuda.provider != "apt":
        return ()
    return (*DRIVER_PACKAGES, f"libcuda-{cuda.major_minor}-1")


def lock_sources(cuda: CudaSpec | None, sources: Sequence[AptSource],
                 os_release: OsRelease | None) -> list[AptSource]:
    """The image's apt sources plus where its CUDA packages come from: NVIDIA's repository
    (a flat repository, after the distribution's suites), or Debian's non-free component
    added to the Debian suites. Without ENVNIX_CUDA_APT_KEYRING, NVIDIA's repository is
    checked against NVIDIA's pinned key fingerprint (envnix.lock.apt.anchors)."""
    if cuda is None or cuda.provider != "apt":
        return list(sources)
    if is_nvidia(cuda):
        url = repository(os_release)
        if url is None:
            raise UsageError(f"the spec asks for NVIDIA's CUDA packages ({cuda.requirements[0]})"
                             f" but {options.CUDA_APT_REPO.name} is not set now",
                             hint=f"set {options.CUDA_APT_REPO.name} as it was for envnix spec")
        keyring = options.cuda_apt_keyring()
        setting = (options.CUDA_APT_REPO.name if options.cuda_apt_repo()
                   else f"{options.CUDA_APT_REPO.name} (unset: NVIDIA's repository)")
        return [*sources, dataclasses.replace(
            flat_source(url, setting, keyring, options.CUDA_APT_KEYRING.name),
            anchor="" if keyring else "nvidia")]
    return [dataclasses.replace(s, components=(*s.components, "non-free"))
            if "non-free" not in s.components else s for s in sources]


def _cuda_releases(index: PackageIndex) -> list[str]:
    """CUDA releases whose runtime the index carries: NVIDIA's ``cuda-cudart-X-Y`` names, and
    Debian's ``libcudartN`` versions (``11.8.89~11.8.0-5~deb12u1`` is CUDA 11.8)."""
    found: set[str] = set()
    for name in index.names():
        if m := re.fullmatch(r"cuda-cudart-(\d+)-(\d+)", name):
            found.add(f"{m[1]}.{m[2]}")
        elif re.fullmatch(r"libcudart\d+(?:\.\d+)?", name):
            for v in index.versions(name):
                if m := re.search(r"~(\d+)\.(\d+)\.", v):
                    found.add(f"{m[1]}.{m[2]}")
    return sorted(found, key=lambda r: tuple(map(int, r.split("."))))


def _cuda_builds(versions: Iterable[str]) -> list[str]:
    """The ``+cudaX.Y`` builds among NVIDIA's cuDNN 8 / NCCL versions."""
    builds = {m[1] for v in versions if (m := re.search(r"\+cuda(\d+\.\d+)", v))}
    return sorted(builds, key=lambda r: tuple(map(int, r.split("."))))


def _cudnn_offer(index: PackageIndex) -> str:
    """'cuDNN 8 (CUDA 11.8, 12.2), 9 (CUDA 12)': what cuDNN the repository has, per major."""
    offer: dict[int, set[str]] = {}
    for name in index.names():
        m = re.fullmatch(r"libcudnn(\d+)(?:-cuda-(\d+))?", name)
        if m:
            builds = [m[2]] if m[2] else _cuda_builds(index.versions(name))
            offer.setdefault(int(m[1]), set()).update(builds)
    if not offer:
        return "none (no libcudnn packages)"
    return "cuDNN " + ", ".join(
        f"{major} (CUDA {', '.join(sorted(b, key=lambda r: tuple(map(int, r.split('.')))))})"
        for major, b in sorted(offer.items()))


def index_check(cuda: CudaSpec | None, where: str,
                progress: Progress | None = None
                ) -> Callable[[PackageIndex], None] | None:
    """A check of the merged index before resolving: a CUDA package the sources lack is a
    LockError listing the CUDA releases (or cuDNN / NCCL builds) they do have, in CUDA's
    terms rather than as an unknown package name."""
    if cuda is None or cuda.provider != "apt":
        return None

    def check(index: PackageIndex) -> None:
        import fnmatch

        names = set(index.names())
        releases = _cuda_releases(index)
        offered = satisfiable_summary(releases) if releases else "none"
        for root in cuda.requirements:
            name, _, glob = root.partition("=")
            versions = [v for v in index.versions(name) if not glob
                        or fnmatch.fnmatchcase(v, glob)] if name in names else []
            if versions:
                continue
            if name.startswith(("cuda-cudart-", "libcudart")):
                raise LockError(f"CUDA {cuda.major_minor} is not in {where} (no {name}); "
                                f"versions that can be satisfied there: {offered}")
            if name.startswith("libcudnn"):
                raise LockError(f"cuDNN {cuda.cudnn} for CUDA {cuda.major} is not in {where} "
                                f"(no {root}); versions that can be satisfied there: "
                                f"{_cudnn_offer(index)}")
            if name.startswith("libnccl"):
                builds = _cuda_builds(index.versions(name))
                raise LockError(f"NCCL for CUDA {cuda.major_minor} is not in {where} (no "
                                f"{root}); builds there: "
                                + (f"CUDA {', '.join(builds)}" if builds else "none"))
            raise LockError(f"{where} has no {root} (CUDA {cuda.major_minor}, component "
                            f"packages of a {cuda.variant} image); CUDA releases there: "
                            f"{offered}")
        if progress:
            runtime = cuda.requirements[0].partition("=")[0]
            progress(f"cuda: CUDA {cuda.major_minor} from {where}: {runtime} "
                     f"{index.versions(runtime)[0]}")

    return check


def describe_source(cuda: CudaSpec | None, sources: Sequence[AptSource]) -> str:
    """How error messages name the CUDA source: the repository URL, or Debian's non-free."""
    flat = [s for s in sources if s.flat]
    if cuda is not None and is_nvidia(cuda) and flat:
        return f"the CUDA apt repository {flat[-1].uri}"
    uris = ", ".join(dict.fromkeys(s.uri for s in sources)) or "the Debian mirror"
    return f"Debian's non-free component on {uris}"

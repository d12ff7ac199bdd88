"""Where an image's CUDA libraries come from, as one protocol the stages call through.

Why: the frontend checks a request and turns it into requirements, the lock adds apt sources
and checks the apt index, render finds the library directories and the Nix plan entry, the
ImageSpec puts the compiler tools on PATH; each provider (envnix.spec.cuda.PROVIDERS) answers
these in its own terms. Going through :func:`provider` keeps the stages free of per-provider
branches, and keeps the providers free of the lock's apt resolver: an index is read only
through :class:`cuda_apt.PackageIndex`.
The tables and the work stay in the provider modules (cuda, cuda_conda, cuda_apt,
cuda_nixpkgs); the objects here only give them one shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from envnix.core import options
from envnix.core.errors import SpecError
from envnix.spec import cuda as cuda_pypi
from envnix.spec import cuda_apt, cuda_conda, cuda_nixpkgs
from envnix.spec.apt import AptSource

if TYPE_CHECKING:
    from envnix.spec import CudaSpec, OsRelease

Installer = Literal["pip", "conda", "apt", "nix"]
IndexCheck = Callable[[cuda_apt.PackageIndex], None]


@runtime_checkable
class CudaProvider(Protocol):
    """What the frontend, lock and render ask of a CUDA provider."""

    name: str
    installer: Installer
    """Whose request the spec's ``requirements`` join: pip's, conda's, apt's or Nix's."""

    def check_request(self, version: str, cudnn: str, os_release: OsRelease | None) -> None:
        """SpecError unless the provider can give CUDA ``version`` with cuDNN ``cudnn``."""
        ...

    def requirements(self, version: str, cudnn: str, components: Sequence[str],
                     os_release: OsRelease) -> list[str]:
        """What the provider installs for ``components``, in its own terms."""
        ...

    def apt_sources(self, cuda: CudaSpec, sources: Sequence[AptSource],
                    os_release: OsRelease | None) -> list[AptSource]:
        """The image's apt sources plus those the CUDA packages come from."""
        ...

    def host_provided(self, cuda: CudaSpec) -> tuple[str, ...]:
        """Apt package names the resolver treats as present (the driver, mounted at run time)."""
        ...

    def index_check(self, cuda: CudaSpec, sources: Sequence[AptSource],
                    progress: Callable[[str], None] | None = None) -> IndexCheck | None:
        """A check of the merged apt index before resolving, or None."""
        ...

    def library_dirs(self, cuda: CudaSpec, site_packages: str | None,
                     apt_packages: Iterable[str], wheels: Iterable[str]) -> list[str]:
        """The image directories of the locked CUDA libraries, for LD_LIBRARY_PATH."""
        ...

    def nix_plan(self, cuda: CudaSpec) -> dict[str, Any] | None:
        """What the Nix expression needs to build CUDA itself (plan.json "nixpkgsCuda")."""
        ...

    def tools_dir(self, cuda: CudaSpec, site_packages: str | None) -> str | None:
        """Dev images with nvcc: the directory whose bin/ holds CUDA's compiler tools."""
        ...

    def is_toolkit(self, cuda: CudaSpec) -> bool:
        """True when :meth:`tools_dir` is a whole toolkit of one release (nvcc, headers and
        libraries), so CUDA_HOME can name it."""
        ...


class _AddsNothing:
    """The answers of a provider that adds nothing to the apt resolution, the loader path, the
    Nix plan or PATH; each provider overrides what it does add."""

    def apt_sources(self, cuda: CudaSpec, sources: Sequence[AptSource],
                    os_release: OsRelease | None) -> list[AptSource]:
        return list(sources)

    def host_provided(self, cuda: CudaSpec) -> tuple[str, ...]:
        return ()

    def index_check(self, cuda: CudaSpec, sources: Sequence[AptSource],
                    progress: Callable[[str], None] | None = None) -> IndexCheck | None:
        return None

    def library_dirs(self, cuda: CudaSpec, site_packages: str | None,
                     apt_packages: Iterable[str], wheels: Iterable[str]) -> list[str]:
        return []

    def nix_plan(self, cuda: CudaSpec) -> dict[str, Any] | None:
        return None

    def tools_dir(self, cuda: CudaSpec, site_packages: str | None) -> str | None:
        return None

    def is_toolkit(self, cuda: CudaSpec) -> bool:
        return False


class PypiProvider(_AddsNothing):
    """NVIDIA's wheels in site-packages (envnix.spec.cuda)."""

    name = "pypi"
    installer: Installer = "pip"

    def check_request(self, version: str, cudnn: str, os_release: OsRelease | None) -> None:
        cuda_pypi.check_request(version, cudnn)

    def requirements(self, version: str, cudnn: str, components: Sequence[str],
                     os_release: OsRelease) -> list[str]:
        return cuda_pypi.requirements_for(version, cudnn, components)

    def library_dirs(self, cuda: CudaSpec, site_packages: str | None,
                     apt_packages: Iterable[str], wheels: Iterable[str]) -> list[str]:
        """Every locked NVIDIA wheel's library directory, in the lock's order: torch or cuDNN
        pull component wheels install.cuda did not name, and the loader must find those too
        (cuDNN's libraries carry no RUNPATH to cuBLAS)."""
        if site_packages is None:
            return []
        dirs: dict[str, None] = {}
        for wheel in wheels:
            rel = cuda_pypi.library_dir(wheel, cuda.major)
            if rel:
                dirs.setdefault(f"{site_packages}/{rel}", None)
        return list(dirs)

    def tools_dir(self, cuda: CudaSpec, site_packages: str | None) -> str | None:
        """CUDA >= 13 wheels form a whole toolkit (nvcc, headers, libs) in nvidia/cuNN; older
        nvcc wheels carry only ptxas and libnvvm (no nvcc driver), so no CUDA_HOME then."""
        if site_packages is None:
            return None
        if cuda.major >= 13:
            return f"{site_packages}/nvidia/cu{cuda.major}"
        return f"{site_packages}/nvidia/cuda_nvcc"

    def is_toolkit(self, cuda: CudaSpec) -> bool:
        return cuda.major >= 13


class CondaProvider(_AddsNothing):
    """Conda packages solved with the env (envnix.spec.cuda_conda); they find each other's
    libraries through their RPATH, so no directory goes on LD_LIBRARY_PATH."""

    name = "conda"
    installer: Installer = "conda"

    def check_request(self, version: str, cudnn: str, os_release: OsRelease | None) -> None:
        cuda_conda.check_request(version, cudnn)

    def requirements(self, version: str, cudnn: str, components: Sequence[str],
                     os_release: OsRelease) -> list[str]:
        return cuda_conda.requirements_for(version, cudnn, components)


class AptProvider(_AddsNothing):
    """NVIDIA's or Debian's apt packages, resolved with the image's (envnix.spec.cuda_apt)."""

    name = "apt"
    installer: Installer = "apt"

    def check_request(self, version: str, cudnn: str, os_release: OsRelease | None) -> None:
        cuda_apt.check_request(version, cudnn, os_release)

    def requirements(self, version: str, cudnn: str, components: Sequence[str],
                     os_release: OsRelease) -> list[str]:
        return cuda_apt.requirements_for(version, cudnn, components, os_release)

    def apt_sources(self, cuda: CudaSpec, sources: Sequence[AptSource],
                    os_release: OsRelease | None) -> list[AptSource]:
        return cuda_apt.lock_sources(cuda, sources, os_release)

    def host_provided(self, cuda: CudaSpec) -> tuple[str, ...]:
        return cuda_apt.host_provided(cuda)

    def index_check(self, cuda: CudaSpec, sources: Sequence[AptSource],
                    progress: Callable[[str], None] | None = None) -> IndexCheck | None:
        return cuda_apt.index_check(cuda, cuda_apt.describe_source(cuda, sources), progress)

    def library_dirs(self, cuda: CudaSpec, site_packages: str | None,
                     apt_packages: Iterable[str], wheels: Iterable[str]) -> list[str]:
        return cuda_apt.library_dirs(cuda, apt_packages)

    def tools_dir(self, cuda: CudaSpec, site_packages: str | None) -> str | None:
        return cuda_apt.tools_dir(cuda, dev=True)  # NVIDIA's /usr/local/cuda-X.Y

    def is_toolkit(self, cuda: CudaSpec) -> bool:
        return True


class NixpkgsProvider(_AddsNothing):
    """nixpkgs' cudaPackages sets, built by the Nix expression (envnix.spec.cuda_nixpkgs)."""

    name = "nixpkgs"
    installer: Installer = "nix"

    def check_request(self, version: str, cudnn: str, os_release: OsRelease | None) -> None:
        cuda_nixpkgs.check_request(version, cudnn)

    def requirements(self, version: str, cudnn: str, components: Sequence[str],
                     os_release: OsRelease) -> list[str]:
        return cuda_nixpkgs.requirements_for(list(components))

    def library_dirs(self, cuda: CudaSpec, site_packages: str | None,
                     apt_packages: Iterable[str], wheels: Iterable[str]) -> list[str]:
        return [cuda_nixpkgs.LIBRARY_DIR]

    def nix_plan(self, cuda: CudaSpec) -> dict[str, Any] | None:
        return cuda_nixpkgs.plan_entry(cuda.version, cuda.cudnn, cuda.components)

    def tools_dir(self, cuda: CudaSpec, site_packages: str | None) -> str | None:
        return cuda_nixpkgs.TOOLS_DIR  # links into the store, made by builders/nix_closure.py

    def is_toolkit(self, cuda: CudaSpec) -> bool:
        return cuda.major >= 13  # as for NVIDIA's wheels: CUDA_HOME from CUDA 13 on


_PROVIDERS: dict[str, CudaProvider] = {
    p.name: p for p in (PypiProvider(), CondaProvider(), AptProvider(), NixpkgsProvider())}


def provider(name: str) -> CudaProvider:
    """The provider called ``name``; SpecError for one envnix does not have."""
    try:
        return _PROVIDERS[name]
    except KeyError:
        raise SpecError(f"the {name} CUDA provider is not supported yet",
                        hint="--cuda-provider pypi (NVIDIA's PyPI wheels)") from None




def choose(asked: str | None, conda_env: bool, version: str, cudnn: str,
           os_release: OsRelease | None) -> tuple[str, str, str | None]:
    """The provider that gives CUDA ``version`` here, the version it gives, and a note when
    that is not the default provider.

    Why: NVIDIA's wheels start at CUDA 11.8, and real build.envd files ask for 11.2-11.7.
    When the default provider (:func:`envnix.spec.cuda.choose_provider`) has no such release
    and none was asked for, NVIDIA's apt repository has it: with ENVNIX_CUDA_APT_REPO set,
    its packages are taken, and the note says so. They name releases by MAJOR.MINOR, so an
    update (11.3.1) becomes its release (11.3). Without the setting, the error's hint says
    that setting it is the other way. Without a release yet (install.cuda before base(), as
    envd v1 files often write it) the choice waits for build(); on a base(image=...) only the
    default is checked.
    """
    default = cuda_pypi.choose_provider(asked, conda_env)
    try:
        provider(default).check_request(version, cudnn, os_release)
        return default, version, None
    except SpecError as first:
        if asked or default != "pypi" or (os_release is not None and not os_release.codename):
            raise
        if os_release is None:  # install.cuda before base(): build() chooses with the release
            return default, version, None
        release = ".".join(version.split(".")[:2])
        if cuda_apt.repository(os_release) is None:
            raise SpecError(first.message, hint=f"{first.hint}; or {cuda_apt.repo_hint(os_release)}"
                            f": envnix then takes CUDA {release} from it") from None
        try:
            provider("apt").check_request(release, cudnn, os_release)
        except SpecError as second:
            raise SpecError(f"{first.message}; nor can the repository "
                            f"{options.CUDA_APT_REPO.name} names: {second.message}",
                            hint=second.hint) from None
    as_release = f", as CUDA {release} (its newest packages)" if release != version else ""
    return "apt", release, (f"CUDA {version} has no NVIDIA wheels on PyPI: it comes from "
                            f"NVIDIA's CUDA apt repository {cuda_apt.repository(os_release)}"
                            f"{as_release} (--cuda-provider chooses another)")

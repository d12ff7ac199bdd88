"""install.cuda and the CUDA release conda packages imply, as SpecBuilder's part.

Why a module of its own: which provider gives a CUDA release depends on calls made after
install.cuda (base() names the release, conda packages the environment), so the choice is made
twice, at the call and in build(), and an error found in build() must still point at the
install.cuda line the user wrote.
"""

from __future__ import annotations

from envnix.core.errors import SpecError
from envnix.core.progress import Progress
from envnix.spec import CondaRequest, CudaSpec, OsRelease, PythonSpec, cuda_conda, cuda_provider
from envnix.spec import cuda as cuda_table
from envnix.spec.cuda_provider import provider as provider_named

__all__ = ["CudaCalls"]


def _implied_cuda_spec(version: str, implied_by: str, cudnn: str) -> CudaSpec:
    """CUDA that conda packages ask for: the solver's __cuda and NVIDIA's config follow the
    release, and only its pin is added (the packages bring their own components)."""
    components = ["cudart", *(["cudnn"] if cudnn else [])]
    return CudaSpec(version=version, cudnn=cudnn, provider="conda",
                    variant=cuda_table.variant_for(cudnn, dev=False), components=components,
                    requirements=cuda_conda.release_pin(version), implied_by=implied_by)


class CudaCalls:
    """install.cuda recorded where it is called; the CudaSpec made once the image is known."""

    cuda_provider: str | None  # --cuda-provider; None: chosen per image
    cuda: tuple[str, str] | None  # (version, cudnn) of install.cuda
    cuda_implied: tuple[str, str, str] | None  # (major.minor, what asked, cuDNN major or "")
    cuda_where: str = ""  # install.cuda's file:line
    conda: CondaRequest
    os: OsRelease | None
    _warn: Progress  # SpecBuilder's: a warning line, kept in the spec

    def _install_cuda(self, version: str, cudnn: str | None = None, where: str = "") -> None:
        # envd: cudnn defaults to "8" and the last call wins. envnix reads cudnn="" as "no
        # cuDNN" (envd would ask for a "-cudnn-" tag); see README "CUDA".
        version = version.strip()
        cudnn = "8" if cudnn is None else cudnn.strip()
        # Checked here, with the provider the calls so far imply, so that an unsatisfiable
        # version points at this line; build() re-checks if a later call changed the provider.
        cuda_provider.choose(self.cuda_provider, self.conda.requested, version, cudnn, self.os)
        self.cuda, self.cuda_where = (version, cudnn), where

    def _choose_cuda(self, conda_env: bool) -> tuple[str, str, str | None]:
        """cuda_provider.choose for install.cuda's request; an error names the call's line."""
        assert self.cuda is not None
        try:
            return cuda_provider.choose(self.cuda_provider, conda_env, *self.cuda, self.os)
        except SpecError as err:
            file, _, line = self.cuda_where.rpartition(":")
            if err.file or not file or not line.isdigit():
                raise
            raise SpecError(err.message, file=file, line=int(line), hint=err.hint) from None

    def _cuda_spec(self, dev: bool, python: PythonSpec | None) -> CudaSpec | None:
        """install.cuda from the image's provider: serving images get runtime libraries, dev
        images add the compiler pieces (envd's devel variant). Without install.cuda, a CUDA
        release that conda packages ask for (env.yaml's pytorch-cuda=12.4, ...) is the image's.
        """
        implied = self.cuda_implied or self._names_cuda_request()
        if self.cuda is None:
            return _implied_cuda_spec(*implied) if implied else None
        assert self.os is not None
        version, cudnn = self.cuda
        differing = (f'install.cuda(version="{version}") and {implied[1]} ask for different '
                     f"CUDA releases ({cuda_conda.major_minor(version)} and {implied[0]})"
                     if implied and implied[0] != cuda_conda.major_minor(version) else "")
        conda_env = bool(python and python.provider == "conda" and self.conda.requested)
        provider, version, note = self._choose_cuda(conda_env and not differing)
        if note:
            self._warn(note)
        source = provider_named(provider)
        if differing and source.installer == "conda":
            raise SpecError(f"{differing}; one conda env holds one",
                            hint="make them name the same release, or --cuda-provider apt "
                                 "for install.cuda's")
        if differing:  # as envd: its base image's CUDA, and the conda packages' in the env
            self._warn(f"{differing}: the image gets both, as under envd: {provider} brings "
                       f"CUDA {cuda_conda.major_minor(version)}, the conda env its own")
            implied = None
        if source.installer == "conda" and not (python and python.provider == "conda"):
            raise SpecError("the conda CUDA provider installs into envd's conda env, and this "
                            "image has a system Python",
                            hint="add install.conda_packages(...), or --cuda-provider pypi")
        if implied and source.installer != "conda":
            self._warn(f"{implied[1]} brings CUDA from conda packages and the {provider} "
                       "provider adds its own: the image gets both")
        components = cuda_table.components_for(cudnn, dev)
        return CudaSpec(version=version, cudnn=cudnn, provider=provider,
                        variant=cuda_table.variant_for(cudnn, dev), components=components,
                        requirements=source.requirements(version, cudnn, components,
                                                         self.os))

    def _names_cuda_request(self) -> tuple[str, str, str] | None:
        """A CUDA release asked for by install.conda_packages(name=[...]), as env.yaml's."""
        found = cuda_conda.implied_request(self.conda.packages, "install.conda_packages")
        if found is None:
            return None
        return (found[0], f"install.conda_packages: {found[1]}",
                cuda_conda.implied_cudnn(self.conda.packages))

"""CUDA from conda packages (the "conda" provider): the spec (provider choice, match specs,
CUDA that env.yaml asks for), the lock against a real channel whose CUDA 12.4 runtime is NVIDIA's
own libcudart repackaged from its PyPI wheel, and an image run under podman without a GPU.

The spec tests are offline; everything that needs the channel needs the wheel (PyPI).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cuda_offline import DRIVER_DIRS

from envnix.core.errors import EnvnixError
from envnix.frontend import load_spec
from envnix.lock import lock_inputs, pip_request
from envnix.spec import ImageSpec
from envnix.spec.cuda_conda import implied_cudnn, implied_request, requirements_for

CHANNEL = "http://127.0.0.1:9/fixture"  # never contacted by the spec tests

SERVING = '''# syntax=v1
def build():
    base(image="debian:12", dev=False)
    install.python()
    install.apt_packages(name=["libffi8", "libexpat1"])
    install.conda_packages(name=[{names}], channel=["{channel}"])
    install.cuda({cuda})
'''


def spec_of(context: Path, source: str, env_yaml: str | None = None,
            cuda_provider: str | None = None, warn: list[str] | None = None) -> ImageSpec:
    (context / "build.envd").write_text(source)
    if env_yaml is not None:
        (context / "env.yaml").write_text(env_yaml)
    return load_spec(context, warn=(warn.append if warn is not None else lambda _: None),
                     cuda_provider=cuda_provider)


def env_of(spec: ImageSpec) -> dict[str, str]:
    return dict(e.split("=", 1) for e in spec.env_list())


def env_yaml(*dependencies: str, channel: str = CHANNEL) -> str:
    deps = "".join(f"  - {d}\n" for d in ("python=3.11", *dependencies))
    return f"name: gpu\nchannels:\n  - {channel}\ndependencies:\n{deps}"


ENV_FILE_BUILD = ('def build():\n    base(os="debian12", language="python3.11")\n'
                  '    install.conda_packages(env_file="env.yaml")\n{extra}')


# ------------------------------------------------------------------------------------------
# spec: offline
# ------------------------------------------------------------------------------------------


def test_conda_env_gets_cuda_from_conda_packages(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, SERVING.format(names='"pyhello"', channel=CHANNEL,
                                            cuda='version="12.4", cudnn=""'))
    cuda = spec.cuda
    assert cuda is not None and spec.python is not None
    assert (cuda.provider, cuda.variant, cuda.implied_by) == ("conda", "base", "install.cuda")
    assert cuda.requirements == ["cuda-version 12.4.*", "cuda-cudart"]
    env = env_of(spec)
    assert env["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.4"
    # conda packages find each other through their RPATH: the env's lib is not on the path.
    assert env["LD_LIBRARY_PATH"] == DRIVER_DIRS
    assert {k: v for k, v in spec.labels.items() if ".gpu" in k} == {
        "ai.tensorchord.envd.gpu": "true", "ai.tensorchord.envd.gpu.cuda": "12.4"}
    # The match specs join the conda solve, __cuda is the release, and no wheel is asked for.
    inputs = lock_inputs(spec, tmp_path)
    assert inputs["conda"]["specs"][-2:] == ["cuda-version 12.4.*", "cuda-cudart"]
    assert inputs["conda"]["cuda"] == "12.4"
    assert inputs["pip"]["requirements"] == []
    assert pip_request(spec, None).packages == []


def test_provider_is_asked_or_follows_the_conda_packages(tmp_path: Path) -> None:
    source = SERVING.format(names='"pyhello"', channel=CHANNEL, cuda='version="12.4"')
    pypi = spec_of(tmp_path, source, cuda_provider="pypi").cuda
    assert pypi is not None and pypi.provider == "pypi"
    assert pypi.requirements[0] == "cuda-toolkit[cublas,cudart]==12.4.*"
    # Channels but no conda package: the wheels, as before.
    wheels = spec_of(tmp_path, SERVING.format(names="", channel=CHANNEL,
                                              cuda='version="12.4"')).cuda
    assert wheels is not None and wheels.provider == "pypi"
    with pytest.raises(EnvnixError, match="conda CUDA provider installs into envd's conda env"):
        spec_of(tmp_path, 'def build():\n    base(os="debian12", language="python3.11")\n'
                          '    install.cuda(version="12.4")\n', cuda_provider="conda")


@pytest.mark.parametrize(("version", "cudnn", "components", "expected"), [
    ("12.4", "9", ["cudart", "cublas", "cudnn", "nccl"],
     ["cuda-version 12.4.*", "cuda-cudart", "libcublas", "cudnn 9.*", "nccl"]),
    ("12.1.1", "", ["cudart", "nvrtc", "nvcc", "cccl"],
     ["cuda-version 12.1.*", "cuda-cudart", "cuda-nvrtc", "cuda-nvcc", "cuda-cccl"]),
    ("11.3.1", "8", ["cudart", "cublas", "cudnn", "nccl"],
     ["cudatoolkit 11.3.1.*", "cudnn 8.*", "nccl"]),
    ("11.8", "", ["cudart", "nvrtc", "nvcc", "cccl"], ["cudatoolkit 11.8.*", "cuda-nvcc 11.8.*"]),
])
def test_components_as_conda_packages(version: str, cudnn: str, components: list[str],
                                      expected: list[str]) -> None:
    assert requirements_for(version, cudnn, components) == expected


def test_v0_dev_image_asks_for_the_compiler_packages(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, ENV_FILE_BUILD.format(extra='    install.cuda(version="12.1")\n'),
                   env_yaml("pyhello"))
    assert spec.cuda is not None and spec.dev is not None
    assert (spec.cuda.provider, spec.cuda.variant) == ("conda", "cudnn-devel")
    assert spec.cuda.requirements == ["cuda-version 12.1.*", "cuda-cudart", "libcublas",
                                      "cudnn 8.*", "nccl", "cuda-nvrtc", "cuda-nvcc",
                                      "cuda-cccl"]
    assert "cuda" not in env_of(spec)["PATH"]  # conda's nvcc is in the env's bin already


@pytest.mark.parametrize(("dependencies", "implied"), [
    (["numpy", "pytorch-cuda=11.8"], ("11.8", "pytorch-cuda=11.8")),
    (["cudatoolkit=11.3.1=h2bc3f7f_2"], ("11.3", "cudatoolkit=11.3.1=h2bc3f7f_2")),
    (["cuda-version=12.4"], ("12.4", "cuda-version=12.4")),
    (["nvidia::cuda-cudart==12.4.127"], ("12.4", "nvidia::cuda-cudart==12.4.127")),
    (["nvidia/label/cuda-12.4.0::cuda-runtime 12.4.*", "pytorch::pytorch-cuda=12.4"],
     ("12.4", "nvidia/label/cuda-12.4.0::cuda-runtime 12.4.*")),
    (["cuda-toolkit>=12.4,<12.5.0a0"], ("12.4", "cuda-toolkit>=12.4,<12.5.0a0")),
    (["cuda-version 12.4", "cuda-cudart 12.4.127 h99ab3db_0"], ("12.4", "cuda-version 12.4")),
    (["numpy", "pytorch=2.3", "cudnn=8.9"], None),
])
def test_cuda_request_found_in_dependencies(dependencies: list[str],
                                            implied: tuple[str, str] | None) -> None:
    assert implied_request(dependencies) == implied


@pytest.mark.parametrize(("dependency", "message"), [
    ("cuda-toolkit", "'cuda-toolkit' asks for CUDA but names no version"),
    ("nvidia::cuda-runtime", "'nvidia::cuda-runtime' asks for CUDA but names no version"),
    ("cudatoolkit>=11.3,<12", "'cudatoolkit>=11.3,<12' asks for CUDA but names no single "
                              "release (>=11.3,<12)"),
    ("cuda-version=12", "'cuda-version=12' asks for CUDA but names no single release"),
])
def test_cuda_request_without_a_release_is_an_error(tmp_path: Path, dependency: str,
                                                    message: str) -> None:
    with pytest.raises(EnvnixError) as info:
        spec_of(tmp_path, ENV_FILE_BUILD.format(extra=""), env_yaml(dependency))
    assert str(info.value).startswith(f"env.yaml: {message}")
    assert info.value.hint and info.value.hint.startswith("pin one release, e.g. ")


def test_env_yaml_cuda_without_install_cuda(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, ENV_FILE_BUILD.format(extra=""),
                   env_yaml("pytorch-cuda=12.4", "cuda12app"))
    cuda = spec.cuda
    assert cuda is not None
    assert (cuda.version, cuda.cudnn, cuda.provider, cuda.implied_by) == (
        "12.4", "", "conda", "env.yaml: pytorch-cuda=12.4")
    assert (cuda.components, cuda.requirements) == (["cudart"], ["cuda-version 12.4.*"])
    assert spec.labels["ai.tensorchord.envd.gpu.cuda"] == "12.4"
    assert "ai.tensorchord.envd.gpu.cudnn" not in spec.labels
    env = env_of(spec)
    assert (env["NVIDIA_REQUIRE_CUDA"], env["LD_LIBRARY_PATH"]) == ("cuda>=12.4", DRIVER_DIRS)
    inputs = lock_inputs(spec, tmp_path)
    assert inputs["conda"]["cuda"] == "12.4"
    assert inputs["conda"]["specs"][-1] == "cuda-version 12.4.*"
    assert json.loads(spec.to_json())["cuda"]["implied_by"] == "env.yaml: pytorch-cuda=12.4"


def test_env_yaml_cuda_11_with_cudnn(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, ENV_FILE_BUILD.format(extra=""),
                   env_yaml("cudatoolkit=11.3.1=h2bc3f7f_2", "cudnn=8.2.1=cuda11.3_0"))
    cuda = spec.cuda
    assert cuda is not None
    # CUDA 11 packages share no release pin: env.yaml's own specs keep the release.
    assert (cuda.version, cuda.cudnn, cuda.requirements) == ("11.3", "8", [])
    assert spec.labels["ai.tensorchord.envd.gpu.cudnn"] == "8"
    assert implied_cudnn(["cudnn"]) == ""


def test_conda_package_names_ask_for_cuda_too(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, SERVING.format(names='"pytorch-cuda=12.4"', channel=CHANNEL,
                                            cuda='version="12.4.1", cudnn=""'))
    assert spec.cuda is not None and spec.cuda.implied_by == "install.cuda"
    assert spec.cuda.requirements == ["cuda-version 12.4.*", "cuda-cudart"]
    source = SERVING.format(names='"pytorch-cuda=12.4"', channel=CHANNEL, cuda="")
    source = source.replace("    install.cuda()\n", "")
    spec = spec_of(tmp_path, source)
    assert spec.cuda is not None
    assert spec.cuda.implied_by == "install.conda_packages: pytorch-cuda=12.4"


def test_install_cuda_and_env_yaml_disagree(tmp_path: Path) -> None:
    """As under envd (install.cuda picks the base image, conda installs its own cudatoolkit):
    the image gets both, install.cuda's from a provider other than the conda env; asking for
    conda's provider too is the one conflict left."""
    source = ENV_FILE_BUILD.format(extra='    install.cuda(version="12.4")\n')
    warnings: list[str] = []
    spec = spec_of(tmp_path, source, env_yaml("pytorch-cuda=11.8"), warn=warnings)
    assert spec.cuda is not None and (spec.cuda.provider, spec.cuda.version) == ("pypi", "12.4")
    assert any('install.cuda(version="12.4") and env.yaml: pytorch-cuda=11.8 ask for different '
               "CUDA releases (12.4 and 11.8): the image gets both" in w for w in warnings)
    with pytest.raises(EnvnixError) as info:
        spec_of(tmp_path, source, env_yaml("pytorch-cuda=11.8"), cuda_provider="conda")
    assert str(info.value) == ('install.cuda(version="12.4") and env.yaml: pytorch-cuda=11.8 '
                               "ask for different CUDA releases (12.4 and 11.8); one conda env "
                               "holds one")
    # Two CUDA packages of different releases in env.yaml itself.
    with pytest.raises(EnvnixError, match=r"'cudatoolkit=11\.3' and 'cuda-version=12\.4' ask "
                                          r"for different CUDA releases \(11\.3 and 12\.4\)"):
        spec_of(tmp_path, ENV_FILE_BUILD.format(extra=""),
                env_yaml("cudatoolkit=11.3", "cuda-version=12.4"))


def test_same_release_in_both_and_wheels_next_to_conda_cuda_warn(tmp_path: Path) -> None:
    source = ENV_FILE_BUILD.format(extra='    install.cuda(version="12.4.1", cudnn="")\n')
    spec = spec_of(tmp_path, source, env_yaml("pytorch-cuda=12.4"))
    assert spec.cuda is not None and spec.cuda.implied_by == "install.cuda"
    warnings: list[str] = []
    spec = spec_of(tmp_path, source, cuda_provider="pypi", warn=warnings)
    assert spec.cuda is not None and spec.cuda.provider == "pypi"
    assert ("env.yaml: pytorch-cuda=12.4 brings CUDA from conda packages and the pypi provider "
            "adds its own: the image gets both") in warnings


def test_bad_versions_under_the_conda_provider(tmp_path: Path) -> None:
    for cuda, message in (('version="12"', "CUDA version '12' is not MAJOR.MINOR"),
                          ('version="12.4", cudnn="v9"', "cuDNN version 'v9' is not")):
        with pytest.raises(EnvnixError, match=message):
            spec_of(tmp_path, SERVING.format(names='"pyhello"', channel=CHANNEL, cuda=cuda))
    # Which releases exist is for the channels to say (at lock time): 10.2 is well-formed.
    spec = spec_of(tmp_path, SERVING.format(names='"pyhello"', channel=CHANNEL,
                                            cuda='version="10.2", cudnn="7"'))
    assert spec.cuda is not None and spec.cuda.requirements == ["cudatoolkit 10.2.*",
                                                                "cudnn 7.*", "nccl"]

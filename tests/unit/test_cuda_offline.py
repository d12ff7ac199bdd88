"""The offline tests of tests/integration/test_cuda.py (no network, no program started).

install.cuda from NVIDIA's PyPI wheels: spec (v0/v1, dev vs serving, unsatisfiable versions),
the release pins at lock time, the image config, and real images run under podman without a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envnix.core.errors import FrontendError
from envnix.frontend import load_spec
from envnix.lock import lock_inputs, pip_request
from envnix.lock.cuda import (
    parse_pins,
    size_line,
)
from envnix.lock.model import Lock
from envnix.lock.pip import Wheel
from envnix.render import cuda_library_dirs, image_config
from envnix.spec import ImageSpec
from envnix.spec.cuda import library_dir, satisfiable_summary

SATISFIABLE = "11.8, 12.0-12.6, 12.8-12.9, 13.0-13.5"
DRIVER_DIRS = "/usr/local/nvidia/lib64:/usr/local/nvidia/lib"
CONDA_SITE = "/opt/conda/envs/envd/lib/python3.11/site-packages"
SYSTEM_SITE = "/usr/local/lib/python3.11/dist-packages"


def spec_of(tmp_path: Path, source: str, warn: list[str] | None = None,
            cuda_provider: str | None = None) -> ImageSpec:
    (tmp_path / "build.envd").write_text(source)
    return load_spec(tmp_path, warn=(warn.append if warn is not None else lambda _: None),
                     cuda_provider=cuda_provider)


def error_of(tmp_path: Path, source: str, cuda_provider: str | None = None) -> str:
    with pytest.raises(FrontendError) as info:
        spec_of(tmp_path, source, cuda_provider=cuda_provider)
    return str(info.value) + "\n" + (info.value.hint or "")
V0 = 'def build():\n    base(os="debian12", language="python3.11")\n    install.cuda({args})\n'
V1 = ('# syntax=v1\ndef build():\n    base(image="debian:12", dev={dev})\n'
      '    install.python()\n    install.cuda({args})\n')


# ------------------------------------------------------------------------------------------
# spec: offline
# ------------------------------------------------------------------------------------------


def test_v0_is_a_dev_image_with_the_compiler_components(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, V0.format(args='version="12.1"'))
    cuda = spec.cuda
    assert cuda is not None and spec.dev is not None and spec.python is not None
    assert spec.python.provider == "system"
    assert (cuda.version, cuda.cudnn, cuda.provider, cuda.variant) == (
        "12.1", "8", "pypi", "cudnn-devel")  # envd's default cudnn is "8"
    assert cuda.components == ["cudart", "cublas", "cudnn", "nccl", "nvrtc", "nvcc", "cccl"]
    assert cuda.requirements == ["cuda-toolkit[cccl,cublas,cudart,nvcc,nvrtc]==12.1.*",
                                 "nvidia-cudnn-cu12==8.*", "nvidia-nccl-cu12"]
    assert {k: v for k, v in spec.labels.items() if ".gpu" in k} == {
        "ai.tensorchord.envd.gpu": "true", "ai.tensorchord.envd.gpu.cuda": "12.1",
        "ai.tensorchord.envd.gpu.cudnn": "8"}
    env = dict(e.split("=", 1) for e in spec.env_list([f"{SYSTEM_SITE}/nvidia/x/lib"]))
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert env["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.1"
    assert env["LD_LIBRARY_PATH"] == f"{SYSTEM_SITE}/nvidia/x/lib:{DRIVER_DIRS}"
    assert env["PATH"].endswith(f":{SYSTEM_SITE}/nvidia/cuda_nvcc/bin")  # ptxas
    assert "CUDA_HOME" not in env  # CUDA 12 wheels have no nvcc driver: no toolkit dir
    roots = spec.apt_roots()
    assert "libstdc++6" in roots and "zlib1g" in roots  # what cuDNN/cuBLAS link against
    assert json.loads(spec.to_json())["cuda"]["components"] == cuda.components


def test_v1_serving_image_gets_runtime_libraries_only(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, V1.format(dev="False", args='version="12.1", cudnn="8"'))
    cuda = spec.cuda
    assert cuda is not None and spec.dev is None and spec.syntax == "v1"
    assert spec.python is not None and spec.python.provider == "conda"
    assert (cuda.variant, cuda.components) == ("cudnn-runtime",
                                               ["cudart", "cublas", "cudnn", "nccl"])
    assert cuda.requirements == ["cuda-toolkit[cublas,cudart]==12.1.*",
                                 "nvidia-cudnn-cu12==8.*", "nvidia-nccl-cu12"]
    env = dict(e.split("=", 1) for e in spec.env_list())
    assert env["LD_LIBRARY_PATH"] == DRIVER_DIRS
    assert "nvidia" not in env["PATH"]


def test_dev_and_serving_differ_by_the_compiler_pieces(tmp_path: Path) -> None:
    dev = spec_of(tmp_path, V1.format(dev="True", args='version="13.0", cudnn="9"')).cuda
    serving = spec_of(tmp_path, V1.format(dev="False", args='version="13.0", cudnn="9"')).cuda
    assert dev is not None and serving is not None
    assert [c for c in dev.components if c not in serving.components] == ["nvrtc", "nvcc",
                                                                            "cccl"]
    assert serving.requirements[1:] == ["nvidia-cudnn-cu13==9.*", "nvidia-nccl-cu13"]
    spec = spec_of(tmp_path, V1.format(dev="True", args='version="13.0", cudnn="9"'))
    env = dict(e.split("=", 1) for e in spec.env_list())
    assert env["CUDA_HOME"] == f"{CONDA_SITE}/nvidia/cu13"  # CUDA 13 wheels: a real nvcc
    assert env["PATH"].endswith(f":{CONDA_SITE}/nvidia/cu13/bin")


def test_empty_cudnn_is_the_cuda_runtime_alone(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, V1.format(dev="False", args='version="12.1", cudnn=""'))
    assert spec.cuda is not None
    assert (spec.cuda.variant, spec.cuda.components, spec.cuda.requirements) == (
        "base", ["cudart"], ["cuda-toolkit[cudart]==12.1.*"])
    assert "ai.tensorchord.envd.gpu.cudnn" not in spec.labels
    assert "zlib1g" not in spec.apt_roots()


def test_patch_level_names_one_update_and_last_call_wins(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, 'def build():\n    base(os="debian12", language="python3.11")\n'
                             '    install.cuda(version="11.8")\n'
                             '    install.cuda(version="12.4.1", cudnn="9.1")\n')
    assert spec.cuda is not None
    assert spec.cuda.requirements[:2] == [
        "cuda-toolkit[cccl,cublas,cudart,nvcc,nvrtc]==12.4.1", "nvidia-cudnn-cu12==9.1.*"]
    assert spec.labels["ai.tensorchord.envd.gpu.cuda"] == "12.4.1"


def test_cuda_alone_brings_a_python(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, '# syntax=v1\ndef build():\n    base(image="debian:12")\n'
                             '    install.cuda(version="12.1", cudnn="")\n')
    assert spec.python is not None and spec.python.version == "3.11"


@pytest.mark.parametrize("version", ["10.0", "11.6.2", "11.7", "12.7", "9.2"])
def test_unsatisfiable_cuda_lists_the_satisfiable_versions(tmp_path: Path,
                                                           version: str) -> None:
    text = error_of(tmp_path, V0.format(args=f'version="{version}"'))
    assert text.startswith(f"build.envd:3:5: CUDA {version} has no NVIDIA wheels on PyPI")
    assert text.split("\n")[0].endswith(f"versions that can be satisfied: {SATISFIABLE}")


def test_unknown_update_of_an_old_release_names_its_updates(tmp_path: Path) -> None:
    text = error_of(tmp_path, V0.format(args='version="12.1.5"'))
    assert "(CUDA 12.1 has updates 12.1.0, 12.1.1)" in text


@pytest.mark.parametrize(("args", "message"), [
    ('version="12.1", cudnn="7"', "cuDNN 7 has no wheels for CUDA 12 (nvidia-cudnn-cu12); "
                                  "versions that can be satisfied: cuDNN 8, 9"),
    ('version="13.0"', "cuDNN 8 has no wheels for CUDA 13 (nvidia-cudnn-cu13); "
                       "versions that can be satisfied: cuDNN 9"),
    ('version="12"', "CUDA version '12' is not MAJOR.MINOR or MAJOR.MINOR.PATCH"),
    ('version="12.1", cudnn="v8"', "cuDNN version 'v8' is not a version like '8' or '9.1'"),
])
def test_unsatisfiable_cudnn_and_bad_spellings(tmp_path: Path, args: str, message: str) -> None:
    assert error_of(tmp_path, V0.format(args=args)).startswith(f"build.envd:3:5: {message}")


def test_release_newer_than_the_table_is_left_to_the_index(tmp_path: Path) -> None:
    for version in ("13.6", "12.9.3"):
        spec = spec_of(tmp_path, V0.format(args=f'version="{version}", cudnn="9"'))
        assert spec.cuda is not None and spec.cuda.version == version


def test_table_summary_and_library_dirs() -> None:
    assert satisfiable_summary() == SATISFIABLE
    assert satisfiable_summary(["12.1.1", "12.2.0", "12.4.0"]) == "12.1-12.2, 12.4"
    assert library_dir("nvidia-cuda-runtime-cu12", 12) == "nvidia/cuda_runtime/lib"
    assert library_dir("nvidia_cudnn_cu13", 13) == "nvidia/cudnn/lib"
    assert library_dir("nvidia-cublas", 13) == "nvidia/cu13/lib"
    for tool_only in ("nvidia-cuda-nvcc-cu12", "nvidia-cuda-cccl-cu12", "nvidia-cuda-crt",
                      "nvidia-ml-py", "cuda-toolkit", "torch"):
        assert library_dir(tool_only, 13) is None


def fake_wheel(name: str, version: str, size: int = 1000) -> dict[str, object]:
    fn = f"{name.replace('-', '_')}-{version}-py3-none-manylinux1_x86_64.whl"
    return Wheel(name, version, fn, f"https://files.example/{fn}", "0" * 64,
                 size).to_lock_dict()


def test_lock_request_and_image_config(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, V0.format(args='version="12.1", cudnn=""'))
    assert spec.cuda is not None
    request = pip_request(spec, None)
    assert request.packages == ["cuda-toolkit[cccl,cudart,nvcc,nvrtc]==12.1.*"]
    assert spec.pip.packages == []  # the spec's own request is left alone
    inputs = lock_inputs(spec, tmp_path)
    assert inputs["pip"]["requirements"] == request.packages
    wheels = [fake_wheel("cuda-toolkit", "12.1.1"),
              fake_wheel("nvidia-cuda-nvcc-cu12", "12.1.105"),
              fake_wheel("nvidia-cuda-runtime-cu12", "12.1.105"),
              fake_wheel("nvidia-nvjitlink-cu12", "12.1.105")]  # as if torch pulled it
    lock = Lock(inputs=inputs, pip_wheels=wheels)
    assert cuda_library_dirs(spec, lock) == [f"{SYSTEM_SITE}/nvidia/cuda_runtime/lib",
                                             f"{SYSTEM_SITE}/nvidia/nvjitlink/lib"]
    config = image_config(spec, lock)["config"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["LD_LIBRARY_PATH"] == (f"{SYSTEM_SITE}/nvidia/cuda_runtime/lib:"
                                      f"{SYSTEM_SITE}/nvidia/nvjitlink/lib:{DRIVER_DIRS}")
    assert env["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.1"
    assert config["Labels"]["ai.tensorchord.envd.gpu.cuda"] == "12.1"
    line = size_line(spec.cuda, [Wheel.from_lock_dict(w) for w in wheels])
    assert line.startswith("cuda: devel (pypi): nvidia-cuda-nvcc-cu12 12.1.105 (0.0 MB), ")
    assert line.endswith("; 0.0 MB of CUDA wheels")


def test_conda_images_solve_with_the_requested_cuda(tmp_path: Path) -> None:
    """conda env: the wheels go into its site-packages, and the solver's __cuda is the release
    (envnix.lock.conda.lock_conda(cuda=...)), recorded among the conda inputs."""
    spec = spec_of(tmp_path, V1.format(dev="False", args='version="12.4", cudnn=""').replace(
        "    install.cuda", '    install.conda_packages(channel=["http://127.0.0.1:9/c"])\n'
                           "    install.cuda"))
    inputs = lock_inputs(spec, tmp_path)
    assert inputs["conda"]["cuda"] == "12.4"
    assert inputs["pip"]["requirements"] == ["cuda-toolkit[cudart]==12.4.*"]
    spec.cuda = None
    assert "cuda" not in lock_inputs(spec, tmp_path)["conda"]  # other locks keep their bytes


def test_user_environ_wins_over_the_cuda_defaults(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, V0.format(args='version="12.1"').replace(
        "    install.cuda", '    runtime.environ(env={"NVIDIA_VISIBLE_DEVICES": "0"})\n'
                           "    install.cuda"))
    assert "NVIDIA_VISIBLE_DEVICES=0" in spec.env_list()


# ------------------------------------------------------------------------------------------
# lock: the release pins, from an index served here (offline)
# ------------------------------------------------------------------------------------------

METADATA = """Metadata-Version: 2.1
Name: cuda-toolkit
Version: {version}
Provides-Extra: all
Requires-Dist: nvidia-cublas-cu12==12.1.3.1.*; (sys_platform == 'win32' or sys_platform == \
'linux') and extra == 'all'
Requires-Dist: nvidia-cuda-runtime-cu12==12.1.105.*; (sys_platform == 'linux') and extra == \
"all"
Provides-Extra: cudart
Requires-Dist: nvidia-cuda-runtime-cu12==12.1.105.*; (sys_platform == 'linux') and extra == \
'cudart'
"""


def test_parse_pins_takes_the_all_extra() -> None:
    assert parse_pins(METADATA.format(version="12.1.1")) == [
        "nvidia-cublas-cu12==12.1.3.1.*", "nvidia-cuda-runtime-cu12==12.1.105.*"]

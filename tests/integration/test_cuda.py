"""install.cuda from NVIDIA's PyPI wheels: spec (v0/v1, dev vs serving, unsatisfiable versions),
the release pins at lock time, the image config, and real images run under podman without a GPU.

The e2e images are small on purpose: the default one is the CUDA runtime alone (cudnn="",
under 1 MB of CUDA wheels); the dev one adds nvrtc/ptxas/CCCL (~46 MB) and compiles a kernel;
the cuDNN one (CUDA 13.0 + cuDNN 9.12, the smallest cuDNN wheel: 1.13 GB of wheels with cuBLAS
and NCCL) checks the size in its lock first and skips, saying why, if cuDNN alone is over 500 MB.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import shutil
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import Built, build, envnix
from _conda_channel import ChannelInfo, ChannelServer
from _podman import podman
from test_cuda_offline import CONDA_SITE, DRIVER_DIRS, METADATA, SYSTEM_SITE, V0, spec_of

from envnix.core.errors import LockError
from envnix.lock.cuda import (
    lock_cuda_pip,
    toolkit_pins,
    toolkit_releases,
)
from envnix.spec import PipRequest
from envnix.spec.cuda import CUDNN_MAJORS, TOOLKIT_RELEASES

# ------------------------------------------------------------------------------------------
# lock: the release pins, from an index served here (offline)
# ------------------------------------------------------------------------------------------


def metapackage(version: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as whl:
        whl.writestr(f"cuda_toolkit-{version}.dist-info/METADATA",
                     METADATA.format(version=version))
    return buf.getvalue()


class SimpleIndex:
    """A PEP 503 (HTML) index on loopback with cuda-toolkit wheels, like a PyPI mirror."""

    def __init__(self, versions: list[str], yanked: tuple[str, ...] = (),
                 corrupt: tuple[str, ...] = ()) -> None:
        self.files = {f"cuda_toolkit-{v}-py2.py3-none-any.whl": metapackage(v) for v in versions}
        links = []
        for name, data in sorted(self.files.items()):
            sha = hashlib.sha256(data).hexdigest()
            version = name.split("-")[1]
            attrs = ' data-yanked=""' if version in yanked else ""
            links.append(f'<a href="../../files/{name}#sha256={sha}"{attrs}>{name}</a>')
            if version in corrupt:
                self.files[name] = data + b"x"
        page = "<html><body>" + "".join(links) + "</body></html>"
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/simple/cuda-toolkit/":
                    body, kind = page.encode(), "text/html"
                elif self.path.startswith("/files/") and self.path[7:] in index.files:
                    body, kind = index.files[self.path[7:]], "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/simple"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def index() -> Iterator[SimpleIndex]:
    served = SimpleIndex(["11.8.0", "12.1.0", "12.1.1", "12.2.0"], yanked=("12.2.0",))
    yield served
    served.close()


def test_releases_and_pins_come_from_the_index(index: SimpleIndex) -> None:
    url, releases = toolkit_releases(PipRequest(index_url=index.url))
    assert url == index.url
    assert [r.version for r in releases] == ["11.8.0", "12.1.0", "12.1.1"]  # 12.2.0 yanked
    assert all(r.sha256 and r.url.startswith(index.url.removesuffix("/simple")) for r in
               releases)
    assert toolkit_pins(releases[2]) == ["nvidia-cublas-cu12==12.1.3.1.*",
                                         "nvidia-cuda-runtime-cu12==12.1.105.*"]


def test_index_without_the_release_lists_what_it_has(index: SimpleIndex,
                                                     tmp_path: Path) -> None:
    spec = spec_of(tmp_path, V0.format(args='version="12.4", cudnn=""'))
    assert spec.cuda is not None
    request = PipRequest(packages=list(spec.cuda.requirements), index_url=index.url)
    with pytest.raises(LockError) as info:
        lock_cuda_pip(request, tmp_path, spec.cuda, "3.11", "2.36")
    assert str(info.value) == (f"CUDA 12.4 has no cuda-toolkit release on {index.url}; "
                               "versions that can be satisfied there: 11.8, 12.1")


def test_metapackage_hash_is_checked(tmp_path: Path) -> None:
    served = SimpleIndex(["12.1.1"], corrupt=("12.1.1",))
    try:
        _, releases = toolkit_releases(PipRequest(index_url=served.url))
        with pytest.raises(LockError, match="does not match the index's sha256"):
            toolkit_pins(releases[0])
    finally:
        served.close()


# ------------------------------------------------------------------------------------------
# lock: against PyPI
# ------------------------------------------------------------------------------------------


def _simple_versions(project: str) -> set[str]:
    import urllib.request

    req = urllib.request.Request(f"https://pypi.org/simple/{project}/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return set(json.load(resp)["versions"])


@pytest.mark.network
def test_table_matches_the_index() -> None:
    """Every release and cuDNN major the offline table promises is on PyPI (newer ones may be
    there too: the lock asks the index, the table only serves offline errors)."""
    _, releases = toolkit_releases(PipRequest())  # PyPI, read as the lock reads it
    on_pypi = {r.version for r in releases}
    assert set(TOOLKIT_RELEASES) <= on_pypi, "releases in the table but not on PyPI"
    newer = sorted(on_pypi - set(TOOLKIT_RELEASES), key=lambda v: [int(p) for p in
                                                                     v.split(".")])
    print(f"on PyPI but not in the table (fine, the lock asks the index): {newer}")
    for major, cudnn_majors in CUDNN_MAJORS.items():
        have = {int(v.split(".")[0]) for v in _simple_versions(f"nvidia-cudnn-cu{major}")
                if re.fullmatch(r"[\d.]+", v)}
        assert set(cudnn_majors) <= have, major


@pytest.mark.network
def test_torch_pulls_components_of_the_same_release(tmp_path: Path) -> None:
    """torch 2.1.2 (built for CUDA 12.1) leaves nvJitLink unpinned; without the release pins
    uv would take the newest (a CUDA 12.9 nvJitLink next to a 12.1 cuSPARSE)."""
    spec = spec_of(tmp_path, V0.format(args='version="12.1", cudnn="8"'))
    assert spec.cuda is not None
    lines: list[str] = []
    request = PipRequest(packages=["torch==2.1.2", *spec.cuda.requirements])
    wheels = {w.name: w for w in lock_cuda_pip(request, tmp_path, spec.cuda, "3.11", "2.36",
                                               lines.append)}
    assert wheels["cuda-toolkit"].version == "12.1.1"
    for name in ("nvidia-cuda-runtime-cu12", "nvidia-cuda-nvrtc-cu12", "nvidia-nvjitlink-cu12",
                 "nvidia-cuda-nvcc-cu12", "nvidia-nvtx-cu12", "nvidia-cuda-cupti-cu12"):
        assert wheels[name].version == "12.1.105", name
    assert wheels["nvidia-cublas-cu12"].version == "12.1.3.1"
    assert wheels["nvidia-cusparse-cu12"].version == "12.1.0.106"
    assert wheels["nvidia-cudnn-cu12"].version.startswith("8.9.")
    assert "cuda: CUDA 12.1 -> cuda-toolkit 12.1.1 (19 component pins)" in lines[0]
    assert lines[-1].startswith("cuda: cudnn-devel (pypi): ") and "MB of CUDA wheels" in lines[-1]


@pytest.mark.network
def test_a_framework_built_for_another_release_is_a_lock_error(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, V0.format(args='version="12.1", cudnn=""'))
    assert spec.cuda is not None
    request = PipRequest(packages=["torch==2.5.1", *spec.cuda.requirements])  # a cu124 build
    with pytest.raises(LockError) as info:
        lock_cuda_pip(request, tmp_path, spec.cuda, "3.11", "2.36")
    assert str(info.value).startswith("CUDA 12.1: pip: ")
    assert "12.4.127" in str(info.value)
    assert info.value.hint and "cuda-toolkit 12.1.1, 12.1.0" in info.value.hint


# ------------------------------------------------------------------------------------------
# end to end: images built with Nix, run under podman (no GPU here, none needed)
# ------------------------------------------------------------------------------------------

CHECK_LIBS = r'''
import ctypes, glob, json, os, subprocess, sys
site = sys.argv[1]
libs = sorted(p for p in glob.glob(site + "/nvidia/**/*.so*", recursive=True)
              if os.path.isfile(p) and not p.endswith(".py"))
missing = {}
for lib in libs:
    out = subprocess.run(["/lib64/ld-linux-x86-64.so.2", "--list", lib],
                         capture_output=True, text=True)
    bad = [l.split()[0] for l in out.stdout.splitlines() if "not found" in l]
    if out.returncode or bad:
        missing[lib] = bad or [out.stderr.strip()]
rt = ctypes.CDLL(os.environ["CUDART"])
version, count = ctypes.c_int(), ctypes.c_int()
rv = rt.cudaRuntimeGetVersion(ctypes.byref(version))
rc = rt.cudaGetDeviceCount(ctypes.byref(count))
print(json.dumps({"libs": libs, "missing": missing, "runtime": [rv, version.value],
                  "device_count": rc}))
'''

# cudaGetDeviceCount without a usable driver: 35 = cudaErrorInsufficientDriver (no libcuda.so.1
# at all, as here), 100 = cudaErrorNoDevice (a driver but no GPU). Both are "no driver/GPU".
NO_DRIVER = {35, 100}


def image_config_of(built: Built) -> dict:
    layout = built.layout
    return json.loads((layout / "blobs/sha256" / built.config.split(":")[1]).read_text())


def layer_paths(built: Built) -> list[str]:
    layout = built.layout
    manifest = json.loads((layout / "blobs/sha256" / built.manifest.split(":")[1]).read_text())
    names = []
    for layer in manifest["layers"]:
        with tarfile.open(layout / "blobs/sha256" / layer["digest"].split(":")[1]) as tar:
            names += tar.getnames()
    return names


def check_image(built: Built, podman_environ: dict, site: str, python: str,
                cudart: str, expect_runtime: int) -> dict:
    """What every CUDA image must satisfy; returns the in-image report for more checks."""
    paths = layer_paths(built)
    driver = [p for p in paths if re.fullmatch(r"libcuda\.so(\.\d+)*", p.rsplit("/", 1)[-1])]
    assert driver == [], "a driver library is baked into the image"
    config = image_config_of(built)["config"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert env["LD_LIBRARY_PATH"].endswith(":" + DRIVER_DIRS)
    assert config["Labels"]["ai.tensorchord.envd.gpu"] == "true"
    out = podman("run", "--rm", "-e", f"CUDART={cudart}", f"oci:{built.layout}", python, "-c",
                 CHECK_LIBS, site, env=podman_environ)
    report = json.loads(out.stdout)
    assert report["missing"] == {}, "shared libraries that do not resolve"
    assert report["runtime"] == [0, expect_runtime]
    assert report["device_count"] in NO_DRIVER
    lib_dirs = {p.rsplit("/", 1)[0] for p in report["libs"] if "/nvvm/" not in p}
    listed = set(env["LD_LIBRARY_PATH"].split(":"))
    assert lib_dirs <= listed, "a packaged library directory is not on LD_LIBRARY_PATH"
    return report


def serving_context(root: Path, channel_url: str, cuda_args: str) -> Path:
    """A v1 serving image: conda Python (the fixture channel: host python3.11 repackaged,
    needing libexpat1; ctypes needs libffi8), install.cuda."""
    context = root / "cudaserve"
    context.mkdir()
    (context / "build.envd").write_text(f'''# syntax=v1
def build():
    base(image="debian:12", dev=False)
    install.python()
    install.apt_packages(name=["libffi8", "libexpat1"])
    install.conda_packages(channel=["{channel_url}"])
    install.cuda({cuda_args})
''')
    return context


def lock_of(context: Path) -> dict:
    return json.loads((context / "envnix.lock").read_text())


@pytest.mark.network
@pytest.mark.slow
def test_serving_image_runs_the_cuda_runtime_without_a_gpu(
        channel: tuple[ChannelInfo, ChannelServer], tmp_path: Path,
        podman_environ: dict) -> None:
    context = serving_context(tmp_path, channel[1].url("conda/fixture"),
                              'version="12.1", cudnn=""')
    locked = envnix("lock", str(context))
    assert "cuda: base (pypi): nvidia-cuda-runtime-cu12 12.1.105 (0.8 MB)" in locked.stderr
    wheels = {w["name"]: w for w in lock_of(context)["pip"]["wheels"]}
    assert set(wheels) == {"cuda-toolkit", "nvidia-cuda-runtime-cu12"}
    assert wheels["cuda-toolkit"]["version"] == "12.1.1"
    assert re.fullmatch(r"[0-9a-f]{64}", wheels["nvidia-cuda-runtime-cu12"]["sha256"])
    built = build(context, "--locked", "-t", "cudaserve:dev")
    report = check_image(built, podman_environ, CONDA_SITE, "python", "libcudart.so.12",
                         12010)
    assert report["libs"] == [f"{CONDA_SITE}/nvidia/cuda_runtime/lib/libcudart.so.12"]
    config = image_config_of(built)["config"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.1"
    assert env["LD_LIBRARY_PATH"] == f"{CONDA_SITE}/nvidia/cuda_runtime/lib:{DRIVER_DIRS}"
    assert config["Labels"]["ai.tensorchord.envd.gpu.cuda"] == "12.1"
    assert "ai.tensorchord.envd.gpu.cudnn" not in config["Labels"]


@pytest.mark.network
@pytest.mark.slow
def test_dev_image_compiles_a_kernel_with_nvrtc_and_ptxas(tmp_path: Path,
                                                          podman_environ: dict) -> None:
    context = tmp_path / "cudadev"
    context.mkdir()
    (context / "build.envd").write_text(V0.format(args='version="12.1", cudnn=""'))
    locked = envnix("lock", str(context))
    assert "cuda: devel (pypi): nvidia-cuda-cccl-cu12 12.1.109" in locked.stderr
    built = build(context, "--locked", "-t", "cudadev:dev")
    report = check_image(built, podman_environ, SYSTEM_SITE, "python3", "libcudart.so.12",
                         12010)
    assert f"{SYSTEM_SITE}/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" in report["libs"]
    # NVRTC compiles CUDA C++ to PTX, ptxas (on PATH) assembles it for sm_80: no GPU needed.
    script = r'''
import ctypes, subprocess
nvrtc = ctypes.CDLL("libnvrtc.so.12")
src = (b'extern "C" __global__ void axpy(float a, float *x, float *y) '
       b'{ y[threadIdx.x] += a * x[threadIdx.x]; }')
prog = ctypes.c_void_p()
assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src, b"axpy.cu", 0, None, None) == 0
opts = (ctypes.c_char_p * 1)(b"--gpu-architecture=compute_80")
assert nvrtc.nvrtcCompileProgram(prog, 1, opts) == 0
size = ctypes.c_size_t()
nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(size))
ptx = ctypes.create_string_buffer(size.value)
nvrtc.nvrtcGetPTX(prog, ptx)
open("/tmp/axpy.ptx", "wb").write(ptx.value)
subprocess.run(["ptxas", "-arch=sm_80", "/tmp/axpy.ptx", "-o", "/tmp/axpy.cubin"], check=True)
print(b".entry axpy" in ptx.value, open("/tmp/axpy.cubin", "rb").read(4) == b"\x7fELF")
'''
    out = podman("run", "--rm", f"oci:{built.layout}", "python3", "-c", script,
                 env=podman_environ)
    assert out.stdout.split() == ["True", "True"]


CUDNN_LIMIT = 500_000_000  # bytes; cuDNN wheels are 0.3-0.7 GB, CI gets the small ones only


@pytest.mark.network
@pytest.mark.slow
def test_cudnn_image_loads_cudnn_and_its_libraries_resolve(
        channel: tuple[ChannelInfo, ChannelServer], tmp_path: Path,
        podman_environ: dict) -> None:
    """CUDA 13.0 with cuDNN 9.12 (the smallest cuDNN wheel, ~314 MB; with cuBLAS and NCCL
    ~1 GB of wheels): cuDNN's, cuBLAS's and NCCL's libraries all resolve and cuDNN loads."""
    context = serving_context(tmp_path, channel[1].url("conda/fixture"),
                              'version="13.0", cudnn="9.12"')
    locked = envnix("lock", str(context))
    wheels = {w["name"]: w for w in lock_of(context)["pip"]["wheels"]}
    cudnn = wheels["nvidia-cudnn-cu13"]
    total = sum(w["size"] for n, w in wheels.items() if n.startswith("nvidia-"))
    print(next(line for line in locked.stderr.splitlines() if line.startswith("cuda: cudnn-")))
    if cudnn["size"] > CUDNN_LIMIT:
        pytest.skip(f"cuDNN wheel {cudnn['filename']} is {cudnn['size'] / 1e6:.0f} MB "
                    f"(> {CUDNN_LIMIT / 1e6:.0f} MB; all CUDA wheels {total / 1e6:.0f} MB): too "
                    "big for CI")
    assert wheels["cuda-toolkit"]["version"].startswith("13.0.")
    assert set(wheels) >= {"nvidia-cuda-runtime", "nvidia-cublas", "nvidia-nccl-cu13"}
    built = build(context, "--locked", "-t", "cudacudnn:dev")
    report = check_image(built, podman_environ, CONDA_SITE, "python", "libcudart.so.13",
                         13000)
    names = {p.rsplit("/", 1)[-1] for p in report["libs"]}
    assert {"libcudnn.so.9", "libcublas.so.13", "libnccl.so.2"} <= names
    out = podman("run", "--rm", f"oci:{built.layout}", "python", "-c",
                 "import ctypes; print(ctypes.CDLL('libcudnn.so.9').cudnnGetVersion())",
                 env=podman_environ)
    assert out.stdout.strip() == "91200"  # cuDNN 9.12.0: major*10000 + minor*100 + patch
    labels = image_config_of(built)["config"]["Labels"]
    assert (labels["ai.tensorchord.envd.gpu.cuda"], labels["ai.tensorchord.envd.gpu.cudnn"]) == (
        "13.0", "9.12")
    shutil.rmtree(context / ".envnix", ignore_errors=True)

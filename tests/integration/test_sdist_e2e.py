"""Packages with no wheel for the target are built from their sdist inside Nix (issue 16,
item 10).

A real sdist made here, with a C extension and static PEP 621 metadata, is served by a
PEP 691 index on loopback (tests/_pip_index.py); its build requirement (setuptools) comes
from the real default index, gcc and the Python headers from the real Debian archive. The
lock pins the sdist and its build root; the Nix build compiles it over the image's own root
(proot, no network), the wheel is bit-reproducible (``nix-store --check``), podman imports
the extension, and the compiler is not in the image.

An sdist whose dependencies only its setup.py can tell must not run at lock time: its
setup.py would write a file, and the lock stops with one line instead.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from _cli import envnix, parse_build
from _pip_index import Dist, serve_index

from envnix.core.errors import LockError
from envnix.lock.pip import guarded_interpreter, lock_pip
from envnix.spec import PipRequest

pytestmark = pytest.mark.network

NAME = "envnix-cext-probe"
MODULE = "envnix_cext_probe"
C_SOURCE = b"""#include <Python.h>
static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
    return PyLong_FromLong(a + b);
}
static PyMethodDef methods[] = {{"add", add, METH_VARARGS, "a + b, in C"}, {NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "envnix_cext_probe", NULL, -1,
                                    methods};
PyMODINIT_FUNC PyInit_envnix_cext_probe(void) { return PyModule_Create(&module); }
"""


def make_sdist(path: Path, top: str, files: dict[str, bytes]) -> Path:
    """A .tar.gz sdist with fixed metadata, so its sha256 is the same in every run."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for rel, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size, info.mode, info.mtime = len(data), 0o644, 315532800
            tf.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return path


def cext_sdist(directory: Path) -> Dist:
    pyproject = (b'[build-system]\nrequires = ["setuptools>=61"]\n'
                 b'build-backend = "setuptools.build_meta"\n\n'
                 b'[project]\nname = "' + NAME.encode() + b'"\nversion = "0.1.0"\n'
                 b'dependencies = ["six>=1.10"]\n')
    setup = (b"from setuptools import Extension, setup\n"
             b"setup(ext_modules=[Extension('" + MODULE.encode() + b"', ['probe.c'])])\n")
    path = make_sdist(directory / f"{MODULE}-0.1.0.tar.gz", f"{MODULE}-0.1.0",
                      {"pyproject.toml": pyproject, "setup.py": setup, "probe.c": C_SOURCE,
                       "PKG-INFO": b"Metadata-Version: 2.1\nName: " + NAME.encode()
                       + b"\nVersion: 0.1.0\n"})
    return Dist(NAME, path)


def dynamic_sdist(directory: Path, marker: Path) -> Dist:
    """setup.py only: uv would have to run it to learn the dependencies."""
    setup = (f"open({str(marker)!r}, 'w').write('ran')\n"
             "from setuptools import setup\n"
             "setup(name='envnix-dynamic-probe', version='0.2.0', install_requires=['six'])\n"
             ).encode()
    path = make_sdist(directory / "envnix_dynamic_probe-0.2.0.tar.gz",
                      "envnix_dynamic_probe-0.2.0",
                      {"setup.py": setup, "PKG-INFO": b"Metadata-Version: 1.0\n"
                       b"Name: envnix-dynamic-probe\nVersion: 0.2.0\n"})
    return Dist("envnix-dynamic-probe", path)


def test_the_guarded_interpreter_answers_the_query_only(tmp_path: Path) -> None:
    python = guarded_interpreter(tmp_path)
    refused = subprocess.run([str(python), "-c", "print('ran')"], capture_output=True,
                             text=True, check=False)
    assert (refused.returncode, refused.stdout) == (97, "")
    # a build command dressed as the query (a backend named after it) is refused too
    dressed = subprocess.run([str(python), "-I", "-B", "-c",
                              "from python.get_interpreter_info import main; main()"],
                             capture_output=True, text=True, check=False)
    assert dressed.returncode == 97


def test_an_sdist_whose_setup_py_computes_dependencies_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "setup-py-ran"
    with serve_index([dynamic_sdist(tmp_path, marker)], "json") as index:
        request = PipRequest(packages=["envnix-dynamic-probe"], extra_index_urls=[index.url])
        with pytest.raises(LockError, match=r"envnix-dynamic-probe 0\.2\.0 has no wheel for the "
                                            r"target, and its sdist's dependencies are "
                                            r"computed by its build script") as caught:
            lock_pip(request, tmp_path, "3.11", "2.36", sources=True)
        assert "statically" in (caught.value.hint or "")
        # without sources, the same request is the binary-only refusal it always was
        with pytest.raises(LockError, match="no usable wheels"):
            lock_pip(request, tmp_path, "3.11", "2.36")
    assert not marker.exists()


@pytest.mark.slow
def test_an_sdist_with_a_c_extension_is_built_in_nix_and_imported(
        tmp_path: Path, podman_environ: dict[str, str]) -> None:
    from _podman import podman

    dist = cext_sdist(tmp_path)
    with serve_index([dist], "json") as index:
        context = tmp_path / "sdist"
        context.mkdir()
        (context / "build.envd").write_text(
            "def build():\n"
            '    base(os="debian12", language="python3.11")\n'
            f'    install.python_packages(name=["{NAME}==0.1.0 --extra-index-url {index.url}"])\n')
        proc = envnix("lock", str(context))
        assert f"pip: {NAME} has no wheel for the target; taking the sdist" in proc.stderr
        lock = json.loads((context / "envnix.lock").read_text())
        [sdist] = lock["source_builds"]["sdists"]
        assert (sdist["name"], sdist["sha256"], sdist["backend"], sdist["requires"]) == (
            NAME, dist.sha256, "setuptools.build_meta", ["setuptools>=61"])
        assert sdist["url"].startswith(index.url.removesuffix("/simple"))
        assert [w["name"] for w in lock["source_builds"]["wheels"]] == ["setuptools"]
        build_debs = {d["name"] for d in lock["source_builds"]["debs"]}
        assert {"gcc-12", "libc6-dev", "libpython3.11-dev"} <= build_debs
        assert not build_debs & {p["name"] for p in lock["apt"]["packages"]}
        assert [w["name"] for w in lock["pip"]["wheels"]] == ["six"]  # its static dependency

        built = parse_build(context, envnix("build", str(context), "-t", "sdist:dev",
                                            "--no-load"))
    out = podman("run", "--rm", f"oci:{built.layout}", "python3", "-c",
                 f"import {MODULE}, six; print({MODULE}.add(2, 3), {MODULE}.__file__)",
                 env=podman_environ)
    total, where = out.stdout.split()
    assert total == "5"
    assert where.startswith("/usr/local/lib/python3.11/dist-packages/") and where.endswith(".so")
    absent = podman("run", "--rm", f"oci:{built.layout}", "sh", "-c",
                    "command -v gcc x86_64-linux-gnu-gcc-12 || echo none; "
                    "ls /usr/include/python3.11 2>/dev/null || echo none",
                    env=podman_environ)
    assert absent.stdout.split() == ["none", "none"]

    # The wheel is built bit for bit again: Nix rebuilds the build derivation and compares.
    deriver = subprocess.run(["nix-store", "-q", "--deriver", str(built.store_path)],
                             capture_output=True, text=True, check=True).stdout.strip()
    closure = subprocess.run(["nix-store", "-qR", deriver], capture_output=True, text=True,
                             check=True).stdout.split()
    [builder] = [d for d in closure if d.endswith(f"-build-{MODULE}-0.1.0.tar.gz.drv")]
    check = subprocess.run(["nix-store", "--realise", "--check", builder],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr

    # --locked builds the same image again without any index: nothing is resolved.
    again = parse_build(context, envnix("build", str(context), "-t", "sdist:dev", "--locked",
                                        "--no-load"))
    assert (again.config, again.manifest) == (built.config, built.manifest)


@pytest.mark.slow
def test_a_git_reference_is_pinned_to_its_commit_built_and_kept(
        tmp_path: Path, podman_environ: dict[str, str]) -> None:
    """``name @ git+http://.../repo@main`` on git's smart HTTP (loopback): the lock pins the
    commit main named, Nix fetches that commit and builds it as an sdist, podman imports the
    extension; a new upstream commit moves nothing until --upgrade-package."""
    from _git_daemon import served_repository
    from _podman import podman

    files = {"pyproject.toml": (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'\n[project]\nname = "{NAME}"\nversion = "0.2.0"\n'),
        "setup.py": ("from setuptools import Extension, setup\n"
                     f"setup(ext_modules=[Extension('{MODULE}', ['probe.c'])])\n"),
        "probe.c": C_SOURCE.decode()}
    with served_repository(tmp_path / "srv", files, http=True) as served:
        first = served.git("rev-parse", "HEAD")
        context = tmp_path / "gitref"
        context.mkdir()
        (context / "build.envd").write_text(
            "def build():\n"
            '    base(os="debian12", language="python3.11")\n'
            f'    install.python_packages(name=["{NAME} @ git+{served.url}@main"])\n')
        envnix("lock", str(context))
        [pin] = json.loads((context / "envnix.lock").read_text())["source_builds"]["git"]
        assert (pin["name"], pin["url"], pin["commit"], pin["version"]) == (
            NAME, served.url, first, "0.2.0")
        assert pin["backend"] == "setuptools.build_meta"

        built = parse_build(context, envnix("build", str(context), "-t", "gitref:dev",
                                            "--no-load"))
        out = podman("run", "--rm", f"oci:{built.layout}", "python3", "-c",
                     f"import {MODULE}; print({MODULE}.add(20, 22))", env=podman_environ)
        assert out.stdout.split() == ["42"]

        served.commit({"probe.c": C_SOURCE.decode().replace("a + b", "a * b")}, "moved")
        envnix("lock", str(context))
        [kept] = json.loads((context / "envnix.lock").read_text())["source_builds"]["git"]
        assert kept["commit"] == first
        envnix("lock", str(context), "--upgrade-package", NAME)
        [moved] = json.loads((context / "envnix.lock").read_text())["source_builds"]["git"]
        assert moved["commit"] == served.git("rev-parse", "HEAD") != first



def test_an_unnamed_git_reference_takes_its_name_from_the_project_and_keeps_its_commit(
        tmp_path: Path) -> None:
    """``git+https://host/repo@main`` (real files write it so): uv reads the name from the
    commit's static pyproject.toml; handed the pin back, it keeps the commit after main moves."""
    from _git_daemon import served_repository

    from envnix.lock.pip import GitSource

    files = {"pyproject.toml": f'[project]\nname = "{NAME}"\nversion = "0.3.0"\n'}
    with served_repository(tmp_path / "srv", files, http=True) as served:
        request = PipRequest(packages=[f"git+{served.url}@main"])
        [pin] = lock_pip(request, tmp_path, "3.11", "2.36", sources=True)
        assert pin == GitSource(NAME, "0.3.0", served.url, served.git("rev-parse", "HEAD"))
        served.commit({"README": "moved\n"})
        [kept] = lock_pip(request, tmp_path, "3.11", "2.36", sources=True, preferred=[pin])
        assert kept == pin
        [moved] = lock_pip(request, tmp_path, "3.11", "2.36", sources=True)
        assert moved.commit == served.git("rev-parse", "HEAD") != pin.commit

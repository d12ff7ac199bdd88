"""A real conda channel, built on disk by the tests and served over loopback HTTP like a mirror.

Conda channels are not reachable from CI machines, and fakes would only test our idea of the
format. So this module writes genuine packages (``.tar.bz2`` and ``.conda``), with
``info/index.json``, ``info/paths.json``, ``info/files`` and ``info/link.json`` as conda-build
writes them, plus ``repodata.json`` for ``linux-64`` and ``noarch`` (``packages`` and
``packages.conda`` sections with sha256/md5/size). Contents:

* ``python`` — this machine's Debian ``/usr/bin/python3.11`` and its stdlib, repackaged into
  conda's layout, so the interpreter really runs from the env prefix (see :func:`_python`
  for the ``.pth`` and the one-line sysconfig patch that give it conda's site-packages);
* ``pyhello`` — ``noarch: python`` with an entry point in ``info/link.json``;
* ``hellobin`` — a C program compiled here whose string constant is a 255-character prefix
  placeholder (``file_mode: binary``) plus a text file with the placeholder; in both formats;
* a small graph for solver tests (``pkg-a``/``pkg-b``/``pkg-c``), virtual-package cases
  (``__glibc >=2.17`` on every linux-64 package, ``needsnewglibc`` wanting ``__glibc >=2.99``,
  ``cudapkg`` wanting ``__cuda``), ``nosha`` whose repodata lacks sha256, and
  :func:`make_many` chains for benchmarks;
* with :func:`cuda_packages` (not in the standard channel: it needs NVIDIA's wheel from PyPI,
  :func:`cudart_wheel`), CUDA 12.4 as the conda channels ship it: ``cuda-version 12.4``,
  ``cuda-cudart 12.4.127`` holding the real ``libcudart.so.12`` repackaged from NVIDIA's
  ``nvidia-cuda-runtime-cu12`` wheel, a ``pytorch-cuda 12.4`` metapackage, ``cuda12app``
  wanting ``__cuda >=12`` (with a program linked to libcudart through its RPATH) and a
  ``cudatoolkit 11.8.0`` stand-in, so the channel has two CUDA releases to list.

Everything is deterministic: fixed mtimes and owners, sorted members, so two builds of the
channel are byte-identical (the compiled binary apart, if the compiler changes).
"""

from __future__ import annotations

import base64
import bz2
import contextlib
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

MTIME = 1_700_000_000
TIMESTAMP_MS = MTIME * 1000
PYTHON_BIN = Path("/usr/bin/python3.11")
PYTHON_LIB = Path("/usr/lib/python3.11")
CHANNEL_NAME = "fixture"

# conda-build's placeholder is the build env path padded with "_placehold" to 255 characters.
PLACEHOLDER = ("/opt/envnix-fixture/conda-bld/hellobin_1700000000000/_h_env"
               + "_placehold" * 30)[:255]

# Left out of the repackaged stdlib: tests, GUI, the 25 MB static lib, and Debian's marker
# that makes pip refuse to install (a conda env is not externally managed).
_STDLIB_SKIP_DIRS = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "__pycache__",
                     "config-3.11-x86_64-linux-gnu"}
_STDLIB_SKIP_FILES = {"EXTERNALLY-MANAGED", "sitecustomize.py"}
_LIB2TO3_SKIP = {"tests"}
SITE_PTH = ("import os, site, sys; site.addsitedir(os.path.join(sys.prefix, 'lib', "
            "'python%d.%d' % sys.version_info[:2], 'site-packages'))\n")


@dataclass
class Package:
    """A package to write: metadata plus its files relative to the prefix."""

    name: str
    version: str
    build: str = "0"
    subdir: str = "noarch"
    depends: Sequence[str] = ()
    constrains: Sequence[str] = ()
    noarch: str | None = "generic"
    files: dict[str, bytes] = field(default_factory=dict)
    executables: set[str] = field(default_factory=set)
    symlinks: dict[str, str] = field(default_factory=dict)
    placeholders: dict[str, str] = field(default_factory=dict)
    """path -> file_mode ("text" or "binary") for files that contain PLACEHOLDER."""
    link_json: dict[str, object] | None = None
    formats: tuple[str, ...] = (".tar.bz2",)
    with_sha256: bool = True
    build_number: int = 0
    license: str = "MIT"

    @property
    def dist(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"


@dataclass(frozen=True)
class BuiltPackage:
    """One archive in the channel, with the numbers repodata.json holds for it."""

    name: str
    version: str
    build: str
    subdir: str
    fn: str
    sha256: str
    md5: str
    size: int
    sha256_in_repodata: bool
    depends: tuple[str, ...]

    @property
    def path(self) -> str:
        return f"{self.subdir}/{self.fn}"


@dataclass(frozen=True)
class ChannelInfo:
    """What :func:`build_channel` wrote."""

    root: Path
    packages: tuple[BuiltPackage, ...]
    placeholder: str = PLACEHOLDER
    python_version: str | None = None

    def get(self, name: str, version: str | None = None, ext: str | None = None) -> BuiltPackage:
        for pkg in self.packages:
            if pkg.name == name and version in (None, pkg.version) and (
                    ext is None or pkg.fn.endswith(ext)):
                return pkg
        raise KeyError(name)

    @property
    def names(self) -> set[str]:
        return {p.name for p in self.packages}


# --------------------------------------------------------------------------------------------
# archives
# --------------------------------------------------------------------------------------------


def _tar(members: dict[str, bytes], executables: set[str], symlinks: dict[str, str],
         compressor: str) -> bytes:
    """A deterministic tar of ``members`` (and symlinks), bzip2- or zstd-compressed."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted({*members, *symlinks}):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
            if name in symlinks:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, symlinks[name], 0o777
                tar.addfile(info)
                continue
            data = members[name]
            info.size, info.mode = len(data), 0o755 if name in executables else 0o644
            tar.addfile(info, io.BytesIO(data))
    if compressor == "bz2":
        return bz2.compress(raw.getvalue(), 9)
    return zstandard.ZstdCompressor(level=10).compress(raw.getvalue())


def _zip_stored(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2023, 11, 14, 22, 13, 20))
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return out.getvalue()


def _index_json(pkg: Package) -> dict[str, object]:
    index: dict[str, object] = {
        "name": pkg.name, "version": pkg.version, "build": pkg.build,
        "build_number": pkg.build_number, "depends": list(pkg.depends),
        "license": pkg.license, "subdir": pkg.subdir, "timestamp": TIMESTAMP_MS,
    }
    if pkg.constrains:
        index["constrains"] = list(pkg.constrains)
    if pkg.noarch:
        index["noarch"] = pkg.noarch
    if pkg.subdir != "noarch":
        index["arch"], index["platform"] = "x86_64", "linux"
    return index


def _paths_json(pkg: Package) -> dict[str, object]:
    entries = []
    for path in sorted({*pkg.files, *pkg.symlinks}):
        if path in pkg.symlinks:
            target = str(Path(path).parent / pkg.symlinks[path])
            data = pkg.files.get(os.path.normpath(target), pkg.symlinks[path].encode())
            entry: dict[str, object] = {"_path": path, "path_type": "softlink"}
        else:
            data = pkg.files[path]
            entry = {"_path": path, "path_type": "hardlink"}
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        entry["size_in_bytes"] = len(data)
        if path in pkg.placeholders:
            entry["file_mode"] = pkg.placeholders[path]
            entry["prefix_placeholder"] = PLACEHOLDER
        entries.append(entry)
    return {"paths": entries, "paths_version": 1}


def _info_members(pkg: Package) -> dict[str, bytes]:
    def dump(obj: object) -> bytes:
        return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()

    info = {
        "info/index.json": dump(_index_json(pkg)),
        "info/paths.json": dump(_paths_json(pkg)),
        "info/files": "".join(f"{p}\n" for p in sorted({*pkg.files, *pkg.symlinks})).encode(),
        "info/about.json": dump({"summary": f"{pkg.name}: envnix test fixture"}),
    }
    if pkg.placeholders:
        info["info/has_prefix"] = "".join(
            f"{PLACEHOLDER} {mode} {path}\n" for path, mode in sorted(pkg.placeholders.items())
        ).encode()
    if pkg.link_json is not None:
        info["info/link.json"] = dump(pkg.link_json)
    return info


def write_package(pkg: Package, subdir_dir: Path) -> list[tuple[str, bytes]]:
    """Write the package in each of its formats; returns (file name, archive bytes)."""
    info = _info_members(pkg)
    out = []
    for ext in pkg.formats:
        if ext == ".tar.bz2":
            data = _tar({**info, **pkg.files}, pkg.executables, pkg.symlinks, "bz2")
        elif ext == ".conda":
            data = _zip_stored([
                ("metadata.json", b'{"conda_pkg_format_version": 2}'),
                (f"pkg-{pkg.dist}.tar.zst",
                 _tar(pkg.files, pkg.executables, pkg.symlinks, "zst")),
                (f"info-{pkg.dist}.tar.zst", _tar(info, set(), {}, "zst")),
            ])
        else:
            raise ValueError(ext)
        fn = pkg.dist + ext
        (subdir_dir / fn).write_bytes(data)
        out.append((fn, data))
    return out


# --------------------------------------------------------------------------------------------
# the packages
# --------------------------------------------------------------------------------------------

GLIBC_DEP = "__glibc >=2.17,<3.0.a0"


def python_available() -> bool:
    """Whether this machine has the Debian python 3.11 the fixture repackages."""
    return PYTHON_BIN.is_file() and (PYTHON_LIB / "os.py").is_file() and (
        PYTHON_LIB / "lib-dynload").is_dir()


def gcc_available() -> bool:
    return shutil.which("gcc") is not None


def _python_version() -> str:
    code = "import platform; print(platform.python_version())"
    out = subprocess.run([str(PYTHON_BIN), "-c", code], capture_output=True, text=True,
                         check=True, env={})
    return out.stdout.strip()


def _patch(text: str, old: str, new: str, what: str) -> str:
    if text.count(old) != 1:
        raise RuntimeError(f"cannot patch {what}: Debian's code changed ({old!r} not found once)")
    return text.replace(old, new)


def _python() -> Package:
    """Debian's python3.11 in conda's layout.

    Findings (checked by test_conda_lock.py::test_fixture_packages_install_and_run_with_rattler):

    * getpath needs no help: with the binary at ``<prefix>/bin/python3.11`` it finds the
      landmarks ``<prefix>/lib/python3.11/os.py`` and ``lib-dynload``, so ``sys.prefix`` and
      ``sys.exec_prefix`` are ``<prefix>`` with no PYTHONHOME.
    * Debian's ``site`` only adds ``<prefix>/lib/python3.11/site-packages`` inside a venv;
      otherwise it adds ``local/lib/python3.11/dist-packages``, ``lib/python3/dist-packages``
      and ``lib/python3.11/dist-packages`` (each only if it exists). And ``site`` is *frozen*
      into Debian's binary (3.11 deep-freezes it), so patching ``site.py`` changes nothing
      without ``-X frozen_modules=off``. The package therefore ships
      ``lib/python3.11/dist-packages/conda-site-packages.pth`` whose ``import`` line calls
      ``site.addsitedir(<prefix>/lib/python3.11/site-packages)``: that puts site-packages on
      sys.path (last, after dist-packages) *and* processes the ``.pth`` files inside it.
    * ``sysconfig`` is not frozen; Debian's prefers the ``posix_local`` scheme (purelib
      ``<prefix>/local/lib/python3.11/dist-packages``), so its venv test is patched to be
      always true, giving conda's ``posix_prefix`` (purelib ``lib/python3.11/site-packages``)
      for tools such as pip run inside the env.
    * ``sitecustomize.py`` is a symlink to ``/etc/python3.11``: left out.
    """
    version = _python_version()
    files: dict[str, bytes] = {}
    symlinks: dict[str, str] = {}
    executables: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(PYTHON_LIB):
        rel_dir = Path(dirpath).relative_to(PYTHON_LIB)
        dirnames[:] = sorted(d for d in dirnames if d not in _STDLIB_SKIP_DIRS and not (
            rel_dir.parts[:1] == ("lib2to3",) and d in _LIB2TO3_SKIP))
        for name in sorted(filenames):
            if name in _STDLIB_SKIP_FILES and rel_dir == Path("."):
                continue
            src = Path(dirpath) / name
            dest = f"lib/python3.11/{(rel_dir / name).as_posix()}"
            if src.is_symlink():
                target = os.readlink(src)
                if target.startswith("/"):
                    continue
                symlinks[dest] = target
            else:
                files[dest] = src.read_bytes()
                if os.access(src, os.X_OK) and name.endswith(".so"):
                    executables.add(dest)
    # Debian's site is frozen into the binary: a .pth in a dir it does scan adds site-packages.
    files["lib/python3.11/dist-packages/conda-site-packages.pth"] = SITE_PTH.encode()
    sysconfig = files["lib/python3.11/sysconfig.py"].decode()
    sysconfig = _patch(
        sysconfig, '    if sys.base_prefix != sys.prefix or hasattr(sys, "real_prefix"):\n',
        "    if True:  # envnix fixture: conda layout, not Debian's\n", "sysconfig.py")
    files["lib/python3.11/sysconfig.py"] = sysconfig.encode()
    files["lib/python3.11/site-packages/README.txt"] = b"conda's site-packages\n"
    files["bin/python3.11"] = PYTHON_BIN.read_bytes()
    executables.add("bin/python3.11")
    symlinks["bin/python3"] = "python3.11"
    symlinks["bin/python"] = "python3.11"
    return Package("python", version, "h_envnix_0", "linux-64", depends=[GLIBC_DEP],
                   noarch=None, files=files, symlinks=symlinks, executables=executables,
                   formats=(".conda",), license="PSF-2.0")


_PYHELLO = '''\
"""A noarch: python package of the envnix conda fixture."""

import sys

__version__ = "1.0"


def main() -> int:
    print(f"hello from pyhello {__version__} (python {sys.version_info[0]}.{sys.version_info[1]})")
    return 0
'''


def _pyhello() -> Package:
    metadata = "Metadata-Version: 2.1\nName: pyhello\nVersion: 1.0\n"
    entry_points = "[console_scripts]\npyhello = pyhello:main\n"
    return Package(
        "pyhello", "1.0", "pyh_0", depends=["python >=3.8"], noarch="python",
        files={
            "site-packages/pyhello/__init__.py": _PYHELLO.encode(),
            "site-packages/pyhello-1.0.dist-info/METADATA": metadata.encode(),
            "site-packages/pyhello-1.0.dist-info/INSTALLER": b"conda\n",
            "site-packages/pyhello-1.0.dist-info/entry_points.txt": entry_points.encode(),
        },
        link_json={"noarch": {"type": "python", "entry_points": ["pyhello = pyhello:main"]},
                   "package_metadata_version": 1},
    )


_HELLOBIN_C = r"""
#include <stdio.h>
/* conda-build leaves the build prefix in binaries; conda pads its replacement with NULs. */
static const char prefix[] = "@PLACEHOLDER@";
static const char data[] = "@PLACEHOLDER@/share/hellobin/prefix.txt";
int main(void) {
    printf("%s\n", prefix);
    printf("data=%s\n", data);
    return 0;
}
"""


def _hellobin(workdir: Path) -> Package:
    src = workdir / "hellobin.c"
    src.write_text(_HELLOBIN_C.replace("@PLACEHOLDER@", PLACEHOLDER))
    exe = workdir / "hellobin"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src), "-Wl,--build-id=none",
                    f"-ffile-prefix-map={workdir}=."], check=True)
    binary = exe.read_bytes()
    assert PLACEHOLDER.encode() in binary
    return Package(
        "hellobin", "1.0", "h0_0", "linux-64", depends=[GLIBC_DEP, "libzlibish >=1.0"],
        noarch=None, formats=(".tar.bz2", ".conda"),
        files={"bin/hellobin": binary,
               "share/hellobin/prefix.txt": f"prefix={PLACEHOLDER}\n".encode()},
        executables={"bin/hellobin"},
        placeholders={"bin/hellobin": "binary", "share/hellobin/prefix.txt": "text"},
    )


def trivial(name: str, version: str, subdir: str = "noarch", **kw: object) -> Package:
    """A one-file package (noarch: generic, or linux-64 with a fake library); ``kw`` goes to
    :class:`Package` (depends, build, formats, with_sha256, ...)."""
    files = {f"share/{name}/{name}-{version}.txt": f"{name} {version}\n".encode()}
    if subdir != "noarch":
        kw.setdefault("noarch", None)
        files = {f"lib/lib{name}.so.{version}": f"not really ELF: {name}\n".encode()}
    return Package(name, version, subdir=subdir, files=files, **kw)  # type: ignore[arg-type]


def make_many(n: int, prefix: str = "many") -> list[Package]:
    """``n`` noarch packages in a chain (``many-00`` -> ``many-01`` -> ...), for benchmarks."""
    width = max(2, len(str(n - 1)))
    names = [f"{prefix}-{i:0{width}d}" for i in range(n)]
    return [trivial(name, "1.0", depends=[f"{names[i + 1]} >=1.0"] if i + 1 < n else [])
            for i, name in enumerate(names)]


def fixture_packages(workdir: Path, many: int = 22) -> list[Package]:
    """Every package of the standard fixture channel."""
    pkgs = [
        _pyhello(),
        trivial("libzlibish", "1.0", "linux-64", depends=[GLIBC_DEP], build="h0_0"),
        trivial("pkg-a", "1.0", depends=["pkg-b >=1.1,<2"]),
        trivial("pkg-b", "1.0"),
        trivial("pkg-b", "1.2", formats=(".conda",)),
        trivial("pkg-b", "2.0"),
        trivial("pkg-c", "1.0", constrains=["pkg-b <2"]),
        trivial("nosha", "1.0", with_sha256=False),
        trivial("needsnewglibc", "1.0", "linux-64", depends=["__glibc >=2.99"]),
        trivial("cudapkg", "1.0", "linux-64", depends=[GLIBC_DEP, "__cuda >=11.8"],
                 build="cuda118_0"),
        *make_many(many),
    ]
    if python_available():
        pkgs.append(_python())
    if gcc_available():
        pkgs.append(_hellobin(workdir))
    return pkgs


# --------------------------------------------------------------------------------------------
# CUDA, repackaged from NVIDIA's PyPI wheel
# --------------------------------------------------------------------------------------------

CUDART_WHEEL = ("nvidia-cuda-runtime-cu12", "12.4.127")
CUDART_IN_WHEEL = "nvidia/cuda_runtime/lib/libcudart.so.12"

_CUDA_VERSION_C = r"""
#include <stdio.h>
/* libcudart's API, declared here: the fixture needs no CUDA headers. */
int cudaRuntimeGetVersion(int *version);
int cudaGetDeviceCount(int *count);
int main(void) {
    int version = 0, count = 0;
    int rv = cudaRuntimeGetVersion(&version);
    int rc = cudaGetDeviceCount(&count);
    printf("runtime=%d version=%d device_count=%d\n", rv, version, rc);
    return 0;
}
"""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def cudart_wheel(cache: Path) -> Path:
    """NVIDIA's ``nvidia-cuda-runtime-cu12`` 12.4.127 wheel, cached in ``cache``.

    Located the way envnix locks any wheel (envnix.lock.pip.lock_pip: uv and its default
    index), downloaded with urllib and checked against the sha256 the lock gives.
    """
    from envnix.lock.pip import lock_pip
    from envnix.spec import PipRequest

    name, version = CUDART_WHEEL
    cache.mkdir(parents=True, exist_ok=True)
    wheels = lock_pip(PipRequest(packages=[f"{name}=={version}"]), cache, "3.11", "2.36")
    wheel = next(w for w in wheels if w.name == name)
    target = cache / wheel.filename
    if target.is_file() and _sha256_file(target) == wheel.sha256:
        return target
    with urllib.request.urlopen(wheel.url, timeout=300) as resp:
        data = resp.read()
    got = hashlib.sha256(data).hexdigest()
    if got != wheel.sha256:
        raise RuntimeError(f"{wheel.url}: sha256 {got}, the lock says {wheel.sha256}")
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def _cuda_version_program(workdir: Path, libdir: Path) -> bytes | None:
    """A program linked against libcudart.so.12 with conda's RPATH ($ORIGIN/../lib): how
    conda packages find each other's libraries without LD_LIBRARY_PATH. None without gcc."""
    if not gcc_available():
        return None
    src = workdir / "cuda-runtime-version.c"
    src.write_text(_CUDA_VERSION_C)
    exe = workdir / "cuda-runtime-version"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src), f"-L{libdir}", "-l:libcudart.so.12",
                    # DT_RPATH, as conda-build writes it (patchelf --force-rpath)
                    "-Wl,-rpath,$ORIGIN/../lib", "-Wl,--disable-new-dtags", "-Wl,--build-id=none",
                    f"-ffile-prefix-map={workdir}=."], check=True)
    return exe.read_bytes()


def cuda_packages(wheel: Path, workdir: Path) -> list[Package]:
    """CUDA 12.4 as conda channels ship it (see the module doc), from NVIDIA's cudart wheel."""
    with zipfile.ZipFile(wheel) as zf:
        libcudart = zf.read(CUDART_IN_WHEEL)
    libdir = workdir / "cudart-lib"
    libdir.mkdir(parents=True, exist_ok=True)
    (libdir / "libcudart.so.12").write_bytes(libcudart)
    version = CUDART_WHEEL[1]
    release_pin = "cuda-version >=12.4,<12.5.0a0"
    app_files = {"share/cuda12app/README": b"built for CUDA 12\n"}
    program = _cuda_version_program(workdir, libdir)
    if program is not None:
        app_files["bin/cuda-runtime-version"] = program
    return [
        # The release pin: no files; it constrains the driver and the monolithic toolkit.
        Package("cuda-version", "12.4", "h3060b56_3", constrains=[
            "cudatoolkit 12.4|12.4.*", "__cuda >=12"], formats=(".conda",)),
        Package("cuda-cudart", version, "h99ab3db_0", "linux-64",
                depends=[GLIBC_DEP, release_pin], noarch=None, formats=(".conda",),
                files={f"lib/libcudart.so.{version}": libcudart},
                executables={f"lib/libcudart.so.{version}"},
                symlinks={"lib/libcudart.so.12": f"libcudart.so.{version}"},
                license="LicenseRef-NVIDIA-End-User-License-Agreement"),
        Package("pytorch-cuda", "12.4", "hc786d27_7",
                depends=["cuda-cudart 12.4.*", "cuda-version 12.4.*"]),
        Package("cuda12app", "1.0", "cuda124_0", "linux-64", noarch=None,
                depends=[GLIBC_DEP, "__cuda >=12", "cuda-cudart >=12.4,<13"],
                files=app_files, executables={"bin/cuda-runtime-version"} & set(app_files)),
        trivial("cudatoolkit", "11.8.0", "linux-64", build="h6a678d5_0",
                depends=[GLIBC_DEP, "__cuda >=11"]),
    ]


def write_repodata(root: Path, records: dict[str, dict[str, dict[str, dict[str, object]]]],
                   zst_subdirs: Sequence[str] = ("linux-64",)) -> None:
    """repodata.json per subdir (and a .zst copy for ``zst_subdirs``, as big channels have):
    linux-64 and noarch always, another platform's (linux-aarch64) when it has packages."""
    for subdir in sorted({"linux-64", "noarch", *records}):
        sections = records.get(subdir, {})
        repodata = {
            "info": {"subdir": subdir},
            "packages": dict(sorted(sections.get(".tar.bz2", {}).items())),
            "packages.conda": dict(sorted(sections.get(".conda", {}).items())),
            "removed": [],
            "repodata_version": 1,
        }
        text = json.dumps(repodata, indent=1, sort_keys=True).encode()
        (root / subdir).mkdir(parents=True, exist_ok=True)
        (root / subdir / "repodata.json").write_bytes(text)
        if subdir in zst_subdirs:
            (root / subdir / "repodata.json.zst").write_bytes(
                zstandard.ZstdCompressor(level=3).compress(text))


def build_channel(root: Path, packages: Sequence[Package] | None = None,
                  many: int = 22, extra: Sequence[Package] = ()) -> ChannelInfo:
    """Write a channel at ``root`` (``root/linux-64``, ``root/noarch``); see the module doc.

    ``extra`` packages are added to the standard ones (or to ``packages``)."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="envnix-chan-") as tmp:
        pkgs = list(packages) if packages is not None else fixture_packages(Path(tmp), many)
        pkgs += extra
        records: dict[str, dict[str, dict[str, dict[str, object]]]] = {}
        built = []
        for pkg in pkgs:
            subdir_dir = root / pkg.subdir
            subdir_dir.mkdir(parents=True, exist_ok=True)
            for fn, data in write_package(pkg, subdir_dir):
                ext = ".conda" if fn.endswith(".conda") else ".tar.bz2"
                record = _index_json(pkg)
                record.setdefault("constrains", [])
                record["md5"] = hashlib.md5(data).hexdigest()
                record["size"] = len(data)
                sha = hashlib.sha256(data).hexdigest()
                if pkg.with_sha256:
                    record["sha256"] = sha
                records.setdefault(pkg.subdir, {}).setdefault(ext, {})[fn] = record
                built.append(BuiltPackage(pkg.name, pkg.version, pkg.build, pkg.subdir, fn, sha,
                                          str(record["md5"]), len(data), pkg.with_sha256,
                                          tuple(pkg.depends)))
    write_repodata(root, records)
    python = next((p.version for p in pkgs if p.name == "python"), None)
    return ChannelInfo(root, tuple(sorted(built, key=lambda b: (b.name, b.version, b.fn))),
                       python_version=python)


# --------------------------------------------------------------------------------------------
# serving
# --------------------------------------------------------------------------------------------


class ChannelServer:
    """A loopback HTTP server for channel directories under URL prefixes (one per "mirror").

    ``requests`` records every (method, path) served, so tests can tell which mirror was used;
    ``stop()`` makes every URL unreachable (connection refused) for "mirror down" tests.
    """

    def __init__(self, roots: dict[str, Path], login: tuple[str, str] | None = None) -> None:
        self.roots = {"/" + p.strip("/"): r for p, r in roots.items()}
        self.login = login
        """(user, password): every request without that basic auth answers 401."""
        self.requests: list[tuple[str, str]] = []
        self.missing: set[str] = set()
        """Prefixes that answer 404 for everything (a mirror lacking the channel)."""
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, head: bool) -> None:
                path = self.path.split("?", 1)[0]
                server.requests.append((self.command, path))
                if server.login is not None and self.headers.get("Authorization") != (
                        "Basic " + base64.b64encode(":".join(server.login).encode()).decode()):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="private channel"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                target = server._lookup(path)
                if target is None or not target.is_file():
                    self.send_error(404)
                    return
                data = target.read_bytes()
                etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", etag)
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if not head:
                    self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        self._stopped = False

    def _lookup(self, path: str) -> Path | None:
        for prefix, root in sorted(self.roots.items(), key=lambda kv: -len(kv[0])):
            if prefix in self.missing:
                continue
            if path.startswith(prefix + "/"):
                rel = path[len(prefix) + 1:]
                if ".." in rel.split("/"):
                    return None
                return root / rel
        return None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, prefix: str) -> str:
        return self.base + "/" + prefix.strip("/")

    @property
    def urls(self) -> list[str]:
        return [self.url(p) for p in self.roots]

    def hits(self, prefix: str) -> list[str]:
        """Paths requested under one prefix."""
        p = "/" + prefix.strip("/") + "/"
        return [path for _, path in self.requests if path.startswith(p)]

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)


@contextlib.contextmanager
def serve(root: Path | dict[str, Path],
          prefixes: Sequence[str] = ("mirror-a/fixture", "mirror-b/fixture"),
          login: tuple[str, str] | None = None) -> Iterator[ChannelServer]:
    """Serve a channel directory under each prefix (each one looks like a separate mirror).

    ``root`` may also map prefixes to different channel directories. The server's ``urls``
    are the channel base URLs, in the order of ``prefixes``.
    """
    roots = root if isinstance(root, dict) else {p: root for p in prefixes}
    server = ChannelServer(roots, login)
    try:
        yield server
    finally:
        server.stop()


def dead_url(path: str = "fixture") -> str:
    """A loopback URL where nothing listens (connection refused), for "unreachable" tests."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{path.strip('/')}"


if __name__ == "__main__":  # python tests/_conda_channel.py DIR: build and describe a channel
    info = build_channel(Path(sys.argv[1]))
    for p in info.packages:
        print(f"{p.path:60} {p.size:>10} {'sha256' if p.sha256_in_repodata else 'NO sha256'}")
    print(re.sub(r"\s+", " ", f"{len(info.packages)} archives, python {info.python_version}"))

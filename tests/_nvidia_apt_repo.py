"""A flat apt repository in NVIDIA's CUDA repository layout, with a real CUDA runtime inside,
served over loopback HTTP.

NVIDIA's repositories are not reachable from CI machines, and a fake library would only test
our idea of CUDA. So the runtime comes from NVIDIA's own PyPI wheel
``nvidia-cuda-runtime-cu12==12.4.127`` (found with envnix.lock.pip.lock_pip on uv's default
index, downloaded and checked against its sha256): its ``libcudart.so.12`` is repackaged, with
the Python standard library (ar + tar), as the ``cuda-cudart-12-4`` .deb NVIDIA publishes,
at the path NVIDIA's package uses. The repository is flat, as NVIDIA's are (``deb URL /``)::

    InRelease, Release          signed with the test key; SHA256 (and MD5Sum) of Packages{,.gz}
    Packages, Packages.gz       Filename: ./<name>_<version>_<arch>.deb
    cuda-cudart-12-4_12.4.127-1_amd64.deb
        /usr/local/cuda-12.4/targets/x86_64-linux/lib/libcudart.so.12.4.127
        /usr/local/cuda-12.4/targets/x86_64-linux/lib/libcudart.so.12 -> libcudart.so.12.4.127
    cuda-toolkit-config-common_12.4.127-1_all.deb, cuda-toolkit-12-config-common_...,
    cuda-toolkit-12-4-config-common_...   what cuda-cudart-12-4 depends on in NVIDIA's
        repository; here only their ld.so.conf.d entries (which need ldconfig, which envnix
        does not run: the image's LD_LIBRARY_PATH has to name the directory instead)
    cuda-cudart-11-7_11.7.99-1_amd64.deb and its config packages, the same way from
        ``nvidia-cuda-runtime-cu11==11.7.99``: a release NVIDIA's wheels do not have

Everything but the wheel is deterministic; the wheel is cached by sha256
(``$XDG_CACHE_HOME/envnix/fixture-wheels``), so a second build needs no network.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import lzma
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from _apt_signing import armored_public_key, clearsign
from _conda_channel import ChannelServer, serve
from _ubuntu_archive import MTIME, write_ar

from envnix.lock.apt.anchors import NVIDIA_KEY_FILE
from envnix.lock.apt.fetch import default_cache_dir
from envnix.lock.pip import Wheel, lock_pip
from envnix.spec import PipRequest

RELEASE = "12.4"
RUNTIME_VERSION = "12.4.127"
LIBRARY_DIR = f"/usr/local/cuda-{RELEASE}/targets/x86_64-linux/lib"


@dataclass(frozen=True)
class Runtime:
    """One CUDA release of the repository: NVIDIA's runtime wheel it is repackaged from."""

    release: str          # 12.4: the package names' X-Y
    version: str          # 12.4.127: the wheel's, and the .deb's upstream version
    wheel: str            # the wheel's project name
    soname: str           # libcudart.so.12

    @property
    def library_dir(self) -> str:
        return f"/usr/local/cuda-{self.release}/targets/x86_64-linux/lib"


# 12.4: a release NVIDIA's wheels also have. 11.7: one they do not (they start at 11.8), which
# envnix takes from the repository on its own.
RUNTIMES = (Runtime(RELEASE, RUNTIME_VERSION, "nvidia-cuda-runtime-cu12", "libcudart.so.12"),
            Runtime("11.7", "11.7.99", "nvidia-cuda-runtime-cu11", "libcudart.so.11.0"))
PREFIX = "cuda/repos/debian12/x86_64"
"""Where the repository is served, shaped like NVIDIA's per-release directories."""
MAINTAINER = "envnix tests <tests@envnix.invalid>"


@dataclass(frozen=True)
class RepoDeb:
    """One .deb in the repository."""

    name: str
    version: str
    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class NvidiaRepo:
    """What :func:`build_repo` wrote, and the wheel the runtime came from."""

    root: Path
    debs: tuple[RepoDeb, ...]
    wheels: tuple[Wheel, ...]

    def get(self, name: str) -> RepoDeb:
        return next(d for d in self.debs if d.name == name)


def runtime_wheel(runtime: Runtime, cache: Path | None = None) -> tuple[Wheel, bytes]:
    """NVIDIA's runtime wheel: URL and sha256 from the index (lock_pip, uv's default index),
    the bytes checked against that sha256."""
    # The cu11 wheels name setuptools and wheel as dependencies: only the runtime is wanted.
    (wheel,) = [w for w in lock_pip(PipRequest(packages=[f"{runtime.wheel}=={runtime.version}"]),
                                    Path("."), "3.11", "2.36") if w.name == runtime.wheel]
    cache = cache or default_cache_dir().parent / "fixture-wheels"
    cached = cache / f"{wheel.sha256}.whl"
    with contextlib.suppress(OSError):
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == wheel.sha256:
            return wheel, data
    with urllib.request.urlopen(wheel.url, timeout=120) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != wheel.sha256:
        raise RuntimeError(f"{wheel.url} does not match its index sha256 {wheel.sha256[:12]}...")
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return wheel, data


# --------------------------------------------------------------------------------------------
# .deb writing (what dpkg-deb --build does, for regular files, symlinks and directories)
# --------------------------------------------------------------------------------------------


def _tar(entries: Sequence[tuple[str, bytes | str | None]]) -> bytes:
    """A GNU tar of ``./path`` entries: bytes are files (0644, 0755 for shared objects), a
    str is a symlink target, None a directory; owner root, fixed mtime."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, content in entries:
            info = tarfile.TarInfo("./" + path.strip("/") if path.strip("/") else "./")
            info.mtime, info.uname, info.gname = MTIME, "root", "root"
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, content, 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755 if ".so" in path else 0o644
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _with_parents(files: dict[str, bytes | str]) -> list[tuple[str, bytes | str | None]]:
    dirs: set[str] = {""}
    for path in files:
        parts = path.strip("/").split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return [*((d, None) for d in sorted(dirs)), *sorted(files.items())]


def build_deb(fields: dict[str, str], files: dict[str, bytes | str]) -> tuple[bytes, str]:
    """A .deb (debian-binary, control.tar.gz, data.tar.xz) and its control stanza."""
    size_kb = (sum(len(c) for c in files.values() if isinstance(c, bytes)) + 1023) // 1024
    control = "".join(f"{k}: {v}\n" for k, v in {**fields, "Installed-Size": str(size_kb)}
                      .items() if k != "Description") + f"Description: {fields['Description']}\n"
    md5sums = "".join(f"{hashlib.md5(c).hexdigest()}  {p.strip('/')}\n"
                      for p, c in sorted(files.items()) if isinstance(c, bytes))
    control_tar = gzip.compress(_tar([("", None), ("control", control.encode()),
                                      ("md5sums", md5sums.encode())]), 9, mtime=0)
    data_tar = lzma.compress(_tar(_with_parents(files)))
    deb = write_ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control_tar),
                    ("data.tar.xz", data_tar)])
    return deb, control


def _packages(root: Path, published: list[tuple[bytes, str]]) -> tuple[RepoDeb, ...]:
    """Write the .debs next to Packages{,.gz} and a Release and its clearsigned InRelease."""
    stanzas, debs = [], []
    for data, control in published:
        fields = dict(line.split(": ", 1) for line in control.splitlines()
                      if ": " in line and not line.startswith(" "))
        arch = fields["Architecture"]
        filename = f"{fields['Package']}_{fields['Version']}_{arch}.deb"
        (root / filename).write_bytes(data)
        sha256 = hashlib.sha256(data).hexdigest()
        stanzas.append(control + f"Filename: ./{filename}\nSize: {len(data)}\n"
                       f"MD5sum: {hashlib.md5(data).hexdigest()}\nSHA256: {sha256}\n")
        debs.append(RepoDeb(fields["Package"], fields["Version"], filename, sha256, len(data)))
    raw = "\n".join(stanzas).encode()
    files = {"Packages": raw, "Packages.gz": gzip.compress(raw, 9, mtime=0)}
    for name, data in files.items():
        (root / name).write_bytes(data)
    release = "\n".join([
        "Origin: envnix test fixture", "Label: CUDA (NVIDIA's repository layout)",
        "Architecture: x86_64", "Date: Thu, 01 Jan 2026 00:00:00 UTC", "MD5Sum:",
        *(f" {hashlib.md5(d).hexdigest()} {len(d):>16} {n}" for n, d in files.items()),
        "SHA256:",
        *(f" {hashlib.sha256(d).hexdigest()} {len(d):>16} {n}" for n, d in files.items()),
    ]) + "\n"
    (root / "Release").write_text(release)
    (root / "InRelease").write_text(clearsign(release))
    return tuple(debs)


def build_repo(root: Path, cache: Path | None = None) -> NvidiaRepo:
    """Write the repository (see the module doc) at ``root``, one runtime per RUNTIMES."""
    root.mkdir(parents=True, exist_ok=True)
    common = {"Priority": "optional", "Section": "devel", "Maintainer": MAINTAINER}
    configs: dict[str, tuple[str, str, str]] = {
        "cuda-toolkit-config-common": ("etc/ld.so.conf.d/000_cuda.conf",
                                       "/usr/local/cuda/targets/x86_64-linux/lib\n", ""),
    }
    published, wheels, cudarts = [], [], []
    for runtime in RUNTIMES:
        wheel, data = runtime_wheel(runtime, cache)
        with zipfile.ZipFile(io.BytesIO(data)) as whl:
            libcudart = whl.read(f"nvidia/cuda_runtime/lib/{runtime.soname}")
        major, xy = runtime.release.split(".")[0], runtime.release.replace(".", "-")
        mine = {
            f"cuda-toolkit-{major}-config-common": (
                f"etc/ld.so.conf.d/988_cuda-{major}.conf",
                f"/usr/local/cuda-{major}/targets/x86_64-linux/lib\n", runtime.version),
            # NVIDIA's sets up the /usr/local/cuda alternatives in maintainer scripts (not run).
            f"cuda-toolkit-{xy}-config-common": (
                f"usr/share/doc/cuda-toolkit-{xy}-config-common/README.envnix",
                "envnix fixture: stands in for the package of this name\n", runtime.version),
        }
        configs.update(mine)
        lib = f"{runtime.library_dir.lstrip('/')}/libcudart.so.{runtime.version}"
        cudarts.append(build_deb(
            {"Package": f"cuda-cudart-{xy}", "Version": f"{runtime.version}-1",
             "Architecture": "amd64", **common, "Source": "cuda-cudart",
             "Provides": f"{runtime.soname} (= {runtime.version})",
             "Depends": ", ".join(["cuda-toolkit-config-common", *mine]),
             "Description": f"CUDA Runtime native Libraries (from {wheel.filename})"},
            {lib: libcudart, f"{runtime.library_dir.lstrip('/')}/{runtime.soname}":
             f"libcudart.so.{runtime.version}"}))
        wheels.append(wheel)
    for name, (path, text, version) in configs.items():
        published.append(build_deb(
            {"Package": name, "Version": f"{version or RUNTIME_VERSION}-1",
             "Architecture": "all", **common,
             "Description": "CUDA toolkit configuration files (envnix fixture)"},
            {path: text.encode()}))
    # NVIDIA publishes its signing key next to InRelease; here it is the test key.
    (root / NVIDIA_KEY_FILE).write_bytes(armored_public_key())
    return NvidiaRepo(root, _packages(root, [*published, *cudarts]), tuple(wheels))


@contextlib.contextmanager
def serve_repo(root: Path) -> Iterator[ChannelServer]:
    """Serve the repository at :data:`PREFIX`; ``server.url(PREFIX)`` is the repo URL."""
    with serve(root, prefixes=(PREFIX,)) as server:
        yield server


if __name__ == "__main__":  # python tests/_nvidia_apt_repo.py DIR: build and describe it
    repo = build_repo(Path(sys.argv[1]))
    for d in repo.debs:
        print(f"{d.name:34} {d.version:14} {d.size:>9} {d.sha256}")

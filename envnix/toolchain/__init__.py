"""The pinned toolchain: the interpreter and tools envnix's builders run on, from pinned .debs.

The builders (envnix/builders/*.py) need a Python 3, zlib (layer gzip bytes come from it),
zstandard (for .conda packages) and proot (for run() steps). With ``--toolchain pinned`` they
come from Debian bookworm .debs pinned by URL + sha256 in a versioned pin file shipped inside
envnix (``bookworm-amd64.json`` next to this module; its type and checks are
envnix.lock.toolchain_pin, since a lock records it), extracted into one store path whose NAR
hash is pinned as well. The store path is a recursive fixed-output path: it depends only on
its name and that hash, so every user of one envnix version gets the same path (and the same
builder derivations), and no bytes can differ from what the pin says (Nix checks the hash).

How the path gets into the store: default.nix builds it with a pinned static busybox (stage
0, unpacked by ``builtin:unpack-channel``) running ``ar`` and ``tar``; or envnix extracts the
.debs here (``extract``: file contents, the executable bit and symbolic links, all a NAR
records) and adds the tree with ``nix-store --add-fixed --recursive`` (``ensure``, used for
``--store DIR`` chroot stores, where no fetch should run). Both give the pinned NAR hash. See
docs/toolchain.md, and ``python -m envnix.toolchain pin`` for regenerating the pin file from
this machine's Debian mirror.
"""

from __future__ import annotations

import io
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from envnix.core import http, process
from envnix.core.errors import BuildError, LockError
from envnix.core.progress import Progress
from envnix.lock.apt.fetch import load_index
from envnix.lock.apt.index import DebIndex, DebPackage, to_package
from envnix.lock.apt.resolver import resolve
from envnix.lock.apt.sources import machine_apt_sources
from envnix.lock.toolchain_pin import PIN_FORMAT, Toolchain, load_pin

SUITE = "bookworm"
# What the builders need, nothing more: the interpreter and its stdlib with the libraries the
# stdlib modules the builders import link to (zlib, lzma, bz2, expat, ffi), zstandard for
# .conda packages, proot (and libtalloc) for run() steps.
PACKAGES = (
    "libbz2-1.0", "libc6", "libexpat1", "libffi8", "liblzma5", "libpython3.11-minimal",
    "libpython3.11-stdlib", "libtalloc2", "libzstd1", "proot", "python3-zstandard",
    "python3.11-minimal", "zlib1g",
)
LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")
LOADER = "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
PYTHON = "usr/bin/python3.11"
PROOT = "usr/bin/proot"
# What runs a foreign platform's programs (triggers, run() steps) under proot -q: Debian's
# statically linked qemu-user, one program per platform (envnix.spec.platform's ``qemu``).
EMULATOR_PACKAGE = "qemu-user-static"
EMULATOR_PROGRAMS = ("usr/bin/qemu-aarch64-static",)


# ---------------------------------------------------------------------------- extraction

def _ar_members(data: bytes) -> dict[str, bytes]:
    """The members of an ar archive (a .deb) by name."""
    if not data.startswith(b"!<arch>\n"):
        raise BuildError("not a .deb (ar) archive")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
    return members


def _data_tar(deb: bytes) -> tarfile.TarFile:
    members = _ar_members(deb)
    for name, member in members.items():
        if name == "data.tar.xz":
            return tarfile.open(fileobj=io.BytesIO(lzma.decompress(member)))
        if name == "data.tar":
            return tarfile.open(fileobj=io.BytesIO(member))
    raise BuildError(f"no data.tar.xz in the .deb (members: {sorted(members)})")


def extract(debs: list[bytes], dest: Path, only: Collection[str] | None = None) -> None:
    """Every .deb's data.tar into ``dest``: regular files (hard links as copies) with their
    executable bit, directories and symbolic links; nothing else a NAR could record. With
    ``only``, just those paths (and the directories above them, as tar makes them)."""
    dest.mkdir()
    for deb in debs:
        with _data_tar(deb) as tar:
            members = tar.getmembers()
            by_name = {m.name: m for m in members}
            for m in members:
                rel = os.path.normpath(m.name.removeprefix("./"))
                if rel in (".", "") or rel.startswith("..") or os.path.isabs(rel):
                    continue
                if only is not None and rel not in only:
                    continue
                target = dest / rel
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or target.exists():
                    target.unlink()
                if m.issym():
                    os.symlink(m.linkname, target)
                    continue
                source = by_name.get(m.linkname) if m.islnk() else m
                if source is None or not source.isfile():
                    if m.islnk():
                        source = by_name.get("./" + m.linkname.removeprefix("./"))
                    if source is None or not source.isfile():
                        continue
                fh = tar.extractfile(source)
                assert fh is not None
                target.write_bytes(fh.read())
                target.chmod(0o755 if source.mode & stat.S_IXUSR else 0o644)


# ------------------------------------------------------------------------------- the store

def _nix(cmd: list[str]) -> str:
    proc = process.run(cmd, error=BuildError)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:2])} failed: {proc.last_error_line()}")
    return proc.text.strip()


def store_path(pin: Toolchain, store: str | None = None) -> str:
    """Where the pinned tree lives: a recursive fixed-output path, from name and hash only."""
    return _nix(["nix-store", *(["--store", store] if store else []), "--print-fixed-path",
                 "--recursive", "sha256", pin.nar_sha256, pin.store_name])


def download_debs(pin: Toolchain, directory: Path) -> list[bytes]:
    """Every pinned .deb, checked against its sha256 (the files stay in ``directory``)."""
    out = []
    for deb in pin.debs:
        file = directory / f"{deb['name']}_{deb['version']}.deb".replace(":", "%3a")
        if not file.exists():
            http.download(deb["url"], deb["sha256"], file)
        out.append(file.read_bytes())
    return out


def nar_sha256(tree: Path) -> str:
    return _nix(["nix-hash", "--type", "sha256", str(tree)])


def ensure(pin: Toolchain | None = None, store: str | None = None,
           progress: Progress | None = None) -> str:
    """The toolchain's store path, added to ``store`` (None: the default store) if missing."""
    pin = pin or load_pin()
    path = store_path(pin, store)
    valid = process.run(["nix-store", *(["--store", store] if store else []),
                         "--check-validity", path], error=BuildError)
    if valid.returncode == 0:
        return path
    if progress:
        progress(f"toolchain: fetching and unpacking {len(pin.debs)} pinned .debs "
                 "(once per machine)")
    with tempfile.TemporaryDirectory(prefix="envnix-toolchain-") as tmp:
        debs = download_debs(pin, Path(tmp))
        tree = Path(tmp) / pin.store_name
        extract(debs, tree)
        got = nar_sha256(tree)
        if got != pin.nar_sha256:
            raise BuildError(f"the pinned toolchain extracted to NAR sha256:{got}, the pin says "
                             f"sha256:{pin.nar_sha256}",
                             hint="this envnix's extraction differs from the one that made the "
                                  "pin: report it")
        added = _nix(["nix-store", *(["--store", store] if store else []), "--add-fixed",
                      "--recursive", "sha256", str(tree)])
        shutil.rmtree(tree, ignore_errors=True)
    if added != path:
        raise BuildError(f"the toolchain became {added}, expected {path}")
    return path


# -------------------------------------------------------------------------------- pinning

def _pin_entry(pkg: DebPackage) -> dict[str, Any]:
    return {"name": pkg.name, "version": pkg.version, "url": pkg.url, "sha256": pkg.sha256,
            "size": pkg.size}


def _mirror_index(progress: Progress | None) -> DebIndex:
    """bookworm's main component (+updates, +security) on this machine's Debian mirror."""
    return load_index(machine_apt_sources(SUITE, components=["main"]), progress=progress)[1]


def pin_debs(names: Sequence[str], progress: Progress | None = None) -> list[dict[str, Any]]:
    """The newest bookworm (+updates, +security) .deb of each name on this machine's Debian
    mirror, by URL + sha256 + size (the pin's entries; envnix's flake pins its own too)."""
    index = _mirror_index(progress)
    debs = []
    for name in names:
        entries = index.entries(name)
        if not entries:
            raise LockError(f"the mirror has no {name} for {SUITE}")
        debs.append(_pin_entry(to_package(index, entries[0])))
    return debs


def pin_closure(roots: Sequence[str], provided: Collection[str],
                progress: Progress | None = None) -> list[dict[str, Any]]:
    """Like :func:`pin_debs`, with the Depends closure of ``roots`` as envnix's apt resolver
    walks it for an image, less the packages in ``provided`` (already there at run time)."""
    return [_pin_entry(pkg) for pkg in resolve(_mirror_index(progress), roots, provided)]


def make_emulators(version: int, progress: Progress | None = None) -> dict[str, Any]:
    """The pin's ``emulators``: Debian's qemu-user-static, of which only the programs in
    EMULATOR_PROGRAMS become a store path of their own (not part of the toolchain: amd64
    builds never fetch it, and adding it changed no toolchain path or image digest)."""
    debs = pin_debs([EMULATOR_PACKAGE], progress)
    store_name = f"envnix-emulators-{version}-{SUITE}-amd64"
    draft = Toolchain(version, store_name, "0" * 64, debs, {})
    with tempfile.TemporaryDirectory(prefix="envnix-emulators-") as tmp:
        extract(download_debs(draft, Path(tmp)), Path(tmp) / store_name, EMULATOR_PROGRAMS)
        nar = nar_sha256(Path(tmp) / store_name)
    return {"storeName": store_name, "narSha256": nar, "debs": debs,
            "programs": list(EMULATOR_PROGRAMS)}


def make_pin(version: int, stage0: dict[str, str],
             progress: Progress | None = None) -> dict[str, Any]:
    """A fresh pin from this machine's Debian mirror: the newest bookworm (+updates,
    +security) version of every package in PACKAGES, and the NAR hash of their extraction.
    ``stage0`` (the busybox that unpacks them inside Nix) is carried over as is."""
    debs = pin_debs(PACKAGES, progress)
    store_name = f"envnix-toolchain-{version}-{SUITE}-amd64"
    draft = Toolchain(version, store_name, "0" * 64, debs, stage0)
    with tempfile.TemporaryDirectory(prefix="envnix-toolchain-") as tmp:
        extract(download_debs(draft, Path(tmp)), Path(tmp) / store_name)
        nar = nar_sha256(Path(tmp) / store_name)
    return {"format": PIN_FORMAT, "version": version, "storeName": store_name,
            "narSha256": nar, "debs": debs, "stage0": stage0,
            "emulators": make_emulators(version, progress)}

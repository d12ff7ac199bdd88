"""The image root a run() group executes in: the package trees copied, in layer order with
their OCI whiteouts applied, into one writable directory, remembering each path's image
mode/owner and store source (for the diff, _rundiff.py).

Why a module of its own: run_steps.py and triggers.py both compose roots this way; keeping
the composer apart from the proot launcher and the diff keeps each part readable.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass

import _builder as B
import _treewrite as T

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_SYMLINK_HOPS = 40


def remove(path: str) -> None:
    """Delete a file, symlink or whole directory we own, whatever its permission bits."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return

    def fix(func: Callable[..., object], p: str, _exc: object) -> None:
        os.chmod(os.path.dirname(p), 0o700)
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
                shutil.rmtree(p, onerror=fix)
            else:
                func(p)

    os.chmod(path, 0o700)
    shutil.rmtree(path, onerror=fix)


def _copy_file(src: str, dst: str, mode: int) -> None:
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
        try:
            size = os.fstat(fd_in).st_size
            done = 0
            try:
                while done < size:
                    n = os.copy_file_range(fd_in, fd_out, size - done)
                    if n == 0:
                        break
                    done += n
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                                     errno.EPERM):
                    raise
                os.lseek(fd_in, 0, os.SEEK_SET)
                os.lseek(fd_out, 0, os.SEEK_SET)
                os.ftruncate(fd_out, 0)
                done = 0
            while True:
                chunk = os.read(fd_in, T.CHUNK)
                if not chunk:
                    break
                os.write(fd_out, chunk)
            os.fchmod(fd_out, mode)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def disk_mode(kind: str, mode: int) -> int:
    """The mode put on disk: the image's bits minus setuid/setgid (Nix's sandbox forbids
    them), always owner-accessible so the builder can copy into and read back everything."""
    if kind == "dir":
        return (mode & 0o1777) | 0o700
    return (mode & 0o777) | 0o600


@dataclass
class Origin:
    """What the assembly put at a path: image mode/owner and, for files, the store source."""

    mode: int
    uid: int
    gid: int
    src: str = ""


class Rootfs:
    """The image's root filesystem, written into a writable directory tree by layering the
    package trees (copies: commands may modify any file, and the store is read-only)."""

    def __init__(self, root: str) -> None:
        os.mkdir(root, 0o755)
        self.root = root
        self.origin: dict[str, Origin] = {}

    def abs(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def _drop(self, rel: str) -> None:
        """Remove ``rel`` from disk and forget it and everything under it."""
        path = self.abs(rel)
        if not os.path.lexists(path):
            return
        if os.path.isdir(path) and not os.path.islink(path):
            for dirpath, dirnames, filenames in os.walk(path):
                sub = os.path.relpath(dirpath, self.root)
                for n in dirnames + filenames:
                    self.origin.pop(f"{sub}/{n}", None)
        self.origin.pop(rel, None)
        remove(path)

    def _clear_dir(self, rel: str) -> None:
        path = self.abs(rel)
        for name in sorted(os.listdir(path)):
            self._drop(f"{rel}/{name}" if rel else name)

    def add_tree(self, tree: str, skip: Collection[str] = ()) -> None:
        """Copy ``tree`` in; a directory named in ``skip`` (tree-relative) gets no contents."""
        with open(os.path.join(tree, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
        if isinstance(meta, dict):
            B.check_version(meta, "format", B.META_FORMAT, f"{tree}/meta.json")
        modes = meta.get("modes", {}) if isinstance(meta, dict) else {}
        if not isinstance(modes, dict):
            raise B.BuilderError(f"{tree}: meta.json modes must be an object")
        top = os.path.join(tree, "root")
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            names = sorted(os.listdir(os.path.join(top, rel_dir) if rel_dir else top))
            # Whiteouts apply to the earlier trees only: handle them before this tree's entries.
            if OPAQUE in names:
                self._clear_dir(rel_dir)
            for name in names:
                if name.startswith(WHITEOUT) and name != OPAQUE:
                    self._drop(f"{rel_dir}/{name[len(WHITEOUT):]}" if rel_dir
                               else name[len(WHITEOUT):])
            subdirs = []
            for name in names:
                if name.startswith(WHITEOUT):
                    continue
                rel = f"{rel_dir}/{name}" if rel_dir else name
                src = os.path.join(top, rel)
                st = os.lstat(src)
                given = modes.get(rel)
                if given is not None and not (isinstance(given, list) and len(given) == 3
                                              and all(isinstance(v, int) for v in given)):
                    raise B.BuilderError(f"{tree}: meta.json modes[{rel!r}] is not "
                                         "[mode, uid, gid]")
                self._add(rel, src, st, given, tree)
                if stat.S_ISDIR(st.st_mode) and rel not in skip:
                    subdirs.append(rel)
            stack.extend(reversed(subdirs))

    def _add(self, rel: str, src: str, st: os.stat_result, given: list[int] | None,
             tree: str) -> None:
        dst = self.abs(rel)
        if stat.S_ISDIR(st.st_mode):
            mode, uid, gid = given or [0o755, 0, 0]
            if os.path.lexists(dst) and not (os.path.isdir(dst) and not os.path.islink(dst)):
                self._drop(rel)
            if not os.path.lexists(dst):
                os.mkdir(dst, 0o700)
            os.chmod(dst, disk_mode("dir", mode))
            self.origin[rel] = Origin(mode, uid, gid)
            return
        if os.path.lexists(dst):
            self._drop(rel)
        if stat.S_ISREG(st.st_mode):
            mode, uid, gid = given or [0o755 if st.st_mode & 0o111 else 0o644, 0, 0]
            _copy_file(src, dst, disk_mode("file", mode))
            self.origin[rel] = Origin(mode, uid, gid, src)
        elif stat.S_ISLNK(st.st_mode):
            mode, uid, gid = given or [0o777, 0, 0]
            os.symlink(os.readlink(src), dst)
            self.origin[rel] = Origin(mode, uid, gid)
        else:
            raise B.BuilderError(f"{tree}: /{rel} is not a file, directory or symlink")

    def resolve(self, path: str) -> tuple[str, list[str]]:
        """Resolve an image path inside the rootfs, symlinks included (never leaving it).

        Returns (existing part, missing components); the existing part is a rootfs-relative
        path whose last component is not a symlink.
        """
        parts = [p for p in path.split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while parts:
            comp = parts.pop(0)
            if comp == "..":
                if done:
                    done.pop()
                continue
            cand = os.path.join(self.root, *done, comp)
            try:
                st = os.lstat(cand)
            except FileNotFoundError:
                return "/".join(done), [comp, *parts]
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise B.BuilderError(f"{path}: too many levels of symbolic links in the "
                                         "image")
                target = os.readlink(cand)
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            if parts and not stat.S_ISDIR(st.st_mode):
                raise B.BuilderError(f"{path}: /{'/'.join([*done, comp])} is not a directory "
                                     "in the image")
            done.append(comp)
        return "/".join(done), []


def is_executable(rootfs: Rootfs, path: str) -> bool:
    """Whether ``path`` (symlinks followed inside the root) is an executable file there."""
    rel, missing = rootfs.resolve(path)
    if missing or not rel:
        return False
    st = os.lstat(rootfs.abs(rel))
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


HOST_MACHINES = (62, 3)  # EM_X86_64, EM_386: what proot on the x86_64 builder runs natively


def elf_machine(rootfs: Rootfs, path: str) -> int | None:
    """The ELF e_machine of the image's program ``path``; None for a script or no ELF."""
    rel, missing = rootfs.resolve(path)
    if missing or not rel:
        return None
    try:
        with open(rootfs.abs(rel), "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")

"""Nix builder: execute one envd ``run()`` group over the image's root filesystem and emit the
group's file changes as a package tree (one layer).

Why: envd runs each ``run()`` group as a Dockerfile RUN. envnix runs it inside a Nix derivation
instead, so the result is an input-addressed, network-free, reproducible layer.

Environment:
  out       output directory (Nix's $out)
  trees     the image's package trees in layer order, later ones overriding earlier ones: a
            JSON list of paths, or the path of a file holding it (Nix's passAsFile). A tree
            entry named ``.wh.<name>`` deletes ``<name>`` of the earlier trees and
            ``.wh..wh..opq`` empties its directory (OCI whiteouts: earlier run() layers).
  commands  the group: JSON list of command strings, or the path of a file holding it
  workdir   absolute image path used as cwd (envd: /home/envd/<context name>); created (as a
            change of this layer) if the image lacks it
  shell     optional; default /usr/bin/bash, and /bin/sh when the image has no bash
  env       optional JSON object of variables for the commands (or the path of a file holding
            it), applied on top of DEFAULT_ENV
  proot     absolute path of the proot binary (host toolchain: /usr/bin/proot)
  prootLoader  optional JSON list: the command that starts ``proot`` (pinned toolchain: its
            ld.so and --library-path, since the sandbox has no /lib64/ld-linux-x86-64.so.2)
  pkgName, pkgVersion  optional, for meta.json (default "run", "0")

How the group runs (envd's RUN, made hermetic):
  1. The trees are copied (never linked: commands may rewrite any file) into
     ``$NIX_BUILD_TOP/envnix-run-*/rootfs`` in order, whiteouts applied. On disk every entry
     gets its image permission bits minus setuid/setgid (Nix's seccomp filter forbids them)
     plus owner rw(x); the image's real mode/owner is remembered. ``dev/`` gets fd/stdin/
     stdout/stderr links and a 1777 ``shm`` directory (dev/ is never part of the diff).
  2. argv: ``PROOT -0 -r ROOTFS -w WORKDIR -b /proc -b /dev/null -b /dev/zero -b /dev/full
     -b /dev/random -b /dev/urandom -b /dev/tty SHELL -c SCRIPT`` (only /dev nodes that exist),
     stdin /dev/null, stdout+stderr into one log file, cwd the work dir, a new session,
     umask 022. Environment: DEFAULT_ENV, then ``env``, then PROOT_TMP_DIR=<work dir>/proot-tmp
     (needed by proot; the script unsets it so the commands never see a build path).
     SCRIPT is envd's ``set -euo pipefail\n<cmd1>\n<cmd2>\n``; its first line also unsets
     PROOT_TMP_DIR, exports ``LD_*`` variables (so they reach the commands, not the host's
     proot) and, for bash, sets an ERR trap writing $LINENO to fd 99 so the failing command
     can be named; command N keeps envd's line number N+1. With /bin/sh (the image has no
     bash) the line is ``set -eu`` plus ``set -o pipefail`` only where the shell knows it
     (busybox ash yes, dash no); the failing command is then named only for one-command
     groups or from the shell's "line N" message.
  3. Before exec the child enters new user, network and PID namespaces (uid/gid mapped to
     themselves, loopback up as in Nix's sandbox) when the kernel allows it: a run outside
     the Nix sandbox is offline too (inside it Nix's namespace already has no network), and
     the shell is PID 1 as in a Docker RUN, so when it exits the kernel kills whatever it
     left running (daemons, `cmd &`) instead of proot waiting for them forever.
     It then installs a seccomp filter making the syscalls Debian's proot 5.1 does not
     translate (statx, faccessat2, openat2, execveat, io_uring, clone3, the new mount API,
     anything newer) fail with ENOSYS: without it they reach the host's paths; with it libc
     and tools fall back to calls proot translates. proot itself works in Nix's sandbox
     without PROOT_NO_SECCOMP.
  ``-0`` fakes root: uid/gid 0, chown to 0 works, setuid chmods "succeed" without effect,
  and chmod keeps owner r/w. chown to any other id fails (EINVAL: Nix's sandbox maps one
  uid). No host /etc/resolv.conf or /etc/hosts is bound: name lookups and connections fail
  at once. /sys is not bound.

Output (see README.md, "Package tree format"), the diff of the rootfs after vs before:
  - new or changed files, directories and symlinks under $out/root, every parent directory
    listed with its mode/owner from the image;
  - a deleted path whose parent directory remains becomes an empty file ``.wh.<name>`` in
    that parent (a deleted directory gives one whiteout, nothing for its contents); a path
    that changes type is written as its new self (no whiteout);
  - excluded, with no entries and no whiteouts: /tmp /var/tmp /proc /sys /dev /run
    /root/.cache and everything below them; ``*.pyc`` files the commands created or changed
    (their bytes embed mtimes); a new ``__pycache__`` directory that ends up empty;
  - fifos, sockets and devices the commands made are skipped (a meta.json note);
  - modes: an entry whose mode on disk did not change keeps the image's mode/owner (so
    setuid bits and 0444 files survive); a changed one gets its new mode; owners are the
    image's for existing paths and 0:0 for new ones (chown to another id fails with EINVAL in
    Nix's one-uid sandbox; proot -0 cannot record it).
  $out/meta.json is {"kind": "run", "name", "version", "modes", "notes"?}.

A path counts as unchanged when its inode, size, mtime, ctime and mode are what the assembly
left (the run starts only after the coarse clock has ticked, so any later write moves ctime);
a file with other metadata is compared by content with the store file it was copied from.

Failure: the last ~20 lines of the commands' output go to stderr ("  | " prefixed), then
ONE line ``envnix-builder: run: command failed (exit N): <command>``, or, when the output
shows a network attempt, ``envnix-builder: run(): "<command>" needs the network, which builds
do not have; use <declarative replacement>`` (pip -> install.python_packages, apt-get ->
install.apt_packages, conda -> install.conda_packages, curl/wget -> io.http or io.copy).
The work dir is removed only on success (Nix deletes it anyway; --keep-failed keeps it).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shlex
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import _archive as A

# Defaults the commands see unless `env` overrides them. Why each one:
# - SOURCE_DATE_EPOCH: tools that stamp outputs use it; 1980-01-01 because zip (wheels,
#   bdist_wheel) cannot store earlier times and would fail with 0.
# - PYTHONDONTWRITEBYTECODE, PIP_NO_COMPILE: .pyc files embed source mtimes (they are also
#   dropped from the diff); PYTHONHASHSEED: set/dict order in generated files.
# - PIP_NO_CACHE_DIR, PIP_DISABLE_PIP_VERSION_CHECK, PIP_RETRIES=0, PIP_NO_INPUT: no cache
#   writes, no version-check request, fail at the first network error instead of retrying.
# - PIP_BREAK_SYSTEM_PACKAGES, PIP_ROOT_USER_ACTION: Debian's pip refuses system installs
#   (PEP 668) and warns as root; envd users run `pip install` as root and expect it to work.
DEFAULT_ENV: dict[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "SOURCE_DATE_EPOCH": "315532800",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "PIP_NO_COMPILE": "1",
    "PIP_NO_CACHE_DIR": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_RETRIES": "0",
    "PIP_NO_INPUT": "1",
    "PIP_BREAK_SYSTEM_PACKAGES": "1",
    "PIP_ROOT_USER_ACTION": "ignore",
}

EXCLUDED = frozenset({"tmp", "var/tmp", "proc", "sys", "dev", "run", "root/.cache"})
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2"}
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
ERR_FD = 99
TAIL_LINES = 20
SCAN_BYTES = 256 * 1024
MAX_SYMLINK_HOPS = 40


# ------------------------------------------------------------------------------ inputs


def _json_input(name: str, opener: str, default: str | None = None) -> object:
    """The env var ``name`` as JSON, inline or from the file it names."""
    return A.json_input(A.getenv(name, default), name, opener)


def load_trees() -> list[str]:
    trees = _json_input("trees", "[")
    if not isinstance(trees, list) or not all(isinstance(t, str) and t for t in trees):
        raise A.BuilderError("trees: must be a JSON list of package-tree paths")
    for t in trees:
        if not os.path.isdir(os.path.join(t, "root")) or not os.path.isfile(
                os.path.join(t, "meta.json")):
            raise A.BuilderError(f"trees: {t} is not a package tree (root/ + meta.json)")
    return trees


def load_commands() -> list[str]:
    cmds = _json_input("commands", "[")
    if not isinstance(cmds, list) or not all(isinstance(c, str) for c in cmds):
        raise A.BuilderError("commands: must be a JSON list of strings")
    if not cmds:
        raise A.BuilderError("commands: the run() group is empty")
    if any("\0" in c for c in cmds):
        raise A.BuilderError("commands: a command contains a NUL byte")
    return cmds


def load_env() -> dict[str, str]:
    given = _json_input("env", "{", "{}")
    if not isinstance(given, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in given.items()):
        raise A.BuilderError("env: must be a JSON object of strings")
    for k, v in given.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) or "\0" in v:
            raise A.BuilderError(f"env: bad variable {k!r}")
    return {**DEFAULT_ENV, **given}


def image_path(value: str, what: str) -> str:
    """``/a/b`` -> ``a/b`` (``..`` and relative paths are errors)."""
    if not value.startswith("/"):
        raise A.BuilderError(f"{what} {value!r} must be an absolute image path")
    return A.safe_relpath(value[1:] or ".", what)


# ------------------------------------------------------------------------------ assembly


def _remove(path: str) -> None:
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
                chunk = os.read(fd_in, A.CHUNK)
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
        _remove(path)

    def _clear_dir(self, rel: str) -> None:
        path = self.abs(rel)
        for name in sorted(os.listdir(path)):
            self._drop(f"{rel}/{name}" if rel else name)

    def add_tree(self, tree: str) -> None:
        with open(os.path.join(tree, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
        modes = meta.get("modes", {}) if isinstance(meta, dict) else {}
        if not isinstance(modes, dict):
            raise A.BuilderError(f"{tree}: meta.json modes must be an object")
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
                    raise A.BuilderError(f"{tree}: meta.json modes[{rel!r}] is not "
                                         "[mode, uid, gid]")
                self._add(rel, src, st, given, tree)
                if stat.S_ISDIR(st.st_mode):
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
            raise A.BuilderError(f"{tree}: /{rel} is not a file, directory or symlink")

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
                    raise A.BuilderError(f"{path}: too many levels of symbolic links in the "
                                         "image")
                target = os.readlink(cand)
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            if parts and not stat.S_ISDIR(st.st_mode):
                raise A.BuilderError(f"{path}: /{'/'.join([*done, comp])} is not a directory "
                                     "in the image")
            done.append(comp)
        return "/".join(done), []


# ------------------------------------------------------------------------------ snapshots


@dataclass(frozen=True)
class State:
    """One path's on-disk state (mode is the full st_mode)."""

    kind: str  # "dir" | "file" | "symlink" | "other"
    mode: int
    size: int = 0
    ino: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    target: str = ""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def snapshot(root: str) -> dict[str, State]:
    """Every path of the rootfs except the volatile ones (lstat only, sorted walk)."""
    out: dict[str, State] = {}
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        path = os.path.join(root, rel_dir) if rel_dir else root
        try:
            names = sorted(os.listdir(path))
        except PermissionError:  # a command left a directory without owner r/x
            os.chmod(path, os.lstat(path).st_mode & 0o7777 | 0o700)
            names = sorted(os.listdir(path))
        subdirs = []
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if rel in EXCLUDED:
                continue
            st = os.lstat(os.path.join(root, rel))
            kind = _kind(st.st_mode)
            target = os.readlink(os.path.join(root, rel)) if kind == "symlink" else ""
            out[rel] = State(kind, st.st_mode, st.st_size, st.st_ino, st.st_mtime_ns,
                             st.st_ctime_ns, target)
            if kind == "dir":
                subdirs.append(rel)
        stack.extend(reversed(subdirs))
    return out


def _open_readable(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except PermissionError:
        os.chmod(path, os.lstat(path).st_mode & 0o7777 | 0o400)
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)


def same_content(a: str, b: str) -> bool:
    fa, fb = _open_readable(a), _open_readable(b)
    try:
        if os.fstat(fa).st_size != os.fstat(fb).st_size:
            return False
        while True:
            ca, cb = os.read(fa, A.CHUNK), os.read(fb, A.CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True
    finally:
        os.close(fa)
        os.close(fb)


# ------------------------------------------------------------------------------ diff


@dataclass(frozen=True)
class Change:
    rel: str
    kind: str  # "dir" | "file" | "symlink" | "whiteout"
    mode: int = 0
    uid: int = 0
    gid: int = 0
    target: str = ""


def _sort_key(rel: str) -> list[bytes]:
    return [p.encode("utf-8", "surrogateescape") for p in rel.split("/")]


def diff(rootfs: Rootfs, before: dict[str, State], after: dict[str, State],
         notes: list[str], keep_pyc: bool = False
         ) -> tuple[list[Change], dict[str, tuple[int, int, int]]]:
    """The changes (sorted by path components) and the image mode/owner of every path after
    the run (for parent directories of changed paths). ``keep_pyc``: the commands wrote
    hash-checked byte code on purpose (triggers.py), so .pyc files are kept."""
    changes: list[Change] = []
    after_meta: dict[str, tuple[int, int, int]] = {}
    for rel, a in after.items():
        b = before.get(rel)
        org = rootfs.origin.get(rel)
        if b is not None and org is not None and b.kind == a.kind:
            if (a.mode & 0o7777) == (b.mode & 0o7777):
                meta = (org.mode, org.uid, org.gid)
            else:
                meta = (a.mode & 0o7777, org.uid, org.gid)
        else:
            meta = (a.mode & 0o7777, 0, 0)
        after_meta[rel] = meta
        if b is not None and _unchanged(rootfs, rel, a, b):
            continue
        name = rel.rsplit("/", 1)[-1]
        if a.kind == "other":
            notes.append(f"/{rel}: skipped (not a file, directory or symlink)")
            continue
        if name.startswith(WHITEOUT):
            raise A.BuilderError(f"the commands created /{rel}; names starting with '.wh.' "
                                 "mean deletions in OCI layers", what="run")
        if a.kind == "file" and name.endswith(".pyc") and not keep_pyc:
            continue
        changes.append(Change(rel, a.kind, *meta, target=a.target))
    for rel in before:
        if rel in after:
            continue
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if parent and (parent not in after or after[parent].kind != "dir"):
            continue
        name = rel.rsplit("/", 1)[-1]
        changes.append(Change(f"{parent}/{WHITEOUT}{name}" if parent else WHITEOUT + name,
                              "whiteout", 0o644))
    changes.sort(key=lambda c: _sort_key(c.rel))
    return _drop_empty_pycache(changes, before), after_meta


def _unchanged(rootfs: Rootfs, rel: str, a: State, b: State) -> bool:
    if a.kind != b.kind or (a.mode & 0o7777) != (b.mode & 0o7777):
        return False
    if a.kind == "dir" or a.kind == "other":
        return True
    if a.kind == "symlink":
        return a.target == b.target
    if (a.ino, a.size, a.mtime_ns, a.ctime_ns) == (b.ino, b.size, b.mtime_ns, b.ctime_ns):
        return True
    org = rootfs.origin.get(rel)
    return (org is not None and bool(org.src) and a.size == b.size
            and same_content(rootfs.abs(rel), org.src))


def _drop_empty_pycache(changes: list[Change], before: dict[str, State]) -> list[Change]:
    """New ``__pycache__`` dirs stay only if something kept lies below them (the pyc files
    in them were dropped)."""
    kept_parents: set[str] = set()
    for c in changes:
        parts = c.rel.split("/")
        for i in range(1, len(parts)):
            kept_parents.add("/".join(parts[:i]))
    return [c for c in changes
            if not (c.kind == "dir" and c.rel.rsplit("/", 1)[-1] == "__pycache__"
                    and c.rel not in before and c.rel not in kept_parents)]


def write_changes(out_root: str, rootfs: Rootfs, changes: list[Change],
                  after_meta: dict[str, tuple[int, int, int]]) -> A.TreeWriter:
    writer = A.TreeWriter(out_root, what="path")
    added: set[str] = set()
    for c in changes:
        try:
            c.rel.encode("utf-8")
        except UnicodeEncodeError:
            raise A.BuilderError(f"the commands created a path whose name is not UTF-8: "
                                 f"/{c.rel.encode('utf-8', 'surrogateescape')!r}",
                                 what="run") from None
        parts = c.rel.split("/")
        for i in range(1, len(parts)):
            p = "/".join(parts[:i])
            if p not in added:
                writer.add_dir(p, *after_meta[p])
                added.add(p)
        if c.kind == "whiteout":
            writer.add_file(c.rel, b"", 0o644)
        elif c.kind == "dir":
            writer.add_dir(c.rel, c.mode, c.uid, c.gid)
        elif c.kind == "symlink":
            writer.add_symlink(c.rel, c.target, 0o777, c.uid, c.gid)
        else:
            fd = _open_readable(rootfs.abs(c.rel))
            with os.fdopen(fd, "rb") as f:
                writer.add_file(c.rel, f, c.mode, c.uid, c.gid)
        added.add(c.rel)
    return writer


# ------------------------------------------------------------------------------ running


def script_for(commands: list[str], env: dict[str, str], bash: bool) -> str:
    """envd's script: a first line (envd's ``set -euo pipefail`` plus our bookkeeping), then
    one line per command, so command N keeps line N+1 as under envd."""
    first = ["unset PROOT_TMP_DIR"]
    first += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())
              if k.startswith("LD_")]
    if bash:  # record only failures that errexit acts on (not ones under `set +e`)
        first += [f"trap 'case $- in *e*) echo \"$LINENO\" >&{ERR_FD};; esac' ERR",
                  "set -euo pipefail"]
    else:
        first += ["set -eu", "if (set -o pipefail) 2>/dev/null; then set -o pipefail; fi"]
    return "; ".join(first) + "\n" + "".join(c + "\n" for c in commands)


def command_at_line(commands: list[str], line: int) -> int | None:
    """Index of the command holding script line ``line`` (commands start at line 2)."""
    start = 2
    for i, c in enumerate(commands):
        end = start + c.count("\n")
        if start <= line <= end:
            return i
        start = end + 1
    return None


# proot 5.1 (Debian's) predates these x86_64 syscalls and passes them through untranslated, so
# they would act on the *host's* paths (seen: statx, faccessat2 and openat2 reached the host
# root). The filter makes them fail with ENOSYS, and libc/coreutils/Python/Rust/libuv fall
# back to the older calls proot translates (as on a pre-4.11 kernel). Also denied: io_uring
# (its path ops bypass ptrace), clone3 (glibc falls back to clone, which proot follows), the
# new mount API, x32 syscalls and every number past the newest one known here.
_DENY_X86_64 = (322, 332, 425, 426, 427, 428, 429, 430, 431, 432, 433, 435, 437, 439, 442, 452,
                463, 464, 465, 466, 467, 468, 469)
_DENY_I386 = (358, 383, *_DENY_X86_64[2:])
_FIRST_UNKNOWN = 470
_AUDIT_ARCH_X86_64 = 0xC000003E
_AUDIT_ARCH_I386 = 0x40000003
_X32_BIT = 0x40000000


def seccomp_program() -> bytes:
    """The classic-BPF seccomp program (struct sock_filter[]) denying the calls above."""
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | errno.ENOSYS  # SECCOMP_RET_ALLOW, RET_ERRNO
    # A label (str) or (code, k, jump-if-true label, jump-if-false label).
    Insn = tuple[int, int, str | None, str | None]
    prog: list[str | Insn] = [
        (ld_abs, 4, None, None),                      # seccomp_data.arch
        (jeq, _AUDIT_ARCH_X86_64, None, "i386"),
        (ld_abs, 0, None, None),                      # seccomp_data.nr
        (jge, _X32_BIT, "deny", None),
        *[(jeq, nr, "deny", None) for nr in _DENY_X86_64],
        (jge, _FIRST_UNKNOWN, "deny", None),
        (ret, allow, None, None),
        "i386",
        (jeq, _AUDIT_ARCH_I386, None, "allow"),
        (ld_abs, 0, None, None),
        *[(jeq, nr, "deny", None) for nr in _DENY_I386],
        (jge, _FIRST_UNKNOWN, "deny", None),
        "allow",
        (ret, allow, None, None),
        "deny",
        (ret, deny, None, None),
    ]
    labels: dict[str, int] = {}
    insns: list[Insn] = []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out = b""
    for i, (code, k, jt, jf) in enumerate(insns):
        t = labels[jt] - i - 1 if jt else 0
        f = labels[jf] - i - 1 if jf else 0
        out += struct.pack("=HBBI", code, t, f, k)
    return out


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc: ctypes.CDLL | None = None
_PROGRAM = ctypes.create_string_buffer(seccomp_program())
_FPROG = _SockFprog(len(_PROGRAM.raw) // 8, ctypes.addressof(_PROGRAM))


def _libc_handle() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _enter_namespaces() -> None:
    """New user + network + PID namespaces (uid/gid mapped to themselves), loopback up as in
    Nix's sandbox: only this run's own loopback is reachable, and proot's first child (the
    shell) is PID 1, whose exit kills everything it left behind."""
    libc = _libc_handle()
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(0x10000000 | 0x40000000 | 0x20000000) != 0:  # USER | NET | PID
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWPID)")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = 0x1 | 0x8 | 0x40  # IFF_UP | IFF_LOOPBACK | IFF_RUNNING
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags))  # SIOCSIFFLAGS


def _install_seccomp() -> None:
    libc = _libc_handle()
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(22, 2, ctypes.byref(_FPROG), 0, 0) != 0:  # PR_SET_SECCOMP, MODE_FILTER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def namespaces_available() -> bool:
    """Whether this kernel lets us create the namespaces (probed in a throwaway child)."""
    _libc_handle()
    pid = os.fork()
    if pid == 0:
        try:
            _enter_namespaces()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _child_setup(isolate: bool) -> Callable[[], None]:
    def setup() -> None:
        os.setsid()
        os.umask(0o022)
        if isolate:
            _enter_namespaces()
        _install_seccomp()
    return setup


@dataclass(frozen=True)
class RunResult:
    code: int
    log: str  # path of the combined output
    err_lines: list[int]
    isolated: bool


def run_group(rootfs: Rootfs, work: str, proot: list[str], shell: str, workdir: str,
              commands: list[str], env: dict[str, str], bash: bool) -> RunResult:
    tmp = os.path.join(work, "proot-tmp")
    os.mkdir(tmp, 0o700)
    log = os.path.join(work, "output.log")
    errfile = os.path.join(work, "err-lines")
    argv = [*proot, "-0", "-r", rootfs.root, "-w", workdir, "-b", "/proc"]
    argv += [arg for n in DEV_NODES if os.path.exists(f"/dev/{n}") for arg in ("-b", f"/dev/{n}")]
    argv += [shell, "-c", script_for(commands, env, bash)]
    proc_env = {k: v for k, v in env.items() if not k.startswith("LD_")}
    proc_env["PROOT_TMP_DIR"] = tmp
    isolated = namespaces_available()
    if not isolated:
        sys.stderr.write("envnix run: note: no user/network namespace available here; "
                         "relying on the Nix sandbox for network isolation\n")
    fd = os.open(errfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.dup2(fd, ERR_FD, inheritable=False)
    os.close(fd)
    try:
        with open(log, "wb") as out:
            proc = subprocess.run(argv, env=proc_env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, cwd=work, pass_fds=(ERR_FD,),
                                  preexec_fn=_child_setup(isolated), check=False)
    except subprocess.SubprocessError as exc:
        raise A.BuilderError(f"could not set up proot's namespaces/seccomp filter: {exc}",
                             what="run") from None
    finally:
        os.close(ERR_FD)
    with open(errfile, encoding="ascii", errors="replace") as f:
        lines = [int(x) for x in f.read().split() if x.isdigit()]
    return RunResult(proc.returncode, log, lines, isolated)


# ------------------------------------------------------------------------------ diagnosis

# Output that means "something tried the network" whatever the tool.
NETWORK_SIGNS = (
    "temporary failure in name resolution", "name or service not known",
    "network is unreachable", "failed to establish a new connection", "could not resolve",
    "temporary failure resolving", "no address associated with hostname",
    "newconnectionerror", "condahttperror", "unable to resolve host address",
    "could not connect to", "failed to connect to", "can't connect to remote host",
    "getaddrinfo", "could not find a version that satisfies", "no matching distribution found",
)
# Output that means the same only when the failing command is a known downloader.
WEAK_NETWORK_SIGNS = ("connection refused", "bad address", "connection timed out",
                      "unable to connect")

_SPLIT_RE = re.compile(r"&&|\|\||[;|&\n()]")
_PIP_RE = re.compile(r"^(?:sudo\s+(?:-\S+\s+)*)?(?:\S*/)?(?:(?:python[\d.]*)\s+-m\s+pip|"
                     r"pip[\d.]*)\s+install\b(.*)$", re.S)
_APT_RE = re.compile(r"^(?:sudo\s+(?:-\S+\s+)*)?(?:\S*/)?(?:apt-get|apt|aptitude)\b(.*)$", re.S)
_CONDA_RE = re.compile(r"^(?:sudo\s+(?:-\S+\s+)*)?(?:\S*/)?(?:conda|mamba|micromamba)\s+"
                       r"install\b(.*)$", re.S)
_FETCH_RE = re.compile(r"^(?:sudo\s+(?:-\S+\s+)*)?(?:\S*/)?(curl|wget)\b(.*)$", re.S)
_OTHER_NET_RE = re.compile(r"^(?:sudo\s+(?:-\S+\s+)*)?(?:\S*/)?(git|npm|yarn|cargo|go|"
                           r"conda|mamba|pip[\d.]*|apt-get|apt)\b")
_PIP_VALUE_OPTS = frozenset({
    "-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url",
    "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--src", "--platform",
    "--python-version", "--implementation", "--abi", "--only-binary", "--no-binary",
    "--upgrade-strategy", "--progress-bar", "--trusted-host", "--cache-dir", "--log",
    "--timeout", "--retries", "--proxy", "--cert", "--client-cert", "--exists-action",
    "-e", "--editable", "--config-settings", "-C", "--global-option", "--report",
})
_CONDA_VALUE_OPTS = frozenset({"-c", "--channel", "-n", "--name", "-p", "--prefix",
                               "--file"})


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split()


def _segments(command: str) -> list[str]:
    return [s.strip() for s in _SPLIT_RE.split(command) if s.strip()]


def _positional(words: list[str], value_opts: frozenset[str]) -> tuple[list[str], dict[str, str]]:
    pos: list[str] = []
    opts: dict[str, str] = {}
    skip = False
    for i, w in enumerate(words):
        if skip:
            skip = False
            continue
        if w.startswith(">") or w.startswith("<") or re.match(r"^\d*[<>]", w):
            break
        if w.startswith("-"):
            name, eq, value = w.partition("=")
            if name in value_opts:
                if not eq:
                    value = words[i + 1] if i + 1 < len(words) else ""
                    skip = True
                opts.setdefault(name, value)
            continue
        pos.append(w)
    return pos, opts


def _abbrev(command: str, limit: int = 80) -> str:
    text = " ".join(command.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _names(names: list[str]) -> str:
    return json.dumps(names)


def network_advice(command: str, output: str, generic: bool = True) -> str | None:
    """The declarative replacement for a command that needed the network, or None if the
    output shows no network attempt (or, with ``generic=False``, names no known tool)."""
    low = output.lower()
    strong = any(s in low for s in NETWORK_SIGNS)
    weak = any(s in low for s in WEAK_NETWORK_SIGNS)
    for seg in _segments(command):
        m = _PIP_RE.match(seg)
        if m and (strong or weak):
            pos, opts = _positional(_words(m.group(1)), _PIP_VALUE_OPTS)
            missing = re.findall(r"satisfies the requirement ([^\s(]+)", output)
            missing = list(dict.fromkeys(missing))
            local = [p for p in pos if p.startswith(("/", ".", "file:"))] + (
                [opts["-e"]] if "-e" in opts else []) + (
                [opts["--editable"]] if "--editable" in opts else [])
            reqs = opts.get("-r") or opts.get("--requirement")
            if local:
                deps = missing or ["<its build dependencies>"]
                return (f'"{_abbrev(seg)}" needs the network, which builds do not have (pip '
                        "fetches the project's build dependencies); put them in the image "
                        f"with install.python_packages(name={_names(deps)}) and add "
                        "--no-build-isolation")
            if reqs:
                return (f'"{_abbrev(seg)}" needs the network, which builds do not have; use '
                        f'install.python_packages(requirements="{reqs}")')
            names = [p for p in pos if not p.startswith(("git+", "http:", "https:"))] or missing
            return (f'"{_abbrev(seg)}" needs the network, which builds do not have; use '
                    f"install.python_packages(name={_names(names)})")
        m = _APT_RE.match(seg)
        if m and (strong or weak):
            words = _words(m.group(1))
            pos, _ = _positional(words, frozenset({"-o", "-t", "--target-release", "-c"}))
            if pos[:1] == ["install"] and pos[1:]:
                return (f'"{_abbrev(seg)}" needs the network, which builds do not have; use '
                        f"install.apt_packages(name={_names(pos[1:])})")
            if pos[:1] in (["update"], ["upgrade"], ["dist-upgrade"], ["full-upgrade"],
                           ["install"]):
                return (f'"{_abbrev(seg)}" needs the network, which builds do not have; use '
                        "install.apt_packages(name=[...]) (envnix resolves and pins apt "
                        "packages when locking)")
        m = _CONDA_RE.match(seg)
        if m and (strong or weak):
            pos, _ = _positional(_words(m.group(1)), _CONDA_VALUE_OPTS)
            return (f'"{_abbrev(seg)}" needs the network, which builds do not have; use '
                    f"install.conda_packages(name={_names(pos)})")
        m = _FETCH_RE.match(seg)
        if m and (strong or weak):
            urls = [w for w in _words(m.group(2)) if re.match(r"^[a-z][a-z0-9+.-]*://", w)]
            url = urls[0] if urls else "..."
            return (f'"{_abbrev(seg)}" needs the network, which builds do not have; use '
                    f'io.http(url="{url}", checksum="sha256:...") or put the file in the '
                    "build context and io.copy it")
        if _OTHER_NET_RE.match(seg) and (strong or weak):
            return (f'"{_abbrev(seg)}" needs the network, which builds do not have; declare '
                    "what it downloads instead (install.python_packages, install.apt_packages, "
                    "install.conda_packages, io.http, or io.copy from the build context)")
    if strong and generic:
        return (f'"{_abbrev(command)}" needs the network, which builds do not have; declare '
                "what it downloads instead (install.python_packages, install.apt_packages, "
                "install.conda_packages, io.http, or io.copy from the build context)")
    return None


def _tail(path: str) -> tuple[list[str], str]:
    """(last TAIL_LINES lines, last SCAN_BYTES of text) of the output."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - SCAN_BYTES))
        text = f.read().decode("utf-8", "replace")
    return text.splitlines()[-TAIL_LINES:], text


def _failing_command(commands: list[str], result: RunResult, text: str) -> int | None:
    for line in reversed(result.err_lines):
        idx = command_at_line(commands, line)
        if idx is not None:
            return idx
    for m in reversed(list(re.finditer(r"^\S*sh: (?:line )?(\d+): ", text, re.M))):
        idx = command_at_line(commands, int(m.group(1)))
        if idx is not None:
            return idx
    return 0 if len(commands) == 1 else None


def fail(commands: list[str], result: RunResult) -> None:
    lines, text = _tail(result.log)
    for line in lines:
        sys.stderr.write(f"  | {line}\n")
    code = result.code
    proot_err = re.search(r"^proot error: (.*)$", text, re.M)
    if proot_err and code in (1, 255) and not result.err_lines:
        raise A.BuilderError(f"proot could not start the commands: {proot_err.group(1)}",
                             what="run")
    killed = re.search(r"^proot info: pid \d+: terminated with signal (\d+)", text, re.M)
    idx = _failing_command(commands, result, text)
    shown = commands[idx] if idx is not None else "; ".join(commands)
    for cand in ([commands[idx]] if idx is not None else commands):
        advice = network_advice(cand, text, generic=False)
        if advice is not None:
            raise A.BuilderError(advice, what="run()")
    advice = network_advice(shown, text)
    if advice is not None:
        raise A.BuilderError(advice, what="run()")
    if code < 0:
        status = f"signal {-code}"
    elif killed and code == 255:
        status = f"signal {killed.group(1)}"
    else:
        status = f"exit {code}"
    where = "" if idx is not None else f" (one of {len(commands)} commands)"
    raise A.BuilderError(f"command failed ({status}){where}: {_abbrev(shown, 120)}", what="run")


# ------------------------------------------------------------------------------ main


def _is_executable(rootfs: Rootfs, path: str) -> bool:
    rel, missing = rootfs.resolve(path)
    if missing or not rel:
        return False
    st = os.lstat(rootfs.abs(rel))
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


def _prepare_dev(rootfs: Rootfs) -> None:
    """Mount points and /dev links for proot's binds (dev/ is excluded from the diff)."""
    dev = rootfs.abs("dev")
    if os.path.lexists(dev) and not (os.path.isdir(dev) and not os.path.islink(dev)):
        _remove(dev)
    if not os.path.lexists(dev):
        os.mkdir(dev, 0o755)
    for name, target in DEV_LINKS.items():
        if not os.path.lexists(os.path.join(dev, name)):
            os.symlink(target, os.path.join(dev, name))
    shm = os.path.join(dev, "shm")
    if not os.path.lexists(shm):
        os.mkdir(shm)
        os.chmod(shm, 0o1777)


def _make_workdir(rootfs: Rootfs, workdir: str) -> str:
    """The workdir resolved inside the image, created (0755, root) if missing."""
    image_path(workdir, "workdir")
    rel, missing = rootfs.resolve(workdir)
    if not missing and not os.path.isdir(rootfs.abs(rel)):
        raise A.BuilderError(f"workdir {workdir} is not a directory in the image")
    for comp in missing:
        rel = f"{rel}/{comp}" if rel else comp
        os.mkdir(rootfs.abs(rel), 0o755)
        os.chmod(rootfs.abs(rel), 0o755)
    return "/" + rel


def _wait_for_clock_tick() -> None:
    """Let the coarse clock (file timestamps) advance past the assembly's last write, so a
    later write by the commands always changes ctime."""
    res = time.clock_getres(getattr(time, "CLOCK_REALTIME_COARSE", 5))  # Linux's id
    time.sleep(max(0.01, 2 * res))


def execute(out: str, trees: list[str], commands_for: Callable[[Rootfs], list[str]],
            env: dict[str, str], workdir: str, proot: str, loader: object, shell_given: str,
            name: str, version: str, notes: list[str] | None = None,
            keep_pyc: bool = False) -> None:
    """Assemble the root from ``trees``, run the commands ``commands_for`` picks from it
    through proot, and write the changes as a package tree in ``out`` (also the entry point
    of triggers.py, which picks the image's own cache tools). No commands: an empty tree.
    ``notes`` (meta.json) may be appended to by ``commands_for``."""
    if not os.path.isabs(proot) or not os.access(proot, os.X_OK):
        raise A.BuilderError(f"proot {proot!r} is not an executable file")
    if not isinstance(loader, list) or not all(isinstance(a, str) for a in loader):
        raise A.BuilderError(f"prootLoader {loader!r} is not a JSON list of strings")
    image_path(workdir, "workdir")

    top = os.environ.get("NIX_BUILD_TOP") or os.environ.get("TMPDIR") or os.getcwd()
    work = tempfile.mkdtemp(prefix="envnix-run-", dir=top)
    rootfs = Rootfs(os.path.join(work, "rootfs"))
    for tree in trees:
        rootfs.add_tree(tree)
    notes = notes if notes is not None else []
    commands = commands_for(rootfs)
    changes: list[Change] = []
    after_meta: dict[str, tuple[int, int, int]] = {}
    if commands:
        shell = shell_given or "/usr/bin/bash"
        if not _is_executable(rootfs, shell):
            if shell_given or not _is_executable(rootfs, "/bin/sh"):
                raise A.BuilderError(f"the image has no executable {shell}"
                                     + ("" if shell_given else " or /bin/sh"))
            shell = "/bin/sh"
        bash = os.path.basename(shell) == "bash"

        _prepare_dev(rootfs)
        before = snapshot(rootfs.root)
        cwd = _make_workdir(rootfs, workdir)  # after the snapshot: a created workdir is a change
        _wait_for_clock_tick()

        result = run_group(rootfs, work, [*loader, proot], shell, cwd, commands, env, bash)
        if result.code != 0:
            fail(commands, result)

        after = snapshot(rootfs.root)
        changes, after_meta = diff(rootfs, before, after, notes, keep_pyc)
    os.makedirs(out, exist_ok=True)
    writer = write_changes(os.path.join(out, "root"), rootfs, changes, after_meta)
    A.write_meta(out, "run", name, version, writer.modes, notes + writer.notes)
    _remove(work)


def main() -> None:
    out = A.getenv("out")
    trees = load_trees()
    commands = load_commands()
    env = load_env()
    A.set_context("run")
    execute(out, trees, lambda _rootfs: commands, env, A.getenv("workdir"), A.getenv("proot"),
            json.loads(A.getenv("prootLoader", "[]")), A.getenv("shell", ""),
            A.getenv("pkgName", "run"), A.getenv("pkgVersion", "0"))

if __name__ == "__main__":
    A.main_wrapper(main, "run")
    sys.exit(0)

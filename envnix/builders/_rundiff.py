"""What a run() group changed: snapshots of the root before and after, their diff (OCI
whiteouts for deletions, byte-code files and empty new ``__pycache__`` dirs left out) and
the writer putting the changes into a package tree.

Why a module of its own: the diff decides the layer's bytes; it is kept apart from how the
root is composed (_rootfs.py) and how the commands run (_sandbox.py).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import _builder as B
import _treewrite as T
from _rootfs import WHITEOUT, Rootfs

EXCLUDED = frozenset({"tmp", "var/tmp", "proc", "sys", "dev", "run", "root/.cache"})


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
            ca, cb = os.read(fa, T.CHUNK), os.read(fb, T.CHUNK)
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
            raise B.BuilderError(f"the commands created /{rel}; names starting with '.wh.' "
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
                  after_meta: dict[str, tuple[int, int, int]]) -> T.TreeWriter:
    writer = T.TreeWriter(out_root, what="path")
    added: set[str] = set()
    for c in changes:
        try:
            c.rel.encode("utf-8")
        except UnicodeEncodeError:
            raise B.BuilderError(f"the commands created a path whose name is not UTF-8: "
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

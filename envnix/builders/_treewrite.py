"""Safe package-tree writing for envnix builders: archive member names made safe, and
``TreeWriter``, which refuses every way out of the root.

Not a builder itself (no env vars). Imported as a sibling module (``sys.path[0]`` is this
directory). Standard library only.

* ``TreeWriter`` refuses absolute names, ``..``, symlinks whose relative target climbs above
  the root, hard links to things outside the tree or not yet written, and writes through a
  symlink.
* ``TreeWriter.modes`` is the ``meta.json`` "modes" map: original mode/uid/gid of every entry
  that is not the default (dir 0755, file 0644 or 0755, symlink 0777, owner 0:0).
* ``TreeWriter.hardlinks`` is the ``meta.json`` "hardlinks" list: the archive's hard-link
  groups, which the Nix store (NAR) cannot hold and the layer writer restores.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Protocol

from _builder import BuilderError

CHUNK = 1 << 20


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...

# --------------------------------------------------------------------------------------------
# Paths


def safe_relpath(name: str, what: str = "member") -> str:
    """Normalise an archive member name to ``a/b/c``; '' means the root itself.

    Leading ``./`` and ``.``/empty components are dropped; an absolute name, a ``..``
    component, a NUL or a backslash is a BuilderError.
    """
    if not name:
        raise BuilderError(f"{what} has an empty name")
    if "\0" in name:
        raise BuilderError(f"{what} {name!r}: NUL in name")
    if name.startswith("/"):
        raise BuilderError(f"{what} {name!r}: absolute path")
    parts = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            raise BuilderError(f"{what} {name!r}: '..' component escapes the root")
        parts.append(comp)
    return "/".join(parts)


def symlink_escapes(link_rel: str, target: str) -> bool:
    """True if a *relative* ``target`` of the link at ``link_rel`` climbs above the root.

    Absolute targets are interpreted inside the image root (``/..`` is ``/``), so they never
    escape. The check is lexical: it does not follow other links.
    """
    if target.startswith("/"):
        return False
    parts = link_rel.split("/")[:-1]
    for comp in target.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                return True
            parts.pop()
        else:
            parts.append(comp)
    return False


def default_mode(kind: str, mode: int) -> int:
    if kind == "dir":
        return 0o755
    if kind == "symlink":
        return 0o777
    return 0o755 if mode & 0o111 else 0o644


# --------------------------------------------------------------------------------------------
# Tree writer


@dataclass
class _Entry:
    kind: str  # "dir" | "file" | "symlink"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    sha256: bytes = b""
    target: str = ""
    implicit: bool = False


class TreeWriter:
    """Writes files, dirs and symlinks under ``root`` (created, must not exist) safely.

    Every write goes through parents this writer created itself as real directories (checked
    with ``os.path.realpath`` too) and opens the final component with ``O_EXCL|O_NOFOLLOW``.

    A path written twice (a tar listing it twice, or a deb's ``bin/x`` and ``usr/bin/x``):
    dir+dir merge; a non-symlink beats a symlink; two files must have the same content and
    two symlinks the same target, otherwise it is an error.
    """

    def __init__(self, root: str, what: str = "member") -> None:
        os.makedirs(root)
        self.root = os.path.realpath(root)
        self.what = what
        self.entries: dict[str, _Entry] = {}
        self.notes: list[str] = []
        self._verified_dirs: set[str] = {self.root}
        self._link_of: dict[str, str] = {}  # hard-link name -> first name of its group

    # ---- bookkeeping

    @property
    def modes(self) -> dict[str, list[int]]:
        """path -> [mode, uid, gid] for entries that differ from the defaults."""
        out: dict[str, list[int]] = {}
        for rel, e in sorted(self.entries.items()):
            if e.implicit:
                continue
            if e.mode != default_mode(e.kind, e.mode) or e.uid != 0 or e.gid != 0:
                out[rel] = [e.mode, e.uid, e.gid]
        return out

    @property
    def hardlinks(self) -> list[list[str]]:
        """Hard-link groups (each sorted, >= 2 names), sorted: the names that are one file."""
        groups: dict[str, list[str]] = {}
        for rel, first in self._link_of.items():
            groups.setdefault(first, [first]).append(rel)
        return sorted(sorted(g) for g in groups.values())

    def note(self, text: str) -> None:
        self.notes.append(text)

    def _err(self, source: str, why: str) -> BuilderError:
        return BuilderError(f"{self.what} {source!r}: {why}")

    def _abs(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def _ensure_parents(self, rel: str, source: str) -> None:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            p = "/".join(parts[:i])
            e = self.entries.get(p)
            if e is None:
                self._mkdir_disk(p, source)
                self.entries[p] = _Entry("dir", implicit=True)
            elif e.kind == "symlink":
                raise self._err(source, f"would be written through the symlink '{p}'")
            elif e.kind != "dir":
                raise self._err(source, f"parent '{p}' is not a directory")
        parent = os.path.dirname(self._abs(rel))
        if parent not in self._verified_dirs:
            if os.path.realpath(parent) != parent:
                raise self._err(source, "parent directory resolves outside its own path")
            self._verified_dirs.add(parent)

    def _mkdir_disk(self, rel: str, source: str) -> None:
        path = self._abs(rel)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            raise self._err(source, f"'{rel}' already exists on disk") from None
        os.chmod(path, 0o755, follow_symlinks=False)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise self._err(source, f"'{rel}' is not a directory after mkdir")

    def _remove_symlink(self, rel: str, new_kind: str, source: str) -> None:
        e = self.entries.pop(rel)
        os.unlink(self._abs(rel))
        self.note(f"{rel}: {new_kind} from {source!r} replaces symlink -> {e.target}")

    # ---- public API

    def add_dir(self, rel: str, mode: int = 0o755, uid: int = 0, gid: int = 0,
                source: str | None = None) -> None:
        source = source or rel
        if not rel:
            return
        e = self.entries.get(rel)
        if e is not None:
            if e.kind == "dir":
                if e.implicit:
                    e.mode, e.uid, e.gid, e.implicit = mode & 0o7777, uid, gid, False
                elif (e.mode, e.uid, e.gid) != (mode & 0o7777, uid, gid):
                    self.note(f"{rel}: directory listed twice with different modes; kept "
                              f"{e.mode:o} {e.uid}:{e.gid}")
                return
            if e.kind == "symlink":
                self._remove_symlink(rel, "directory", source)
            else:
                raise self._err(source, f"directory '{rel}' conflicts with a file")
        self._ensure_parents(rel, source)
        self._mkdir_disk(rel, source)
        self.entries[rel] = _Entry("dir", mode & 0o7777, uid, gid)

    def add_file(self, rel: str, src: IO[bytes] | bytes, mode: int = 0o644, uid: int = 0,
                 gid: int = 0, source: str | None = None,
                 hashers: Iterable[Hasher] = ()) -> tuple[bytes, int]:
        """Write a regular file; returns (sha256 digest, size). ``hashers`` see the content too.

        If ``rel`` already holds a file with the same content the existing one is kept.
        """
        source = source or rel
        if not rel:
            raise self._err(source, "a file cannot be the root directory")
        mode &= 0o7777
        e = self.entries.get(rel)
        if e is not None:
            if e.kind == "dir":
                raise self._err(source, f"file '{rel}' conflicts with a directory")
            if e.kind == "file":
                digest, size = _hash_stream(src, hashers)
                if digest != e.sha256:
                    raise self._err(source, f"'{rel}' is provided twice with different "
                                            "content")
                self.note(f"{rel}: provided twice with the same content ({source!r})")
                return digest, size
            self._remove_symlink(rel, "file", source)
        self._ensure_parents(rel, source)
        disk_mode = 0o755 if mode & 0o111 else 0o644
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self._abs(rel), flags, disk_mode)
        h = hashlib.sha256()
        extra = list(hashers)
        size = 0
        try:
            os.fchmod(fd, disk_mode)
            with os.fdopen(fd, "wb", closefd=False) as f:
                for chunk in _chunks(src):
                    h.update(chunk)
                    for x in extra:
                        x.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
        finally:
            os.close(fd)
        self.entries[rel] = _Entry("file", mode, uid, gid, sha256=h.digest())
        return h.digest(), size

    def add_symlink(self, rel: str, target: str, mode: int = 0o777, uid: int = 0,
                    gid: int = 0, source: str | None = None) -> None:
        """A symlink, target kept as written. Relative targets must stay inside the root."""
        source = source or rel
        if not rel:
            raise self._err(source, "a symlink cannot be the root directory")
        if not target or "\0" in target:
            raise self._err(source, "symlink with an empty or invalid target")
        if symlink_escapes(rel, target):
            raise self._err(source, f"symlink target {target!r} climbs above the root")
        e = self.entries.get(rel)
        if e is not None:
            if e.kind == "symlink":
                if e.target != target:
                    raise self._err(source, f"symlink '{rel}' is provided twice with "
                                            f"different targets ({e.target!r}, {target!r})")
                return
            self.note(f"{rel}: kept the {'directory' if e.kind == 'dir' else 'file'}, "
                      f"skipped symlink -> {target} from {source!r}")
            return
        self._ensure_parents(rel, source)
        os.symlink(target, self._abs(rel))
        self.entries[rel] = _Entry("symlink", mode & 0o7777, uid, gid, target=target)

    def add_hardlink(self, rel: str, target_rel: str, mode: int | None = None,
                     uid: int | None = None, gid: int | None = None,
                     source: str | None = None) -> None:
        """A hard link to a regular file already written by this writer.

        A new name with the target's mode and owner is linked on disk too and joins the
        target's group in ``hardlinks`` (the store keeps a copy per name; the layer writer
        links them again). Anything else (a name written before, another mode or owner) is
        written as a plain copy.
        """
        source = source or rel
        t = self.entries.get(target_rel)
        if t is None:
            raise self._err(source, f"hard link target '{target_rel}' is not (yet) extracted")
        if t.kind != "file":
            raise self._err(source, f"hard link target '{target_rel}' is not a regular file")
        mode = t.mode if mode is None else mode & 0o7777
        uid = t.uid if uid is None else uid
        gid = t.gid if gid is None else gid
        if rel and rel != target_rel and rel not in self.entries \
                and (mode, uid, gid) == (t.mode, t.uid, t.gid):
            self._ensure_parents(rel, source)
            os.link(self._abs(target_rel), self._abs(rel), follow_symlinks=False)
            self.entries[rel] = _Entry("file", t.mode, t.uid, t.gid, sha256=t.sha256)
            self._link_of[rel] = self._link_of.get(target_rel, target_rel)
            return
        fd = os.open(self._abs(target_rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            self.add_file(rel, f, mode, uid, gid, source=source)


def _chunks(src: IO[bytes] | bytes) -> Iterator[bytes]:
    if isinstance(src, bytes | bytearray | memoryview):
        if len(src):
            yield bytes(src)
        return
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return
        yield chunk


def _hash_stream(src: IO[bytes] | bytes,
                 hashers: Iterable[Hasher] = ()) -> tuple[bytes, int]:
    h = hashlib.sha256()
    extra = list(hashers)
    size = 0
    for chunk in _chunks(src):
        h.update(chunk)
        for x in extra:
            x.update(chunk)
        size += len(chunk)
    return h.digest(), size

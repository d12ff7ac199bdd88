"""Shared helpers for envnix builders: safe archive readers and package-tree writing.

Not a builder itself (no env vars). Imported by unpack_deb.py, install_wheel.py and mkmeta.py
as a sibling module (``sys.path[0]`` is this directory). Standard library only; ``zstandard``
is imported lazily for zstd-compressed tar data.

* ``read_ar`` lists the members of an ``ar`` archive (the .deb container).
* ``open_tar_stream`` / ``extract_tar`` read a (gz/xz/bz2/zstd/plain) tar stream and write it
  into a package tree through ``TreeWriter``, which refuses every way out of the root:
  absolute names, ``..``, symlinks whose relative target climbs above the root, hard links to
  things outside the archive or not yet extracted, and writes through a symlink.
* ``TreeWriter.modes`` is the ``meta.json`` "modes" map: original mode/uid/gid of every entry
  that is not the default (dir 0755, file 0644 or 0755, symlink 0777, owner 0:0).
* ``main_wrapper`` turns bad input into the one-line ``envnix-builder: <what>: <why>`` error.
"""

from __future__ import annotations

import configparser
import contextlib
import csv
import hashlib
import importlib
import io
import json
import lzma
import os
import stat
import sys
import tarfile
import traceback
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, NoReturn, Protocol, cast

CHUNK = 1 << 20


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...

# --------------------------------------------------------------------------------------------
# Errors and the builder entry point


class BuilderError(Exception):
    """Bad input. ``why`` says what is wrong; ``what`` (optional) overrides the context."""

    def __init__(self, why: str, what: str | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.what = what


_context: list[str] = ["builder"]

# Exceptions that mean "the input is bad" rather than "the builder has a bug".
_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, lzma.LZMAError,
    zlib.error, EOFError, UnicodeError, csv.Error, configparser.Error, ValueError,
)


def set_context(what: str) -> None:
    """Set the ``<what>`` part of a later error line (e.g. ``deb libc6 2.36-9``)."""
    _context[0] = what


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return str(exc)
    if isinstance(exc, tarfile.TarError):
        return f"bad tar archive: {exc}"
    if isinstance(exc, zipfile.BadZipFile | zipfile.LargeZipFile):
        return f"bad zip archive: {exc}"
    if isinstance(exc, lzma.LZMAError | zlib.error | EOFError):
        return f"bad compressed data: {exc}"
    return f"bad input: {type(exc).__name__}: {exc}"


def _is_zstd_error(exc: BaseException) -> bool:
    mod = type(exc).__module__ or ""
    return mod.startswith(("zstandard", "compression.zstd", "_zstd"))


def die(what: str, why: str) -> NoReturn:
    """Print the one error line the envnix CLI looks for, and exit 1."""
    sys.stderr.write(f"envnix-builder: {_one_line(what)}: {_one_line(why)}\n")
    sys.stderr.flush()
    sys.exit(1)


def main_wrapper(fn: Callable[[], None], what: str) -> None:
    """Run a builder's main; bad input becomes one ``envnix-builder:`` line and exit 1.

    Unexpected exceptions (builder bugs) also print that line first, then the traceback.
    """
    set_context(what)
    try:
        fn()
    except BuilderError as exc:
        die(exc.what or _context[0], exc.why)
    except _INPUT_ERRORS as exc:
        die(_context[0], _describe(exc))
    except Exception as exc:
        if _is_zstd_error(exc):
            die(_context[0], f"bad zstd data: {exc}")
        sys.stderr.write(
            f"envnix-builder: {_one_line(_context[0])}: internal error: "
            f"{_one_line(type(exc).__name__ + ': ' + str(exc))}\n"
        )
        traceback.print_exc()
        sys.exit(1)


def run_reporting(fn: Callable[[], None], what: str,
                  expected: tuple[type[BaseException], ...]) -> int:
    """mklayer's and mkimage's entry point: ``expected`` errors and OSErrors become one line
    ``envnix-builder: <what>: ...`` (an OSError as ``<file>: <strerror>``); returns 0 or 1.

    Unlike :func:`main_wrapper` it returns instead of exiting and lets other exceptions
    through: tests call those builders' ``main()`` in-process and read the code it returns.
    """
    try:
        fn()
    except expected as e:
        print(f"envnix-builder: {what}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        where = os.fsdecode(e.filename) if e.filename is not None else "I/O error"
        print(f"envnix-builder: {what}: {where}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


def optional_env(name: str) -> str | None:
    """A derivation attribute (Nix passes them as environment variables), None when unset."""
    return os.environ.get(name)


def json_input(value: str, what: str, opener: str = "[") -> Any:
    """A JSON input given inline (starting with ``opener``) or as the path of a file holding it.

    Nix passes short values inline; a long list of store paths may come as a file instead.
    """
    raw = value.strip()
    if not raw.startswith(opener):
        try:
            with open(raw, encoding="utf-8") as f:
                raw = f.read()
        except OSError as exc:
            raise BuilderError(f"cannot read {what} from {value}: {exc.strerror}") from None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BuilderError(f"{what}: not JSON: {exc}") from None


def json_path_list(value: str, what: str) -> list[str]:
    """``json_input`` that must be a list of non-empty path strings."""
    items = json_input(value, what)
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise BuilderError(f"{what} must be a JSON list of paths")
    return items


def getenv(name: str, default: str | None = None) -> str:
    """An input env var; a missing required one is a BuilderError."""
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise BuilderError(f"environment variable '{name}' is not set")
        return default
    return value


# --------------------------------------------------------------------------------------------
# Deterministic output files


def dumps_json(obj: object) -> bytes:
    """Canonical JSON: sorted keys, compact separators, ASCII, trailing newline."""
    return (json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            + "\n").encode("ascii")


def write_new_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` (must not exist, never follows a symlink) with ``data``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
    finally:
        os.close(fd)


def write_meta(
    out: str, kind: str, name: str, version: str, modes: dict[str, list[int]],
    notes: Iterable[str] = (), **extra: object,
) -> None:
    """Write ``$out/meta.json`` (the package tree's metadata, see README.md)."""
    meta: dict[str, object] = {"kind": kind, "name": name, "version": version,
                               "modes": modes, **extra}
    notes = list(notes)
    if notes:
        meta["notes"] = notes
    write_new_file(os.path.join(out, "meta.json"), dumps_json(meta))


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
        """A hard link to a regular file already written by this writer, stored as a copy."""
        source = source or rel
        t = self.entries.get(target_rel)
        if t is None:
            raise self._err(source, f"hard link target '{target_rel}' is not (yet) extracted")
        if t.kind != "file":
            raise self._err(source, f"hard link target '{target_rel}' is not a regular file")
        fd = os.open(self._abs(target_rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            self.add_file(rel, f, t.mode if mode is None else mode,
                          t.uid if uid is None else uid, t.gid if gid is None else gid,
                          source=source)


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


# --------------------------------------------------------------------------------------------
# ar (the .deb container)


@dataclass(frozen=True)
class ArMember:
    name: str
    offset: int  # of the data, in the archive file
    size: int


def read_ar(f: IO[bytes]) -> list[ArMember]:
    """List the members of a System V / GNU ``ar`` archive (a .deb). Does not read data."""
    f.seek(0, os.SEEK_END)
    total = f.tell()
    f.seek(0)
    if f.read(8) != b"!<arch>\n":
        raise BuilderError("not an ar archive (bad magic)")
    members: list[ArMember] = []
    pos = 8
    while pos < total:
        f.seek(pos)
        hdr = f.read(60)
        if len(hdr) == 1 and hdr == b"\n":  # trailing pad byte
            break
        if len(hdr) < 60:
            raise BuilderError("ar archive: truncated member header")
        if hdr[58:60] != b"`\n":
            raise BuilderError(f"ar archive: bad member header at offset {pos}")
        raw_name = hdr[0:16].decode("ascii", "replace").rstrip(" ")
        try:
            size = int(hdr[48:58].decode("ascii").strip() or "0")
        except ValueError:
            raise BuilderError(f"ar archive: bad member size at offset {pos}") from None
        data = pos + 60
        if size < 0 or data + size > total:
            raise BuilderError(f"ar archive: member {raw_name!r} is truncated")
        if raw_name.startswith("#1/"):
            raise BuilderError("ar archive: BSD long member names are not supported")
        # GNU: "name/"; "/" and "//" are the symbol / long-name tables.
        if raw_name not in ("/", "//"):
            name = raw_name[:-1] if raw_name.endswith("/") else raw_name
            members.append(ArMember(name, data, size))
        pos = data + size + (size & 1)
    return members


class _Slice(io.RawIOBase):
    """Read-only view of ``size`` bytes at ``offset`` of an open file."""

    def __init__(self, f: IO[bytes], offset: int, size: int) -> None:
        super().__init__()
        self._f, self._pos, self._end = f, offset, offset + size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._end - self._pos)
        if n <= 0:
            return 0
        self._f.seek(self._pos)
        data = self._f.read(n)
        if not data:
            raise BuilderError("ar archive: unexpected end of file")
        m = len(data)
        b[:m] = data
        self._pos += m
        return m


def ar_member_reader(f: IO[bytes], member: ArMember) -> io.BufferedReader:
    return io.BufferedReader(_Slice(f, member.offset, member.size), buffer_size=CHUNK)


# --------------------------------------------------------------------------------------------
# tar streams

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _zstd_reader(fileobj: IO[bytes]) -> IO[bytes]:
    """A decompressing reader: ``zstandard`` (imported lazily), else Python 3.14's own."""
    try:
        zstandard: Any = importlib.import_module("zstandard")
    except ImportError:
        zstandard = None
    if zstandard is not None:
        dctx = zstandard.ZstdDecompressor()
        return cast(IO[bytes], dctx.stream_reader(fileobj, read_size=CHUNK,
                                                  read_across_frames=True))
    try:
        zstd: Any = importlib.import_module("compression.zstd")  # Python >= 3.14
    except ImportError:
        raise BuilderError(
            "zstd-compressed data needs the Python module 'zstandard', which is not "
            "installed for this interpreter"
        ) from None
    return cast(IO[bytes], zstd.ZstdFile(fileobj))


def import_zstandard_from(directory: str) -> None:
    """Import ``zstandard`` from ``directory`` (e.g. a builder's ``zstdPath`` input).

    ``python -E`` ignores PYTHONPATH, so a builder that needs zstd gets the directory holding
    a copy of the installed ``zstandard`` package as an input instead. Only that import sees
    the directory: it goes first on ``sys.path`` and is removed again, so nothing else (the
    standard library included) can be shadowed by what else the directory holds. Later
    ``import zstandard`` (``_zstd_reader``) finds the module in ``sys.modules``.
    """
    if not directory.startswith("/") or not os.path.isdir(os.path.join(directory, "zstandard")):
        raise BuilderError(f"zstdPath={directory!r} is not an absolute directory that holds "
                           "the 'zstandard' package")
    sys.path.insert(0, directory)
    try:
        importlib.import_module("zstandard")
    except ImportError as exc:
        raise BuilderError(f"zstdPath={directory!r}: cannot import zstandard with this "
                           f"Python ({sys.version.split()[0]}): {exc}") from None
    finally:
        sys.path.remove(directory)


def zstd_available() -> bool:
    """True if zstd data can be decompressed (``zstandard``, or Python 3.14's own module)."""
    for name in ("zstandard", "compression.zstd"):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return True
    return False


@contextlib.contextmanager
def open_tar_stream(fileobj: IO[bytes]) -> Iterator[tarfile.TarFile]:
    """Open a tar stream (plain, gz, xz, bz2 or zstd, detected by magic) for reading only."""
    if isinstance(fileobj, io.BufferedReader):
        reader = fileobj
    else:
        reader = io.BufferedReader(cast(io.RawIOBase, fileobj), buffer_size=CHUNK)
    head = reader.peek(6)[:6]
    with contextlib.ExitStack() as stack:
        if head.startswith(ZSTD_MAGIC):
            inner = stack.enter_context(contextlib.closing(_zstd_reader(reader)))
            tf = stack.enter_context(tarfile.open(
                fileobj=inner, mode="r|", encoding="utf-8", errors="surrogateescape"))
        else:
            tf = stack.enter_context(tarfile.open(
                fileobj=reader, mode="r|*", encoding="utf-8", errors="surrogateescape"))
        yield tf


PathMap = Callable[[str, tarfile.TarInfo], str | None]


def extract_tar(fileobj: IO[bytes], writer: TreeWriter, map_path: PathMap | None = None) -> int:
    """Extract a tar stream into ``writer``; returns the number of members seen.

    ``map_path(rel, member)`` may rename a member (merged-/usr) or return None to skip it.
    Device nodes and fifos are skipped with a note; other special types are an error.
    """
    count = 0
    with open_tar_stream(fileobj) as tf:
        for m in tf:
            count += 1
            source = m.name
            rel = safe_relpath(m.name, writer.what)
            if not rel:
                if m.isdir():
                    continue
                raise writer._err(source, "names the archive root but is not a directory")
            if map_path is not None:
                mapped = map_path(rel, m)
                if mapped is None:
                    continue
                rel = mapped
            mode = m.mode & 0o7777
            if m.isdir():
                writer.add_dir(rel, mode, m.uid, m.gid, source=source)
            elif m.isreg():
                f = tf.extractfile(m)
                if f is None:
                    raise writer._err(source, "cannot read member data")
                writer.add_file(rel, f, mode, m.uid, m.gid, source=source)
            elif m.issym():
                writer.add_symlink(rel, m.linkname, mode, m.uid, m.gid, source=source)
            elif m.islnk():
                try:
                    target = safe_relpath(m.linkname, "hard link target")
                except BuilderError as exc:
                    raise writer._err(source, f"{exc.why} (outside the archive)") from None
                if not target:
                    raise writer._err(source, "hard link to the archive root")
                if map_path is not None:
                    mapped_target = map_path(target, m)
                    if mapped_target is None:
                        raise writer._err(source, "hard link to a skipped member")
                    target = mapped_target
                writer.add_hardlink(rel, target, mode or None, m.uid, m.gid, source=source)
            elif m.ischr() or m.isblk() or m.isfifo():
                kind = "fifo" if m.isfifo() else "device node"
                writer.note(f"{rel}: skipped {kind}")
            else:
                raise writer._err(source, f"unsupported tar member type {m.type!r}")
    return count

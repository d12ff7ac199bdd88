"""Safe archive readers for envnix builders: ``ar`` (the .deb container) and tar streams.

Not a builder itself (no env vars). Imported by unpack_deb.py, unpack_layer.py,
install_conda.py as a sibling module (``sys.path[0]`` is this directory). Standard library
only; ``zstandard`` is imported lazily for zstd-compressed tar data.

* ``read_ar`` lists the members of an ``ar`` archive (the .deb container).
* ``open_tar_stream`` / ``extract_tar`` read a (gz/xz/bz2/zstd/plain) tar stream and write it
  into a package tree through ``_treewrite.TreeWriter``, which refuses every way out of the
  root.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

from _builder import BuilderError
from _treewrite import CHUNK, TreeWriter, safe_relpath

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

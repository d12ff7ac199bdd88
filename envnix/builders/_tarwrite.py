"""Deterministic tar writer for layers and image archives (stdlib only, no `tarfile`).

Why not `tarfile`: a layer's diffID is the sha256 of the tar bytes, and tarfile's bytes are a
property of its version (3.8 wrote devmajor/devminor differently from 3.9+), it pads to 10240
bytes and picks header encodings on its own. Here every header byte is chosen explicitly, so
the same entries give the same bytes on any Python >= 3.11.

Format (POSIX pax = ustar headers + optional `x` extended headers), fixed by this module:
- entries are written in the caller's order (mklayer sorts); duplicate paths are refused;
- a ustar header per entry: mode/uid/gid/size/mtime as zero-padded octal + NUL, checksum as
  six octal digits + NUL + space, magic `ustar\\0` version `00`, uname/gname `root` when the
  id is 0 else empty, devmajor/devminor all NUL bytes, directories' names end with `/`;
- the name goes into ustar `name` (<= 100 bytes) or the ustar `prefix`/`name` split (longest
  prefix <= 155 bytes that leaves a non-empty name <= 100 bytes); a pax header is written
  only when that is impossible or the name is not printable ASCII (record `path`), when a link
  target is longer than 100 bytes or not printable ASCII (`linkpath`), or when size/uid/gid
  overflow their octal fields (`size`, `uid`, `gid`). The pax header is named
  `PaxHeaders/<basename>` (printable ASCII only, other bytes become `_`, at most 100 bytes),
  has mode 0644, owner 0:0 and the entry's mtime, and its records are sorted by key. The
  ustar fields it replaces hold a printable-ASCII stand-in (same substitution, truncated);
- the archive ends with two 512-byte zero blocks and is NOT padded to a 10240-byte record
  (readers don't need it; fewer bytes and nothing to vary).
Names and link targets are bytes (from `os.scandir(bytes)`), so the file-system encoding of
the build host never matters; names that are not valid UTF-8 are refused (pax needs UTF-8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from _hashsink import HashingWriter, Sink

BLOCK = 512
CHUNK = 1 << 20  # read size for file contents

Kind = Literal["dir", "file", "symlink", "hardlink"]
_TYPEFLAG: dict[str, bytes] = {"file": b"0", "hardlink": b"1", "symlink": b"2", "dir": b"5"}
_MAX_SIZE = 0o77777777777  # 11 octal digits
_MAX_ID = 0o7777777  # 7 octal digits


class TarError(ValueError):
    """An entry that cannot be written (bad path, duplicate, wrong size)."""


class Source(Protocol):
    """Where a regular file's content comes from: a file opened "rb"."""

    def readinto(self, buf: memoryview, /) -> int | None: ...

    def read(self, size: int = -1, /) -> bytes | None: ...


@dataclass(frozen=True)
class Entry:
    """One archive member. `path` is relative, '/'-separated, without trailing '/'.

    `linkname` is the symlink target, or for a hard link the archive path of the first member
    with that content (which must already have been written).
    """

    path: bytes
    kind: Kind
    mode: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    linkname: bytes = b""


def _octal(value: int, width: int) -> bytes:
    """Zero-padded octal with a trailing NUL, exactly `width` bytes."""
    digits = b"%0*o" % (width - 1, value)
    if len(digits) != width - 1:
        raise TarError(f"value {value} does not fit a {width}-byte field")
    return digits + b"\0"


def _field(value: bytes, width: int) -> bytes:
    return value + b"\0" * (width - len(value))


def _ascii_standin(name: bytes, limit: int) -> bytes:
    """What goes into a ustar field that a pax record overrides: printable ASCII only."""
    return bytes(b if 0x20 <= b < 0x7F else 0x5F for b in name)[:limit]


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) for the ustar fields, or None when the name needs a pax record."""
    if len(name) <= 100:
        return b"", name
    body = name[:-1] if name.endswith(b"/") else name
    # Longest prefix <= 155 bytes ending just before a '/', leaving a name of 1..100 bytes.
    # (A shorter prefix only makes the name longer, so the longest one is the only candidate.)
    i = body.rfind(b"/", 0, 156)
    if i <= 0 or len(name) - i - 1 > 100:
        return None
    return name[:i], name[i + 1 :]


def _pax_record(key: bytes, value: bytes) -> bytes:
    """`<len> key=value\\n`, where <len> counts the whole record including itself."""
    payload = b" " + key + b"=" + value + b"\n"
    length = len(payload) + 1
    while len(str(length)) + len(payload) != length:
        length = len(str(length)) + len(payload)
    return str(length).encode("ascii") + payload


def _is_ascii(data: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in data)


def _check_path(path: bytes) -> None:
    if not path or path.startswith(b"/") or b"\0" in path:
        raise TarError(f"bad archive path {path!r}")
    if any(part in (b"", b".", b"..") for part in path.split(b"/")):
        raise TarError(f"bad archive path {path!r}")
    try:
        path.decode("utf-8")
    except UnicodeDecodeError:
        raise TarError(f"{path!r}: file name is not UTF-8") from None


class TarWriter(HashingWriter):
    """Streams a tar to `sink` and keeps the sha256 and byte count of what it wrote (`digest`
    is the diffID once closed)."""

    def __init__(self, sink: Sink, *, mtime: int = 0) -> None:
        if not 0 <= mtime <= _MAX_SIZE:
            raise TarError(f"mtime {mtime} out of range")
        super().__init__(sink)
        self._mtime = mtime
        self._seen: set[bytes] = set()
        self._files: set[bytes] = set()
        self._closed = False
        self.count = 0  # members written, pax headers not counted

    def _header(
        self, name: bytes, prefix: bytes, typeflag: bytes, *, mode: int, uid: int, gid: int,
        size: int, linkname: bytes,
    ) -> bytes:
        hdr = b"".join((
            _field(name, 100),
            _octal(mode, 8),
            _octal(uid, 8),
            _octal(gid, 8),
            _octal(size, 12),
            _octal(self._mtime, 12),
            b" " * 8,  # checksum placeholder
            typeflag,
            _field(linkname, 100),
            b"ustar\x0000",
            _field(b"root" if uid == 0 else b"", 32),
            _field(b"root" if gid == 0 else b"", 32),
            b"\0" * 16,  # devmajor, devminor: not device files
            _field(prefix, 155),
            b"\0" * 12,
        ))
        chksum = b"%06o\0 " % sum(hdr)
        return hdr[:148] + chksum + hdr[156:]

    def add(self, entry: Entry, source: Source | None = None) -> None:
        """Write one member; for a regular file, `source` supplies exactly `entry.size` bytes."""
        if self._closed:
            raise TarError("archive already closed")
        _check_path(entry.path)
        if entry.path in self._seen:
            raise TarError(f"duplicate archive path {entry.path.decode()}")
        if entry.kind not in _TYPEFLAG:
            raise TarError(f"unknown entry kind {entry.kind!r}")
        if not 0 <= entry.mode <= 0o7777 or entry.uid < 0 or entry.gid < 0 or entry.size < 0:
            raise TarError(f"{entry.path.decode()}: bad mode/owner/size")
        if entry.kind == "file":
            if source is None:
                raise TarError(f"{entry.path.decode()}: no content given")
        elif entry.size:
            raise TarError(f"{entry.path.decode()}: only regular files have a size")
        if entry.kind == "symlink":
            if not entry.linkname or b"\0" in entry.linkname:
                raise TarError(f"{entry.path.decode()}: bad symlink target")
            try:
                entry.linkname.decode("utf-8")
            except UnicodeDecodeError:
                raise TarError(f"{entry.path.decode()}: link target is not UTF-8") from None
        elif entry.kind == "hardlink":
            if entry.linkname not in self._files:
                raise TarError(
                    f"{entry.path.decode()}: hard link to {entry.linkname!r}, which is not an "
                    "earlier regular file"
                )
        elif entry.linkname:
            raise TarError(f"{entry.path.decode()}: only links have a target")

        name = entry.path + b"/" if entry.kind == "dir" else entry.path
        pax: dict[bytes, bytes] = {}
        split = _split_ustar(name) if _is_ascii(name) else None
        if split is None:
            pax[b"path"] = name
            prefix, ustar_name = b"", _ascii_standin(name, 100)
        else:
            prefix, ustar_name = split
        linkname = entry.linkname
        if len(linkname) > 100 or not _is_ascii(linkname):
            pax[b"linkpath"] = linkname
            linkname = _ascii_standin(linkname, 100)
        size, uid, gid = entry.size, entry.uid, entry.gid
        if size > _MAX_SIZE:
            pax[b"size"], size = b"%d" % size, 0
        if uid > _MAX_ID:
            pax[b"uid"], uid = b"%d" % uid, 0
        if gid > _MAX_ID:
            pax[b"gid"], gid = b"%d" % gid, 0

        if pax:
            data = b"".join(_pax_record(k, pax[k]) for k in sorted(pax))
            base = entry.path.rsplit(b"/", 1)[-1]
            xname = _ascii_standin(b"PaxHeaders/" + base, 100)
            self._emit(self._header(
                xname, b"", b"x", mode=0o644, uid=0, gid=0, size=len(data), linkname=b""
            ))
            self._emit(data)
            self._pad(len(data))
        self._emit(self._header(
            ustar_name, prefix, _TYPEFLAG[entry.kind], mode=entry.mode, uid=uid, gid=gid,
            size=size, linkname=linkname,
        ))
        if entry.kind == "file":
            assert source is not None
            self._copy(entry, source)
            self._files.add(entry.path)
        self._seen.add(entry.path)
        self.count += 1

    def _copy(self, entry: Entry, source: Source) -> None:
        remaining = entry.size
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while remaining:
            n = source.readinto(view[: min(CHUNK, remaining)])
            if not n:
                raise TarError(f"{entry.path.decode()}: file shrank while being archived")
            self._emit(view[:n])
            remaining -= n
        if source.read(1):
            raise TarError(f"{entry.path.decode()}: file grew while being archived")
        self._pad(entry.size)

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self._emit(b"\0" * (BLOCK - size % BLOCK))

    def close(self) -> None:
        """Write the end-of-archive marker (two zero blocks). Does not close the sink."""
        if not self._closed:
            self._emit(b"\0" * (2 * BLOCK))
            self._closed = True

"""/etc/ld.so.cache as glibc's ldconfig (2.33 and later: the "glibc-ld.so.cache1.1" format,
no old-format prefix) writes it for an image root, computed from the image's files.

Not a builder itself: mkmeta.py imports it (standard library only). The image is seen
through a ``View`` (what is at an image path, what a directory lists), so the scan follows
the same links ldconfig follows under ``-r ROOT``. Reproduced from ldconfig's behaviour:

* directories: /etc/ld.so.conf with its ``include`` globs (sorted), then the built-in
  trusted ones (Debian's: /lib/MULTIARCH, /usr/lib/MULTIARCH, /lib, /usr/lib); a directory
  reached twice (merged /usr) is scanned once, under the first spelling;
* in each directory, names starting "lib" or "ld-" and containing ".so" that are shared
  objects (ELF ET_DYN with a dynamic section); the key is the DT_SONAME (or the file name),
  the value DIR/SONAME; a link named like its SONAME, or a "libX.so" link for "libX.so.N",
  stands for itself; per SONAME a file beats a link, else the newer name wins;
* entries sorted as the dynamic loader's binary search expects (newest SONAME first by
  glibc's version-aware compare, then flags), a tail-merged string table, and the
  extension directory with the generator string of the image's own ldconfig binary.

ldconfig also creates a missing SONAME link next to a library; ``soname_links`` returns them.
glibc-hwcaps and legacy hwcap subdirectories are not scanned (noted when present).
"""

from __future__ import annotations

import fnmatch
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cmp_to_key

MAGIC = b"glibc-ld.so.cache1.1"
EXT_MAGIC = (-358342284) & 0xFFFFFFFF
ENDIAN_LITTLE = 2
FLAG_ELF_LIBC6 = 0x0003
FLAG_X8664_LIB64 = 0x0300
FLAG_X8664_LIBX32 = 0x0800
FLAG_AARCH64_LIB64 = 0x0a00
MULTIARCH = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
EM_X86_64, EM_386, EM_AARCH64 = 62, 3, 183


def system_dirs(arch: str) -> tuple[str, ...]:
    """ldconfig's trusted directories for Debian's ``arch``."""
    return (f"/lib/{MULTIARCH[arch]}", f"/usr/lib/{MULTIARCH[arch]}", "/lib", "/usr/lib")


GENERATOR_RE = re.compile(rb"ldconfig [^\x00\n]{1,200} release version [0-9][0-9.]{0,30}\x00")
HWCAP_DIRS = ("glibc-hwcaps", "tls", "haswell", "xeon_phi", "x86_64", "i686", "avx512_1")


@dataclass(frozen=True)
class Node:
    kind: str  # "dir", "file" or "link"
    data: str  # the file on disk for "file", the link target for "link"


class View:
    """An image root: ``node(rel)`` says what is at a relative path (no link followed),
    ``listdir(rel)`` what a directory holds."""

    def __init__(self, node: Callable[[str], Node | None],
                 listdir: Callable[[str], list[str]]) -> None:
        self.node = node
        self.listdir = listdir

    def resolve(self, path: str, follow_last: bool = True) -> str | None:
        """The link-free relative path of an image path (as chroot_canon), or None."""
        parts = [p for p in path.split("/") if p]
        done: list[str] = []
        hops = 0
        while parts:
            c = parts.pop(0)
            if c == ".":
                continue
            if c == "..":
                if done:
                    done.pop()
                continue
            rel = "/".join([*done, c])
            n = self.node(rel)
            if n is None:
                return None
            if n.kind == "link" and (parts or follow_last):
                hops += 1
                if hops > 40:
                    return None
                if n.data.startswith("/"):
                    done = []
                parts = [p for p in n.data.split("/") if p] + parts
                continue
            if parts and n.kind != "dir":
                return None
            done.append(c)
        return "/".join(done)

    def kind(self, rel: str | None) -> str | None:
        if rel is None:
            return None
        if rel == "":
            return "dir"
        n = self.node(rel)
        return n.kind if n else None

    def read(self, path: str) -> bytes | None:
        rel = self.resolve(path)
        n = self.node(rel) if rel else None
        if n is None or n.kind != "file":
            return None
        with open(n.data, "rb") as f:
            return f.read()


def libcmp(a: str, b: str) -> int:
    """glibc's _dl_cache_libcmp: runs of digits compare as numbers, a digit sorts after a
    non-digit."""
    i = j = 0
    while i < len(a):
        ca = a[i]
        cb = b[j] if j < len(b) else ""
        if ca.isdigit() and ca.isascii():
            if cb.isdigit() and cb.isascii():
                si = i
                while i < len(a) and a[i].isascii() and a[i].isdigit():
                    i += 1
                sj = j
                while j < len(b) and b[j].isascii() and b[j].isdigit():
                    j += 1
                va, vb = int(a[si:i]), int(b[sj:j])
                if va != vb:
                    return va - vb
                continue
            return 1
        if cb.isdigit() and cb.isascii():
            return -1
        if ca != cb:
            return _ord(ca) - _ord(cb)
        i += 1
        j += 1
    return 0 - (_ord(b[j]) if j < len(b) else 0)


def _ord(c: str) -> int:
    if not c:
        return 0
    code = c.encode("utf-8", "surrogateescape")[0]
    return code - 256 if code >= 128 else code  # char is signed on x86


def is_dso(name: str) -> bool:
    return name.startswith(("lib", "ld-")) and ".so" in name


def elf_soname(path: str, arch: str = "amd64") -> tuple[int, str | None] | None:
    """(cache flags, DT_SONAME or None) of a shared object, or None if it is not one that
    ldconfig takes (not ELF, not ET_DYN, no dynamic section, unknown machine)."""
    try:
        with open(path, "rb") as f:
            return _read_elf(f, arch)
    except (OSError, struct.error, ValueError, IndexError):
        return None


def _read_elf(f, arch: str = "amd64") -> tuple[int, str | None] | None:
    ident = f.read(64)
    if len(ident) < 52 or ident[:4] != b"\x7fELF" or ident[5] != 1:
        return None
    is64 = ident[4] == 2
    if is64:
        e_type, machine, _, _, phoff, _, _, _, phentsize, phnum = struct.unpack_from(
            "<HHIQQQIHHH", ident, 16)
    elif ident[4] == 1:
        e_type, machine, _, _, phoff, _, _, _, phentsize, phnum = struct.unpack_from(
            "<HHIIIIIHHH", ident, 16)
    else:
        return None
    if arch == "arm64":  # aarch64's ldconfig takes its own objects only
        if machine != EM_AARCH64 or not is64:
            return None
        flag = FLAG_ELF_LIBC6 | FLAG_AARCH64_LIB64
    elif machine == EM_X86_64:
        flag = FLAG_ELF_LIBC6 | (FLAG_X8664_LIB64 if is64 else FLAG_X8664_LIBX32)
    elif machine == EM_386 and not is64:
        flag = FLAG_ELF_LIBC6
    else:
        return None
    if e_type != 3 or phnum == 0 or phnum > 4096:
        return None
    f.seek(phoff)
    table = f.read(phentsize * phnum)
    loads: list[tuple[int, int, int]] = []
    dynamic: tuple[int, int] | None = None
    for k in range(phnum):
        if is64:
            p_type, _, off, vaddr, _, filesz, _, _ = struct.unpack_from(
                "<IIQQQQQQ", table, k * phentsize)
        else:
            p_type, off, vaddr, _, filesz, _, _, _ = struct.unpack_from(
                "<IIIIIIII", table, k * phentsize)
        if p_type == 1:
            loads.append((vaddr, off, filesz))
        elif p_type == 2:
            dynamic = (off, filesz)
    if dynamic is None or dynamic[1] == 0:
        return None
    f.seek(dynamic[0])
    raw = f.read(dynamic[1])
    fmt, size = ("<qQ", 16) if is64 else ("<iI", 8)
    tags = [struct.unpack_from(fmt, raw, k) for k in range(0, len(raw) - size + 1, size)]
    ends = next((i for i, (t, _) in enumerate(tags) if t == 0), len(tags))
    tags = tags[:ends]
    strtab = next((v for t, v in tags if t == 5), None)
    if strtab is None:
        return None
    loadoff = next((vaddr - off for vaddr, off, filesz in loads
                    if vaddr <= strtab < vaddr + filesz), 0)
    soname = next((v for t, v in tags if t == 14), None)
    if soname is None:
        return flag, None
    f.seek(strtab - loadoff + soname)
    name = f.read(4096).split(b"\0", 1)[0]
    return flag, name.decode("utf-8", "surrogateescape")


def conf_dirs(view: View, conf: str = "/etc/ld.so.conf", depth: int = 0) -> list[str]:
    """The directories an ld.so.conf names, includes expanded in sorted glob order."""
    text = view.read(conf)
    if text is None or depth > 10:
        return []
    dirs: list[str] = []
    base = conf.rsplit("/", 1)[0] or "/"
    for line in text.decode("utf-8", "surrogateescape").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "include" and len(words) > 1:
            for pattern in words[1:]:
                if not pattern.startswith("/"):
                    pattern = f"{base}/{pattern}"
                for path in _glob(view, pattern):
                    dirs += conf_dirs(view, path, depth + 1)
        elif words[0] == "hwcap":
            continue
        else:
            d = line.split("=", 1)[0].rstrip()
            d = d.rstrip("/") or "/"
            dirs.append(d)
    return dirs


def _glob(view: View, pattern: str) -> list[str]:
    head, _, tail = pattern.rpartition("/")
    if any(c in head for c in "*?["):
        return []  # glob in a directory part: not used by Debian's or Ubuntu's ld.so.conf
    rel = view.resolve(head or "/")
    if view.kind(rel) != "dir":
        return []
    return sorted(f"{head}/{n}" for n in view.listdir(rel or "")
                  if fnmatch.fnmatchcase(n, tail) and not n.startswith("."))


@dataclass(frozen=True)
class Entry:
    soname: str
    path: str
    flags: int


def scan(view: View, notes: list[str], arch: str = "amd64"
         ) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Cache entries in ldconfig's order, and the SONAME links ldconfig would create
    (image rel path, target name), for an image of Debian architecture ``arch``. (The sort
    compares bytes as x86's signed char does; only a non-ASCII SONAME would sort otherwise
    on aarch64.)"""
    entries: list[Entry] = []
    links: list[tuple[str, str]] = []
    seen: set[str] = set()
    for d in [*conf_dirs(view), *system_dirs(arch)]:
        real = view.resolve(d)
        if view.kind(real) != "dir" or real in seen:
            continue
        seen.add(real)
        found, new_links = _scan_dir(view, d, real or "", notes, arch)
        entries += found
        links += new_links
    return sort_entries(entries), links


def _scan_dir(view: View, d: str, real: str, notes: list[str], arch: str = "amd64"
              ) -> tuple[list[Entry], list[tuple[str, str]]]:
    libs: dict[str, tuple[str, bool, int]] = {}  # soname -> (name, is_link, flags)
    for name in sorted(view.listdir(real)):
        rel = f"{real}/{name}" if real else name
        n = view.node(rel)
        if n is None:
            continue
        if not is_dso(name):
            if n.kind == "dir" and name in HWCAP_DIRS:
                notes.append(f"ld.so.cache: hwcap subdirectory {d}/{name} not scanned")
            continue
        is_link = n.kind == "link"
        target = view.resolve(rel) if is_link else rel
        tnode = view.node(target) if target else None
        if tnode is None or tnode.kind != "file":
            continue
        info = elf_soname(tnode.data, arch)
        if info is None:
            continue
        flags, soname = info
        soname = soname or name
        if is_link and name != soname and not (name.endswith(".so")
                                               and soname.startswith(name)):
            is_link = False
        if is_link:
            soname = name
        old = libs.get(soname)
        if old is None or (not is_link and old[1]) or (
                is_link == old[1] and libcmp(old[0], name) < 0):
            libs[soname] = (name, is_link, flags)
    entries = []
    links = []
    for soname, (name, is_link, flags) in libs.items():
        entries.append(Entry(soname, f"{d}/{soname}" if d != "/" else f"/{soname}", flags))
        if not is_link and soname != name and view.node(
                f"{real}/{soname}" if real else soname) is None:
            links.append((f"{real}/{soname}" if real else soname, name))
    return entries, links


def sort_entries(entries: list[Entry]) -> list[Entry]:
    """ldconfig's order: by SONAME descending (glibc's compare), then higher flags first;
    equal ones keep the directory order."""
    def cmp(a: Entry, b: Entry) -> int:
        res = libcmp(b.soname, a.soname)
        if res == 0:
            return (a.flags < b.flags) - (a.flags > b.flags)
        return res
    return sorted(entries, key=cmp_to_key(cmp))


def string_table(strings: set[str]) -> tuple[bytes, dict[str, int]]:
    """ldconfig's string table: sorted by reversed string, a string that ends the one
    before it shares its bytes (tail merging)."""
    raw = {s: s.encode("utf-8", "surrogateescape") for s in strings}
    order = sorted(raw, key=lambda s: raw[s][::-1], reverse=True)
    offsets: dict[str, int] = {}
    prev = ""
    end = 0
    for s in order:
        b = raw[s]
        if prev and raw[prev].endswith(b):
            offsets[s] = offsets[prev] + len(raw[prev]) - len(b)
        else:
            offsets[s] = end
            end += len(b) + 1
        prev = s
    table = bytearray(end)
    for s, off in offsets.items():
        b = raw[s]
        table[off:off + len(b)] = b
    return bytes(table), offsets


def generator(ldconfig_binary: bytes) -> bytes:
    """The generator string compiled into an ldconfig binary ("ldconfig (Debian GLIBC ...)
    stable release version 2.36"), as that ldconfig writes into the extension."""
    m = GENERATOR_RE.search(ldconfig_binary)
    return m.group(0)[:-1] if m else b"ldconfig"


def cache_bytes(entries: list[Entry], gen: bytes) -> bytes:
    header_size = 48
    str_offset = header_size + 24 * len(entries)
    table, offsets = string_table({s for e in entries for s in (e.soname, e.path)})
    ext_offset = (str_offset + len(table) + 3) & ~3
    out = bytearray(MAGIC)
    out += struct.pack("<IIB3xI12x", len(entries), len(table), ENDIAN_LITTLE, ext_offset)
    for e in entries:
        out += struct.pack("<iIIIQ", e.flags, str_offset + offsets[e.soname],
                           str_offset + offsets[e.path], 0, 0)
    out += table
    out += b"\0" * (ext_offset - len(out))
    # extension directory: magic, count, one section (tag 0: generator, flags, offset, size)
    out += struct.pack("<IIIIII", EXT_MAGIC, 1, 0, 0, ext_offset + 24, len(gen))
    out += gen
    return bytes(out)

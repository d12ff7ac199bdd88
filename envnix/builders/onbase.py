"""A base(image=...)'s root as mkmeta.py reads it: its layers' trees, whiteouts applied.

Why: the metadata layer lies over the base's layers, so each database or account file it
writes hides the base's. On a base it must therefore hold the base's entries and the new
ones together (/var/lib/dpkg/status, /etc/passwd, ...), as apt-get install in the base would
leave them. The base's dpkg status must also be the one the lock resolved the apt packages
against (``baseStatus``): otherwise the packages may not fit what the base has.

Not a builder itself: mkmeta.py imports it (standard library only).

Environment (through mkmeta.py):
  baseTrees   JSON list of the base layers' trees (unpack_layer.py ``tree``), bottom first;
              their ``.wh.<name>`` and ``.wh..wh..opq`` entries are OCI whiteouts
  baseStatus  optional sha256 of the base's var/lib/dpkg/status that the lock recorded
"""

from __future__ import annotations

import hashlib
import os
import re

import _builder as B
from _rootfs import OPAQUE, WHITEOUT
from dpkgdb import DebInfo
from trees import ALIASED, Find, Tree, read_regular

STATUS = "var/lib/dpkg/status"
ACCOUNT_FILES = ("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow")


class BaseRoot:
    """The base image's files by image path, top layer first, as a container sees them."""

    def __init__(self, trees: list[Tree]) -> None:
        self.trees = trees  # bottom first

    def find(self, rel: str) -> str | None:
        """The file on disk behind ``rel``, or None where the base has none (or a layer
        above the one holding it deleted it)."""
        parts = rel.split("/")
        for tree in reversed(self.trees):
            for i, name in enumerate(parts):
                parent = "/".join(parts[:i])
                prefix = parent + "/" if parent else ""
                if tree.has(prefix + WHITEOUT + name):
                    return None
            path = tree.inside(rel)
            if path is not None and os.path.lexists(path):
                return path
            for i in range(len(parts)):
                parent = "/".join(parts[:i])
                if tree.has((parent + "/" if parent else "") + OPAQUE):
                    return None
        return None

    def read(self, rel: str) -> bytes | None:
        path = self.find(rel)
        if path is None or os.path.islink(path) or not os.path.isfile(path):
            return None
        return read_regular(path)

    def top_first(self) -> list[Tree]:
        """For scans that take the first tree holding a path (ld.so.cache, certificates):
        whiteouts are not applied there, which only keeps a deleted file's name listed."""
        return list(reversed(self.trees))


def load_base() -> BaseRoot | None:
    """The base of ``baseTrees``, its dpkg status checked against ``baseStatus``; None for
    an image built on envnix's own releases."""
    raw = B.getenv("baseTrees", "").strip()
    if not raw:
        return None
    trees = [Tree(p, "layer") for p in B.json_path_list(raw, "baseTrees")]
    base = BaseRoot(trees)
    want = B.getenv("baseStatus", "").strip()
    if want:
        if not re.fullmatch(r"[0-9a-f]{64}", want):
            raise B.BuilderError(f"baseStatus {want!r} is not a sha256")
        status = base.read(STATUS)
        got = hashlib.sha256(status).hexdigest() if status is not None else "none"
        if got != want:
            raise B.BuilderError(f"the base image's /{STATUS} (sha256 {got}) is not the one "
                                 f"envnix.lock resolved its apt packages against ({want}); "
                                 "lock again")
    return base


def merged_status(base: bytes | None, new: bytes | None) -> bytes | None:
    """The base's dpkg status with the new packages' stanzas: a package both have (an
    upgrade) gets the new one; sorted by package name and architecture, as dpkg writes it."""
    stanzas: dict[tuple[str, str], bytes] = {}
    for text in (base or b"", new or b""):
        for stanza in re.split(rb"\n\s*\n", text):
            stanza = stanza.strip(b"\n")
            if not stanza:
                continue
            name = re.search(rb"^Package:[ \t]*(\S+)", stanza, re.M)
            arch = re.search(rb"^Architecture:[ \t]*(\S+)", stanza, re.M)
            if name is None:
                continue
            stanzas[(name[1].decode("utf-8", "replace"),
                     arch[1].decode("utf-8", "replace") if arch else "")] = stanza
    if not stanzas:
        return None
    return b"".join(stanzas[key] + b"\n\n" for key in sorted(stanzas))


def split_usr(base: BaseRoot) -> frozenset[str]:
    """The top-level directories (bin, lib, ...) that are real directories in the base, not
    merged-/usr links to usr/ (Debian 11, Ubuntu 18.04 and older images)."""
    out = set()
    for alias in ALIASED:
        name = alias.rstrip("/")
        path = base.find(name)
        if path is not None and os.path.isdir(path) and not os.path.islink(path):
            out.add(name)
    return frozenset(out)


def split_usr_links(split: frozenset[str], debs: list[tuple[Tree, str, DebInfo]],
                    own: Find) -> list[tuple[str, str]]:
    """On a base that is not merged-/usr, the links usrmerge would make for what the added
    packages ship under bin/, lib/...: the deb trees hold those files under usr/ (envnix's
    layout), so each shipped path gets a relative link to its usr/ copy. Without it, an
    upgraded library would sit in /usr/lib while the base's old copy in /lib stays first."""
    links: dict[str, str] = {}
    if not split:
        return []
    for _tree, _control, info in debs:
        for line in info.files.get("list", b"").decode("utf-8", "replace").splitlines():
            rel = line.strip().lstrip("/")
            if rel.split("/", 1)[0] not in split or "/" not in rel:
                continue
            copy = own("usr/" + rel)
            if copy is None or (os.path.isdir(copy) and not os.path.islink(copy)):
                continue
            links[rel] = os.path.relpath("usr/" + rel, os.path.dirname(rel))
    return sorted(links.items())


def combined(find: Find, base: BaseRoot) -> Find:
    """The image as the meta layer sees it: the added trees over the base."""
    def find_any(rel: str) -> str | None:
        return find(rel) or base.find(rel)
    return find_any

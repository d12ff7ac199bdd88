"""The package trees mkmeta.py and its libraries read: a tree, canonical image paths
(merged /usr) and where a path is in the trees.

Not a builder itself: mkmeta.py and its libraries import it (standard library only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import _builder as B
import _treewrite as T

ALIASED = ("bin/", "sbin/", "lib/", "lib32/", "lib64/", "libx32/")
Find = Callable[[str], "str | None"]
"""Where a canonical image path is in the trees (the file on disk), or None."""


def canonical(path: str) -> str:
    """An absolute image path as stored in the trees: no leading "/", merged /usr."""
    rel = T.safe_relpath(path.lstrip("/"), "alternatives path")
    if rel.startswith(ALIASED) or rel in {a.rstrip("/") for a in ALIASED}:
        rel = "usr/" + rel
    return rel


@dataclass(frozen=True)
class Tree:
    path: str
    kind: str

    @property
    def root(self) -> str:
        return os.path.join(self.path, "root")

    def inside(self, rel: str) -> str | None:
        """``root/rel`` if its parent directories are real dirs of this tree (no symlinks)."""
        path = os.path.join(self.root, rel)
        parent = os.path.dirname(path)
        if os.path.realpath(parent) != os.path.join(os.path.realpath(self.root),
                                                    os.path.dirname(rel)).rstrip("/"):
            return None
        return path

    def has(self, rel: str) -> bool:
        path = self.inside(rel)
        return path is not None and os.path.lexists(path)


def load_trees(required: bool) -> list[Tree]:
    raw = B.getenv("trees", "" if not required else None).strip()
    if not raw:
        return []
    paths = B.json_path_list(raw, "trees")
    trees = []
    for p in sorted(set(paths)):
        try:
            with open(os.path.join(p, "meta.json"), encoding="utf-8") as f:
                meta = json.load(f)
        except FileNotFoundError:
            raise B.BuilderError(f"{p} is not a package tree (no meta.json)") from None
        trees.append(Tree(p, str(meta.get("kind", ""))))
    return trees


def finder(trees: list[Tree]) -> Find:
    """The file behind a canonical image path in the first tree that has it (or None)."""
    def find(rel: str) -> str | None:
        for t in trees:
            path = t.inside(rel)
            if path is not None and os.path.lexists(path):
                return path
        return None
    return find


def image_rel(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise B.BuilderError(f"{what} {path!r} must be an absolute image path")
    return T.safe_relpath(path[1:] or ".", what)


def read_regular(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()

"""The package trees mkmeta.py and its libraries read: a tree, canonical image paths
(merged /usr) and where a path is in the trees.

Not a builder itself: mkmeta.py and its libraries import it (standard library only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

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
    # parent directory (tree-relative) -> whether none of its components is a symlink
    _linkfree: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @property
    def root(self) -> str:
        return os.path.join(self.path, "root")

    def inside(self, rel: str) -> str | None:
        """``root/rel`` if its parent directories are real dirs of this tree (no symlinks).

        Every caller then looks at the path, so only paths that exist matter: for those this
        is the realpath comparison it replaces (parent == root/dirname(rel) once resolved).
        Each parent directory is checked once per tree: mkmeta asks each of ~170 trees about
        ~900 paths each, and a realpath per question (an lstat per component) was 80% of
        its time."""
        path = os.path.join(self.root, rel)
        parts = rel.split("/")[:-1]
        if any(p in ("", ".", "..") for p in parts):  # not canonical: the exact old check
            parent = os.path.dirname(path)
            if os.path.realpath(parent) != os.path.join(os.path.realpath(self.root),
                                                        os.path.dirname(rel)).rstrip("/"):
                return None
            return path
        return path if self._link_free("/".join(parts)) else None

    def _link_free(self, d: str) -> bool:
        known = self._linkfree.get(d)
        if known is not None:
            return known
        up, _, _ = d.rpartition("/")
        ok = not d or (self._link_free(up) and not os.path.islink(os.path.join(self.root, d)))
        self._linkfree[d] = ok
        return ok

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

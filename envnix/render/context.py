"""io.copy: which build-context files the image gets (honouring .envnixignore / .dockerignore).

The selection is made twice, by the same rules: here, when the lock's image section is
written, to refuse what cannot be copied with one clear line (a FIFO, a symlink leaving the
context, a path beneath a copied symlink); and in Nix, where lib.buildImage imports each
io.copy source without the ignored paths and builders/mktree.py lays the tree out. The
ignore rules travel in the lock as POSIX extended regular expressions, which Nix's
builtins.match and Python's re read alike (only the constructs both agree on are made), so
only what io.copy names, minus ignored paths, can change the image.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import NamedTuple

from envnix.core.errors import SpecError
from envnix.spec import CopySpec, file_kind

IGNORE_FILES = (".envnixignore", ".dockerignore")
ALWAYS_IGNORED = (".envnix", ".git")  # envnix's own output and VCS metadata


class IgnoreRule(NamedTuple):
    """One ignore-file line: the regular expression a context-relative path must match in
    full (a directory's match covers what is below it), and whether it re-includes (``!``)."""

    regex: str
    negate: bool


def load_ignore(context: Path) -> list[IgnoreRule]:
    """The rules of the first ignore file found, in order."""
    for name in IGNORE_FILES:
        path = context / name
        if path.is_file():
            rules = []
            for raw in path.read_text(encoding="utf-8").splitlines():
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                negate = line.startswith("!")
                pattern = line[1:].strip() if negate else line
                rules.append(IgnoreRule(pattern_regex(pattern.strip("/")), negate))
            return rules
    return []


def ignore_file(context: Path) -> str | None:
    """The ignore file load_ignore reads (its name in the context), if any."""
    return next((name for name in IGNORE_FILES if (context / name).is_file()), None)


_ERE_SPECIAL = set(".^$+(){}|\\*?[]")


def pattern_regex(pattern: str) -> str:
    """dockerignore syntax as a POSIX ERE matching a whole path: ``*`` and ``?`` within a
    component, ``**`` across components, ``[...]`` classes (``[!...]`` negated); a match of
    a directory also matches everything below it."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            if "\\" in body or "[" in body:  # no escapes or POSIX classes: taken literally
                out.append("\\[")
                i += 1
                continue
            out.append("[" + body + "]")
            i = end + 1
        else:
            out.append("\\" + c if c in _ERE_SPECIAL else c)
            i += 1
    return "(" + "".join(out) + ")(/.*)?"


def is_ignored(rel: str, rules: list[IgnoreRule]) -> bool:
    """The last matching rule wins; matching a directory excludes what is below it."""
    if rel.split("/")[0] in ALWAYS_IGNORED:
        return True
    ignored = False
    for rule in rules:
        if re.fullmatch(rule.regex, rel, flags=re.DOTALL):
            ignored = not rule.negate
    return ignored


class _Entry(NamedTuple):
    """One path the context tree will hold: where it comes from and which io.copy asked."""

    source: Path
    kind: str  # "dir", "file" or "link"
    copy: CopySpec


MOUNT_HOST = CopySpec(".", "/")
"""run(mount_host=True)'s view of the context, checked as an io.copy of all of it is."""


def _describe(copy: CopySpec) -> str:
    if copy is MOUNT_HOST:
        return "run(mount_host=True)"
    return f"io.copy({copy.source!r}, {copy.target!r})"


def _kind(path: Path, rel: str, copy: CopySpec) -> str:
    """dir, file or link, never following a symlink; SpecError for FIFOs, devices, sockets
    (copying /dev/zero never ends, opening a FIFO blocks)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        raise SpecError(f"{_describe(copy)}: {rel} disappeared from the build context") from None
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    raise SpecError(f"{_describe(copy)}: {rel} is {file_kind(mode)}; only files, "
                    "directories and symlinks can be copied",
                    hint=f"remove it or list it in {IGNORE_FILES[0]}")


def _entries(context: Path, copy: CopySpec,
             rules: list[IgnoreRule]) -> dict[str, _Entry]:
    """Image path -> entry for every path io.copy selects (sorted walk, no follow)."""
    root = context.resolve()
    source = root / copy.source
    selected = {copy.target: _entry(root, source, copy)}
    if selected[copy.target].kind != "dir":
        return selected
    base = "" if copy.target == "/" else copy.target
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        for name in [*dirnames, *sorted(filenames)]:
            path = here / name
            rel = path.relative_to(root).as_posix()
            if is_ignored(rel, rules):
                if name in dirnames:
                    dirnames.remove(name)
                continue
            selected[base + "/" + path.relative_to(source).as_posix()] = _entry(root, path, copy)
    return selected


def _entry(root: Path, path: Path, copy: CopySpec) -> _Entry:
    rel = path.relative_to(root).as_posix()
    kind = _kind(path, rel, copy)
    if kind == "link":
        resolved = (path.parent / os.readlink(path)).resolve()
        if not resolved.is_relative_to(root):
            raise SpecError(f"{'run(mount_host=True)' if copy is MOUNT_HOST else 'io.copy'}: "
                            f"{rel} is a symlink pointing out of the build context "
                            f"({os.readlink(path)})")
    return _Entry(path, kind, copy)


def _check_no_write_through(selected: dict[str, _Entry]) -> None:
    """Refuse a path whose parent directory is a symlink or a file of the tree itself.

    A relative symlink that stays inside the context can point far up once copied to a
    shallower image path (``a/b/c/up -> ../../..`` copied to ``/up``); a second io.copy
    into ``/up/...`` would then write through it, outside the output directory.
    """
    for image_path, entry in selected.items():
        parent = image_path
        while parent.count("/") > 1:
            parent = parent.rsplit("/", 1)[0]
            above = selected.get(parent)
            if above is not None and above.kind != "dir":
                what = "a symlink" if above.kind == "link" else "a file"
                raise SpecError(
                    f"{_describe(entry.copy)} puts {image_path} beneath {parent}, which "
                    f"{_describe(above.copy)} makes {what}; envnix does not write through it",
                    hint="copy to a path that is not below a copied symlink or file")


def check_copies(context: Path, copies: list[CopySpec]) -> None:
    """Refuse, before anything is locked or built, an io.copy Nix could not make: special
    files, symlinks leaving the context, paths beneath a copied symlink or file."""
    rules = load_ignore(context)
    selected: dict[str, _Entry] = {}
    for copy in copies:
        selected.update(_entries(context, copy, rules))
    _check_no_write_through(selected)

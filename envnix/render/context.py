"""io.copy: select build-context files (honouring .envnixignore / .dockerignore) into a tree.

The selected files are mirrored into the generated project as a package tree (root/ +
meta.json) that Nix imports by content, so only what io.copy names — minus ignored paths —
can change the image; editing any other file in the context changes nothing.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import BinaryIO, NamedTuple

from envnix.core.errors import SpecError
from envnix.core.fileio import atomic_write, atomic_writer
from envnix.spec import CopySpec, file_kind

TREE_FORMAT = 2
"""The package-tree meta.json version of the trees render writes (files/, context/): the
builders' ``_builder.META_FORMAT``, which the builders check."""

IGNORE_FILES = (".envnixignore", ".dockerignore")
ALWAYS_IGNORED = (".envnix", ".git")  # envnix's own output and VCS metadata


def load_ignore(context: Path) -> list[tuple[re.Pattern[str], bool]]:
    """Patterns of the first ignore file found, in order: (regex, is_negation)."""
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
                rules.append((_compile(pattern.strip("/")), negate))
            return rules
    return []


def _compile(pattern: str) -> re.Pattern[str]:
    """dockerignore syntax: `*`/`?` within a path component, `**` across components."""
    parts = []
    for piece in re.split(r"(\*\*/?)", pattern):
        if piece.startswith("**"):
            parts.append("(?:.*/)?" if piece.endswith("/") else ".*")
        else:
            parts.append(fnmatch.translate(piece).removeprefix("(?s:").removesuffix(")\\Z")
                         .replace(".*", "[^/]*"))
    return re.compile("(?s:" + "".join(parts) + ")(?:/.*)?\\Z")


def is_ignored(rel: str, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    """The last matching rule wins; matching a directory excludes what is below it."""
    if rel.split("/")[0] in ALWAYS_IGNORED:
        return True
    ignored = False
    for regex, negate in rules:
        if regex.match(rel):
            ignored = not negate
    return ignored


class _Entry(NamedTuple):
    """One path the context tree will hold: where it comes from and which io.copy asked."""

    source: Path
    kind: str  # "dir", "file" or "link"
    copy: CopySpec


def _describe(copy: CopySpec) -> str:
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
             rules: list[tuple[re.Pattern[str], bool]]) -> dict[str, _Entry]:
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
            raise SpecError(f"io.copy: {rel} is a symlink pointing out of the build "
                            f"context ({os.readlink(path)})")
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


def _real_directory(path: Path) -> None:
    """Make ``path`` a real directory (not a symlink); its parent is one already."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        path.mkdir()
        return
    if stat.S_ISDIR(mode):
        return
    path.unlink()  # a symlink or file left by an earlier render, inside the tree
    path.mkdir()


def _make_parents(root: Path, dest: Path) -> None:
    """Create every directory from ``root`` down to ``dest``'s parent, never through a link."""
    current = root
    for part in dest.relative_to(root).parts[:-1]:
        current = current / part
        _real_directory(current)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _copy_file(source: Path, dest: Path, mode: int) -> None:
    """Copy a regular file without following a symlink at either end, atomically."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SpecError(f"io.copy: cannot read {source} ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpecError(f"io.copy: {source} is not a regular file any more")
        if dest.is_file() and not dest.is_symlink() and _same_content(src, dest):
            dest.chmod(mode)
            return
        src.seek(0)
        _remove(dest)
        with atomic_writer(dest, mode) as out:
            shutil.copyfileobj(src, out)


def _same_content(src: BinaryIO, dest: Path) -> bool:
    with open(dest, "rb") as other:
        while True:
            a, b = src.read(1 << 16), other.read(1 << 16)
            if a != b:
                return False
            if not a:
                return True


def write_context_tree(directory: Path, context: Path, copies: list[CopySpec],
                       owner: tuple[int, int]) -> bool:
    """Mirror the selected files into ``directory`` (a package tree). False if none.

    Everything is checked before anything is written (special files, symlinks leaving the
    context, paths beneath a copied symlink), and no write follows a symlink.
    """
    if not copies:
        shutil.rmtree(directory, ignore_errors=True)
        return False
    rules = load_ignore(context)
    selected: dict[str, _Entry] = {}
    for copy in copies:
        selected.update(_entries(context, copy, rules))
    _check_no_write_through(selected)
    directory.mkdir(parents=True, exist_ok=True)
    root = directory / "root"
    _real_directory(root)
    wanted = {root / image_path.lstrip("/") for image_path in selected}
    wanted |= {p for w in wanted for p in w.parents if p.is_relative_to(root)}
    for existing in sorted(root.rglob("*"), reverse=True):  # drop what is no longer copied
        if existing not in wanted:
            _remove(existing)
    modes: dict[str, list[int]] = {}
    for image_path, entry in sorted(selected.items()):
        dest = root / image_path.lstrip("/")
        if dest != root:
            _make_parents(root, dest)
        executable = entry.kind == "dir" or os.access(entry.source, os.X_OK)
        mode = 0o755 if executable else 0o644
        if entry.kind == "link":
            link = os.readlink(entry.source)
            if not dest.is_symlink() or os.readlink(dest) != link:
                _remove(dest)
                dest.symlink_to(link)
        elif entry.kind == "dir":
            _real_directory(dest)
            dest.chmod(mode)
        else:
            _copy_file(entry.source, dest, mode)
        if entry.kind != "link" and owner != (0, 0):
            modes[image_path.lstrip("/")] = [mode, *owner]
    atomic_write(directory / "meta.json", json.dumps(
        {"format": TREE_FORMAT, "kind": "context", "name": "io.copy", "version": "0",
         "modes": modes},
        sort_keys=True, separators=(",", ":")) + "\n")
    return True

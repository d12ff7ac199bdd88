"""io.copy: select build-context files (honouring .envnixignore / .dockerignore) into a tree.

The selected files are mirrored into the generated project as a package tree (root/ +
meta.json) that Nix imports by content, so only what io.copy names — minus ignored paths —
can change the image; editing any other file in the context changes nothing.
"""

from __future__ import annotations

import filecmp
import fnmatch
import json
import os
import re
import shutil
from pathlib import Path

from envnix.errors import SpecError
from envnix.spec import CopySpec

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


def _entries(context: Path, copy: CopySpec,
             rules: list[tuple[re.Pattern[str], bool]]) -> dict[str, Path]:
    """Image path -> context path for every entry io.copy selects (sorted walk, no follow)."""
    root = context.resolve()
    source = root / copy.source
    selected: dict[str, Path] = {}
    if not source.is_dir():
        selected[copy.target] = source
        return selected
    selected[copy.target] = source
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
            if path.is_symlink():
                resolved = (path.parent / os.readlink(path)).resolve()
                if not resolved.is_relative_to(root):
                    raise SpecError(f"io.copy: {rel} is a symlink pointing out of the build "
                                    f"context ({os.readlink(path)})")
            selected[copy.target + "/" + path.relative_to(source).as_posix()] = path
    return selected


def write_context_tree(directory: Path, context: Path, copies: list[CopySpec],
                       owner: tuple[int, int]) -> bool:
    """Mirror the selected files into ``directory`` (a package tree). False if none."""
    if not copies:
        shutil.rmtree(directory, ignore_errors=True)
        return False
    rules = load_ignore(context)
    selected: dict[str, Path] = {}
    for copy in copies:
        selected.update(_entries(context, copy, rules))
    root = directory / "root"
    root.mkdir(parents=True, exist_ok=True)
    wanted = {root / image_path.lstrip("/") for image_path in selected}
    wanted |= {p for w in wanted for p in w.parents if p.is_relative_to(root)}
    for existing in sorted(root.rglob("*"), reverse=True):  # drop what is no longer copied
        if existing not in wanted:
            if existing.is_dir() and not existing.is_symlink():
                shutil.rmtree(existing)
            else:
                existing.unlink()
    modes: dict[str, list[int]] = {}
    for image_path, source in sorted(selected.items()):
        dest = root / image_path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            link = os.readlink(source)
            if not dest.is_symlink() or os.readlink(dest) != link:
                if dest.exists() or dest.is_symlink():
                    dest.unlink()
                dest.symlink_to(link)
        elif source.is_dir():
            dest.mkdir(exist_ok=True)
        elif not (dest.is_file() and filecmp.cmp(source, dest, shallow=False)):
            shutil.copyfile(source, dest)
        if not source.is_symlink():
            executable = source.is_dir() or os.access(source, os.X_OK)
            dest.chmod(0o755 if executable else 0o644)
            if owner != (0, 0):
                modes[image_path.lstrip("/")] = [0o755 if executable else 0o644, *owner]
    (directory / "meta.json").write_text(json.dumps(
        {"kind": "context", "name": "io.copy", "version": "0", "modes": modes},
        sort_keys=True, separators=(",", ":")) + "\n")
    return True

"""dpkg's path filters (`path-exclude GLOB` / `path-include GLOB` lines of dpkg.cfg): what
a slim image leaves out. mklayer drops the paths they exclude from a layer, and mkmeta
writes the same lines as etc/dpkg/dpkg.cfg.d/envnix-slim, so a later `apt install` in the
image leaves out what the build left out. One syntax for both, so they cannot disagree.

Semantics as dpkg's: absolute paths are matched with fnmatch without FNM_PATHNAME (`*`
matches `/` too); the last matching line wins; a directory that is excluded stays when
something below it stays (dpkg keeps it for the files its path-include lines bring back).
"""

from __future__ import annotations

import fnmatch
import re

_LINE = re.compile(r"(path-exclude|path-include) (/[^\s\\]+)")


class FilterError(Exception):
    """A line that is not `path-exclude /GLOB` or `path-include /GLOB`."""


def parse(lines: list[str]) -> list[tuple[bool, re.Pattern[str]]]:
    """[(exclude?, compiled glob)], in order; a bad line is an error naming it."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for line in lines:
        m = _LINE.fullmatch(line) if isinstance(line, str) else None
        if not m:
            raise FilterError(f"path filter {line!r} is not 'path-exclude /GLOB' or "
                              "'path-include /GLOB'")
        rules.append((m[1] == "path-exclude", re.compile(fnmatch.translate(m[2]))))
    return rules


def excluded(rules: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """True when the last rule matching `path` (absolute) is a path-exclude."""
    out = False
    for exclude, pattern in rules:
        if pattern.match(path):
            out = exclude
    return out


def keep(rules: list[tuple[bool, re.Pattern[str]]], paths: dict[str, bool]) -> set[str]:
    """The paths (relative, "a/b") to keep out of `paths` (path -> is a directory)."""
    kept = {p for p, is_dir in paths.items() if not is_dir and not excluded(rules, "/" + p)}
    dropped_dirs = {p for p, is_dir in paths.items() if is_dir and excluded(rules, "/" + p)}
    kept |= {p for p, is_dir in paths.items() if is_dir and p not in dropped_dirs}
    for p in list(kept):
        parts = p.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in dropped_dirs:
                kept.add(parent)
    return kept

"""Nix builder: lay out a tool's archive (install.uv, install.nodejs) as a package tree.

A tool is not installed as the package its archive is (uv's and Node.js's wheels are not put
into a Python): the lock names which members go where in the image, and which symbolic links
the tool needs, and this builder does exactly that and nothing else.

Environment:
  src         path of the archive (a fixed-output fetch): a zip (a wheel)
  out         output directory (Nix's $out)
  pkgName     the tool's name, for meta.json
  pkgVersion  its version, for meta.json
  paths       JSON [[member, image path], ...]: a member ending in "/" is a directory whose
              files go below the image path (also ending in "/"); image paths are relative
              to the image's / . Every member named must be in the archive.
  links       JSON [[image path, target], ...]: a symbolic link to a relative target, made
              only when the target is one of the files laid out (a tool release without
              corepack gets no dangling corepack link; meta.json notes it)

Modes come from the archive (the executable bit decides 0755 or 0644); owners are root.
Output: ``$out/root/...`` and ``$out/meta.json`` ({"kind": "tool", ...}).
"""

from __future__ import annotations

import os
import posixpath
import stat
import zipfile
from typing import Any

import _builder as B
import _treewrite as T


def _pairs(value: str, what: str) -> list[tuple[str, str]]:
    items: Any = B.json_input(value, what)
    if not isinstance(items, list) or not all(
            isinstance(i, list) and len(i) == 2 and all(isinstance(x, str) and x for x in i)
            for i in items):
        raise B.BuilderError(f"{what} must be a JSON list of [string, string] pairs")
    return [(a, b) for a, b in items]


def _plan(names: list[str], paths: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(member, root-relative destination) of every file to lay out, in member order."""
    chosen: dict[str, str] = {}
    for member, target in paths:
        if member.endswith("/") != target.endswith("/"):
            raise B.BuilderError(f"paths: {member!r} -> {target!r}: a directory goes to a "
                                 "directory (both end in '/') and a file to a file")
        base = T.safe_relpath(target, "paths target")
        if not base:
            raise B.BuilderError(f"paths: {target!r} is the image root")
        if member.endswith("/"):
            found = [n for n in names if n.startswith(member) and not n.endswith("/")]
        else:
            found = [member] if member in names else []
        if not found:
            raise B.BuilderError(f"the archive has no {member!r}")
        for name in found:
            rest = name[len(member):] if member.endswith("/") else ""
            chosen[name] = T.safe_relpath(f"{base}/{rest}" if rest else base, "member")
    return sorted(chosen.items())


def install(src: str, out: str, name: str, version: str, paths: list[tuple[str, str]],
            links: list[tuple[str, str]]) -> None:
    writer = T.TreeWriter(os.path.join(out, "root"))
    try:
        archive = zipfile.ZipFile(src)
    except zipfile.BadZipFile:
        raise B.BuilderError(f"{src}: not a zip archive (a wheel)") from None
    with archive:
        infos = {i.filename: i for i in archive.infolist()}
        for member, rel in _plan(sorted(infos), paths):
            info = infos[member]
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                writer.add_symlink(rel, archive.read(info).decode("utf-8"), source=member)
                continue
            with archive.open(info) as fh:
                writer.add_file(rel, fh, 0o755 if mode & 0o111 else 0o644, source=member)
    for link, target in links:
        rel = T.safe_relpath(link, "links")
        if target.startswith("/"):
            raise B.BuilderError(f"links: {link!r} -> {target!r}: the target must be relative")
        pointed = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if pointed not in writer.entries:
            writer.note(f"{rel}: no link made, the archive has no {pointed}")
            continue
        writer.add_symlink(rel, target, source=f"links: {link}")
    B.write_meta(out, "tool", name, version, writer.modes, writer.notes)


def main() -> None:
    install(B.getenv("src"), B.getenv("out"), B.getenv("pkgName"), B.getenv("pkgVersion"),
            _pairs(B.getenv("paths"), "paths"), _pairs(B.getenv("links", "[]"), "links"))


if __name__ == "__main__":
    B.main_wrapper(main, "install_tool")

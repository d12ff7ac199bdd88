"""Nix builder: lay out a tool's archive (install.uv, install.nodejs, install.codex,
install.julia, install.pixi) as a package tree.

A tool is not installed as the package its archive is (uv's and Node.js's wheels are not put
into a Python): the lock names which members go where in the image, and which symbolic links
the tool needs, and this builder does exactly that and nothing else.

Environment:
  src         path of the archive (a fixed-output fetch): a zip (a wheel), a tar (an npm
              package's .tgz, a release archive, a conda .tar.bz2) or a .conda (the members
              are its pkg-*.tar.zst's)
  zstdPath    optional: a directory holding the ``zstandard`` package, for a .conda
              (host toolchain only)
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
A member a later ``paths`` entry also names goes where that entry says.
Output: ``$out/root/...`` and ``$out/meta.json`` ({"kind": "tool", ...}, with the archive's
hard links in "hardlinks", for the layer writer to restore).
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zipfile
from typing import IO, Any

import _archive as A
import _builder as B
import _treewrite as T


def _pairs(value: str, what: str) -> list[tuple[str, str]]:
    items: Any = B.json_input(value, what)
    if not isinstance(items, list) or not all(
            isinstance(i, list) and len(i) == 2 and all(isinstance(x, str) and x for x in i)
            for i in items):
        raise B.BuilderError(f"{what} must be a JSON list of [string, string] pairs")
    return [(a, b) for a, b in items]


Rules = list[tuple[str, str]]


def _rules(paths: list[tuple[str, str]]) -> Rules:
    """(member, root-relative destination) of each ``paths`` entry, checked."""
    rules = []
    for member, target in paths:
        if member.endswith("/") != target.endswith("/"):
            raise B.BuilderError(f"paths: {member!r} -> {target!r}: a directory goes to a "
                                 "directory (both end in '/') and a file to a file")
        base = T.safe_relpath(target, "paths target")
        if not base:
            raise B.BuilderError(f"paths: {target!r} is the image root")
        rules.append((member, base))
    return rules


def _destination(name: str, rules: Rules, used: set[str]) -> str | None:
    """Where member ``name`` goes (the last rule that takes it wins), or None."""
    found = None
    for member, base in rules:
        if member.endswith("/"):
            if name.startswith(member) and not name.endswith("/"):
                found = T.safe_relpath(f"{base}/{name[len(member):]}", "member")
                used.add(member)
        elif name == member:
            found = base
            used.add(member)
    return found


def _check_used(rules: Rules, used: set[str]) -> None:
    for member, _ in rules:
        if member not in used:
            raise B.BuilderError(f"the archive has no {member!r}")


def _from_zip(archive: zipfile.ZipFile, writer: T.TreeWriter, rules: Rules) -> None:
    """A wheel's members; the executable bit decides 0755 or 0644."""
    used: set[str] = set()
    for info in sorted(archive.infolist(), key=lambda i: i.filename):
        rel = _destination(info.filename, rules, used)
        if rel is None:
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            writer.add_symlink(rel, archive.read(info).decode("utf-8"), source=info.filename)
            continue
        with archive.open(info) as fh:
            writer.add_file(rel, fh, 0o755 if mode & 0o111 else 0o644, source=info.filename)
    _check_used(rules, used)


def _from_tar(fh: IO[bytes], writer: T.TreeWriter, rules: Rules) -> None:
    """A tarball's members (an npm package, a release archive, a conda package's files),
    read as one stream; owners are root whatever the archive says, and devices and fifos
    have no place in a tool."""
    used: set[str] = set()
    with A.open_tar_stream(fh) as tf:
        for m in tf:
            if m.isdir():
                continue
            rel = _destination(m.name, rules, used)
            if rel is None:
                continue
            if m.issym():
                writer.add_symlink(rel, m.linkname, source=m.name)
            elif m.islnk():
                target = _destination(m.linkname, rules, set())
                if target is None or target not in writer.entries:
                    raise B.BuilderError(f"{m.name}: a hard link to {m.linkname!r}, which is "
                                         "not laid out before it")
                writer.add_hardlink(rel, target, source=m.name)
            elif m.isreg():
                data = tf.extractfile(m)
                if data is None:
                    raise B.BuilderError(f"{m.name}: cannot read member data")
                writer.add_file(rel, data, 0o755 if m.mode & 0o111 else 0o644, source=m.name)
            else:
                raise B.BuilderError(f"{m.name}: a tool's archive may hold files, "
                                     "directories and links only")
    _check_used(rules, used)


def install(src: str, out: str, name: str, version: str, paths: list[tuple[str, str]],
            links: list[tuple[str, str]]) -> None:
    writer = T.TreeWriter(os.path.join(out, "root"))
    rules = _rules(paths)
    if zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as archive:
            inner = [n for n in archive.namelist() if n.startswith("pkg-")
                     and n.endswith(".tar.zst") and "/" not in n]
            if "metadata.json" in archive.namelist() and len(inner) == 1:  # a .conda
                with archive.open(inner[0]) as fh:
                    _from_tar(fh, writer, rules)
            else:
                _from_zip(archive, writer, rules)
    else:
        try:
            with open(src, "rb") as fh:
                _from_tar(fh, writer, rules)
        except tarfile.TarError as exc:
            raise B.BuilderError(f"{src}: neither a zip archive (a wheel) nor a tar archive "
                                 f"({exc})") from None
    for link, target in links:
        rel = T.safe_relpath(link, "links")
        if target.startswith("/"):
            raise B.BuilderError(f"links: {link!r} -> {target!r}: the target must be relative")
        pointed = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if pointed not in writer.entries:
            writer.note(f"{rel}: no link made, the archive has no {pointed}")
            continue
        writer.add_symlink(rel, target, source=f"links: {link}")
    B.write_meta(out, "tool", name, version, writer.modes, writer.notes, writer.hardlinks)


def main() -> None:
    zstd_path = B.getenv("zstdPath", "")
    if zstd_path:
        A.import_zstandard_from(zstd_path)
    install(B.getenv("src"), B.getenv("out"), B.getenv("pkgName"), B.getenv("pkgVersion"),
            _pairs(B.getenv("paths"), "paths"), _pairs(B.getenv("links", "[]"), "links"))


if __name__ == "__main__":
    B.main_wrapper(main, "install_tool")

"""Make the two package trees envnix.lock describes rather than fetches: the config files
envd writes (pip.conf, sudoers, the init script, ...) and the io.copy selection of the
build context.

Run by Nix as `python3 mktree.py` with these environment variables:
  out      where to write the tree (`root/` + `meta.json`)
  kind     "files" or "context"
  files    (files) JSON object: image path relative to / -> [text, mode, uid, gid]
  mounts   (files) JSON list of directories to create (runtime.mount points)
  copies   (context) JSON list of {"src": store path, "source": path in the build context
           ("." for the context itself), "target": absolute image path}, in io.copy order
  owner    (context) JSON [uid, gid] every copied file and directory gets (envd chowns)
  downloads (context, optional) JSON list of {"src": store path of a fetched file,
           "target": absolute image path}: io.http's files, placed before the copies (envd
           runs io.http first), mode 0600 as BuildKit's HTTP source leaves them, owned by owner

Why a builder: lib.buildImage is pure Nix and reads the lock at evaluation, so these trees
are made from the lock's data and from the context's files Nix imported (already filtered by
.dockerignore), not written by Python beforehand. The copies are checked again here, because
a lock can come from a stranger: no symlink pointing out of the build context, nothing
written beneath a copied symlink or file. Modes follow envd: directories and executables
0755, other files 0644, owners in meta.json.
Errors: one line `envnix-builder: tree: ...` on stderr, exit 1.
"""

from __future__ import annotations

import os
import shutil
import stat
from typing import Any

import _builder as B
import _treewrite as T


def _check_ids(value: Any, what: str) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(type(v) is int and 0 <= v < 1 << 31 for v in value)):
        raise B.BuilderError(f"{what} must be [uid, gid]")
    return value[0], value[1]


def _mkdirs(root: str, rel: str) -> None:
    """Make ``root/rel`` and its parents, never through anything but a directory."""
    current = root
    for part in [p for p in rel.split("/") if p]:
        current = os.path.join(current, part)
        try:
            os.mkdir(current)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                raise B.BuilderError(f"/{rel} lies below the file "
                                     f"/{os.path.relpath(current, root)}") from None


def make_files(out: str) -> None:
    """The config files tree: each file with its text; modes other than 0644/0755 and
    owners other than root go to meta.json."""
    files = B.json_input(B.getenv("files", "{}"), "files", opener="{")
    mounts = B.json_input(B.getenv("mounts", "[]"), "mounts")
    if not isinstance(files, dict) or not isinstance(mounts, list):
        raise B.BuilderError("files must be a JSON object and mounts a JSON list")
    root = os.path.join(out, "root")
    os.makedirs(root)
    modes: dict[str, list[int]] = {}
    for name in sorted(files):
        entry = files[name]
        rel = T.safe_relpath(name, "config file")
        if (not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[0], str)
                or type(entry[1]) is not int or not 0 <= entry[1] <= 0o7777):
            raise B.BuilderError(f"config file /{rel}: expected [text, mode, uid, gid]")
        text, mode = entry[0], entry[1]
        owner = _check_ids(entry[2:], f"config file /{rel}: owner")
        _mkdirs(root, os.path.dirname(rel))
        B.write_new_file(os.path.join(root, rel), text.encode("utf-8"),
                         0o755 if mode & 0o111 else 0o644)
        if mode not in (0o644, 0o755) or owner != (0, 0):
            modes[rel] = [mode, *owner]
    for name in mounts:
        if not isinstance(name, str):
            raise B.BuilderError("mounts must be a JSON list of paths")
        _mkdirs(root, T.safe_relpath(name, "runtime.mount"))
    B.write_meta(out, "files", "config", "0", modes)


def _selected(copy: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(image path, file on disk, path in the context) for everything one io.copy selects:
    its source itself, then what is below it (a sorted walk that never follows a link)."""
    src, source, target = copy["src"], copy["source"], copy["target"]
    out = [(target, src, source)]
    if not os.path.isdir(src) or os.path.islink(src):
        return out
    base = "" if target == "/" else target
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, src)
            out.append((f"{base}/{rel}", path, rel if source == "." else f"{source}/{rel}"))
    return out


def _kind(path: str) -> str:
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    raise B.BuilderError(f"{path}: only files, directories and symlinks can be copied")


def make_context(out: str) -> None:
    """The io.copy tree, as envd lays it out: later copies win over earlier ones."""
    copies = B.json_input(B.getenv("copies"), "copies")
    owner = _check_ids(B.json_input(B.getenv("owner", "[0, 0]"), "owner"), "owner")
    if not isinstance(copies, list):
        raise B.BuilderError("copies must be a JSON list")
    downloads = B.json_input(B.getenv("downloads", "[]"), "downloads")
    if not isinstance(downloads, list):
        raise B.BuilderError("downloads must be a JSON list")
    selected: dict[str, tuple[str, str, str]] = {}  # image path -> (disk path, kind, source)
    for download in downloads:
        if not isinstance(download, dict) or not all(
                isinstance(download.get(k), str) for k in ("src", "target")):
            raise B.BuilderError("each download must be {src, target}")
        target = download["target"]
        if not target.startswith("/") or _kind(download["src"]) != "file":
            raise B.BuilderError(f"io.http: {target!r} must be an absolute path of a file")
        T.safe_relpath(target.lstrip("/"), "io.http target")
        selected[target] = (download["src"], "download", "")
    for copy in copies:
        if not isinstance(copy, dict) or not all(
                isinstance(copy.get(k), str) for k in ("src", "source", "target")):
            raise B.BuilderError("each copy must be {src, source, target}")
        if not copy["target"].startswith("/"):
            raise B.BuilderError(f"io.copy target {copy['target']!r} is not absolute")
        if copy["source"] != ".":
            T.safe_relpath(copy["source"], "io.copy source")
        T.safe_relpath(copy["target"].lstrip("/") or ".", "io.copy target")
        for image_path, disk, in_context in _selected(copy):
            kind = _kind(disk)
            if kind == "link" and T.symlink_escapes(in_context, os.readlink(disk)):
                raise B.BuilderError(f"io.copy: {in_context} is a symlink pointing out of the "
                                     f"build context ({os.readlink(disk)})")
            if kind == "link" and os.readlink(disk).startswith("/"):
                raise B.BuilderError(f"io.copy: {in_context} is a symlink to the absolute path "
                                     f"{os.readlink(disk)}, outside the build context")
            selected[image_path] = (disk, kind, copy["source"])
    for image_path in selected:  # nothing beneath a copied symlink or file
        parent = image_path
        while parent.count("/") > 1:
            parent = parent.rsplit("/", 1)[0]
            above = selected.get(parent)
            if above is not None and above[1] != "dir":
                raise B.BuilderError(f"io.copy puts {image_path} beneath {parent}, which is "
                                     f"a {'symlink' if above[1] == 'link' else 'file'}")
    root = os.path.join(out, "root")
    os.makedirs(root)
    modes: dict[str, list[int]] = {}
    for image_path, (disk, kind, _source) in sorted(selected.items()):
        rel = image_path.lstrip("/")
        dest = os.path.join(root, rel) if rel else root
        if rel:
            _mkdirs(root, os.path.dirname(rel))
        executable = kind == "dir" or (kind == "file" and os.access(disk, os.X_OK))
        mode = 0o600 if kind == "download" else 0o755 if executable else 0o644
        if kind == "link":
            os.symlink(os.readlink(disk), dest)
        elif kind == "dir":
            os.makedirs(dest, exist_ok=True)
            os.chmod(dest, mode)
        else:
            shutil.copyfile(disk, dest, follow_symlinks=False)
            os.chmod(dest, mode)
        if kind != "link" and (owner != (0, 0) or kind == "download") and rel:
            modes[rel] = [mode, *owner]
    B.write_meta(out, "context", "io.copy", "0", modes)


def main() -> None:
    out = B.getenv("out")
    kind = B.getenv("kind")
    if kind == "files":
        make_files(out)
    elif kind == "context":
        make_context(out)
    else:
        raise B.BuilderError(f"kind must be files or context, not {kind!r}")


if __name__ == "__main__":
    B.main_wrapper(main, "tree")

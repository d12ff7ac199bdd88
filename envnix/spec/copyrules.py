"""Where io.copy puts things: envd's rule, which is BuildKit's file copy (llb.Copy without
CopyDirContentsOnly, as envd calls it).

BuildKit decides from the target as written and from what the image holds at that moment:

- a target ending in ``/`` (or ``/.``) is a directory: the source lands inside it under its own
  name, file or directory alike (``io.copy("bpe", "/opt/bpe/")`` gives /opt/bpe/bpe);
- a target that already is a directory in the image also receives the source inside it
  (``io.copy("bpe", "/opt")`` gives /opt/bpe, since every Ubuntu base has /opt);
- any other target *is* the copy: a file is written there, a directory's contents go there
  (``io.copy("bpe", "/opt/bpe")`` gives /opt/bpe with bpe's files in it);
- the source's own name is the last element of its cleaned path, so a trailing ``/`` on the
  source changes nothing, while ``.`` (the context) and ``dir/.`` name no element and give
  their contents (``io.copy(".", "/srv/")`` fills /srv itself).

The image's directories are those of envd's base (Ubuntu's root file system), the dev user's
home in a dev image, the conda prefix when Python comes from conda, and whatever earlier
io.copy calls made: copies run in call order, each seeing the ones before it.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

# Directories every envd base (ubuntu:22.04 / 20.04, debian:12) has before anything is added.
BASE_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt", "/opt",
    "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
    "/usr/bin", "/usr/games", "/usr/include", "/usr/lib", "/usr/libexec", "/usr/local",
    "/usr/sbin", "/usr/share", "/usr/src",
    "/usr/local/bin", "/usr/local/etc", "/usr/local/games", "/usr/local/include",
    "/usr/local/lib", "/usr/local/man", "/usr/local/sbin", "/usr/local/share", "/usr/local/src",
    "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/lock", "/var/log",
    "/var/mail", "/var/opt", "/var/run", "/var/spool", "/var/tmp",
    "/etc/apt", "/etc/default", "/etc/profile.d", "/etc/skel",
})
CONDA_DIRS = frozenset({"/opt/conda", "/opt/conda/bin", "/opt/conda/envs",
                        "/opt/conda/envs/envd", "/opt/conda/envs/envd/bin",
                        "/opt/conda/envs/envd/lib"})


def dev_dirs(home: str) -> frozenset[str]:
    """What envd's useradd -m and its dev setup make: the home, .config and .cache."""
    return frozenset({home, f"{home}/.config", f"{home}/.cache"})


@dataclass(frozen=True)
class CopyRequest:
    """One io.copy as written, its source checked against the context.

    ``target`` is absolute (a relative one already joined to the working directory) and keeps
    its trailing ``/`` or ``/.``; ``host`` is the source on disk, whose directories exist in
    the image once it is copied (a later copy may target one of them).
    """

    source: str  # as written, relative to the context
    is_dir: bool
    target: str
    host: str = ""


def source_name(source: str) -> str:
    """The element BuildKit appends: the last of the cleaned path ("" for "." or "dir/.")."""
    if source == "." or source.endswith("/."):
        return ""
    return posixpath.basename(posixpath.normpath("/" + source))  # "" for the context root


def _parents(path: str) -> Iterable[str]:
    while path != "/":
        path = posixpath.dirname(path)
        yield path


def _inside_copied_dir(dest: str, copied: dict[str, str]) -> bool:
    """Whether ``dest`` is a directory (not a symlink) inside an earlier directory copy."""
    for parent in _parents(dest):
        host = copied.get(parent)
        if host:
            inside = os.path.join(host, posixpath.relpath(dest, parent))
            return os.path.isdir(inside) and not os.path.islink(inside)
    return False


def copy_targets(copies: Iterable[CopyRequest], existing: Iterable[str]) -> list[str]:
    """The image path of each copied file or directory itself, in call order."""
    dirs = set(existing)
    copied: dict[str, str] = {}  # image directory -> the source directory copied there
    out: list[str] = []
    for copy in copies:
        as_dir = copy.target.endswith(("/", "/.")) or copy.target == "/"
        dest = posixpath.normpath(copy.target)
        dest = "/" if dest == "//" else dest
        if as_dir or dest in dirs or _inside_copied_dir(dest, copied):
            name = source_name(copy.source)
            dest = posixpath.join(dest, name) if name else dest
        out.append(dest)
        dirs.update(_parents(dest))
        if as_dir:
            dirs.add(posixpath.normpath(copy.target))
        if copy.is_dir:
            dirs.add(dest)
            if copy.host:
                copied[dest] = copy.host
    return out

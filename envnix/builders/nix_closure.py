"""Nix builder: store paths from nixpkgs (CUDA's cudaPackages) and their closure as a package tree.

Why: with ``--cuda-provider nixpkgs`` the CUDA libraries are nixpkgs derivations, already pinned
by the nixpkgs revision. Their files must sit in the image at the same /nix/store paths (their
RUNPATHs name those paths), and the loader must find them at a path that does not change with
the nixpkgs revision: ``/usr/local/cuda/lib64`` (and ``bin`` for dev tools), the directories
NVIDIA's images use, hold symlinks to the libraries in the store.

Environment:
  out      output directory (Nix's $out)
  closure  a nixpkgs ``closureInfo`` output: its ``store-paths`` file lists the whole closure
  libs     JSON list of store paths whose ``lib/`` entries are linked into usr/local/cuda/lib64
  bins     JSON list of store paths whose ``bin/`` entries are linked into usr/local/cuda/bin
  pkgName  name for meta.json (default "cuda-nixpkgs")

Output: ``$out/root/nix/store/<path>`` copies (symlinks kept as symlinks) plus the links, and
``$out/meta.json`` {"kind": "nix-closure", ...}. Errors: one line ``envnix-builder: nix closure:
<why>``, exit 1.
"""

from __future__ import annotations

import os
import stat

import _builder as B
import _treewrite as T

STORE = "/nix/store"
LIB_DIR = "usr/local/cuda/lib64"
BIN_DIR = "usr/local/cuda/bin"


def _store_paths(closure: str) -> list[str]:
    with open(os.path.join(closure, "store-paths"), encoding="utf-8") as f:
        paths = sorted({line.strip() for line in f if line.strip()})
    for path in paths:
        if os.path.dirname(path) != STORE:
            raise B.BuilderError(f"{path!r} is not a top-level /nix/store path")
    return paths


def _copy(tree: T.TreeWriter, source: str, rel: str) -> None:
    """Copy ``source`` (a store path or a member of one) to ``rel`` in the tree."""
    st = os.lstat(source)
    if stat.S_ISLNK(st.st_mode):
        tree.add_symlink(rel, os.readlink(source))
    elif stat.S_ISDIR(st.st_mode):
        tree.add_dir(rel)
        for name in sorted(os.listdir(source)):
            _copy(tree, os.path.join(source, name), f"{rel}/{name}")
    elif stat.S_ISREG(st.st_mode):
        with open(source, "rb") as f:
            tree.add_file(rel, f, mode=0o755 if st.st_mode & 0o111 else 0o644)
    else:
        raise B.BuilderError(f"{source}: not a file, directory or symlink")


def _link_entries(tree: T.TreeWriter, roots: list[str], sub: str, target_dir: str) -> int:
    """Symlink every entry of ``<root>/<sub>`` into ``target_dir``; the first root wins."""
    count = 0
    for root in roots:
        directory = os.path.join(root, sub)
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            rel = f"{target_dir}/{name}"
            if rel not in tree.entries:
                tree.add_symlink(rel, os.path.join(directory, name))
                count += 1
    return count


def main() -> None:
    out = B.getenv("out")
    closure = B.getenv("closure")
    libs = B.json_path_list(B.getenv("libs", "[]"), "libs")
    bins = B.json_path_list(B.getenv("bins", "[]"), "bins")
    tree = T.TreeWriter(os.path.join(out, "root"), "store path")
    paths = _store_paths(closure)
    for path in paths:
        _copy(tree, path, path.lstrip("/"))
    if _link_entries(tree, libs, "lib", LIB_DIR) == 0 and libs:
        raise B.BuilderError(f"no lib/ entries in {', '.join(libs)}")
    _link_entries(tree, bins, "bin", BIN_DIR)
    B.write_meta(out, "nix-closure", B.getenv("pkgName", "cuda-nixpkgs"), "0", tree.modes,
                 storePaths=paths)


if __name__ == "__main__":
    B.main_wrapper(main, "nix closure")

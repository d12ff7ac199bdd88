"""Pack package trees into one deterministic, compressed OCI layer.

Run by Nix as `python3 mklayer.py` with these environment variables:
  out     where to write the blob (`layer.tar.gz`, or `layer.tar.zst` with zstd) and
          `layer.json` (created if missing)
  trees   JSON list of package-tree paths, or (when it does not start with '[') the path of a
          file holding that list
  mtime   optional integer mtime for every member (SOURCE_DATE_EPOCH-style), default 0
  compression  optional: "gzip" (default) or "zstd" (_zstd.py: fixed level, one frame)
  pathFilter   optional JSON list of dpkg `path-exclude /GLOB` / `path-include /GLOB` lines
          (_pathfilter.py): the paths they exclude are left out (slim images), before hard
          links are planned
  zstdPath     optional (host toolchain): a directory holding the `zstandard` package

Each tree is `<tree>/root/...` plus `<tree>/meta.json` (see README.md). Why the work is done
here and not by `tar`: the Nix store forgets modes and owners, and the diffID must not depend on
the host's tar, Python or file system. So:
- all trees are walked with lstat (symlinks are never followed), merged, and written sorted by
  path components compared as bytes (parents first, a directory's members together, the order
  of GNU tar `--sort=name`); every directory gets an explicit entry;
- modes are normalised (dir 0755, file 0644 or 0755 if any x bit, symlink 0777, owner 0:0),
  then `meta.json` `modes` entries `[mode, uid, gid]` are applied (setuid, sticky, owners);
- files that are hard links of each other in the store stay separate regular files (the store
  hard-links identical files when optimising, which must not change the layer); what makes a
  tar hard link is `meta.json` `hardlinks` (the package's own hard-link groups, which the
  store cannot hold): in each group the names with the same mode, owner and size are one
  file, stored under the name that comes first in archive order, the others link to it;
- a regular file under usr/ with the same content, mode and owner as one earlier in archive
  order (a licence text, a duplicated module, ...) is a tar hard link to it, so no file is
  stored twice in a layer (size.py's "duplicate files"). Only usr/: what packages own there is
  replaced, never edited in place, so the shared inode an unpacker that keeps links (vfs,
  umoci) gives the twins can never make an edit of one show in the other; /etc, /root and
  /home keep separate copies;
- the same path in two trees is fine only for directories with the same mode/owner, regular
  files with the same content/mode/owner, or symlinks with the same target/mode/owner;
  anything else is an error naming both trees.
Writes are streamed (tar -> gzip/zstd -> file); the uncompressed tar is hashed, never stored.
`layer.json` = {"diff_id", "digest", "size" (blob bytes), "tar_size", "paths" (members)}, plus
"compression" when it is not gzip, "dropped" (members left out) with a pathFilter and "name"
with the optional `layerName` (what mkimage.py's history calls the layer).
Errors: one line `envnix-builder: layer: ...` on stderr, exit 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from dataclasses import dataclass, replace

import _builder as B
import _pathfilter
from _archive import import_zstandard_from
from _gzip import GzipWriter
from _tarwrite import Entry, TarError, TarWriter
from _zstd import ZstdWriter

COMPARE_CHUNK = 1 << 20
# compression -> the blob's file name (mkimage.py's BLOBS maps it to the OCI media type)
BLOBS = {"gzip": "layer.tar.gz", "zstd": "layer.tar.zst"}


class LayerError(Exception):
    """Bad input, reported as one line."""


@dataclass(frozen=True)
class Item:
    """A member to write: the tar entry, which tree gave it, and where its content is."""

    entry: Entry
    tree: str  # display name for errors
    source: bytes  # absolute path of the file on disk (content of regular files)


def _show(path: bytes) -> str:
    return "/" + path.decode("utf-8", "backslashreplace")


def _tree_name(tree: str, meta: dict[str, object]) -> str:
    name = meta.get("name")
    return name if isinstance(name, str) and name else os.path.basename(tree.rstrip("/"))


def _load_meta(tree: str) -> dict[str, object]:
    path = os.path.join(tree, "meta.json")
    meta = B.load_json(path, f"{tree}: cannot read meta.json", LayerError)
    if not isinstance(meta, dict):
        raise LayerError(f"{path}: not a JSON object")
    B.check_version(meta, "format", B.META_FORMAT, path, LayerError)
    return meta


def _default_entry(rel: bytes, full: bytes, st: os.stat_result, name: str) -> Entry:
    if stat.S_ISDIR(st.st_mode):
        return Entry(rel, "dir", 0o755)
    if stat.S_ISREG(st.st_mode):
        return Entry(rel, "file", 0o755 if st.st_mode & 0o111 else 0o644, size=st.st_size)
    if stat.S_ISLNK(st.st_mode):
        return Entry(rel, "symlink", 0o777, linkname=os.readlink(full))
    raise LayerError(f"{name}: {_show(rel)} is not a file, directory or symlink")


def walk_tree(tree: str) -> tuple[dict[bytes, Item], list[list[bytes]]]:
    """Every member of `<tree>/root` with normalised metadata and `modes` applied, and the
    tree's hard-link groups."""
    meta = _load_meta(tree)
    name = _tree_name(tree, meta)
    root = os.fsencode(os.path.abspath(os.path.join(tree, "root")))
    if not os.path.isdir(root):
        raise LayerError(f"{name}: {tree} has no root/ directory")
    items: dict[bytes, Item] = {}
    stack: list[bytes] = [b""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
            for de in it:
                rel = rel_dir + b"/" + de.name if rel_dir else de.name
                full = de.path
                st = de.stat(follow_symlinks=False)
                entry = _default_entry(rel, full, st, name)
                try:
                    rel.decode("utf-8")
                    entry.linkname.decode("utf-8")
                except UnicodeDecodeError:
                    raise LayerError(
                        f"{name}: {_show(rel)}: file name or link target is not UTF-8"
                    ) from None
                items[rel] = Item(entry, name, full)
                if entry.kind == "dir":
                    stack.append(rel)

    modes = meta.get("modes", {})
    if not isinstance(modes, dict):
        raise LayerError(f"{name}: meta.json modes must be an object")
    for key, value in modes.items():
        rel = _rel_key(key)
        ok = (
            isinstance(value, list) and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and 0 <= value[0] <= 0o7777 and value[1] >= 0 and value[2] >= 0
        )
        if not ok:
            raise LayerError(f"{name}: meta.json modes[{key!r}] must be [mode, uid, gid]")
        if rel not in items:
            raise LayerError(f"{name}: meta.json modes names {_show(rel)}, which is not in root/")
        item = items[rel]
        entry = replace(item.entry, mode=value[0], uid=value[1], gid=value[2])
        items[rel] = replace(item, entry=entry)
    return items, _hardlink_groups(meta, name, items)


def _rel_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape").strip(b"/").removeprefix(b"./")


def _hardlink_groups(meta: dict[str, object], name: str,
                     items: dict[bytes, Item]) -> list[list[bytes]]:
    """meta.json `hardlinks`: lists of >= 2 names of regular files in root/."""
    groups = meta.get("hardlinks", [])
    if not isinstance(groups, list):
        raise LayerError(f"{name}: meta.json hardlinks must be a list")
    out: list[list[bytes]] = []
    for group in groups:
        if not (isinstance(group, list) and len(group) >= 2
                and all(isinstance(k, str) for k in group)):
            raise LayerError(f"{name}: meta.json hardlinks: {group!r} is not a list of names")
        rels = [_rel_key(k) for k in group]
        for rel in rels:
            item = items.get(rel)
            if item is None or item.entry.kind != "file":
                raise LayerError(f"{name}: meta.json hardlinks names {_show(rel)}, which is "
                                 "not a regular file in root/")
        out.append(rels)
    return out


def _same_content(a: bytes, b: bytes) -> bool:
    sa, sb = os.stat(a), os.stat(b)
    if sa.st_size != sb.st_size:
        return False
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(COMPARE_CHUNK), fb.read(COMPARE_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def _compatible(old: Item, new: Item) -> bool:
    a, b = old.entry, new.entry
    if (a.kind, a.mode, a.uid, a.gid, a.linkname) != (b.kind, b.mode, b.uid, b.gid, b.linkname):
        return False
    if a.kind == "file":
        return a.size == b.size and _same_content(old.source, new.source)
    return True


def _owner_mode(item: Item) -> str:
    return f"{item.entry.mode:04o} {item.entry.uid}:{item.entry.gid}"


def _order(path: bytes) -> list[bytes]:
    """Archive order: by path components as bytes (parents first, directories contiguous)."""
    return path.split(b"/")


def merge_trees(trees: list[str], path_filter: list[str] | None = None
                ) -> tuple[list[Item], int]:
    """All trees' members as one list in archive order, hard links restored, and how many
    `path_filter` left out (before links are planned: a group keeps the names that stay);
    conflicting paths are errors."""
    merged: dict[bytes, Item] = {}
    groups: list[list[bytes]] = []
    for tree in trees:
        items, tree_groups = walk_tree(tree)
        groups.extend(tree_groups)
        for rel in sorted(items, key=_order):  # report the first conflict in archive order
            item = items[rel]
            old = merged.get(rel)
            if old is None:
                merged[rel] = item
            elif not _compatible(old, item):
                why = ""
                if old.entry.kind == item.entry.kind == "dir":
                    why = f" with different modes ({_owner_mode(old)} vs {_owner_mode(item)})"
                raise LayerError(
                    f"{_show(rel)} is provided by both {old.tree} and {item.tree}{why}"
                )
    before = len(merged)
    if path_filter:
        merged, groups = _filtered(merged, groups, path_filter)
    plan = link_plan(merged, groups)
    plan.update(dedupe_plan(merged, {*plan, *plan.values()}))
    for rel, first in plan.items():
        item = merged[rel]
        merged[rel] = replace(item, entry=replace(item.entry, kind="hardlink", size=0,
                                                  linkname=first))
    return [merged[k] for k in sorted(merged, key=_order)], before - len(merged)


def _filtered(merged: dict[bytes, Item], groups: list[list[bytes]], lines: list[str]
              ) -> tuple[dict[bytes, Item], list[list[bytes]]]:
    try:
        rules = _pathfilter.parse(lines)
    except _pathfilter.FilterError as e:
        raise LayerError(str(e)) from None
    kept = _pathfilter.keep(rules, {rel.decode("utf-8"): item.entry.kind == "dir"
                                    for rel, item in merged.items()})
    merged = {rel: item for rel, item in merged.items() if rel.decode("utf-8") in kept}
    groups = [g for g in ([rel for rel in group if rel in merged] for group in groups)
              if len(g) >= 2]
    return merged, groups


def link_plan(merged: dict[bytes, Item], groups: list[list[bytes]]) -> dict[bytes, bytes]:
    """name -> the name it is a hard link to. Groups that share a name are one group (two
    trees may ship the same file); within a group, names with the same mode, owner and size
    are one file, stored under the first of them in archive order. Their content is checked
    (at no cost when the store kept the builder's on-disk links, else one more read)."""
    parent: dict[bytes, bytes] = {}

    def find(x: bytes) -> bytes:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in groups:
        for rel in group[1:]:
            a, b = find(group[0]), find(rel)
            if a != b:
                parent[max(a, b)] = min(a, b)
    classes: dict[tuple[bytes, int, int, int, int], list[bytes]] = {}
    for rel in parent:
        e = merged[rel].entry
        if e.kind == "file":
            classes.setdefault((find(rel), e.mode, e.uid, e.gid, e.size), []).append(rel)
    plan: dict[bytes, bytes] = {}
    for names in classes.values():
        names.sort(key=_order)
        for rel in names[1:]:
            if not _same_content(merged[names[0]].source, merged[rel].source):
                raise LayerError(f"{merged[rel].tree}: meta.json hardlinks: {_show(rel)} and "
                                 f"{_show(names[0])} differ in content")
            plan[rel] = names[0]
    return plan


DEDUPE_UNDER = b"usr/"


def _digest(path: bytes) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(COMPARE_CHUNK):
            h.update(chunk)
    return h.digest()


def dedupe_plan(merged: dict[bytes, Item], taken: set[bytes]) -> dict[bytes, bytes]:
    """name -> the earlier name (archive order) of a regular file under usr/ with the same
    content, mode and owner; names in ``taken`` (meta.json's hard-link groups) are left as
    planned. Only files whose size, mode and owner match another's are read."""
    shapes: dict[tuple[int, int, int, int], list[bytes]] = {}
    for rel, item in merged.items():
        e = item.entry
        if e.kind == "file" and e.size > 0 and rel.startswith(DEDUPE_UNDER) and rel not in taken:
            shapes.setdefault((e.size, e.mode, e.uid, e.gid), []).append(rel)
    plan: dict[bytes, bytes] = {}
    for names in shapes.values():
        if len(names) < 2:
            continue
        first: dict[bytes, bytes] = {}
        for rel in sorted(names, key=_order):
            stored = first.setdefault(_digest(merged[rel].source), rel)
            if stored != rel:
                plan[rel] = stored
    return plan


def write_layer(items: list[Item], out: str, mtime: int,
                compression: str = "gzip") -> dict[str, object]:
    """Stream the tar through gzip or zstd into `out/<blob>`; return layer.json's content."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, BLOBS[compression]), "wb") as f:
        gz = GzipWriter(f) if compression == "gzip" else ZstdWriter(f)
        tar = TarWriter(gz, mtime=mtime)
        for item in items:  # (a hard link's target comes first in archive order)
            if item.entry.kind == "file":
                with open(item.source, "rb") as src:
                    tar.add(item.entry, src)
            else:
                tar.add(item.entry)
        tar.close()
        gz.close()
    layer: dict[str, object] = {
        "diff_id": tar.digest,
        "digest": gz.digest,
        "size": gz.size,
        "tar_size": tar.size,
        "paths": tar.count,
    }
    if compression != "gzip":
        layer["compression"] = compression
    return layer


def _env_int(name: str, default: int) -> int:
    value = B.optional_env(name) or ""
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise LayerError(f"{name}={value!r} is not an integer") from None
    if n < 0:
        raise LayerError(f"{name}={value!r} is negative")
    return n


def _main() -> None:
    out = B.optional_env("out")
    trees_value = B.optional_env("trees")
    if not out or trees_value is None:
        raise LayerError("the environment must set out and trees")
    trees = B.json_path_list(trees_value, "trees")
    if not trees:
        raise LayerError("trees is empty")
    mtime = _env_int("mtime", 0)
    compression = B.optional_env("compression") or "gzip"
    if compression not in BLOBS:
        raise LayerError(f"compression={compression!r}: use gzip or zstd")
    if compression == "zstd" and B.optional_env("zstdPath"):
        import_zstandard_from(B.optional_env("zstdPath") or "")
    filter_value = B.optional_env("pathFilter") or ""
    path_filter = B.json_input(filter_value, "pathFilter") if filter_value else []
    if not isinstance(path_filter, list):
        raise LayerError("pathFilter must be a JSON list of dpkg path-exclude/-include lines")
    items, dropped = merge_trees(trees, path_filter)
    layer = write_layer(items, out, mtime, compression)
    if path_filter:
        layer["dropped"] = dropped
    name = B.optional_env("layerName")
    if name:
        layer["name"] = name
    with open(os.path.join(out, "layer.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(layer, sort_keys=True, separators=(",", ":")))


def main() -> int:
    return B.run_reporting(_main, "layer", (LayerError, TarError, B.BuilderError))


if __name__ == "__main__":
    sys.exit(main())

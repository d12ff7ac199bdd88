"""Nix builder: one layer of a base(image=...) image, as a layer dir or as a package tree.

Why two outputs: the image reuses the base's layer blobs unchanged (so its digests stay the
base's and a registry already holding the base skips them), while run() needs the base's
files in a package tree to assemble the root filesystem it runs over.

Environment:
  out      output directory (Nix's $out)
  src      the layer blob (a fixed-output fetch pinned by the layer digest): a gzip tar
  output   "layer": $out/layer.tar.gz (a link to src: relative when src sits next to $out in
           the store, so it also resolves in a chroot store) and $out/layer.json
           {"diff_id", "digest", "size"} from the inputs below, the format mkimage.py reads;
           "tree": $out/root/ + $out/meta.json (README.md, "Package tree format") with every
           member extracted as written, OCI whiteouts (``.wh.<name>``, ``.wh..wh..opq``) kept
           as empty files: run_steps.py applies them over the earlier layers' trees
  digest, diffId, size   (layer) the manifest's digest and size and the config's diff_id
  pkgName  (tree) name for meta.json, default "base-layer"

Errors: one line ``envnix-builder: base layer: <why>``, exit 1 (size mismatch, unsafe member).
"""

from __future__ import annotations

import json
import os
import re
import sys

import _archive as A
import _builder as B
import _treewrite as T

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def make_layer_dir(src: str, out: str) -> None:
    digest, diff_id, size_text = B.getenv("digest"), B.getenv("diffId"), B.getenv("size")
    for what, value in (("digest", digest), ("diffId", diff_id)):
        if not _DIGEST.match(value):
            raise B.BuilderError(f"{what} {value!r} is not sha256:<64 hex>")
    if not size_text.isdigit():
        raise B.BuilderError(f"size {size_text!r} is not a number")
    size = int(size_text)
    actual = os.stat(src).st_size
    if actual != size:
        raise B.BuilderError(f"{src} has {actual} bytes, the manifest says {size}")
    os.makedirs(out)
    src_abs, out_abs = os.path.abspath(src), os.path.abspath(out)
    if os.path.dirname(src_abs) == os.path.dirname(out_abs):
        target = os.path.join("..", os.path.basename(src_abs))
    else:
        target = src_abs
    os.symlink(target, os.path.join(out, "layer.tar.gz"))
    meta = {"diff_id": diff_id, "digest": digest, "size": size}
    B.write_new_file(os.path.join(out, "layer.json"),
                     json.dumps(meta, sort_keys=True, separators=(",", ":")).encode())


def make_tree(src: str, out: str) -> None:
    name = B.getenv("pkgName", "base-layer")
    os.makedirs(out)
    writer = T.TreeWriter(os.path.join(out, "root"), what="layer member")
    with open(src, "rb") as f:
        A.extract_tar(f, writer)
    B.write_meta(out, "base", name, "0", writer.modes, writer.notes, writer.hardlinks)


def main() -> None:
    src, out, output = B.getenv("src"), B.getenv("out"), B.getenv("output")
    if output == "layer":
        make_layer_dir(src, out)
    elif output == "tree":
        make_tree(src, out)
    else:
        raise B.BuilderError(f"output {output!r} is not 'layer' or 'tree'")


if __name__ == "__main__":
    B.main_wrapper(main, "base layer")
    sys.exit(0)

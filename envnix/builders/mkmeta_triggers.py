"""Nix builder: mkmeta.py's metadata tree into ``$out``, then triggers.py's tree into
``$caches``, in one derivation with two outputs (not named "triggers": that is triggers.py's
list of trigger names).

Why one derivation: the triggers need the metadata tree (dpkg's file lists), so they always
ran right after it, and a derivation whose inputs have just been built only asks Nix for a
build slot on the next round of its loop: a layer already waiting for one took it first, and
the triggers, on the build's critical path, waited for that layer's gzip. Both trees are
what the two builders write on their own (image.nix uses this builder only when the plan has
a triggers layer; otherwise mkmeta.py alone).

Environment: mkmeta.py's (``trees``: every package tree; workdir, users, aptSources,
aptAuto, dpkgFilter), then triggers.py's with
  triggerTrees  JSON list of the trees the triggers run over, in layer order, where "@meta"
                stands for this derivation's own metadata tree ($out)
  triggers, epoch, proot, prootLoader, qemu, arch   as for triggers.py
  out, caches   the two outputs (Nix's)
"""

from __future__ import annotations

import json
import os
import sys

import _builder as B
import mkmeta
import triggers


def main() -> None:
    meta_out = B.getenv("out")
    triggers_out = B.getenv("caches")
    order = B.json_input(B.getenv("triggerTrees"), "triggerTrees")
    if not isinstance(order, list) or not all(isinstance(t, str) and t for t in order):
        raise B.BuilderError("triggerTrees: must be a JSON list of package-tree paths")
    B.set_context("meta")
    mkmeta.main()
    # triggers.py reads its inputs as Nix passes them: lower-case attribute names
    os.environ["trees"] = json.dumps([meta_out if t == "@meta" else t for t in order])  # noqa: SIM112
    os.environ["out"] = triggers_out  # noqa: SIM112
    B.set_context("triggers")
    triggers.main()


if __name__ == "__main__":
    B.main_wrapper(main, "meta")
    sys.exit(0)

#!/usr/bin/env python3
"""Compare an envnix image's files with `mmdebstrap --variant=apt` of the same packages.

Not a timing: a count. The conventional root is built in the same run, from the same mirror
(this machine's apt sources) and the same package names the lock was made from, and every
path it has that the envnix image lacks is counted by kind, so a change to the metadata layer
shows as a before/after figure (issue 12's yardstick).

Usage:  .venv/bin/python bench/debian_parity.py [CONTEXT] [--show KIND] [--keep DIR]
CONTEXT defaults to examples/quickstart (built --locked from its committed lock).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from _common import envnix, field, work_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _mmdebstrap import mmdebstrap  # noqa: E402

# Directories whose contents neither side is expected to share: mounts, and what docs and
# man pages are (counted apart so the interesting figure is not drowned).
SKIP_TOP = ("proc", "sys", "dev")


def paths(root: Path) -> set[str]:
    """Every path under *root*, in merged-/usr spelling."""
    out = set()
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if rel.split("/")[0] in SKIP_TOP:
            continue
        head, _, rest = rel.partition("/")
        if head in ("bin", "sbin", "lib", "lib64") and rest:
            rel = f"usr/{rel}"
        out.add(rel)
    return out


def kind(path: str) -> str:
    """A coarse class of a path, to say what is missing rather than how much."""
    if "__pycache__" in path:
        return "python bytecode"
    if path.startswith(("usr/share/doc/", "usr/share/man/", "usr/share/info/")):
        return "docs and man pages"
    if path.startswith(("var/log/", "var/cache/", "var/lib/apt/lists/")):
        return "logs, caches, apt lists"
    if path.startswith("etc/alternatives/"):
        return "alternatives links"
    if path.startswith(("usr/bin/", "usr/sbin/")):
        return "executables"
    if ".so" in path.rsplit("/", 1)[-1]:
        return "libraries"
    if path.startswith("etc/"):
        return "config (etc)"
    if path.startswith("var/lib/dpkg/"):
        return "dpkg database"
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("context", nargs="?", default=str(ROOT / "examples" / "quickstart"))
    ap.add_argument("--show", action="append", default=[],
                    help="list the missing paths of this kind (repeatable)")
    ap.add_argument("--keep", type=Path, help="keep the two roots in this directory")
    args = ap.parse_args()
    context = Path(args.context).resolve()
    lock_file = context / "envnix.lock"
    _, out, _ = envnix("build", str(context), *(["--locked"] if lock_file.exists() else []))
    lock = json.loads(lock_file.read_text())
    store = Path(field(out, "store"))
    with work_dir(args.keep, "parity") as work:
        ref, bundle = work / "mmdebstrap", work / "envnix"
        mmdebstrap(lock["inputs"]["apt"]["packages"], ref, lock["inputs"]["apt"]["release"])
        tag = next(iter(json.loads((store / "oci" / "index.json").read_text())["manifests"]))
        ref_name = tag.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
        subprocess.run(["umoci", "unpack", "--image", f"{store / 'oci'}:{ref_name}",
                        str(bundle)], check=True, capture_output=True)
        ours, theirs = paths(bundle / "rootfs"), paths(ref)
    missing = theirs - ours
    by_kind = Counter(kind(p) for p in missing)
    print(f"context: {context}")
    print(f"mmdebstrap --variant=apt: {len(theirs)} paths; envnix: {len(ours)} paths; "
          f"missing from envnix: {len(missing)}; only in envnix: {len(ours - theirs)}")
    for name, count in by_kind.most_common():
        print(f"  {name:<26} {count:>6}")
    for name in args.show:
        print(f"\n{name}:")
        for p in sorted(p for p in missing if kind(p) == name):
            print(f"  {p}")


if __name__ == "__main__":
    main()

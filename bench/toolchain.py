#!/usr/bin/env python3
"""Benchmark the pinned toolchain against the host one on the quickstart.

Figures (each toolchain in a fresh chroot Nix store, so no derivation is cached; envnix seeds
that store with the locked artifacts from this machine's store, so downloads of the image's
artifacts are left out of both):
- toolchain fetch + unpack, once per store (pinned only): download the pinned .debs, extract,
  nix-store --add-fixed; and the toolchain's size;
- cold build of the committed quickstart lock, host vs pinned (pinned: toolchain already in);
- warm (no-op) rebuild, host vs pinned;
- the digests, which must be the same.

Usage:  .venv/bin/python bench/toolchain.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import envnix, field, print_compared, work_dir

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: temp)")
    args = parser.parse_args()
    rows, digests = [], {}
    with work_dir(args.keep, "toolchain") as work:
        for toolchain in ("host", "pinned"):
            context = work / toolchain / "quickstart"
            shutil.rmtree(context.parent, ignore_errors=True)
            shutil.copytree(ROOT / "examples/quickstart", context,
                            ignore=shutil.ignore_patterns(".envnix"))
            store = work / f"store-{toolchain}"
            subprocess.run(["chmod", "-R", "u+w", str(store)], check=False, capture_output=True)
            shutil.rmtree(store, ignore_errors=True)
            if toolchain == "pinned":
                started = time.monotonic()
                path = subprocess.run([sys.executable, "-m", "envnix.toolchain", "ensure",
                                       "--store", str(store)], capture_output=True, text=True,
                                      check=True).stdout.strip()
                t_tc = time.monotonic() - started
                size = subprocess.run(["du", "-sb", str(store) + path], capture_output=True,
                                      text=True, check=True).stdout.split()[0]
                from envnix.lock.toolchain_pin import load_pin

                debs = sum(d["size"] for d in load_pin().debs)
                rows.append(("toolchain fetch + unpack (once)", f"{t_tc:.1f} s",
                             f"{len(load_pin().debs)} debs, {debs / 1e6:.1f} MB"))
                rows.append(("toolchain size in the store", f"{int(size) / 1e6:.1f} MB", path))
            build = ["build", str(context), "--locked", "-t", "quickstart:dev",
                     "--toolchain", toolchain, "--store", str(store)]
            t_cold, out, _ = envnix(*build)
            t_warm, out2, _ = envnix(*build)
            assert field(out, "manifest") == field(out2, "manifest")
            digests[toolchain] = (field(out, "config"), field(out, "manifest"))
            rows.append((f"cold build, {toolchain}", f"{t_cold:.1f} s", ""))
            rows.append((f"warm rebuild, {toolchain}", f"{t_warm:.2f} s", ""))
        print_compared(rows, "manifest (host / pinned)",
                       {t: digests[t][1] for t in ("pinned", "host")})


if __name__ == "__main__":
    main()

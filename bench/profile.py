#!/usr/bin/env python3
"""Where a cold build's time goes, per derivation type (issue 17 item 2).

Every derivation of the built image that runs one of envnix's builders (unpack_deb,
install_wheel, mkmeta, triggers, mklayer, mkimage, ...) is run again, one at a time, outside
the sandbox but with its own builder, arguments and environment, into a scratch directory,
and timed; the seconds are summed per builder. In the same run:
- the cold build (`envnix build --store DIR`: a fresh chroot store that envnix seeds with the
  locked artifacts from this machine's store, so no download), wall clock;
- issue 17's compute floor: extract every artifact (`dpkg-deb -x` of each .deb, `unzip` of
  each wheel, into one root) + `tar | pigz -p2` of that root.
Nix's own share is estimated as the cold build's wall clock minus the builders' sequential
seconds divided by the cores.

Usage:  .venv/bin/python bench/profile.py [CONTEXT] [--no-cold] [--keep DIR]
CONTEXT defaults to bench/contexts/opencv, built --locked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from _common import envnix, field, print_table, work_dir

NIX = ["nix", "--extra-experimental-features", "nix-command"]


def closure_derivations(store_path: str) -> tuple[list[dict], list[str]]:
    """The builder derivations of the image's closure, and the fetched artifacts' paths."""
    drv = subprocess.run(["nix-store", "-q", "--deriver", store_path], capture_output=True,
                         text=True, check=True).stdout.strip()
    shown = json.loads(subprocess.run([*NIX, "show-derivation", "-r", drv], capture_output=True,
                                      text=True, check=True).stdout)
    builders = [v for v in shown.values()
                if v["args"] and v["args"][-1].endswith(".py")
                and "envnix-builders" in v["args"][-1]]
    fetched = sorted(v["env"]["out"] for v in shown.values() if v["builder"] == "builtin:fetchurl"
                     and v["env"]["out"].endswith((".deb", ".whl")))
    return builders, fetched


def floor(artifacts: list[str], root: Path) -> tuple[float, float]:
    """(seconds to extract every artifact into one root, seconds of tar | pigz -p2 of it)."""
    site = root / "usr/local/lib/python3.11/dist-packages"
    site.mkdir(parents=True)
    started = time.monotonic()
    for a in artifacts:
        cmd = (["dpkg-deb", "-x", a, str(root)] if a.endswith(".deb")
               else ["unzip", "-q", "-o", a, "-d", str(site)])
        subprocess.run(cmd, check=True, capture_output=True)
    extracted = time.monotonic()
    subprocess.run(f"tar -C {root} --numeric-owner -cf - . | pigz -p2 -6 > /dev/null",
                   shell=True, check=True)
    return extracted - started, time.monotonic() - extracted


def run_one(drv: dict, scratch: Path) -> float:
    out = scratch / "out"
    env = {k: v for k, v in drv["env"].items() if k != "out"}
    env.update(out=str(out), NIX_BUILD_CORES=str(os.cpu_count() or 1), HOME="/homeless",
               TMPDIR=str(scratch), NIX_BUILD_TOP=str(scratch))
    started = time.monotonic()
    proc = subprocess.run([drv["builder"], *drv["args"]], env=env, cwd=scratch,
                          capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    subprocess.run(["chmod", "-R", "u+w", str(scratch)], check=False, capture_output=True)
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        print(f"warning: {drv['env'].get('name')} failed outside the sandbox: "
              f"{proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return float("nan")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("context", nargs="?",
                    default=str(Path(__file__).resolve().parents[1] / "bench/contexts/opencv"))
    ap.add_argument("--no-cold", action="store_true", help="skip the cold build in a fresh store")
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    with work_dir(args.keep, "profile") as work:
        _, out, _ = envnix("build", args.context, "--locked", "--out-dir", str(work / "gen"))
        store_path = field(out, "store")
        cold = None
        if not args.no_cold:
            cold, _, err = envnix("build", args.context, "--locked", "--store",
                                  str(work / "store"), "--out-dir", str(work / "gen-cold"))
            m = re.search(r"build: (\d+) derivation\(s\) built in ([0-9.]+)s", err)
            built, nix_secs = (int(m[1]), float(m[2])) if m else (0, float("nan"))
        drvs, artifacts = closure_derivations(store_path)
        extract, pack = floor(artifacts, work / "floor")
        per: dict[str, list[float]] = defaultdict(list)
        scratch = work / "scratch"
        for drv in drvs:
            scratch.mkdir(exist_ok=True)
            per[os.path.basename(drv["args"][-1])].append(run_one(drv, scratch))
    rows = []
    total = 0.0
    for name, times in sorted(per.items(), key=lambda kv: -sum(kv[1])):
        s = sum(times)
        total += s
        rows.append((name.removesuffix(".py"), f"{s:.1f} s", f"{len(times)} derivations, "
                                                              f"max {max(times):.1f} s"))
    rows.append(("all builders, one at a time", f"{total:.1f} s", ""))
    cores = os.cpu_count() or 1
    rows.append(("floor: extract every artifact", f"{extract:.1f} s", ""))
    rows.append(("floor: tar | pigz -p2", f"{pack:.1f} s", f"floor {extract + pack:.1f} s"))
    if cold is not None:
        rows.append(("cold build, wall", f"{cold:.1f} s",
                     f"{cold / (extract + pack):.2f}x the floor"))
        rows.append(("  of it nix-build", f"{nix_secs:.1f} s",
                     f"{built} derivations; Nix's own share about "
                     f"{nix_secs - total / cores:.1f} s (nix-build - builders/{cores})"))
        rows.append(("  of it envnix before nix-build", f"{cold - nix_secs:.1f} s",
                     "start-up, lock check, render, seeding the fresh store"))
    print_table(rows)


if __name__ == "__main__":
    main()

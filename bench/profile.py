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

With --timeline, the cold build's schedule too: when each derivation started and ended
(Nix's own start/stop events, `--log-format internal-json`, read through a nix-build wrapper
put first on PATH for that build), in seconds from nix-build's start.

Usage:  .venv/bin/python bench/profile.py [CONTEXT] [--no-cold] [--timeline] [--keep DIR]
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


# nix-build with Nix's JSON log: every stderr line goes, stamped with the seconds since this
# wrapper started, to $ENVNIX_BENCH_NIXLOG; builds and messages go on to envnix as plain lines.
NIX_BUILD_WRAPPER = """#!{python}
import json, os, shutil, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d != here)
real = shutil.which("nix-build", path=path)
started = time.monotonic()
with open(os.environ["ENVNIX_BENCH_NIXLOG"], "w") as log:
    proc = subprocess.Popen([real, *sys.argv[1:], "--log-format", "internal-json"],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        log.write(f"{{time.monotonic() - started:.3f}} {{line}}")
        if not line.startswith("@nix "):
            sys.stderr.write(line)
            continue
        event = json.loads(line[5:])
        if event.get("action") == "start" and event.get("type") == 105:
            sys.stderr.write(f"building '{{event['fields'][0]}}'...\\n")
        elif event.get("action") == "msg":
            sys.stderr.write(event.get("msg", "") + "\\n")
sys.exit(proc.wait())
"""


def schedule(nixlog: Path) -> list[tuple[str, float, float]]:
    """(derivation name, start, end) of each build in a stamped JSON log, by start."""
    started: dict[int, tuple[str, float]] = {}
    rows = []
    for line in nixlog.read_text().splitlines():
        stamp, _, rest = line.partition(" ")
        if not rest.startswith("@nix "):
            continue
        event = json.loads(rest[5:])
        if event.get("action") == "start" and event.get("type") == 105:
            name = re.sub(r"^.*/[0-9a-z]{32}-|\.drv$", "", event["fields"][0])
            started[event["id"]] = (name, float(stamp))
        elif event.get("action") == "stop" and event.get("id") in started:
            name, begin = started.pop(event["id"])
            rows.append((name, begin, float(stamp)))
    return sorted(rows, key=lambda r: r[1])


def print_schedule(rows: list[tuple[str, float, float]]) -> None:
    end = max((e for _, _, e in rows), default=0.0) or 1.0
    print(f"\ncold build's schedule (s from nix-build's start; {len(rows)} builds):")
    for name, begin, stop in rows:
        bar = " " * int(40 * begin / end) + "#" * max(1, round(40 * (stop - begin) / end))
        print(f"  {name[:40]:40} {begin:6.1f} {stop:6.1f} {stop - begin:5.1f}  |{bar}")


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
    # every output into the scratch directory (envnix-meta has two: out and caches)
    env = {**drv["env"], **{name: str(scratch / name) for name in drv["outputs"]}}
    env.update(out=str(out), NIX_BUILD_CORES=str(os.cpu_count() or 1), HOME="/homeless",
               TMPDIR=str(scratch), NIX_BUILD_TOP=str(scratch))
    started = time.monotonic()
    proc = subprocess.run([drv["builder"], *drv["args"]], env=env, cwd=scratch,
                          capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    subprocess.run(["chmod", "-R", "u+w", str(scratch)], check=False, capture_output=True)
    for name in drv["outputs"]:
        shutil.rmtree(scratch / name, ignore_errors=True)
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
    ap.add_argument("--timeline", action="store_true",
                    help="also print when each derivation of the cold build started and ended")
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    rows: list[tuple[str, float, float]] = []
    with work_dir(args.keep, "profile") as work:
        _, out, _ = envnix("build", args.context, "--locked", "--out-dir", str(work / "gen"))
        store_path = field(out, "store")
        cold = None
        if not args.no_cold:
            saved = dict(os.environ)
            if args.timeline:
                (work / "bin").mkdir()
                wrapper = work / "bin" / "nix-build"
                wrapper.write_text(NIX_BUILD_WRAPPER.format(python=sys.executable))
                wrapper.chmod(0o755)
                os.environ["PATH"] = f"{work / 'bin'}{os.pathsep}{os.environ['PATH']}"
                os.environ["ENVNIX_BENCH_NIXLOG"] = str(work / "nixlog")
            try:
                cold, _, err = envnix("build", args.context, "--locked", "--store",
                                      str(work / "store"), "--out-dir", str(work / "gen-cold"))
            finally:
                os.environ.clear()
                os.environ.update(saved)
            if args.timeline:
                rows = schedule(work / "nixlog")
            m = re.search(r"build: (\d+) derivation\(s\) built in ([0-9.]+)s", err)
            built, nix_secs = (int(m[1]), float(m[2])) if m else (0, float("nan"))
        drvs, artifacts = closure_derivations(store_path)
        extract, pack = floor(artifacts, work / "floor")
        per: dict[str, list[float]] = defaultdict(list)
        scratch = work / "scratch"
        for drv in drvs:
            scratch.mkdir(exist_ok=True)
            per[os.path.basename(drv["args"][-1])].append(run_one(drv, scratch))
    table = []
    total = 0.0
    for name, times in sorted(per.items(), key=lambda kv: -sum(kv[1])):
        s = sum(times)
        total += s
        table.append((name.removesuffix(".py"), f"{s:.1f} s", f"{len(times)} derivations, "
                                                               f"max {max(times):.1f} s"))
    table.append(("all builders, one at a time", f"{total:.1f} s", ""))
    cores = os.cpu_count() or 1
    table.append(("floor: extract every artifact", f"{extract:.1f} s", ""))
    table.append(("floor: tar | pigz -p2", f"{pack:.1f} s", f"floor {extract + pack:.1f} s"))
    if cold is not None:
        table.append(("cold build, wall", f"{cold:.1f} s",
                     f"{cold / (extract + pack):.2f}x the floor"))
        table.append(("  of it nix-build", f"{nix_secs:.1f} s",
                     f"{built} derivations; Nix's own share about "
                     f"{nix_secs - total / cores:.1f} s (nix-build - builders/{cores})"))
        table.append(("  of it envnix before nix-build", f"{cold - nix_secs:.1f} s",
                     "start-up, lock check, render, seeding the fresh store"))
    print_table(table)
    if rows:
        print_schedule(rows)


if __name__ == "__main__":
    main()

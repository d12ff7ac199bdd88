#!/usr/bin/env python3
"""Benchmark a ~30-package conda environment from the test fixture channel (loopback mirror).

Figures, each next to a baseline measured in the same run:
- lock (py-rattler solve + envnix.lock) vs. rattler's own solve of the same specs;
- cold build in a fresh Nix store vs. rattler's own ``install`` of the same records into a
  prefix (what a conda-like installer does, without reproducibility or layers);
- rebuild after adding one package (nosha) vs. the cold build.

Usage:  .venv/bin/python bench/conda.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from _common import envnix, print_table, work_dir  # noqa: E402
from _conda_channel import build_channel, serve  # noqa: E402

SPECS = ["python=3.11", "pyhello", "hellobin", "pkg-a", "pkg-c", "many-00", "libzlibish"]



def rattler_baseline(channel_root: Path, work: Path) -> tuple[float, float, int]:
    """(solve seconds, install seconds, package count) with rattler alone."""
    from rattler import (
        BuildString,
        Channel,
        GenericVirtualPackage,
        MatchSpec,
        PackageName,
        SparseRepoData,
        Version,
        install,
        solve_with_sparse_repodata,
    )

    url = channel_root.as_uri()
    vps = [GenericVirtualPackage(PackageName("__glibc"), Version("2.36"), BuildString("0"))]

    async def go() -> tuple[float, float, int]:
        started = time.monotonic()
        sparse = [SparseRepoData(Channel(url), s, str(channel_root / s / "repodata.json"))
                  for s in ("linux-64", "noarch")]
        records = await solve_with_sparse_repodata(
            [MatchSpec(s, strict=False) for s in SPECS], sparse, virtual_packages=vps)
        solved = time.monotonic()
        await install(records, work / "rattler-env", cache_dir=work / "rattler-pkgs",
                      show_progress=False, execute_link_scripts=False)
        return solved - started, time.monotonic() - solved, len(records)

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: temp)")
    args = parser.parse_args()
    with work_dir(args.keep, "conda") as work:
        info = build_channel(work / "channel" / "fixture")
        with serve(info.root) as server:
            context = work / "condabench"
            shutil.rmtree(context, ignore_errors=True)
            context.mkdir()
            specs = ", ".join(f'"{s}"' for s in SPECS[1:])
            (context / "build.envd").write_text(
                "def build():\n"
                '    base(os="debian12", language="python3.11")\n'
                '    install.apt_packages(name=["libexpat1"])\n'
                f'    install.conda_packages(name=[{specs}], channel=["{server.urls[0]}"])\n')
            store = work / "store"
            t_lock, _, _ = envnix("lock", str(context))
            lock = json.loads((context / "envnix.lock").read_text())
            conda_count = len(lock["conda"]["packages"])
            t_cold, _, _ = envnix("build", str(context), "--locked", "--store", str(store))
            manifest = context / "build.envd"
            manifest.write_text(manifest.read_text().replace('"pkg-c"', '"pkg-c", "nosha"'))
            envnix("lock", str(context))
            t_incr, _, err = envnix("build", str(context), "--locked", "--store", str(store))
            rebuilt = next((ln for ln in err.splitlines() if "derivation(s) built" in ln), "")
        t_solve, t_install, rattler_count = rattler_baseline(info.root, work)
        rows = [
            ("conda packages locked", f"{conda_count}", f"rattler alone solved {rattler_count}"),
            ("envnix lock (apt + conda + pip)", f"{t_lock:.2f} s",
             f"rattler solve alone {t_solve:.2f} s"),
            ("cold build (fresh store)", f"{t_cold:.1f} s",
             f"{t_cold / t_install:.1f}x rattler install ({t_install:.2f} s, no image)"),
            ("rebuild after adding one package", f"{t_incr:.1f} s",
             f"{t_incr / t_cold:.2f}x cold; {rebuilt.removeprefix('build: ')}"),
        ]
        print_table(rows)


if __name__ == "__main__":
    main()

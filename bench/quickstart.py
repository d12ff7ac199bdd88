#!/usr/bin/env python3
"""Benchmark the quickstart image: cold build, no-op rebuild, one-package rebuild, size.

Every figure is printed next to a baseline measured in the same run on the same machine, so
the ratios mean something across machines:
- cold build       vs. downloading + sha256-checking every locked artifact with urllib
                   (the network floor any builder must pay);
- no-op rebuild    vs. nix-build of an already-built one-line derivation (Nix's own floor);
- +1 pip package   vs. the cold build;
- image size       vs. the sum of the locked artifacts' (compressed) download sizes.

Usage:  .venv/bin/python bench/quickstart.py [--keep DIR]
The cold build runs in a fresh chroot Nix store (``--store``), so no derivation is cached;
envnix seeds that store with the locked artifacts, copied from this machine's store when it
has them (else downloaded), so on a machine that built the quickstart before, the cold
figure leaves out the download that the floor measures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from _common import download_floor, envnix, field, image_bytes, print_table, work_dir

ROOT = Path(__file__).resolve().parents[1]
NIX_FLAGS = ["--option", "sandbox", "true", "--option", "substituters", "",
             "--option", "extra-sandbox-paths", "/usr /lib /lib64"]



def nix_floor(work: Path, store: Path) -> float:
    expr = work / "noop.nix"
    expr.write_text('derivation { name = "noop"; system = "x86_64-linux"; '
                    'builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; }')
    cmd = ["nix-build", str(expr), "--no-out-link", "--store", str(store), *NIX_FLAGS,
           "--option", "extra-sandbox-paths", "/bin /usr /lib /lib64"]
    subprocess.run(cmd, capture_output=True, check=True)
    started = time.monotonic()
    subprocess.run(cmd, capture_output=True, check=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: temp)")
    args = parser.parse_args()
    with work_dir(args.keep, "quickstart") as work:
        context = work / "quickstart"
        shutil.rmtree(context, ignore_errors=True)
        shutil.copytree(ROOT / "examples/quickstart", context,
                        ignore=shutil.ignore_patterns(".envnix", "envnix.lock"))
        store = work / "store"
        subprocess.run(["chmod", "-R", "u+w", str(store)], check=False, capture_output=True)
        shutil.rmtree(store, ignore_errors=True)

        t_lock, _, _ = envnix("lock", str(context))
        lock = json.loads((context / "envnix.lock").read_text())
        downloads = work / "downloads"
        shutil.rmtree(downloads, ignore_errors=True)
        downloads.mkdir()
        t_floor, artifact_bytes = download_floor(lock, downloads)

        t_cold, out, _ = envnix("build", str(context), "--locked", "--store", str(store))
        t_noop, out2, _ = envnix("build", str(context), "--locked", "--store", str(store))
        assert field(out, "manifest") == field(out2, "manifest")
        t_nix = nix_floor(work, store)

        manifest = context / "build.envd"
        manifest.write_text(manifest.read_text().replace('"six",', '"six",\n        "tqdm",'))
        envnix("lock", str(context))
        t_incr, _, err3 = envnix("build", str(context), "--locked", "--store", str(store))
        rebuilt = next((line for line in err3.splitlines() if "derivation(s) built" in line), "")

        compressed, uncompressed, layers = image_bytes(store, field(out, "store"))
        rows = [
            ("lock (apt + pip resolve)", f"{t_lock:.1f} s", ""),
            ("download floor (urllib + sha256)", f"{t_floor:.1f} s",
             f"{artifact_bytes / 1e6:.1f} MB, {len(lock['apt']['packages'])} debs + "
             f"{len(lock['pip']['wheels'])} wheels"),
            ("cold build (fresh store)", f"{t_cold:.1f} s",
             f"{t_cold / t_floor:.2f}x download floor"),
            ("nix floor (no-op trivial drv)", f"{t_nix:.2f} s", ""),
            ("no-op rebuild", f"{t_noop:.2f} s", f"{t_noop / t_nix:.1f}x nix floor"),
            ("+1 pip package (tqdm) rebuild", f"{t_incr:.1f} s",
             f"{t_incr / t_cold:.2f}x cold; {rebuilt.removeprefix('build: ')}"),
            ("image size (compressed layers)", f"{compressed / 1e6:.1f} MB",
             f"{compressed / artifact_bytes:.2f}x artifacts; {layers} layers"),
            ("image size (uncompressed)", f"{uncompressed / 1e6:.1f} MB", ""),
        ]
        print_table(rows)


if __name__ == "__main__":
    main()

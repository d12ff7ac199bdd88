#!/usr/bin/env python3
"""gzip vs zstd layers (`envnix build --compression zstd`): size, layer build time, and
pull-and-unpack time, for one image built both ways in the same run.

- size: the layer blobs of each image (what a registry stores and a pull moves);
- layer build time: every layer derivation of the image (mklayer.py) run again, outside the
  sandbox but with its own builder, arguments and environment (the pinned toolchain), once
  as gzip and once with `compression=zstd`, summed (the trees are the same store paths, so
  this is exactly the work that differs; mkimage only writes small JSON);
- pull-and-unpack: both images copied with skopeo to a registry on loopback, then `podman
  pull` into fresh storage each time (the network is loopback, so this is mostly
  decompressing and writing the layers); then `podman run` of the zstd image, to show it runs.
The `--slim` image is built too and its sizes shown, since it is the same switch family.

Usage:  .venv/bin/python bench/compression.py [CONTEXT] [--repeat N] [--keep DIR]
CONTEXT defaults to bench/contexts/opencv (issue 17's image), built --locked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from _common import envnix, field, print_table, work_dir  # noqa: E402
from _podman import podman, podman_env  # noqa: E402
from _registry import Registry  # noqa: E402

NIX = ["nix", "--extra-experimental-features", "nix-command"]


def manifest(store: Path) -> dict:
    layout = store / "oci"
    index = json.loads((layout / "index.json").read_text())
    return json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:])
                      .read_text())


def layer_paths(store: Path) -> list[Path]:
    """The layer derivation outputs of a built image (blob links point into them)."""
    layout = store / "oci"
    return [(layout / "blobs/sha256" / layer["digest"][7:]).resolve().parent
            for layer in manifest(store)["layers"]]


def derivation(path: Path) -> dict:
    drv = subprocess.run(["nix-store", "-q", "--deriver", str(path)], capture_output=True,
                         text=True, check=True).stdout.strip()
    shown = json.loads(subprocess.run([*NIX, "show-derivation", drv], capture_output=True,
                                      text=True, check=True).stdout)
    return next(iter(shown.values()))


def run_layer(drv: dict, out: Path, compression: str) -> float:
    """Seconds for one mklayer run of ``drv``'s builder with ``compression``."""
    env = {k: v for k, v in drv["env"].items() if k not in ("out", "compression")}
    env.update(out=str(out), NIX_BUILD_CORES=str(os.cpu_count() or 1), HOME="/homeless",
               TMPDIR=str(out.parent))
    if compression != "gzip":
        env["compression"] = compression
    started = time.monotonic()
    subprocess.run([drv["builder"], *drv["args"]], env=env, check=True, cwd=out.parent)
    return time.monotonic() - started


def pull_seconds(ref: str, work: Path, repeat: int) -> list[float]:
    times = []
    for i in range(repeat):
        store = Path(tempfile.mkdtemp(prefix="podman-", dir=work))
        env = podman_env(store)
        started = time.monotonic()
        podman("pull", "-q", "--tls-verify=false", ref, env=env)
        times.append(time.monotonic() - started)
        if i == repeat - 1 and ref.endswith(":zstd"):
            out = podman("run", "--rm", ref, "python3", "-c",
                         "import cv2, yaml, requests; print(cv2.__version__)", env=env)
            print(f"podman run of the zstd image: cv2 {out.stdout.strip()}")
        podman("system", "reset", "-f", env=env, check=False)
        subprocess.run(["chmod", "-R", "u+w", str(store)], check=False, capture_output=True)
        shutil.rmtree(store, ignore_errors=True)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("context", nargs="?", default=str(ROOT / "bench/contexts/opencv"))
    ap.add_argument("--repeat", type=int, default=3, help="pulls per image (median shown)")
    ap.add_argument("--keep", type=Path, help="keep the work directory here")
    args = ap.parse_args()
    context = Path(args.context).resolve()
    with work_dir(args.keep, "compression") as work:
        stores: dict[str, Path] = {}
        builds: dict[str, float] = {}
        for name, flags in (("gzip", []), ("zstd", ["--compression", "zstd"]),
                            ("slim", ["--slim"]), ("slim+zstd", ["--slim", "--compression",
                                                                  "zstd"])):
            secs, out, _ = envnix("build", str(context), "--locked", *flags,
                                  "--out-dir", str(work / f"gen-{name}"))
            stores[name], builds[name] = Path(field(out, "store")), secs
        sizes = {n: sum(layer["size"] for layer in manifest(s)["layers"])
                 for n, s in stores.items()}
        types = {layer["mediaType"] for layer in manifest(stores["zstd"])["layers"]}

        layer_time = {"gzip": 0.0, "zstd": 0.0}
        for path in layer_paths(stores["gzip"]):
            drv = derivation(path)
            for compression in layer_time:
                out = work / "layers" / f"{compression}-{path.name}"
                out.parent.mkdir(exist_ok=True)
                layer_time[compression] += run_layer(drv, out, compression)
                subprocess.run(["rm", "-rf", str(out)], check=True)

        reg = Registry(work / "registry").start()
        try:
            pulls = {}
            for name in ("gzip", "zstd"):
                ref = f"{reg.host}/bench/image:{name}"
                subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                                f"oci:{stores[name]}/oci", f"docker://{ref}"], check=True)
                pulls[name] = statistics.median(pull_seconds(ref, work, args.repeat))
        finally:
            reg.stop()

    mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
    ratio = lambda a, b: f"{a / b:.2f}x gzip"  # noqa: E731
    print(f"image: {context.name}; zstd media types: {', '.join(sorted(types))}")
    print_table([
        ("size, gzip", mb(sizes["gzip"]), ""),
        ("size, zstd", mb(sizes["zstd"]), ratio(sizes["zstd"], sizes["gzip"])),
        ("size, slim gzip", mb(sizes["slim"]), ratio(sizes["slim"], sizes["gzip"])),
        ("size, slim zstd", mb(sizes["slim+zstd"]), ratio(sizes["slim+zstd"], sizes["gzip"])),
        ("layers built, gzip", f"{layer_time['gzip']:.1f} s", "every mklayer of the image"),
        ("layers built, zstd", f"{layer_time['zstd']:.1f} s",
         ratio(layer_time["zstd"], layer_time["gzip"])),
        ("pull+unpack, gzip", f"{pulls['gzip']:.1f} s",
         f"podman pull from loopback, median of {args.repeat}"),
        ("pull+unpack, zstd", f"{pulls['zstd']:.1f} s", ratio(pulls["zstd"], pulls["gzip"])),
        ("envnix build wall", " / ".join(f"{builds[n]:.0f}" for n in builds) + " s",
         "gzip / zstd / slim / slim+zstd in this order (the first pays the trees)"),
    ])


if __name__ == "__main__":
    main()

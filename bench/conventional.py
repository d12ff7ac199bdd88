#!/usr/bin/env python3
"""Issue 17's figures in one run: envnix against the conventional build of the same image.

The conventional pipeline, timed as a whole with its downloads: `mmdebstrap --variant=apt` of
the lock's apt roots from this machine's Debian mirror, the locked wheels downloaded with curl
and installed with pip into the root, then `tar | pigz -p2`. The compute floor: every
artifact extracted into one root (dpkg-deb -x, unzip) + `tar | pigz -p2` of it. Both are
measured here, on this machine, beside envnix's figures:

1. size: gzip and unpacked bytes vs the conventional image; the `--slim` image.
2. time: envnix's cold build in a fresh store that already holds the artifacts (what "cold
   build, artifacts already downloaded" is for Nix) vs the floor, and the same with the
   store's seeding from this machine's store; envnix's cold build + download (its parallel
   download into a fresh store, then the build) vs the conventional pipeline with its
   downloads.
3. zstd: `--compression zstd` size vs gzip.
4. the python + numpy serving image (bench/contexts/numpy-serving, on debian:12-slim) vs the
   same packages the conventional way on a slim Debian root (mmdebstrap with Debian's slim
   dpkg path filters), and the issue's yardstick (the official slim Python image + the numpy
   wheel, about 60 MB).
5. no-op rebuild; +1 pip package: layers rebuilt and layers a push sends; the builders' peak
   RSS (every builder derivation of the image re-run, the largest child's maxrss).

Targets (issue 17) are printed beside each ratio. Sizes are deterministic; times are one run
on a shared machine: read them next to their own baseline.

Usage:  .venv/bin/python bench/conventional.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from profile import closure_derivations, floor

from _common import envnix, field, print_table, work_dir
from size import file_bytes, image_figures, install_wheels

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _mmdebstrap import mmdebstrap  # noqa: E402

from envnix.nix.seed import add_artifacts, by_path, seedable  # noqa: E402

OPENCV = ROOT / "bench/contexts/opencv"
NUMPY = ROOT / "bench/contexts/numpy-serving"
YARDSTICK_MB = 60.0  # issue 17 item 4: the official slim Python image + the numpy wheel
# Debian's slim images' dpkg path filters (templates/image.nix slimFilter says the same).
SLIM_DPKG = ["path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
             "path-exclude=/usr/share/groff/*", "path-exclude=/usr/share/info/*",
             "path-exclude=/usr/share/linda/*", "path-exclude=/usr/share/lintian/overrides/*",
             "path-exclude=/usr/share/locale/*", "path-exclude=/usr/share/man/*"]


def conventional_pipeline(lock: dict, work: Path, slim: bool = False,
                          extra_wheels: tuple[str, ...] = ()) -> tuple[float, int, int]:
    """(seconds, gzip bytes, unpacked bytes) of mmdebstrap + pip + tar | pigz -p2, downloads
    included. ``extra_wheels``: pip requirements downloaded from the index (the yardstick's
    numpy wheel)."""
    root = work / "root"
    work.mkdir(parents=True)
    started = time.monotonic()
    mmdebstrap(lock["inputs"]["apt"]["packages"], root, lock["inputs"]["apt"]["release"],
               SLIM_DPKG if slim else ())
    install_wheels(lock, root, work / "wheels", extra_wheels)
    packed = work / "root.tar.gz"
    subprocess.run(f"tar -C {root} --numeric-owner -cf - . | pigz -p2 -6 > {packed}",
                   shell=True, check=True)
    seconds = time.monotonic() - started
    return seconds, packed.stat().st_size, file_bytes(root)


def cold_with_download(work: Path) -> tuple[float, float, int]:
    """(download seconds, build seconds, artifacts) for the opencv image in a fresh store:
    envnix's parallel download of every artifact (what `envnix build` does on a machine
    that has none), then `envnix build --store` of the seeded store."""
    envnix("render", str(OPENCV), "--locked", "--out-dir", str(work / "gen-dl"))
    artifacts = seedable(work / "gen-dl" / "envnix.lock")
    store = str(work / "store-dl")
    started = time.monotonic()
    add_artifacts(store, by_path(artifacts), None)
    downloaded = time.monotonic() - started
    build, _, _ = envnix("build", str(OPENCV), "--locked", "--store", store,
                         "--out-dir", str(work / "gen-dl"))
    return downloaded, build, len(artifacts)


def builders_peak_rss(drvs: list[dict], work: Path) -> tuple[float, int]:
    """(seconds, largest maxrss in bytes) of every builder derivation re-run, in a child
    process so that its children's maxrss is the builders' alone."""
    code = ("import json, resource, sys, time; sys.path.insert(0, sys.argv[1]); "
            "from profile import run_one; from pathlib import Path; "
            "drvs = json.load(open(sys.argv[2])); s = Path(sys.argv[3]); t = 0.0\n"
            "for d in drvs:\n    s.mkdir(exist_ok=True); t += run_one(d, s)\n"
            "print(t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)")
    (work / "drvs.json").write_text(json.dumps(drvs))
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent),
                          str(work / "drvs.json"), str(work / "rss-scratch")],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1])


def plus_one_package(work: Path, before: Path) -> tuple[float, int, int, int, str]:
    """(seconds, layers, layers changed, bytes changed, derivations built) of the opencv image
    after one more pip package (six) is added to a copy of its context, re-locked and built
    (on a machine that built it before, nothing is built again: the count says so)."""
    context = work / "plus-one"
    shutil.copytree(OPENCV, context, ignore=shutil.ignore_patterns(".envnix"))
    envd = context / "build.envd"
    envd.write_text(envd.read_text().replace('"requests"', '"requests", "six"', 1))
    envnix("lock", str(context))
    secs, out, err = envnix("build", str(context), "--locked")
    old = {layer["digest"] for layer in _manifest(before)["layers"]}
    new = _manifest(Path(field(out, "store")))["layers"]
    changed = [layer for layer in new if layer["digest"] not in old]
    built = re.search(r"build: (\d+) derivation", err)
    return (secs, len(new), len(changed), sum(layer["size"] for layer in changed),
            built[1] if built else "?")


def _manifest(store: Path) -> dict:
    layout = store / "oci"
    index = json.loads((layout / "index.json").read_text())
    return json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:])
                      .read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="keep the work directory here")
    args = ap.parse_args()
    mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
    lock = json.loads((OPENCV / "envnix.lock").read_text())
    with work_dir(args.keep, "conventional") as work:
        _, out, _ = envnix("build", str(OPENCV), "--locked", "--out-dir", str(work / "gen"))
        image = Path(field(out, "store"))
        fig = image_figures(image)
        print("conventional pipeline (opencv) ...", file=sys.stderr)
        conv_secs, conv_gz, conv_unpacked = conventional_pipeline(lock, work / "conv")
        _, out, _ = envnix("build", str(OPENCV), "--locked", "--slim",
                           "--out-dir", str(work / "gen-slim"))
        slim_gz = image_figures(Path(field(out, "store")))["gzip"]
        _, out, _ = envnix("build", str(OPENCV), "--locked", "--compression", "zstd",
                           "--out-dir", str(work / "gen-zstd"))
        zstd_size = sum(layer["size"] for layer in _manifest(Path(field(out, "store")))["layers"])

        print("cold build in a fresh store, and the floor ...", file=sys.stderr)
        cold, _, _ = envnix("build", str(OPENCV), "--locked", "--store", str(work / "store"),
                            "--out-dir", str(work / "gen-cold"))
        drvs, artifacts = closure_derivations(str(image))
        extract, pack = floor(artifacts, work / "floor")
        print("cold build with downloads ...", file=sys.stderr)
        dl_secs, dl_build, dl_count = cold_with_download(work)

        print("numpy serving image and its yardstick ...", file=sys.stderr)
        _, out, _ = envnix("build", str(NUMPY), "--locked", "--out-dir", str(work / "gen-np"))
        numpy_gz = image_figures(Path(field(out, "store")))["gzip"]
        np_lock = json.loads((NUMPY / "envnix.lock").read_text())
        _, np_conv_gz, _ = conventional_pipeline(np_lock, work / "conv-np", slim=True)
        np_lock_wheel = dict(np_lock, inputs={**np_lock["inputs"], "apt": {
            **np_lock["inputs"]["apt"], "packages": ["python3"]}})
        _, yard_gz, _ = conventional_pipeline(np_lock_wheel, work / "conv-np-wheel", slim=True,
                                              extra_wheels=("numpy",))

        print("no-op rebuild, +1 package, builders' peak RSS ...", file=sys.stderr)
        noop, _, _ = envnix("build", str(OPENCV), "--locked", "--out-dir", str(work / "gen"))
        plus_secs, layers, changed, changed_bytes, plus_built = plus_one_package(work, image)
        builders_secs, rss = builders_peak_rss(drvs, work)

    floor_secs = extract + pack
    ok = lambda good: "met" if good else "NOT MET"  # noqa: E731
    print_table([
        ("1. image, gzip", mb(fig["gzip"]),
         f"conventional {mb(conv_gz)} = {fig['gzip'] / conv_gz:.2f}x "
         f"(target <= 1.00x: {ok(fig['gzip'] <= conv_gz)})"),
        ("1. image, unpacked", mb(fig["unpacked"]),
         f"conventional {mb(conv_unpacked)} = {fig['unpacked'] / conv_unpacked:.2f}x "
         f"(target <= 1.00x: {ok(fig['unpacked'] <= conv_unpacked)})"),
        ("1. hard links kept / duplicates", f"{fig['hardlinks']} / {mb(fig['duplicate_bytes'])}",
         "tar hard links / bytes stored twice in one layer"),
        ("1. --slim image, gzip", mb(slim_gz), f"-{mb(fig['gzip'] - slim_gz)} "
                                                f"({slim_gz / fig['gzip']:.2f}x)"),
        ("2. cold build, artifacts in store", f"{dl_build:.1f} s",
         f"floor {floor_secs:.1f} s (extract {extract:.1f} + tar|pigz {pack:.1f}) = "
         f"{dl_build / floor_secs:.2f}x (target <= 1.30x: {ok(dl_build <= 1.3 * floor_secs)})"),
        ("2. the same + seeding the store", f"{cold:.1f} s",
         f"{cold / floor_secs:.2f}x the floor: a fresh --store, its artifacts copied in from "
         "this machine's store first"),
        ("2. cold build + download", f"{dl_secs + dl_build:.1f} s",
         f"download {dl_secs:.1f} s ({dl_count} artifacts, parallel) + build {dl_build:.1f} s; "
         f"conventional {conv_secs:.1f} s = {(dl_secs + dl_build) / conv_secs:.2f}x "
         f"(target <= 1.00x: {ok(dl_secs + dl_build <= conv_secs)})"),
        ("3. zstd image", mb(zstd_size), f"{zstd_size / fig['gzip']:.2f}x gzip "
                                         "(bench/compression.py: build and pull times)"),
        ("4. numpy serving image, gzip", mb(numpy_gz),
         f"same packages conventionally, slim {mb(np_conv_gz)} = {numpy_gz / np_conv_gz:.2f}x; "
         f"slim Debian + python3 + numpy wheel {mb(yard_gz)} = {numpy_gz / yard_gz:.2f}x; "
         f"issue's ~{YARDSTICK_MB:.0f} MB: {ok(numpy_gz <= YARDSTICK_MB * 1e6)}"),
        ("5. no-op rebuild", f"{noop:.2f} s", f"target < 0.5 s: {ok(noop < 0.5)} "
                                              "(envnix start-up + nix-build)"),
        ("5. +1 pip package (six)", f"{plus_secs:.1f} s",
         f"{plus_built} derivations built; {changed} of {layers} layers new "
         f"({mb(changed_bytes)} to push; target 1: {ok(changed == 1)})"),
        ("5. builders' peak RSS", mb(rss), f"every builder re-run ({builders_secs:.1f} s); "
                                           f"target < 200 MB: {ok(rss < 200e6)}"),
    ])


if __name__ == "__main__":
    main()

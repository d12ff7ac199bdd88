#!/usr/bin/env python3
"""Benchmark `envnix push` of the quickstart image to a fresh loopback registry.

Three pushes, each with the seconds and the bytes the registry actually received (its access
log: a blob upload is finished by `PUT ...?digest=` answered 201), next to baselines measured
in the same run on the same machine, so the ratios mean something across machines:
- first push (fresh registry)  vs. `skopeo copy` of the same layout to a local `oci:` dir
                               (the same tool moving the same bytes, no network or registry),
                               and vs. a plain file copy of the layer blobs (disk floor);
- re-push of the unchanged image  (should upload nothing: a HEAD per blob, a manifest PUT)
                               vs. the CLI's own start-up (`envnix --version`);
- push after a one-package change (+tqdm, a small pip wheel): should upload only the layers
                               that changed.

Usage:  .venv/bin/python bench/push.py [--keep DIR]
Builds the quickstart with envnix (in the default Nix store, so a warm store is reused).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from _common import field, print_table, work_dir  # noqa: E402
from _registry import Registry  # noqa: E402


def run(*cmd: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return elapsed, proc


def envnix(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    return run(sys.executable, "-m", "envnix", *args)



def blob_sizes(layout: Path) -> dict[str, int]:
    """digest -> size for every layer and the config of the layout's one manifest."""
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:])
                          .read_text())
    sizes = {layer["digest"]: layer["size"] for layer in manifest["layers"]}
    sizes[manifest["config"]["digest"]] = manifest["config"]["size"]
    return sizes


def raw_copy(layout: Path, sizes: dict[str, int], dest: Path) -> float:
    """Seconds to copy every blob of the image to one file (the disk floor)."""
    started = time.monotonic()
    with open(dest, "wb") as out:
        for digest in sizes:
            with open(layout / "blobs/sha256" / digest[7:], "rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: temp)")
    args = parser.parse_args()
    with work_dir(args.keep, "push") as work:
        context = work / "quickstart"
        shutil.rmtree(context, ignore_errors=True)
        shutil.copytree(ROOT / "examples/quickstart", context,
                        ignore=shutil.ignore_patterns(".envnix", "envnix.lock"))

        t_build, built = envnix("build", str(context), "-t", "quickstart:dev")
        layout = Path(field(built.stdout, "store")) / "oci"
        sizes = blob_sizes(layout)
        total = sum(sizes.values())

        # Baselines, same run.
        copy_dir = work / "oci-copy"
        shutil.rmtree(copy_dir, ignore_errors=True)
        t_skopeo, _ = run("skopeo", "copy", "--preserve-digests", f"oci:{layout}:dev",
                          f"oci:{copy_dir}:dev")
        t_raw = raw_copy(layout, sizes, work / "blobs.bin")
        t_start = min(envnix("--version")[0] for _ in range(3))
        (work / "blobs.bin").unlink()

        reg_dir = work / "registry"
        shutil.rmtree(reg_dir, ignore_errors=True)
        reg = Registry(reg_dir).start()
        try:
            dest = f"{reg.host}/bench/quickstart"
            mark = reg.mark()
            t_push1, p1 = envnix("push", "-p", str(context), f"{dest}:1", "--tls-verify=false")
            up1 = reg.blob_uploads(mark)

            mark = reg.mark()
            t_push2, p2 = envnix("push", "-p", str(context), f"{dest}:1", "--tls-verify=false")
            up2 = reg.blob_uploads(mark)

            envd = context / "build.envd"
            envd.write_text(envd.read_text().replace('"six",', '"six",\n        "tqdm",'))
            t_build3, built3 = envnix("build", str(context), "-t", "quickstart:dev")
            sizes3 = blob_sizes(Path(field(built3.stdout, "store")) / "oci")
            mark = reg.mark()
            t_push3, p3 = envnix("push", "-p", str(context), f"{dest}:2", "--tls-verify=false")
            up3 = reg.blob_uploads(mark)
        finally:
            reg.stop()

        def uploaded(digests: list[str], table: dict[str, int]) -> int:
            return sum(table[d] for d in digests)

        b1, b2, b3 = uploaded(up1, sizes), uploaded(up2, sizes), uploaded(up3, sizes3)
        changed = [d for d in sizes3 if d not in sizes]
        mb = 1e6
        summary3 = next((ln for ln in p3.stderr.splitlines() if "layer(s) uploaded" in ln), "")
        rows = [
            ("image", f"{total / mb:.1f} MB", f"{len(sizes) - 1} layers + config "
                                              f"(built in {t_build:.1f} s)"),
            ("baseline: skopeo copy to oci: dir", f"{t_skopeo:.2f} s",
             f"{total / mb / t_skopeo:.0f} MB/s"),
            ("baseline: plain copy of the blobs", f"{t_raw:.2f} s",
             f"{total / mb / t_raw:.0f} MB/s"),
            ("baseline: envnix start-up (--version)", f"{t_start:.2f} s", "best of 3"),
            ("push 1: fresh registry", f"{t_push1:.2f} s",
             f"uploaded {b1 / mb:.1f} MB in {len(up1)} blobs; {t_push1 / t_skopeo:.2f}x skopeo "
             f"oci copy, {b1 / mb / t_push1:.0f} MB/s"),
            ("push 2: unchanged re-push", f"{t_push2:.2f} s",
             f"uploaded {b2} B in {len(up2)} blobs; {t_push2 / t_push1:.2f}x push 1, "
             f"{t_push2 / t_start:.1f}x CLI start-up"),
            ("push 3: after +1 pip package", f"{t_push3:.2f} s",
             f"uploaded {b3 / mb:.2f} MB in {len(up3)} blobs "
             f"({len(changed)} new of {len(sizes3)}); {t_push3 / t_push1:.2f}x push 1 time, "
             f"{100 * b3 / max(b1, 1):.3f}% of its bytes (rebuild {t_build3:.1f} s)"),
        ]
        print_table(rows)
        print(re.sub(r"^push: ", "envnix said: ", summary3))
        for proc, want in ((p1, built), (p2, built), (p3, built3)):
            if not proc.stdout.strip().endswith("@" + field(want.stdout, "manifest")):
                sys.exit(f"push did not report the built digest: {proc.stdout}")


if __name__ == "__main__":
    main()

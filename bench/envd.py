#!/usr/bin/env python3
"""Benchmark envd compatibility: evaluating build.envd files, and io.copy of a 100 MB context.

- evaluation: every tests/corpus/*.envd file evaluated to an ImageSpec (load_spec), per file,
  vs. the interpreter floor measured in the same run: starlark-pyo3 evaluating a one-line
  module with a def (parse + eval, no envnix);
- io.copy: an image copying a 100 MB context (200 files of 0.5 MB), cold build, then the
  rebuild after one file changed, vs. `cp -r` of the same context (the copy floor).

Usage:  .venv/bin/python bench/envd.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import starlark as sl
from _common import envnix, print_table

from envnix.frontend import load_spec

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"


def per_call(fn, repeat: int = 20) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def starlark_floor() -> None:
    module = sl.Module()
    sl.eval(module, sl.parse("x.envd", "def build():\n    pass\n"), sl.Globals.standard())



def main() -> None:
    floor = per_call(starlark_floor)
    files = sorted(CORPUS.glob("*.envd"))
    evals = [per_call(lambda f=f: load_spec(CORPUS, f"{f.name}:build", warn=lambda _: None))
             for f in files]
    work = Path(tempfile.mkdtemp(prefix="envnix-bench-envd-"))
    context = work / "ctx"
    data = context / "data"
    data.mkdir(parents=True)
    for i in range(200):
        (data / f"chunk{i:03d}.bin").write_bytes(os.urandom(512 * 1024))
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    io.copy(host_path="./data", envd_path="/srv/")\n')
    started = time.monotonic()
    shutil.copytree(data, work / "copy-floor")
    t_cp = time.monotonic() - started
    t_cold, _, _ = envnix("build", str(context))
    (data / "chunk007.bin").write_bytes(os.urandom(512 * 1024))
    t_incr, _, err = envnix("build", str(context), "--locked")
    rebuilt = next((ln for ln in err.splitlines() if "derivation(s) built" in ln), "")
    rows = [
        ("starlark floor (def + eval)", f"{floor * 1e3:.2f} ms", ""),
        (f"evaluate build.envd ({len(files)} files)", f"{statistics.median(evals) * 1e3:.2f} ms",
         f"median; max {max(evals) * 1e3:.2f} ms; {statistics.median(evals) / floor:.1f}x floor"),
        ("cp -r of a 100 MB context", f"{t_cp:.2f} s", ""),
        ("build with io.copy of it (first)", f"{t_cold:.1f} s", "includes the OS packages"),
        ("rebuild after 1 file changed", f"{t_incr:.1f} s",
         f"{t_incr / t_cp:.1f}x cp -r; {rebuilt.removeprefix('build: ')}"),
    ]
    print_table(rows)
    subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark getting an image from a binary cache against building it cold.

Figures, all in the same run (every store a fresh chroot Nix store; envnix seeds each with the
locked artifacts from this machine's store, so artifact downloads are left out of every row):
- cold build of the context's committed lock (the baseline);
- ``envnix cache push`` of that build to a ``file://`` cache (signed, zstd), and its size;
- a consumer building the same context in a fresh store with the cache as its only
  substituter, from ``file://`` and over HTTP on loopback: time, derivations built (must be 0)
  and digests (must equal the cold build's).

Usage:  .venv/bin/python bench/cache.py [CONTEXT] [--keep DIR]   (default: examples/quickstart)
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import threading
from pathlib import Path

from _common import envnix, field, print_table, work_dir

ROOT = Path(__file__).resolve().parents[1]


def _fresh(path: Path) -> Path:
    subprocess.run(["chmod", "-R", "u+w", str(path)], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
    return path


def _built(stderr: str) -> str:
    m = re.search(r"^build: (\d+) derivation\(s\) built", stderr, re.M)
    return m[1] if m else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("context", nargs="?", type=Path, default=ROOT / "examples/quickstart")
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: temp)")
    args = parser.parse_args()
    with work_dir(args.keep, "cache") as work:
        context = _fresh(work / "producer") / args.context.name
        shutil.copytree(args.context, context, ignore=shutil.ignore_patterns(".envnix"))
        secret, public = work / "cache.sec", work / "cache.pub"
        subprocess.run(["nix-store", "--generate-binary-cache-key", "envnix-bench-1",
                        str(secret), str(public)], check=True)
        store = _fresh(work / "store-producer")
        t_cold, out, err = envnix("build", str(context), "--locked", "--store", str(store),
                                  "--no-substitute")
        digest = field(out, "manifest")
        rows = [("cold build (fresh store)", f"{t_cold:.1f} s",
                 f"{_built(err)} derivations built; baseline")]

        cache = _fresh(work / "cache")
        t_push, out, _ = envnix("cache", "push", f"file://{cache}", str(context), "--store",
                                str(store), "--sign-key", str(secret))
        size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
        rows.append(("cache push (file://, zstd)", f"{t_push:.1f} s",
                     f"{field(out, 'paths')}; {size / 1e6:.1f} MB in the cache"))
        _fresh(store)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Quiet, directory=str(cache)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            for name, url in (("file://", f"file://{cache}"),
                              ("http (loopback)", f"http://127.0.0.1:{server.server_address[1]}")):
                consumer = _fresh(work / "consumer") / args.context.name
                shutil.copytree(args.context, consumer, ignore=shutil.ignore_patterns(".envnix"))
                store = _fresh(work / "store-consumer")
                t_sub, out, err = envnix("build", str(consumer), "--locked", "--store",
                                         str(store), "--substituters", url, "--nix-option",
                                         "trusted-public-keys", public.read_text().strip())
                same = "same digest" if field(out, "manifest") == digest else "DIGEST DIFFERS"
                rows.append((f"consumer from the cache, {name}", f"{t_sub:.1f} s",
                             f"{t_sub / t_cold:.2f}x cold; {_built(err)} derivations built; "
                             f"{same}"))
                _fresh(store)
        finally:
            server.shutdown()
            server.server_close()
    print_table(rows)


if __name__ == "__main__":
    main()

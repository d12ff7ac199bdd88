#!/usr/bin/env python3
"""Benchmark a build on a remote builder over SSH against the same build on this machine.

Both builds start cold in the same run: each in a fresh chroot Nix store (envnix seeds it with
the locked artifacts from this machine's store, so downloads are left out of both), the remote
one with ``--builders 'ssh://root@127.0.0.1 ...' --max-jobs 0`` against a real sshd on loopback
whose forced command serves a fresh store of its own (tests/_sshd.py, the integration test's
builder). The difference is what remote building costs: ssh, shipping every input to the
builder and every output back. On loopback the builder shares this machine's cores, so it
measures that overhead and no speed-up. Needs root (sshd, root login).

Usage:  .venv/bin/python bench/remote.py [--example quickstart] [--jobs N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from _common import envnix, field, print_compared, work_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from _sshd import running_builder  # noqa: E402  (the test suite's builder, not a copy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", default="quickstart", help="example to build (its lock)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="the builder's jobs at once in the machine line (default: cores, "
                             "as the local build's max-jobs auto)")
    parser.add_argument("--keep", type=Path, help="work directory to keep (default: temp)")
    args = parser.parse_args()
    rows, digests, seconds = [], {}, {}
    with work_dir(args.keep, "remote") as work, running_builder(work / "builder") as builder:
        os.environ.update(builder.client_env)  # Nix's ssh reads NIX_SSHOPTS
        remote = ["--builders", builder.machine(args.jobs), "--max-jobs", "0"]
        for where, flags in (("local", []), ("remote", remote)):
            context = work / where / args.example
            shutil.copytree(ROOT / "examples" / args.example, context,
                            ignore=shutil.ignore_patterns(".envnix"))
            seconds[where], out, err = envnix("build", str(context), "--locked",
                                              "--no-substitute", "--store",
                                              str(work / f"store-{where}"), *flags)
            digests[where] = field(out, "manifest")
            built = next(line for line in err.splitlines() if line.startswith("build: "))
            rows.append((f"cold build, {where}", f"{seconds[where]:.1f} s",
                         built.removeprefix("build: ")))
        ratio = seconds["remote"] / seconds["local"]
        rows.append(("remote overhead", f"{seconds['remote'] - seconds['local']:+.1f} s",
                     f"{ratio:.2f}x local"))
        print_compared(rows, "manifest (local / remote)", digests)


if __name__ == "__main__":
    main()

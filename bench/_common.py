"""Helpers shared by the benchmarks: run envnix as a user does, and print result tables."""

from __future__ import annotations

import subprocess
import sys
import time


def envnix(*args: str) -> tuple[float, str, str]:
    """Run ``envnix ARGS``; (seconds, stdout, stderr). A failure ends the benchmark."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "envnix", *args], capture_output=True,
                          text=True, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"envnix {' '.join(args)} failed:\n{proc.stderr}")
    return elapsed, proc.stdout, proc.stderr


def field(stdout: str, name: str) -> str:
    """A ``name:   value`` line of envnix build's summary."""
    return next(line.split(None, 1)[1] for line in stdout.splitlines()
                if line.startswith(name + ":"))


def print_table(rows: list[tuple[str, str, str]]) -> None:
    """Name, value and a note (usually the ratio to the run's own baseline), aligned."""
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {note}".rstrip())

"""Helpers shared by the benchmarks: run envnix as a user does, and print result tables."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# The benchmarks time builds, not loads into the machine's engine (envnix build's default).
os.environ["ENVNIX_LOAD"] = "0"
# envnix starts as it does for users, from cached byte code: some sandboxes set this, and then
# every start compiles envnix's modules again (~0.2 s of a 0.4 s no-op rebuild).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def try_envnix(*args: str, timeout: float | None = None) -> tuple[float, int | None, str, str]:
    """Run ``envnix ARGS``; (seconds, exit code or None when it ran out of ``timeout``, stdout,
    stderr), whatever the outcome: for benchmarks that count failures. A run out of time gets
    SIGTERM, its whole process group (uv, nix-build), so nothing outlives it."""
    started = time.monotonic()
    with subprocess.Popen([sys.executable, "-m", "envnix", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          start_new_session=timeout is not None) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                stdout, stderr = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                stdout, stderr = proc.communicate()
            return time.monotonic() - started, None, stdout, stderr
    return time.monotonic() - started, proc.returncode, stdout, stderr


def envnix(*args: str) -> tuple[float, str, str]:
    """Run ``envnix ARGS``; (seconds, stdout, stderr). A failure ends the benchmark."""
    elapsed, code, stdout, stderr = try_envnix(*args)
    if code != 0:
        sys.exit(f"envnix {' '.join(args)} failed:\n{stderr}")
    return elapsed, stdout, stderr


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


def print_compared(rows: list[tuple[str, str, str]], label: str,
                   digests: dict[str, str]) -> None:
    """``rows`` and a last one with the digests of one image built in several ways (the first
    shown, the others only when they differ); exit 1 when they differ, which voids the run."""
    (_, first), *others = digests.items()
    different = [f"{name} {digest}" for name, digest in others if digest != first]
    print_table([*rows, (label, first, "DIFFERENT: " + ", ".join(different) if different
                         else "same")])
    if different:
        sys.exit(1)


def download_floor(lock: dict, dest: Path) -> tuple[float, int]:
    """(seconds, bytes) to fetch every artifact of an envnix.lock with urllib + sha256: the
    network floor any builder of that image pays."""
    artifacts = (lock["apt"]["packages"] + lock["pip"]["wheels"]
                 + lock.get("conda", {}).get("packages", []))
    started, total = time.monotonic(), 0
    for a in artifacts:
        with urllib.request.urlopen(a["url"], timeout=120) as resp:
            data = resp.read()
        if hashlib.sha256(data).hexdigest() != a["sha256"]:
            sys.exit(f"sha256 mismatch for {a['url']}")
        total += len(data)
        (dest / a["sha256"]).write_bytes(data)
    return time.monotonic() - started, total


def image_bytes(store: Path, store_path: str) -> tuple[int, int, int]:
    """(compressed layer bytes, uncompressed tar bytes, layer count) of a built image."""
    layout = Path(str(store) + store_path) / "oci"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:])
                          .read_text())
    compressed = sum(layer["size"] for layer in manifest["layers"])
    uncompressed = 0
    for layer in manifest["layers"]:
        # Layer blobs are relative symlinks into the layer derivations, next to layer.json.
        blob = (layout / "blobs/sha256" / layer["digest"][7:]).resolve()
        uncompressed += json.loads((blob.parent / "layer.json").read_text())["tar_size"]
    return compressed, uncompressed, len(manifest["layers"])


@contextlib.contextmanager
def work_dir(keep: Path | None, name: str) -> Iterator[Path]:
    """The benchmark's work directory: ``keep`` (--keep) is left in place, a temporary one is
    removed afterwards, Nix store files (read-only) included, even when the run fails."""
    work = keep or Path(tempfile.mkdtemp(prefix=f"envnix-bench-{name}-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        if not keep:
            subprocess.run(["chmod", "-R", "u+w", str(work)], check=False, capture_output=True)
            shutil.rmtree(work, ignore_errors=True)

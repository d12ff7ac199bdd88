"""Drive Nix: run nix-build on a rendered directory, show progress, translate its failures.

Nix's own errors are long and name store paths; users need one line that names the artifact
and says what to do. Everything Nix prints is still passed through with ``--verbose``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from envnix.errors import BuildError, FetchError, HashMismatchError, ToolMissingError
from envnix.render import nix_options

_BUILDING = re.compile(r"^building '/nix/store/[0-9a-z]{32}-(.+?)\.drv'")
_WILL_BUILD = re.compile(r"^these (\d+) derivations? will be built:")
_HASH_MISMATCH = re.compile(
    r"hash mismatch in fixed-output derivation '/nix/store/[0-9a-z]{32}-(.+?)\.drv':"
    r"\s*specified:\s*(\S+)\s*got:\s*(\S+)", re.S)
_DOWNLOAD = re.compile(r"unable to download '([^']+)': (.+)")
_BUILDER_LINE = re.compile(r"envnix-builder: .+")
_FAILED = re.compile(r"builder for '/nix/store/[0-9a-z]{32}-(.+?)\.drv' failed")


@dataclass(frozen=True)
class NixResult:
    out_path: Path
    seconds: float
    built: int


def require_nix(program: str = "nix-build") -> str:
    path = shutil.which(program)
    if not path:
        raise ToolMissingError(
            f"{program} not found on PATH: envnix needs Nix to build images",
            hint="install it (Debian/Ubuntu: apt-get install nix-bin) and run envnix again",
        )
    return path


def nix_build(
    directory: Path,
    attr: str,
    toolchain: str,
    out_link: Path | None = None,
    store: str | None = None,
    progress: Callable[[str], None] | None = None,
    verbose: bool = False,
) -> NixResult:
    """Build ``attr`` of ``directory/default.nix``; return the output path."""
    cmd = [require_nix(), str(directory / "default.nix"), "-A", attr, *nix_options(toolchain)]
    cmd += ["--arg", "toolchain", f'"{toolchain}"']
    if store:
        cmd += ["--store", store]
    if out_link:
        cmd += ["--out-link", str(out_link)]
    else:
        cmd += ["--no-out-link"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")
    assert proc.stderr is not None and proc.stdout is not None
    log: list[str] = []
    total, done = 0, 0
    for line in proc.stderr:
        log.append(line)
        if verbose:
            sys.stderr.write(line)
        if m := _WILL_BUILD.match(line):
            total = int(m[1])
            if progress:
                progress(f"nix: {total} derivation(s) to build")
        elif m := _BUILDING.match(line):
            done += 1
            if progress and not verbose:
                progress(f"nix: [{done}/{total or '?'}] {m[1]}")
    stdout = proc.stdout.read()
    code = proc.wait()
    if code != 0:
        raise _translate_failure("".join(log))
    out = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    return NixResult(Path(out), time.monotonic() - started, done)


def _translate_failure(log: str) -> BuildError | FetchError:
    if m := _HASH_MISMATCH.search(log):
        return HashMismatchError(
            f"hash mismatch for {m[1]}: envnix.lock pins {m[2]} but the download is {m[3]}",
            hint="the artifact changed upstream or the mirror is serving different bytes; "
                 "check the source, then run envnix lock to re-pin",
        )
    if m := _DOWNLOAD.search(log):
        return FetchError(f"cannot download {m[1]}: {m[2].strip()}",
                          hint="check the network or the mirror in envnix.lock")
    builder_lines = _BUILDER_LINE.findall(log)
    failed = _FAILED.search(log)
    where = f" while building {failed[1]}" if failed else ""
    if builder_lines:
        return BuildError(builder_lines[-1].removeprefix("envnix-builder: ") + where)
    errors = [ln.strip() for ln in log.splitlines() if ln.strip().startswith("error:")]
    return BuildError((errors[0] if errors else "nix-build failed") + where,
                      hint="run again with --verbose to see Nix's full log")

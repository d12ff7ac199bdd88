"""Run envnix as a user does (the CLI, in a subprocess) on copies of examples; both tiers and
tests/conftest.py import these helpers (a conftest module is not importable by name once a tier
has a conftest.py of its own)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@dataclass
class Built:
    """What `envnix build` printed, parsed."""

    context: Path
    stdout: str
    stderr: str
    store_path: Path
    config: str
    manifest: str

    @property
    def layout(self) -> Path:
        return self.store_path / "oci"


def envnix(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "envnix", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"envnix {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def parse_build(context: Path, proc: subprocess.CompletedProcess[str]) -> Built:
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", proc.stdout, flags=re.M))
    return Built(context, proc.stdout, proc.stderr, Path(fields["store"]), fields["config"],
                 fields["manifest"])


def build(context: Path, *extra: str, env: dict[str, str] | None = None) -> Built:
    return parse_build(context, envnix("build", str(context), *extra, env=env))


def copy_example(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(EXAMPLES / name, target,
                    ignore=shutil.ignore_patterns(".envnix", "envnix.lock"))
    return target


def without_nix_path() -> dict[str, str]:
    """The current environment with every directory holding nix-build removed from PATH."""
    env = dict(os.environ)
    dirs = [d for d in env.get("PATH", "").split(os.pathsep)
            if d and not (Path(d) / "nix-build").exists()]
    env["PATH"] = os.pathsep.join(dirs)
    return env


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a server a test started (a daemon, sshd): SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

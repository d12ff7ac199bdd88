"""The offline tests of tests/integration/test_builders_run.py (no network, no program started).

Tests for envnix/builders/run_steps.py: one envd run() group, run hermetically under proot
over the image's rootfs, its file changes emitted as a package tree.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

BUILDERS = Path(__file__).resolve().parents[2] / "envnix" / "builders"

PROOT = shutil.which("proot") or "/usr/bin/proot"

BUSYBOX = "/bin/busybox"
TIMINGS: dict[str, float] = {}

sys.path.insert(0, str(BUILDERS))
import _runadvice  # noqa: E402
import _sandbox  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(PROOT) or not os.path.exists(BUSYBOX),
                                reason="needs proot and busybox-static (./scripts/setup)")


# ------------------------------------------------------------------------------ offline


def test_seccomp_program_shape() -> None:
    prog = _sandbox.seccomp_program()
    assert len(prog) % 8 == 0 and len(prog) // 8 < 100
    assert prog[-4:] == (0x00050000 | 38).to_bytes(4, "little")  # RET_ERRNO(ENOSYS)


# ------------------------------------------------------------------------------ diagnosis


@pytest.mark.parametrize(("command", "output", "expected"), [
    ("pip install six", "ERROR: Could not find a version that satisfies the requirement six",
     'use install.python_packages(name=["six"])'),
    ("python3 -m pip install -U 'numpy==1.26' --index-url https://x/simple",
     "Failed to establish a new connection", 'install.python_packages(name=["numpy==1.26"])'),
    ("pip install -r requirements.txt", "Temporary failure in name resolution",
     'install.python_packages(requirements="requirements.txt")'),
    ("pip install -e /detectron2",
     "ERROR: Could not find a version that satisfies the requirement setuptools>=40.8.0",
     'install.python_packages(name=["setuptools>=40.8.0"]) and add --no-build-isolation'),
    ("apt-get update && apt-get install -y --no-install-recommends libgl1 curl",
     "Temporary failure resolving 'deb.debian.org'",
     'use install.apt_packages(name=[...])'),
    ("sudo apt-get install -y libgl1", "Could not resolve 'deb.debian.org'",
     'use install.apt_packages(name=["libgl1"])'),
    ("conda install -y -c conda-forge numpy scipy", "CondaHTTPError: HTTP 000",
     'use install.conda_packages(name=["numpy", "scipy"])'),
    ("curl -fsSL https://example.com/x.tar.gz | tar xz", "curl: (6) Could not resolve host",
     'io.http(url="https://example.com/x.tar.gz"'),
    ("git clone https://github.com/x/y", "Could not resolve host: github.com",
     "declare what it downloads instead"),
])
def test_network_advice(command: str, output: str, expected: str) -> None:
    advice = _runadvice.network_advice(command, output)
    assert advice is not None and expected in advice, advice


def test_no_advice_without_network_signs() -> None:
    assert _runadvice.network_advice("pip install -e .", "error: invalid command") is None
    assert _runadvice.network_advice("make", "Connection refused") is None


def test_command_at_line() -> None:
    cmds = ["a", "b\nc\nd", "e"]
    assert [_sandbox.command_at_line(cmds, n) for n in range(1, 8)] == [
        None, 0, 1, 1, 1, 2, None]


# ------------------------------------------------------------------------------ real debs


def test_zz_print_timings() -> None:
    print("\nrun_steps timings (s):", json.dumps(TIMINGS, indent=1))

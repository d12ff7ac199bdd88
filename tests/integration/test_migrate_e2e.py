"""The tests of tests/unit/test_migrate.py that start programs or use the network.

envnix init --from-conda: the generated build.envd evaluates to the same conda request.
"""

from __future__ import annotations

from pathlib import Path


def test_cli_init_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "env.yaml").write_text("dependencies:\n  - python=3.9\n  - numpy\n")
    cmd = [sys.executable, "-m", "envnix", "init", "--from-conda", str(tmp_path / "env.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'language="python3.9"' in (tmp_path / "build.envd").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr

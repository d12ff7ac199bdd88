"""The tests of tests/unit/test_frontend.py that start programs or use the network.

Frontend: build.envd evaluated by Starlark into an ImageSpec, and its error messages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_frontend import ROOT, write


def test_cli_spec_prints_json_and_errors_are_one_line(tmp_path: Path) -> None:
    quickstart = str(ROOT / "examples" / "quickstart")
    out = subprocess.run([sys.executable, "-m", "envnix", "spec", quickstart],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["name"] == "quickstart"
    write(tmp_path, 'def build():\n    install.pythn_packages(name=["six"])\n')
    proc = subprocess.run([sys.executable, "-m", "envnix", "spec", "-p", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[0].startswith("envnix: build.envd:2:5: install has no")
    assert "Traceback" not in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "envnix", "spec", str(empty)],
                          capture_output=True, text=True)
    assert proc.returncode == 3 and "build.envd: file does not exist" in proc.stderr

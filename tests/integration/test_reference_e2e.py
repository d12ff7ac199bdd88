"""The tests of tests/unit/test_reference.py that start programs or use the network.

The one image-reference grammar (envnix/core/reference.py) and the Nix string escaping.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from envnix.core.nixexpr import nix_string


@pytest.mark.parametrize("text", ["plain", 'quote " inside', "${builtins.abort \"x\"}",
                                  "back\\slash", "new\nline\r\ttab", "$${x}", "''${x}", "ünï"])
def test_nix_string_evaluates_to_exactly_the_text(text: str) -> None:
    literal = nix_string(text)
    assert "\n" not in literal
    proc = subprocess.run(["nix-instantiate", "--eval", "--json", "-E", literal],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == text

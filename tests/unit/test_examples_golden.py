"""Every example under examples/, rendered by `envnix render --locked` from its committed lock:
envnix.lock (with its image section) and default.nix must match tests/golden/<example>/ byte
for byte.

A refactor that changes what envnix writes shows up here as a diff, offline and in seconds,
long before an image digest moves. An example without a lock of its own in examples/ renders
from tests/golden/<example>/envnix.lock, which tests/integration/test_examples_lock.py makes
by locking the example for real. Regenerate after an intended change: pytest --update-golden.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from _cli import EXAMPLES, copy_example
from click.testing import CliRunner

from envnix.cli import cli

GOLDEN = Path(__file__).parents[1] / "golden"
NAMES = sorted(p.parent.name for p in EXAMPLES.glob("*/build.envd"))
RENDERED = ("envnix.lock", "default.nix")


def committed_lock(name: str) -> Path:
    """The example's own lock, else the one the integration tier locked into the goldens."""
    own = EXAMPLES / name / "envnix.lock"
    return own if own.exists() else GOLDEN / name / "envnix.lock"


def test_every_example_is_covered() -> None:
    assert {"quickstart", "serving"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_rendered_files_match_the_goldens(name: str, tmp_path: Path,
                                          golden: Callable[[Path, bytes], None]) -> None:
    lock = committed_lock(name)
    if not lock.exists():
        pytest.fail(f"{lock} is missing: make it with pytest --update-golden "
                    "tests/integration/test_examples_lock.py", pytrace=False)
    context = copy_example(name, tmp_path)
    shutil.copy(lock, context / "envnix.lock")
    out = tmp_path / "generated"
    result = CliRunner().invoke(cli, ["render", str(context), "--locked", "--out-dir", str(out)])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    for file in RENDERED:
        golden(GOLDEN / name / file, (out / file).read_bytes())

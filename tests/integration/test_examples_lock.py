"""Lock each example that has no envnix.lock of its own in examples/ for real, against the
live mirrors, and check it against tests/golden/<example>/envnix.lock (the lock the unit tier
renders the example's goldens from).

A live lock is not byte-stable: the mirror's index hashes, versions and .deb URLs move with
every point release and security update. So without --update-golden only what envnix decides
is compared: the inputs, the sources, the toolchain and which packages (by name and
architecture) were chosen. With --update-golden the fresh lock replaces the golden; then
regenerate the rendered goldens too (pytest --update-golden tests/unit/test_examples_golden.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _cli import EXAMPLES, copy_example, envnix

GOLDEN = Path(__file__).parents[1] / "golden"
UNLOCKED = sorted(p.parent.name for p in EXAMPLES.glob("*/build.envd")
                  if not (p.parent / "envnix.lock").exists())


def decisions(lock: dict[str, Any]) -> dict[str, Any]:
    """The part of a lock that stays put while the mirror moves on."""
    apt = lock["apt"]
    return {
        "lock-version": lock["lock-version"],
        "inputs": lock["inputs"],
        "toolchain": lock.get("toolchain"),
        "apt-sources": apt["sources"],
        "apt-packages": sorted((p["name"], p["arch"], p["essential"]) for p in apt["packages"]),
        "wheels": sorted(w["name"] for w in lock["pip"]["wheels"]),
        "conda-channels": lock["conda"]["channels"],
        "conda-packages": sorted(p["name"] for p in lock["conda"]["packages"]),
    }


@pytest.mark.network
@pytest.mark.parametrize("name", UNLOCKED)
def test_example_locks_as_its_golden_says(name: str, tmp_path: Path,
                                          update_golden: bool) -> None:
    context = copy_example(name, tmp_path)
    envnix("lock", str(context))
    fresh = (context / "envnix.lock").read_bytes()
    path = GOLDEN / name / "envnix.lock"
    if update_golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fresh)
        return
    assert path.exists(), f"{path} is missing: run pytest --update-golden {__file__}"
    assert decisions(json.loads(fresh)) == decisions(json.loads(path.read_bytes()))

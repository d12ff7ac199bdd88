"""A corpus of build.envd files in the styles real projects use (v0, v1, legacy names, helpers,
several targets, every function family), each evaluated to an ImageSpec and compared with a
reviewed golden JSON; five of them are also built with Nix and run under podman.

Regenerate the goldens after an intended change with ``pytest --update-golden`` (as the README
says; ENVNIX_REGEN_GOLDEN=1 too), then review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envnix.frontend import load_spec

CORPUS = Path(__file__).parents[1] / "corpus"
TARGETS = {"multi_target": ("build", "serve")}
CASES = [(path.stem, func) for path in sorted(CORPUS.glob("*.envd"))
         for func in TARGETS.get(path.stem, ("build",))]


def test_corpus_is_wide() -> None:
    assert len({stem for stem, _ in CASES}) >= 15


@pytest.mark.parametrize(("stem", "func"), CASES, ids=[f"{s}:{f}" for s, f in CASES])
def test_spec_matches_golden(stem: str, func: str, update_golden: bool) -> None:
    warnings: list[str] = []
    spec = load_spec(CORPUS, f"{stem}.envd:{func}", warn=warnings.append)
    got = json.loads(spec.to_json())
    golden = CORPUS / "golden" / f"{stem}.{func}.json"
    if update_golden or os.environ.get("ENVNIX_REGEN_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(spec.to_json())
    assert got == json.loads(golden.read_text())
    assert got["warnings"] == warnings

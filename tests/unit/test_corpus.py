"""A corpus of build.envd files in the styles real projects use (v0, v1, legacy names, helpers,
several targets, every function family), each evaluated to an ImageSpec and compared with a
reviewed golden JSON; five of them are also built with Nix and run under podman.

Regenerate the goldens after an intended change with ENVNIX_REGEN_GOLDEN=1, then review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from _cli import build
from _podman import podman

from envnix.frontend import load_spec

CORPUS = Path(__file__).parents[1] / "corpus"
TARGETS = {"multi_target": ("build", "serve")}
CASES = [(path.stem, func) for path in sorted(CORPUS.glob("*.envd"))
         for func in TARGETS.get(path.stem, ("build",))]


def test_corpus_is_wide() -> None:
    assert len({stem for stem, _ in CASES}) >= 15


@pytest.mark.parametrize(("stem", "func"), CASES, ids=[f"{s}:{f}" for s, f in CASES])
def test_spec_matches_golden(stem: str, func: str) -> None:
    warnings: list[str] = []
    spec = load_spec(CORPUS, f"{stem}.envd:{func}", warn=warnings.append)
    got = json.loads(spec.to_json())
    golden = CORPUS / "golden" / f"{stem}.{func}.json"
    if os.environ.get("ENVNIX_REGEN_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(spec.to_json())
    assert got == json.loads(golden.read_text())
    assert got["warnings"] == warnings


BUILT = {
    # stem:func -> (command, expected stdout)
    "minimal:build": (["jq", "-n", "1+1"], "2\n"),
    "legacy_names:build": (["sh", "-c", "cat /opt/hello/hello.txt && curl --version | "
                            "head -c 4"], "hello from the build context\ncurl"),
    # runs through envnix-init (runtime.init ran before the command) as the envd user
    "runtime_services:build": (["sh", "-c", "test -d /tmp/logs && id -un && echo $MODE"],
                               "envd\ndev\n"),
    "entrypoint_repo:build": (["from", "entrypoint"], "from entrypoint\n"),
    "v1_copy:build": (["/bin/sh", "-c", "read l < /srv/hello.txt; echo $l"],
                      "hello from the build context\n"),
}


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BUILT))
def test_corpus_image_runs(case: str, tmp_path: Path, podman_environ: dict) -> None:
    stem, func = case.split(":")
    context = tmp_path / "corpus"
    shutil.copytree(CORPUS, context, ignore=shutil.ignore_patterns("golden", ".envnix"))
    built = build(context, "-f", f"{stem}.envd:{func}", "-t", f"corpus-{stem}:{func}")
    command, expected = BUILT[case]
    out = podman("run", "--rm", f"oci:{built.layout}", *command, env=podman_environ)
    assert out.stdout == expected

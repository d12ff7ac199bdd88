"""The tests of tests/unit/test_corpus.py that start programs or use the network.

A corpus of build.envd files in the styles real projects use (v0, v1, legacy names, helpers,
several targets, every function family), each evaluated to an ImageSpec and compared with a
reviewed golden JSON; five of them are also built with Nix and run under podman.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _cli import build
from _podman import podman
from test_corpus import CORPUS

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

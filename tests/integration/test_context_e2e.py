"""The tests of tests/unit/test_context.py that start programs or use the network.

io.copy: context selection, ignore rules, escapes, and a real image with copied files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import build
from _podman import podman
from test_context import make_context


@pytest.mark.network
@pytest.mark.slow
def test_copied_files_in_a_built_image(tmp_path: Path, podman_environ: dict) -> None:
    context = make_context(tmp_path)
    built = build(context, "-t", "copydemo:dev")
    out = podman("run", "--rm", f"oci:{built.layout}", "python3", "-c",
                 "import os; print(sorted(os.listdir('/detectron2')), "
                 "os.stat('/detectron2/setup.py').st_uid)", env=podman_environ)
    assert out.stdout.strip() == (
        "['detectron2', 'keep.log', 'link', 'run.sh', 'setup.py'] 1000")
    (context / "unrelated.txt").write_text("changed\n")
    again = build(context, "-t", "copydemo:dev")
    assert (again.config, again.manifest) == (built.config, built.manifest)

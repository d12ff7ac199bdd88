"""The calling shell changes no byte of the image: the lock alone decides it.

SOURCE_DATE_EPOCH, TZ, the locale and the umask of the shell that runs `envnix build` are
varied; the image config and manifest digests stay the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _cli import parse_build
from _tiny import tiny_context

ENVIRONMENTS = [
    ({"SOURCE_DATE_EPOCH": None, "TZ": "UTC", "LC_ALL": "C.UTF-8"}, 0o022),
    ({"SOURCE_DATE_EPOCH": "315532800", "TZ": "Pacific/Kiritimati", "LC_ALL": "C"}, 0o077),
    ({"SOURCE_DATE_EPOCH": "1700000000", "TZ": "America/Anchorage", "LC_ALL": None}, 0o002),
]


def _build(context: Path, overrides: dict[str, str | None], umask: int):
    env = {k: v for k, v in os.environ.items() if k not in overrides}
    env |= {k: v for k, v in overrides.items() if v is not None}
    proc = subprocess.run([sys.executable, "-m", "envnix", "build", str(context), "--locked",
                           "-t", "tiny:dev"], env=env, capture_output=True, text=True,
                          umask=umask, check=False)
    assert proc.returncode == 0, proc.stderr
    return parse_build(context, proc)


@pytest.mark.slow
def test_shell_environment_changes_no_digest(tmp_path: Path) -> None:
    built = []
    for i, (overrides, umask) in enumerate(ENVIRONMENTS):
        # The same directory name (it is the image's workdir), a different parent each time.
        context = tiny_context(tmp_path / f"env{i}")
        built.append(_build(context, overrides, umask))
    assert len({(b.config, b.manifest) for b in built}) == 1, [b.stdout for b in built]
    assert len({b.store_path for b in built}) == 1
    # Every timestamp is the fixed epoch, whatever SOURCE_DATE_EPOCH said.
    image = json.loads((built[1].context / "envnix.lock").read_text())["image"]
    assert image["plan"]["mtime"] == 0
    assert image["config"]["created"] == "1970-01-01T00:00:00Z"


@pytest.mark.slow
def test_a_checkout_under_another_name_builds_the_same_image(tmp_path: Path) -> None:
    """envd names the working directory after the context directory; the lock records that
    name, so a clone into another directory (a CI checkout, a fork) builds the same digest,
    and a new lock takes the new directory's name."""
    original = tiny_context(tmp_path, "project")
    first = _build(original, {}, 0o022)
    renamed = tmp_path / "checkout-42"
    renamed.mkdir()
    for name in ("build.envd", "envnix.lock"):
        (renamed / name).write_bytes((original / name).read_bytes())
    again = _build(renamed, {}, 0o022)
    assert (again.config, again.manifest) == (first.config, first.manifest)
    image = json.loads((renamed / "envnix.lock").read_text())["image"]
    assert image["plan"]["workdir"] == "/home/envd/project"
    (renamed / "envnix.lock").unlink()
    fresh = tiny_context(tmp_path, "checkout-42")  # a lock made here names this directory
    assert json.loads((fresh / "envnix.lock").read_text())["image"]["name"] == "checkout-42"

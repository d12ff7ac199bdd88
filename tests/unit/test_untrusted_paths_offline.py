"""The offline tests of tests/integration/test_untrusted_paths.py (no network, no program started).

Files named by env.yaml and build.envd are read only inside the build context (issue 11, 2).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envnix.core.errors import FrontendError, SpecError
from envnix.frontend.envyaml import parse_env_yaml
from envnix.lock.pip import requirements_text
from envnix.spec import PipRequest

CONDA_ENVD = """\
def build():
    base(os="debian12", language="python3.11")
    install.conda_packages(env_file="env.yaml")
"""


def _context(tmp_path: Path, pip_lines: list[str]) -> tuple[Path, Path]:
    """A context whose env.yaml has ``pip_lines`` and, beside it (outside), a FIFO trap."""
    outside = tmp_path / "outside"
    (outside / "pkg").mkdir(parents=True)
    os.mkfifo(outside / "secret.txt")
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "build.envd").write_text(CONDA_ENVD)
    pip = "".join(f"    - {line}\n" for line in pip_lines)
    (context / "env.yaml").write_text(
        "channels: [http://127.0.0.1:9/unused]\ndependencies:\n  - python=3.11\n  - pip:\n"
        + pip)
    return context, outside


def test_the_requirements_reader_checks_too(tmp_path: Path) -> None:
    """lock/pip.py reads build.envd's requirements file itself: it applies the same rule."""
    context, outside = _context(tmp_path, [])
    (context / "link.txt").symlink_to(outside / "secret.txt")
    for rel in ("link.txt", "../outside/secret.txt", str(outside / "secret.txt")):
        with pytest.raises(SpecError, match="outside the build context"):
            requirements_text(PipRequest(requirements_files=[rel]), context)
    (context / "reqs.txt").write_text("six\n")
    assert requirements_text(PipRequest(requirements_files=["reqs.txt"]), context) == "six\n"


def test_files_inside_the_context_but_beside_env_yaml_are_fine(tmp_path: Path) -> None:
    """env.yaml in a subdirectory may name files elsewhere in the context (when the caller
    says where the context is), never above it."""
    context = tmp_path / "ctx"
    (context / "envs").mkdir(parents=True)
    (context / "pkg").mkdir()
    (context / "reqs.txt").write_text("six\n")
    env_yaml = context / "envs" / "env.yaml"
    env_yaml.write_text("dependencies:\n  - pip:\n    - -r ../reqs.txt\n    - -e ../pkg\n")
    parsed = parse_env_yaml(env_yaml, context)
    assert parsed.pip == ("six",)
    assert parsed.pip_local == ((str(context.resolve() / "pkg"), True),)
    with pytest.raises(FrontendError, match=r"envs/env.yaml:3:7: -r \.\./reqs.txt: it resolves"):
        parse_env_yaml(env_yaml)  # no context given: env.yaml's own directory is the boundary
    with pytest.raises(FrontendError, match=r"cannot read env\.yaml: it resolves to"):
        parse_env_yaml(env_yaml, context / "envs" / "other")

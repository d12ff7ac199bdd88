"""envnix init --from-conda: the generated build.envd evaluates to the same conda request."""

from __future__ import annotations

from pathlib import Path

import pytest

from envnix.core.errors import UsageError
from envnix.frontend import load_spec
from envnix.frontend.migrate import build_envd_from_conda


def test_generated_build_envd_round_trips(tmp_path: Path) -> None:
    env = tmp_path / "env.yaml"
    env.write_text("name: kyle\nchannels:\n  - pytorch\n  - defaults\ndependencies:\n"
                   "  - python=3.8.10=h12debd9_8\n  - requests\n  - pip:\n"
                   "    - opencv-python==4.1.2.30\nvariables:\n  OMP_NUM_THREADS: '4'\n"
                   "prefix: C:\\ProgramData\\Anaconda3\\envs\\kyle\n")
    text = build_envd_from_conda(env, tmp_path)
    (tmp_path / "build.envd").write_text(text)
    spec = load_spec(tmp_path)
    assert spec.python is not None
    assert (spec.python.provider, spec.python.version) == ("conda", "3.8")
    assert spec.conda.env_file == "env.yaml"
    assert spec.conda.condarc is not None and "channel_alias:" in spec.conda.condarc
    assert "default_channels:" in spec.conda.condarc
    assert spec.env == {"OMP_NUM_THREADS": "4"}


def test_url_channels_need_no_condarc_and_python_defaults(tmp_path: Path) -> None:
    env = tmp_path / "env.yaml"
    env.write_text("channels:\n  - http://127.0.0.1:1/fixture\ndependencies:\n  - numpy\n")
    text = build_envd_from_conda(env, tmp_path)
    assert "config.conda_channel" not in text and 'language="python3.11"' in text


def test_env_file_outside_context_is_refused(tmp_path: Path) -> None:
    env = tmp_path / "env.yaml"
    env.write_text("dependencies:\n  - numpy\n")
    (tmp_path / "ctx").mkdir()
    with pytest.raises(UsageError, match="outside the build context"):
        build_envd_from_conda(env, tmp_path / "ctx")

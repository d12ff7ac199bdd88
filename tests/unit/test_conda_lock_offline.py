"""The offline tests of tests/integration/test_conda_lock.py (no network, no program started).

Locking conda packages with py-rattler against a real channel served over loopback HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envnix.core.errors import LockError
from envnix.frontend import load_spec
from envnix.lock import conda_plan
from envnix.lock.conda import lock_conda

GLIBC = "2.36"  # debian12, the target; the build host's own glibc must not matter


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_no_specs_and_no_channels(cache: Path) -> None:
    assert lock_conda([], [], glibc=GLIBC, cache_dir=cache) == []
    with pytest.raises(LockError, match="no channel"):
        lock_conda(["x"], [], glibc=GLIBC, cache_dir=cache)


def test_the_files_own_condarc_wins_over_the_machines_conda_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENVNIX_CONDA_DEFAULT_CHANNELS / _CHANNEL_ALIAS fill only what the file leaves unsaid,
    and, as in conda, a .condarc without channels: then means [defaults]."""
    monkeypatch.setenv("ENVNIX_CONDA_DEFAULT_CHANNELS", "http://127.0.0.1:1/main/, http://127.0.0.1:1/r")
    monkeypatch.setenv("ENVNIX_CONDA_CHANNEL_ALIAS", "http://127.0.0.1:1/alias/")
    head = 'def build():\n    base(os="debian12", language="python3.11")\n'
    (tmp_path / "build.envd").write_text(
        head + '    install.conda_packages(name=["numpy"], channel=["pytorch"])\n')
    plan = conda_plan(load_spec(tmp_path, warn=lambda _: None))
    assert plan is not None
    assert [c.canonical for c in plan.channels] == [
        "http://127.0.0.1:1/alias/pytorch", "http://127.0.0.1:1/main", "http://127.0.0.1:1/r"]

    (tmp_path / "build.envd").write_text(head + '    config.conda_channel(channel="""\n'
                                         'default_channels: [http://127.0.0.1:2/own]\n"""\n)\n'
                                         '    install.conda_packages(name=["numpy"])\n')
    plan = conda_plan(load_spec(tmp_path, warn=lambda _: None))
    assert plan is not None and [c.canonical for c in plan.channels] == ["http://127.0.0.1:2/own"]

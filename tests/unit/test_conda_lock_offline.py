"""The offline tests of tests/integration/test_conda_lock.py (no network, no program started).

Locking conda packages with py-rattler against a real channel served over loopback HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envnix.core.errors import LockError
from envnix.lock.conda import lock_conda

GLIBC = "2.36"  # debian12, the target; the build host's own glibc must not matter


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_no_specs_and_no_channels(cache: Path) -> None:
    assert lock_conda([], [], glibc=GLIBC, cache_dir=cache) == []
    with pytest.raises(LockError, match="no channel"):
        lock_conda(["x"], [], glibc=GLIBC, cache_dir=cache)

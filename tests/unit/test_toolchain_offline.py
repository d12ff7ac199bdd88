"""The offline tests of tests/integration/test_toolchain.py (no network, no program started).

The pinned toolchain: builders run on Python, zlib and proot from pinned .debs in the store.
"""

from __future__ import annotations

import re

from envnix.lock.toolchain_pin import load_pin
from envnix.toolchain import PACKAGES


def test_the_shipped_pin_names_every_package_once_with_a_hash() -> None:
    pin = load_pin()
    assert sorted(d["name"] for d in pin.debs) == sorted(PACKAGES)
    assert all(re.fullmatch(r"[0-9a-f]{64}", d["sha256"]) for d in pin.debs)
    assert pin.store_name.startswith(f"envnix-toolchain-{pin.version}-")

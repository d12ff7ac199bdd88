"""Which pins a re-lock keeps (envnix.lock.kept_pins) and how uv is handed them; the locks
against moving indexes are in integration/test_relock_e2e.py."""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from pathlib import Path

import pytest

from envnix.core.errors import UsageError
from envnix.lock import Lock, kept_pins, read_lock
from envnix.lock.pip import Wheel, _preferences_text

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "envnix.lock"
CONDA = {"kind": "conda", "name": "six", "version": "1.16.0", "build": "pyhd3eb1b0_1",
         "url": "https://conda.invalid/fixture/noarch/six-1.16.0-pyhd3eb1b0_1.conda"}


@pytest.fixture
def lock() -> Lock:
    found = read_lock(QUICKSTART)
    assert found is not None
    return dataclasses.replace(found, conda_packages=[CONDA])


def test_every_pin_is_kept_unless_upgraded(lock: Lock) -> None:
    pins = kept_pins(lock, lock.inputs)
    assert pins.apt == {p["name"]: p["version"] for p in lock.apt_packages}
    assert [w.to_lock_dict() for w in pins.pip] == lock.pip_wheels
    assert pins.conda == (CONDA,) and len(pins) == len(lock.artifacts())
    assert len(kept_pins(lock, lock.inputs, upgrade=True)) == 0
    assert len(kept_pins(None, lock.inputs)) == 0


def test_upgrade_package_drops_that_name_from_every_installer(lock: Lock) -> None:
    pins = kept_pins(lock, lock.inputs, upgrade_packages=["Six", "libc6"])
    assert "libc6" not in pins.apt and len(pins.apt) == len(lock.apt_packages) - 1
    assert [w.name for w in pins.pip] == ["numpy", "opencv-python"]  # PEP 503: Six is six
    assert pins.conda == ()  # conda compares names in lower case too
    with pytest.raises(UsageError, match=r"--upgrade-package sixx, zlib9: envnix\.lock pins "
                                         "no package of that name"):
        kept_pins(lock, lock.inputs, upgrade_packages=["zlib9", "sixx"])


def test_apt_pins_are_kept_only_for_the_same_release(lock: Lock) -> None:
    inputs = copy.deepcopy(lock.inputs)
    inputs["apt"]["release"] = "trixie"
    pins = kept_pins(lock, inputs)
    assert pins.apt == {} and len(pins.pip) == 3  # pip and conda preferences still apply


def test_the_base_image_pin_is_kept_for_the_same_reference(lock: Lock) -> None:
    base = {"ref": "localhost:5000/base:1", "digest": "sha256:" + "0" * 64}
    with_base = dataclasses.replace(lock, base=base)
    inputs = {**lock.inputs, "base": {"ref": "localhost:5000/base:1", "architecture": "amd64"}}
    assert kept_pins(with_base, inputs).base == base
    inputs["base"]["ref"] = "localhost:5000/base:2"
    assert kept_pins(with_base, inputs).base is None
    assert kept_pins(with_base, {**lock.inputs, "base": inputs["base"]},
                     upgrade=True).base is None


def test_uv_gets_the_kept_wheels_as_a_pylock_file(lock: Lock) -> None:
    """uv reads an existing output file's pins as preferences: a PEP 751 file it parses."""
    wheels = [Wheel.from_lock_dict(w) for w in lock.pip_wheels]
    data = tomllib.loads(_preferences_text(wheels))
    assert data["lock-version"] == "1.0"
    assert [(p["name"], p["version"], p["wheels"][0]["url"], p["wheels"][0]["size"],
             p["wheels"][0]["hashes"]["sha256"]) for p in data["packages"]] == [
        (w.name, w.version, w.url, w.size, w.sha256) for w in wheels]

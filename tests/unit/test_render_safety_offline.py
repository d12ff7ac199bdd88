"""The offline tests of tests/integration/test_render_safety.py (no network, no program started).

render writes only inside its output directory, only into a directory it made, never
through a symbolic link, with ordinary file modes, and quotes every user string it puts into
a .nix file. Each attack is tried for real, then the host is checked.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from envnix.core.errors import SpecError
from envnix.lock.model import Lock
from envnix.render import image_path, render
from envnix.spec import CopySpec, DevSpec, ImageSpec, PythonSpec, RuntimeSpec, release_for


def spec(**changes: object) -> ImageSpec:
    base = ImageSpec(name="demo", manifest="build.envd", function="build",
                     os=release_for("debian12"), python=PythonSpec("system", "3.11"),
                     workdir="/home/envd/demo")
    return dataclasses.replace(base, **changes)


# --- item 1: every image path lands inside the output directory ---------------------------

HOSTILE = ["/../../../../tmp/ENVNIX_ESCAPE", "/a/../../../ENVNIX_ESCAPE", "relative/x",
           "//etc/x", "/etc/./x", "/etc/x/", ""]


@pytest.mark.parametrize("path", HOSTILE)
def test_image_paths_must_be_absolute_and_normalised(path: str) -> None:
    with pytest.raises(SpecError, match="not an absolute, normalised image path"):
        image_path(path, "config file")
    assert image_path("/etc/pip.conf", "config file") == "etc/pip.conf"


@pytest.mark.parametrize("field", ["files", "mounts", "user", "copy"])
def test_render_refuses_hostile_paths_in_a_spec_built_directly(tmp_path: Path,
                                                               field: str) -> None:
    """The frontend refuses these too; render must hold on its own."""
    victim = tmp_path / "victim"
    out = tmp_path / "sub" / "out"
    escape = "/../../../" + str(victim).lstrip("/")
    hostile = {
        "files": spec(files={escape + "/owned": "x"}),
        "mounts": spec(runtime=RuntimeSpec(mounts=[escape])),
        "user": spec(dev=DevSpec(user="../../../" + str(victim).lstrip("/"))),
        "copy": spec(copies=[CopySpec("build.envd", escape)]),
    }[field]
    (tmp_path / "build.envd").write_text("")
    with pytest.raises(SpecError):
        render(hostile, Lock(inputs={}), out, "demo:dev", context=tmp_path)
    assert not victim.exists()
    assert not out.exists(), "nothing is written before every path was checked"


def test_a_config_file_cannot_be_the_parent_of_another(tmp_path: Path) -> None:
    bad = spec(files={"/etc/x": "file"}, runtime=RuntimeSpec(mounts=["/etc/x/y"]))
    with pytest.raises(SpecError, match="lies below the config file /etc/x"):
        render(bad, Lock(inputs={}), tmp_path / "out", "demo:dev")

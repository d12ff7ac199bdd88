"""config.owner and --owner (issue 19, item 7): whose ids a serving image's account, workdir
and io.copy files get, as the lock's image section records them for the builders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _tiny import tiny_context

from envnix.core.errors import EnvnixError
from envnix.frontend import load_spec

SERVING = ("# syntax=v1\ndef build():\n"
           '    base(image="debian:12", dev=False)\n'
           "{owner}"
           '    io.copy(source="app.txt", target="/srv/")\n')


def _image(tmp_path: Path, owner: str) -> dict:
    (tmp_path / "tiny").mkdir(parents=True)
    (tmp_path / "tiny" / "app.txt").write_text("x\n")
    context = tiny_context(tmp_path, envd=SERVING.format(owner=owner))
    return json.loads((context / "envnix.lock").read_text())["image"]


def test_serving_image_with_config_owner_gets_an_account_owning_its_files(
        tmp_path: Path) -> None:
    image = _image(tmp_path, "    config.owner(uid=1500, gid=1600)\n")
    assert image["copyOwner"] == [1500, 1600]
    assert image["plan"]["users"] == [["envd", 1500, 1600, "/home/envd", "/bin/sh"]]
    assert image["plan"]["workdir"].startswith("/home/envd/")  # under the account's home
    assert "User" not in image["config"]["config"]  # root unless run with --user


def test_without_owner_a_serving_image_stays_root_only(tmp_path: Path) -> None:
    image = _image(tmp_path, "")
    assert image["copyOwner"] == [0, 0] and image["plan"]["users"] == []
    root = _image(tmp_path / "root", "    config.owner(uid=0, gid=0)\n")
    assert root["copyOwner"] == [0, 0] and root["plan"]["users"] == []


def test_owner_flag_beats_config_owner_and_reaches_dev_images(tmp_path: Path) -> None:
    (tmp_path / "app.txt").write_text("x\n")
    (tmp_path / "build.envd").write_text(SERVING.format(owner="    config.owner(uid=1, "
                                                              "gid=2)\n"))
    assert load_spec(tmp_path, owner=(3000, 3001)).owner == (3000, 3001)
    assert load_spec(tmp_path).owner == (1, 2)
    (tmp_path / "build.envd").write_text('def build():\n    base(os="debian12", '
                                         'language="python3.11")\n')
    dev = load_spec(tmp_path, owner=(3000, 3001))
    assert dev.owner is None and dev.dev is not None and (dev.dev.uid, dev.dev.gid) == (
        3000, 3001)


def test_config_owner_range_is_envds(tmp_path: Path) -> None:
    (tmp_path / "app.txt").write_text("x\n")
    (tmp_path / "build.envd").write_text(SERVING.format(owner="    config.owner(uid=70000, "
                                                              "gid=1)\n"))
    with pytest.raises(EnvnixError, match="get a wrong uid or gid"):
        load_spec(tmp_path)

"""run(mount_host=True) without Nix: the spec and lock say which groups see the build context,
the ignore rules that shape it are recorded, and a context Nix could not import is refused
before anything is locked (tests/integration/test_mount_host_e2e.py builds one)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from envnix.core.errors import EnvnixError
from envnix.frontend import evaluate_spec
from envnix.lock import Lock, lock_inputs
from envnix.lock.model import CorruptLockError
from envnix.render import image_section

ENVD = ('def build():\n'
        '    base(image="debian:12", dev=False)\n'
        '    run(commands=["cat data.txt > /copy.txt"], mount_host=True)\n'
        '    run(commands=["echo plain > /plain.txt"])\n')


def _section(context: Path) -> dict:  # type: ignore[type-arg]
    spec = evaluate_spec(context)
    lock = Lock(inputs=lock_inputs(spec, context))
    return json.loads(dataclasses.replace(
        lock, image=image_section(spec, lock, context)).dumps())["image"]


def test_the_group_is_marked_and_the_ignore_rules_recorded(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(ENVD)
    (tmp_path / "data.txt").write_text("x\n")
    (tmp_path / ".dockerignore").write_text("secret/\n!secret/public.txt\n")
    spec = evaluate_spec(tmp_path)
    assert [r.mount_host for r in spec.runs] == [True, False]
    image = _section(tmp_path)
    assert image["plan"]["runs"] == [
        {"commands": ["cat data.txt > /copy.txt"], "mountHost": True},
        {"commands": ["echo plain > /plain.txt"]}]
    assert image["ignore"] == [{"regex": "(secret)(/.*)?", "negate": False},
                               {"regex": "(secret/public\\.txt)(/.*)?", "negate": True}]
    assert set(image["sources"]) == {"build.envd", ".dockerignore"}


def test_without_mount_host_nothing_of_the_context_is_recorded(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(ENVD.replace(", mount_host=True", ""))
    (tmp_path / ".dockerignore").write_text("secret/\n")
    image = _section(tmp_path)
    assert "mountHost" not in json.dumps(image["plan"]["runs"])
    assert image["ignore"] == [] and set(image["sources"]) == {"build.envd"}


def test_a_context_nix_cannot_import_is_refused_naming_the_call(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(ENVD)
    os.symlink("/etc/passwd", tmp_path / "leak")
    with pytest.raises(EnvnixError) as info:
        _section(tmp_path)
    assert str(info.value) == ("run(mount_host=True): leak is a symlink pointing out of the "
                               "build context (/etc/passwd)")
    (tmp_path / "leak").unlink()
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(EnvnixError, match=r"^run\(mount_host=True\): pipe is a FIFO"):
        _section(tmp_path)
    (tmp_path / ".dockerignore").write_text("pipe\n")  # ignored: never imported, never opened
    assert _section(tmp_path)["plan"]["runs"][0]["mountHost"] is True


def test_a_lock_with_a_bad_mount_host_is_refused(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(ENVD)
    spec = evaluate_spec(tmp_path)
    lock = Lock(inputs=lock_inputs(spec, tmp_path))
    data = json.loads(dataclasses.replace(lock, image=image_section(spec, lock, tmp_path))
                      .dumps())
    data["image"]["plan"]["runs"][0]["mountHost"] = "yes"
    with pytest.raises(CorruptLockError, match=r"image.plan.runs\[0\].mountHost: expected "
                                               "true or false"):
        Lock.loads(json.dumps(data), "envnix.lock")

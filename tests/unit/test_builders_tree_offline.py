"""builders/mktree.py in process: the config files and io.copy trees lib.buildImage makes from
the lock. Nix runs the same functions (tests/integration/test_context_e2e.py builds them); here
they get plain directories standing in for the sources Nix imported, and hostile inputs a
lock from a stranger could carry."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

BUILDERS = Path(__file__).resolve().parents[2] / "envnix" / "builders"
sys.path.insert(0, str(BUILDERS))  # the builders import their siblings as top-level modules
import _builder as B  # noqa: E402
import mktree  # noqa: E402


def _run(monkeypatch: pytest.MonkeyPatch, out: Path, **env: object) -> dict:
    for key, value in env.items():
        monkeypatch.setenv(key, value if isinstance(value, str) else json.dumps(value))
    monkeypatch.setenv("out", str(out))
    mktree.main()
    return json.loads((out / "meta.json").read_text())


def test_config_files_get_their_text_modes_and_owners(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    meta = _run(monkeypatch, tmp_path / "out", kind="files", mounts=["data/in"], files={
        "etc/pip.conf": ["[global]\n", 0o644, 0, 0],
        "etc/sudoers.d/envd": ["envd ALL=(ALL) NOPASSWD:ALL\n", 0o440, 0, 0],
        "home/envd/.gitconfig": ["[user]\n", 0o644, 1000, 1000],
        "usr/local/bin/envnix-init": ["#!/bin/sh\n", 0o755, 0, 0]})
    root = tmp_path / "out" / "root"
    assert (root / "etc/pip.conf").read_text() == "[global]\n"
    assert os.access(root / "usr/local/bin/envnix-init", os.X_OK)
    assert (root / "data/in").is_dir()
    assert meta["modes"] == {"etc/sudoers.d/envd": [0o440, 0, 0],
                             "home/envd/.gitconfig": [0o644, 1000, 1000]}
    assert (meta["format"], meta["kind"]) == (B.META_FORMAT, "files")


@pytest.mark.parametrize("files", [{"../escape": ["x", 0o644, 0, 0]},
                                   {"/etc/passwd": ["x", 0o644, 0, 0]},
                                   {"a": ["x", 0o644, 0, 0], "a/b": ["y", 0o644, 0, 0]},
                                   {"a": ["x", "644", 0, 0]}])
def test_hostile_config_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          files: dict) -> None:
    with pytest.raises(B.BuilderError):
        _run(monkeypatch, tmp_path / "out", kind="files", files=files, mounts=[])
    assert not (tmp_path / "escape").exists()


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("X = 1\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "link").symlink_to("run.sh")
    return src


def test_copies_land_as_envd_lays_them_out(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    src = _source(tmp_path)
    single = tmp_path / "one.txt"
    single.write_text("one\n")
    meta = _run(monkeypatch, tmp_path / "out", kind="context", owner=[1000, 1000], copies=[
        {"src": str(src), "source": "app", "target": "/opt/app"},
        {"src": str(single), "source": "one.txt", "target": "/opt/app/one.txt"}])
    root = tmp_path / "out" / "root"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "opt", "opt/app", "opt/app/link", "opt/app/one.txt", "opt/app/pkg",
        "opt/app/pkg/mod.py", "opt/app/run.sh"]
    assert os.readlink(root / "opt/app/link") == "run.sh"
    assert meta["modes"]["opt/app/run.sh"] == [0o755, 1000, 1000]
    assert meta["modes"]["opt/app/one.txt"] == [0o644, 1000, 1000]
    assert "opt/app/link" not in meta["modes"]


@pytest.mark.parametrize(("link", "copies", "message"), [
    ("../../outside", None, "symlink pointing out of the build context"),
    ("/etc/shadow", None, "absolute path"),
    ("run.sh", [{"source": "app", "target": "/x"}, {"source": "app", "target": "/x/link/y"}],
     "beneath /x/link, which is a symlink"),
    ("run.sh", [{"source": "../app", "target": "/x"}], "'..' component"),
    ("run.sh", [{"source": "app", "target": "x"}], "not absolute"),
])
def test_hostile_copies_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str,
                                    copies: list | None, message: str) -> None:
    src = _source(tmp_path)
    (src / "link").unlink()
    (src / "link").symlink_to(link)
    copies = [{**c, "src": str(src)} for c in (copies or [{"source": "app",
                                                            "target": "/opt/app"}])]
    with pytest.raises(B.BuilderError, match=message):
        _run(monkeypatch, tmp_path / "out", kind="context", owner=[0, 0], copies=copies)


def test_downloads_land_0600_before_the_copies(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """io.http's files (envd places them before io.copy runs, so a copy onto one wins): 0600
    as BuildKit's HTTP source leaves them, recorded even for root, since the store drops it."""
    fetched = tmp_path / "fetched"
    fetched.write_bytes(b"\x00model")
    single = tmp_path / "one.txt"
    single.write_text("one\n")
    meta = _run(monkeypatch, tmp_path / "out", kind="context", owner=[0, 0], copies=[
        {"src": str(single), "source": "one.txt", "target": "/home/envd/extra_source/b"}],
        downloads=[{"src": str(fetched), "target": "/home/envd/extra_source/a"},
                   {"src": str(fetched), "target": "/home/envd/extra_source/b"}])
    root = tmp_path / "out" / "root" / "home/envd/extra_source"
    assert (root / "a").read_bytes() == b"\x00model" and (root / "b").read_text() == "one\n"
    assert meta["modes"] == {"home/envd/extra_source/a": [0o600, 0, 0]}


@pytest.mark.parametrize(("target", "message"), [
    ("/home/envd/extra_source/../../../etc/passwd", "'..' component"),
    ("extra_source/a", "absolute path of a file"),
])
def test_hostile_downloads_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       target: str, message: str) -> None:
    fetched = tmp_path / "fetched"
    fetched.write_bytes(b"x")
    with pytest.raises(B.BuilderError, match=message):
        _run(monkeypatch, tmp_path / "out", kind="context", owner=[0, 0], copies=[],
             downloads=[{"src": str(fetched), "target": target}])

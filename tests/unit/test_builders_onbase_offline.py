"""builders/onbase.py: a base image's root as mkmeta reads it (whiteouts applied) and the
dpkg status merged with the added packages' stanzas. Plain trees in tmp_path; the real build
on a base is tests/integration/test_base_image.py."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

BUILDERS = Path(__file__).resolve().parents[2] / "envnix" / "builders"


def _onbase() -> ModuleType:
    sys.path.insert(0, str(BUILDERS))
    return importlib.import_module("onbase")


def _layer(tmp_path: Path, name: str, files: dict[str, str]) -> str:
    root = tmp_path / name / "root"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (tmp_path / name / "meta.json").write_text(json.dumps({"kind": "base"}))
    return str(tmp_path / name)


def test_whiteouts_and_opaque_directories_hide_lower_layers(tmp_path: Path) -> None:
    onbase = _onbase()
    trees = [onbase.Tree(p, "layer") for p in (
        _layer(tmp_path, "l1", {"etc/passwd": "old\n", "etc/gone": "x", "opt/a/f": "1",
                                "var/lib/dpkg/status": "Package: a\n"}),
        _layer(tmp_path, "l2", {"etc/.wh.gone": "", "opt/a/.wh..wh..opq": "", "opt/a/g": "2",
                                "etc/passwd": "new\n"}),
    )]
    base = onbase.BaseRoot(trees)
    assert base.read("etc/passwd") == b"new\n"  # the upper layer's
    assert base.find("etc/gone") is None  # deleted by a whiteout
    assert base.find("opt/a/f") is None and base.read("opt/a/g") == b"2"  # opaque dir
    assert base.read("var/lib/dpkg/status") == b"Package: a\n"


def test_status_is_checked_against_the_lock(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    onbase = _onbase()
    layer = _layer(tmp_path, "l1", {"var/lib/dpkg/status": "Package: a\n"})
    monkeypatch.setenv("baseTrees", json.dumps([layer]))
    monkeypatch.setenv("baseStatus", hashlib.sha256(b"Package: a\n").hexdigest())
    assert onbase.load_base() is not None
    monkeypatch.setenv("baseStatus", "0" * 64)
    with pytest.raises(onbase.B.BuilderError, match="lock again"):
        onbase.load_base()


def test_merged_status_keeps_the_base_and_takes_the_new_stanza_of_an_upgrade() -> None:
    onbase = _onbase()
    base = (b"Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\n"
            b"Version: 1\n\nPackage: bash\nStatus: install ok installed\n"
            b"Architecture: amd64\nVersion: 5.1\n")
    new = (b"Package: bash\nStatus: install ok installed\nArchitecture: amd64\n"
           b"Version: 5.2\n\nPackage: jq\nStatus: install ok installed\n"
           b"Architecture: amd64\nVersion: 1.6\n\n")
    merged = onbase.merged_status(base, new)
    assert merged is not None
    stanzas = merged.decode().strip().split("\n\n")
    assert [s.split("\n")[0] for s in stanzas] == ["Package: bash", "Package: jq",
                                                   "Package: zlib1g"]
    assert "Version: 5.2" in stanzas[0] and merged.endswith(b"\n\n")


def test_split_usr_base_gets_links_at_the_paths_packages_ship(tmp_path: Path) -> None:
    """A base that is not merged-/usr (Debian 11): the deb tree holds lib/... under usr/
    (envnix's layout), so the meta layer links each shipped path to that copy; a base that
    is merged gets none."""
    onbase = _onbase()
    layer = _layer(tmp_path, "l1", {"lib/x86_64-linux-gnu/libz.so.1": "old",
                                    "usr/bin/true": ""})
    os.symlink("usr/bin", os.path.join(layer, "root", "bin"))
    base = onbase.BaseRoot([onbase.Tree(layer, "layer")])
    split = onbase.split_usr(base)
    assert split == {"lib"}  # bin is a merged-/usr link there, lib a real directory
    deb = _layer(tmp_path, "zlib", {"usr/lib/x86_64-linux-gnu/libz.so.1": "new",
                                    "usr/bin/zcat": ""})
    info = onbase.DebInfo(deb, "zlib1g", "amd64", "same",
                          {"list": b"/.\n/lib\n/lib/x86_64-linux-gnu\n"
                                   b"/lib/x86_64-linux-gnu/libz.so.1\n/bin/zcat\n"})
    tree = onbase.Tree(deb, "deb")
    own = lambda rel: (p if os.path.lexists(p := os.path.join(deb, "root", rel))  # noqa: E731
                       else None)
    assert onbase.split_usr_links(split, [(tree, "", info)], own) == [
        ("lib/x86_64-linux-gnu/libz.so.1", "../../usr/lib/x86_64-linux-gnu/libz.so.1")]
    assert onbase.split_usr_links(frozenset(), [(tree, "", info)], own) == []

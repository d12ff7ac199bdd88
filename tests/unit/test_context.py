"""io.copy: context selection, ignore rules, escapes, and a real image with copied files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envnix.core.errors import FrontendError
from envnix.frontend import load_spec
from envnix.render.context import _compile, is_ignored, load_ignore, write_context_tree


def make_context(root: Path) -> Path:
    context = root / "demo"
    (context / "detectron2" / "detectron2").mkdir(parents=True)
    (context / "detectron2" / "setup.py").write_text("print('setup')\n")
    (context / "detectron2" / "detectron2" / "__init__.py").write_text("VERSION = '0.6'\n")
    (context / "detectron2" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (context / "detectron2" / "run.sh").chmod(0o755)
    (context / "detectron2" / "build").mkdir()
    (context / "detectron2" / "build" / "big.o").write_bytes(b"\0" * 1000)
    (context / "detectron2" / "notes.log").write_text("log\n")
    (context / "detectron2" / "keep.log").write_text("keep\n")
    (context / "detectron2" / "link").symlink_to("setup.py")
    (context / ".dockerignore").write_text("# build outputs\n**/build\n*.log\n"
                                           "detectron2/*.log\n!detectron2/keep.log\n")
    (context / "unrelated.txt").write_text("v1\n")
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    io.copy(host_path="./detectron2", envd_path="/")\n')
    return context


def test_dockerignore_patterns() -> None:
    assert _compile("**/build").match("detectron2/build")
    assert _compile("**/build").match("build/x.o")
    assert _compile("*.log").match("a.log") and not _compile("*.log").match("d/a.log")
    rules = [(_compile("**/*.log"), False), (_compile("d/keep.log"), True)]
    assert is_ignored("d/x.log", rules) and not is_ignored("d/keep.log", rules)
    assert is_ignored(".envnix/result", []) and is_ignored(".git/config", [])


def test_directory_lands_as_itself_and_ignores_apply(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    spec = load_spec(context)
    assert [(c.source, c.target) for c in spec.copies] == [("detectron2", "/detectron2")]
    tree = tmp_path / "tree"
    assert write_context_tree(tree, context, spec.copies, (1000, 1000))
    files = sorted(p.relative_to(tree / "root").as_posix() for p in (tree / "root").rglob("*"))
    assert files == ["detectron2", "detectron2/detectron2", "detectron2/detectron2/__init__.py",
                     "detectron2/keep.log", "detectron2/link", "detectron2/run.sh",
                     "detectron2/setup.py"]
    assert os.readlink(tree / "root/detectron2/link") == "setup.py"
    modes = json.loads((tree / "meta.json").read_text())["modes"]
    assert modes["detectron2/run.sh"] == [0o755, 1000, 1000]
    assert modes["detectron2/setup.py"] == [0o644, 1000, 1000]
    assert load_ignore(context)[0][1] is False


def test_unrelated_change_leaves_tree_identical(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    spec = load_spec(context)
    tree = tmp_path / "tree"
    write_context_tree(tree, context, spec.copies, (0, 0))
    before = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    (context / "unrelated.txt").write_text("v2\n")
    (context / "detectron2" / "notes.log").write_text("changed, but ignored\n")
    write_context_tree(tree, context, spec.copies, (0, 0))
    assert {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()} == before
    (context / "detectron2" / "setup.py").unlink()
    (context / "detectron2" / "link").unlink()
    write_context_tree(tree, context, spec.copies, (0, 0))
    assert not (tree / "root/detectron2/setup.py").exists()


def test_escapes_are_errors(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    (tmp_path / "secret").write_text("no\n")
    (context / "build.envd").write_text(
        'def build():\n    io.copy(host_path="../secret", envd_path="/")\n')
    with pytest.raises(FrontendError, match="outside the build context"):
        load_spec(context)
    (context / "detectron2" / "out").symlink_to("../../secret")
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    io.copy(host_path="./detectron2", envd_path="/")\n')
    spec = load_spec(context)
    from envnix.core.errors import SpecError

    with pytest.raises(SpecError, match="symlink pointing out of the build context"):
        write_context_tree(tmp_path / "tree", context, spec.copies, (0, 0))


def test_legacy_src_dest_spelling_warns(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    io.copy(src="detectron2/setup.py", dest="/opt/")\n')
    warnings: list[str] = []
    spec = load_spec(context, warn=warnings.append)
    assert [(c.source, c.target) for c in spec.copies] == [("detectron2/setup.py",
                                                           "/opt/setup.py")]
    assert "pre-0.2 spelling" in warnings[0]

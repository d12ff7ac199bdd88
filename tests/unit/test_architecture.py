"""The layering of issue 14, checked by scripts/import-graph: stages import forward only and at
module top, builders/ import no envnix, one process runner, one HTTP client, no giant module."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "import-graph"



def _load_checker():
    loader = importlib.machinery.SourceFileLoader("import_graph", str(SCRIPT))
    spec = importlib.util.spec_from_loader("import_graph", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module  # dataclasses look their module up by name
    loader.exec_module(module)
    return module


graph = _load_checker()


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    """A small tree breaking every rule once: the checker names each, and nothing else."""
    root = tmp_path / "envnix"
    for package in ("", "core/", "spec/", "lock/", "builders/"):
        _write(root, f"{package}__init__.py", "")
    _write(root, "core/errors.py", "class E(Exception): ...\n")
    _write(root, "spec/data.py", "from envnix.core.errors import E\nfrom envnix.lock import x\n")
    _write(root, "lock/x.py", "def f():\n    from envnix.spec import data\n    return data\n")
    _write(root, "lock/run.py", "import subprocess\nfrom urllib import request\n")
    _write(root, "lock/big.py", "x = 1\n" * (graph.MAX_LINES + 1))
    _write(root, "builders/tool.py", "import _archive\nimport envnix.core.errors\n")
    _write(root, "builders/_archive.py", "import subprocess\n")  # builders run their own tools

    _, violations = graph.check(root)

    assert {(v.kind, v.module, v.line) for v in violations} == {
        ("direction", "envnix.spec.data", 2),
        ("in-function", "envnix.lock.x", 2),
        ("subprocess", "envnix.lock.run", 1),
        ("http", "envnix.lock.run", 2),
        ("size", "envnix.lock.big", 1),
        ("builders", "envnix.builders.tool", 2),
    }


def test_summary_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "envnix"
    _write(root, "__init__.py", "")
    _write(root, "core/__init__.py", "")
    _write(root, "spec/__init__.py", "from envnix.core import errors\n")
    _write(root, "core/errors.py", "")

    assert graph.main(["--summary", "--root", str(root)]) == 0

    assert capsys.readouterr().out == "2 stages, 4 modules, 1 arrows, 0 violations\n"


def test_stages_import_forward_at_module_top() -> None:
    """Each stage imports only earlier stages, never from inside a function (a hidden cycle),
    and builders/ (run by Nix as plain scripts) import no envnix."""
    modules, violations = graph.check(ROOT / "envnix")
    assert len(modules) > 40  # the real tree was read

    found = [str(v) for v in violations if v.kind in ("direction", "in-function", "builders")]

    assert found == []


def test_one_runner_one_client_no_giant_module() -> None:
    """Outside builders/ only core/process.py starts processes and only core/http.py speaks
    HTTP; no module is over MAX_LINES lines. With the rules above: the checker passes."""
    _, violations = graph.check(ROOT / "envnix")

    assert [str(v) for v in violations] == []

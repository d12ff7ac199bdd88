"""io.copy: context selection, ignore rules, escapes, and a real image with copied files."""

from __future__ import annotations

from pathlib import Path

import pytest

from envnix.core.errors import FrontendError, SpecError
from envnix.frontend import load_spec
from envnix.render.context import (
    IgnoreRule,
    check_copies,
    ignore_file,
    is_ignored,
    load_ignore,
    pattern_regex,
)


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


def _rule(pattern: str, negate: bool = False) -> IgnoreRule:
    return IgnoreRule(pattern_regex(pattern), negate)


def test_dockerignore_patterns() -> None:
    assert is_ignored("detectron2/build", [_rule("**/build")])
    assert is_ignored("build/x.o", [_rule("**/build")])
    assert is_ignored("a.log", [_rule("*.log")]) and not is_ignored("d/a.log", [_rule("*.log")])
    rules = [_rule("**/*.log"), _rule("d/keep.log", negate=True)]
    assert is_ignored("d/x.log", rules) and not is_ignored("d/keep.log", rules)
    assert is_ignored(".envnix/result", []) and is_ignored(".git/config", [])
    # one character within a component, classes, and every other character literally
    assert is_ignored("a1c", [_rule("a?c")]) and not is_ignored("a/c", [_rule("a?c")])
    assert is_ignored("ac", [_rule("a[!b]")]) and not is_ignored("ab", [_rule("a[!b]")])
    assert is_ignored("x.y+(z)", [_rule("x.y+(z)")]) and not is_ignored("xay+(z)",
                                                                        [_rule("x.y+(z)")])


def test_ignore_rules_are_posix_regexes_nix_reads_alike() -> None:
    """Nix's builtins.match speaks POSIX ERE: no (?:...), \\d, lazy or lookaround forms."""
    for pattern in ("**/build", "*.log", "d/keep.log", "a[!b]c", "x.y+(z){1}|$^", "a\\b", "[["):
        regex = pattern_regex(pattern)
        assert "(?" not in regex and "\\d" not in regex and "*?" not in regex, regex


def test_the_selection_is_read_from_the_ignore_file(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    spec = load_spec(context)
    assert [(c.source, c.target) for c in spec.copies] == [("detectron2", "/detectron2")]
    rules = load_ignore(context)
    assert [r.negate for r in rules] == [False, False, False, True]
    assert ignore_file(context) == ".dockerignore"
    check_copies(context, spec.copies)  # nothing in it is refused


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
    with pytest.raises(SpecError, match="symlink pointing out of the build context"):
        check_copies(context, spec.copies)


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

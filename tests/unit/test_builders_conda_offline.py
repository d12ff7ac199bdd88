"""The offline tests of tests/integration/test_builders_conda.py (no network, no program started).

Tests for envnix/builders/install_conda.py: conda packages into package trees, as conda would.
"""

from __future__ import annotations

import sys
from pathlib import Path

BUILDER = Path(__file__).resolve().parents[2] / "envnix" / "builders" / "install_conda.py"


# ------------------------------------------------------------------------------ (1) text


def test_replace_rules_unit() -> None:
    """The replacement functions on their own (conda's portability.py behaviour)."""
    sys.path.insert(0, str(BUILDER.parent))
    try:
        import install_conda as C
    finally:
        sys.path.remove(str(BUILDER.parent))
    # Short shebang, no spaces: untouched apart from the replacement.
    assert C.replace_text(b"#!/PH/bin/perl -w\nx /PH\n", "/PH", "/q") == \
        b"#!/q/bin/perl -w\nx /q\n"
    # A long shebang not coming from the placeholder is shortened too (as conda does).
    long = b"#!/" + b"a" * 130 + b"/tool --flag\nbody\n"
    assert C.replace_text(long, "/zz", "/q") == b"#!/usr/bin/env tool --flag\nbody\n"
    # Binary: padding goes after each string's end; two occurrences in one string.
    data = b"A\0/ph/x:/ph/y\0B\0/ph\0tail"
    got = C.replace_binary(data, "/ph", "/q", "f")
    assert got == b"A\0/q/x:/q/y\0\0\0B\0/q\0\0tail" and len(got) == len(data)
    # Placeholder with no NUL after it: left alone (conda's regex needs the terminator).
    assert C.replace_binary(b"x/ph", "/ph", "/q", "f") == b"x/ph"

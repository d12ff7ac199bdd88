"""Debian version order (policy §5.6.12, dpkg's verrevcmp): the one total order every other
apt module compares versions by, kept alone so it can be read against the policy text."""

from __future__ import annotations

import functools
import re
import string
from typing import Any

_LETTERS = frozenset(string.ascii_letters)
_FRAGMENT_RE = re.compile(r"([^0-9]*)([0-9]*)")
_EMPTY_PAIR: tuple[tuple[int, ...], int] = ((0,), 0)


def _char_weight(c: str) -> int:
    """dpkg's order(): '~' sorts before the end of a part, letters before other characters."""
    if c == "~":
        return -1
    if c in _LETTERS:
        return ord(c)
    return ord(c) + 256


def _fragment_key(s: str) -> tuple[tuple[tuple[int, ...], int], ...]:
    """Turn an upstream version or revision into a tuple that sorts like dpkg compares.

    The string is cut into (non-digit run, digit run) pairs. A non-digit run becomes its char
    weights plus a terminating 0 (the weight of "end of string"), so ``~`` (-1) sorts before the
    end and letters after it. A trailing sentinel pair stands for the exhausted string, which
    dpkg treats as an endless run of ("", 0) pairs.
    """
    pairs: list[tuple[tuple[int, ...], int]] = []
    for m in _FRAGMENT_RE.finditer(s):
        text, digits = m.group(1), m.group(2)
        if not text and not digits:
            continue
        pairs.append(((*map(_char_weight, text), 0), int(digits) if digits else 0))
    # ("", 0) can only be the first pair; it is equal to an empty string, so drop it.
    while pairs and pairs[-1] == _EMPTY_PAIR:
        pairs.pop()
    pairs.append(_EMPTY_PAIR)
    return tuple(pairs)


@functools.cache
def version_key(version: str) -> tuple[Any, ...]:
    """A sort key for a Debian version: ``sorted(vs, key=version_key)`` orders like dpkg."""
    epoch = 0
    rest = version.strip()
    head, sep, tail = rest.partition(":")
    if sep and head.isdigit():
        epoch, rest = int(head), tail
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return (epoch, _fragment_key(upstream), _fragment_key(revision))


def version_compare(a: str, b: str) -> int:
    """Return -1, 0 or 1 as Debian version *a* is older than, equal to or newer than *b*."""
    ka, kb = version_key(a), version_key(b)
    return (ka > kb) - (ka < kb)

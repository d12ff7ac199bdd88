"""Reading a maintainer script's literal calls without running it: the logical lines, the
calls of named tools with their words, and the top-level ``NAME=literal`` assignments.

Not a builder itself: alternatives.py, diversions.py, sysaccounts.py and services.py import it
(standard library only). A call whose words need the shell (variables, command
substitution) is the caller's to skip with a note.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator

ASSIGN_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(\S+)\s*$")
VAR_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
REDIRECT_RE = re.compile(r"^[0-9]*[<>]")


def logical_lines(script: str) -> list[str]:
    return script.replace("\\\n", " ").splitlines()


def script_calls(lines: list[str], tools: tuple[str, ...] | frozenset[str], package: str,
           notes: list[str]) -> Iterator[tuple[int, str, list[str]]]:
    """(line index, tool, arguments) of each logical line that runs one of *tools*: the
    words after it up to a command separator, without redirections. A tool named only to
    test for it (``command -v TOOL``) does not count."""
    for n, line in enumerate(lines):
        if not any(t in line for t in tools):
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            notes.append(f"{package}: unreadable line skipped: {line.strip()[:80]!r}")
            continue
        for i, tok in enumerate(tokens):
            if os.path.basename(tok) in tools and (i == 0 or tokens[i - 1] not in (
                    "command", "which", "-x", "-v")):
                tool, args = os.path.basename(tok), tokens[i + 1:]
                break
        else:
            continue
        for stop in (";", "&&", "||", "|", "then", "fi"):
            if stop in args:
                args = args[:args.index(stop)]
        yield n, tool, [a for a in args if not REDIRECT_RE.match(a)]


def script_assignments(text: str) -> dict[str, str]:
    """Top-level ``NAME=literal`` lines of a script (the names scripts keep users in)."""
    out: dict[str, str] = {}
    for line in logical_lines(text):
        m = ASSIGN_RE.match(line)
        if m:
            try:
                words = shlex.split(m.group(2))
            except ValueError:
                continue
            if len(words) == 1 and "$" not in words[0] and "`" not in words[0]:
                out[m.group(1)] = words[0]
    return out

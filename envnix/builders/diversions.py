"""dpkg-divert, from the maintainer scripts' literal calls: the diversions in force after
them, newest first, and var/lib/dpkg/diversions.

Not a builder itself: dpkgdb.py imports it (standard library only). Besides dpkg-divert,
known helpers a script defines (dash's ``claim_binsh``) are read as the calls they make.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from maintscript import logical_lines, script_calls

# Helpers a maintainer script defines and calls with literal arguments, read as the calls
# they make: dash's postinst "claim_binsh DFILE LTARGET [DISTRIB]" diverts DFILE to DISTRIB
# (default DFILE.distrib) for dash without renaming, then links DFILE -> LTARGET.
DIVERT_HELPERS = {"claim_binsh"}


@dataclass(frozen=True)
class Diversion:
    package: str  # "" for --local
    path: str
    divert_to: str
    rename: bool
    link: str = ""  # a helper's link path -> this target, made after the diversion


def parse_diversions(package: str, script: bytes, notes: list[str]
                     ) -> list[tuple[str, Diversion]]:
    """("add" | "remove", diversion) for each literal dpkg-divert call and known helper call
    of a script, in script order."""
    text = script.decode("utf-8", "replace")
    defined = {m.group(1) for m in re.finditer(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\)",
                                              text, re.M)}
    lines = logical_lines(text)
    in_function: set[int] = set()  # indexes of lines inside a function body
    inside = False
    for n, line in enumerate(lines):
        if re.match(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*\(\)", line):
            inside = True
        elif line.startswith("}"):
            inside = False
        if inside:
            in_function.add(n)
    helpers = defined & DIVERT_HELPERS
    found: list[tuple[str, Diversion]] = []
    for n, tool, args in script_calls(lines, frozenset({"dpkg-divert", *helpers}), package, notes):
        if tool in helpers:
            if any("$" in a or "`" in a for a in args) or not 2 <= len(args) <= 3:
                continue  # a call through variables
            dfile = args[0]
            found.append(("add", Diversion(package, dfile, args[2] if len(args) > 2 and args[2]
                                           else f"{dfile}.distrib", False, args[1])))
            continue
        if any(a.startswith("--list") or a == "--truename" for a in args):
            continue  # queries change nothing
        if any("$" in a or "`" in a for a in args):
            if not (n in in_function and helpers):  # a known helper's body
                notes.append(f"{package}: dpkg-divert call with shell variables skipped")
            continue
        call = _divert_call(package, args)
        if call is None:
            notes.append(f"{package}: dpkg-divert {' '.join(args)!r} not understood; skipped")
        else:
            found.append(call)
    return found


def _divert_call(package: str, args: list[str]) -> tuple[str, Diversion] | None:
    owner, divert_to, rename, action = package, "", False, "add"
    files: list[str] = []
    k = 0
    while k < len(args):
        a = args[k]
        k += 1
        if a in ("--package", "--divert", "--admindir", "--instdir", "--root"):
            if k >= len(args):
                return None
            if a == "--package":
                owner = args[k]
            elif a == "--divert":
                divert_to = args[k]
            k += 1
        elif a == "--local":
            owner = ""
        elif a in ("--rename", "--no-rename"):
            rename = a == "--rename"
        elif a in ("--add", "--remove"):
            action = a[2:]
        elif a in ("--quiet", "--test"):
            if a == "--test":
                return None
        elif a.startswith("-"):
            return None
        else:
            files.append(a)
    if len(files) != 1 or not files[0].startswith("/"):
        return None
    path = files[0]
    divert_to = divert_to or f"{path}.distrib"
    if not divert_to.startswith("/") or divert_to == path:
        return None
    return action, Diversion(owner, path, divert_to, rename)


def diversions(calls: list[tuple[str, Diversion]], notes: list[str]) -> list[Diversion]:
    """The diversions in force after the calls, newest first (the order dpkg writes them)."""
    active: list[Diversion] = []
    for action, d in calls:
        same = next((x for x in active if x.path == d.path), None)
        if action == "remove":
            if same is not None and same.package == d.package:
                active.remove(same)
            continue
        if same is not None:
            if (same.package, same.divert_to) != (d.package, d.divert_to):
                notes.append(f"diversion of {d.path} by {d.package or 'LOCAL'} clashes with "
                             f"{same.package or 'LOCAL'}'s; kept the first")
            continue
        active.insert(0, d)
    return active


def diversions_file(active: list[Diversion]) -> bytes:
    """/var/lib/dpkg/diversions: path, diverted-to path, package (":" for local) per entry."""
    return "".join(f"{d.path}\n{d.divert_to}\n{d.package or ':'}\n"
                   for d in active).encode("utf-8")

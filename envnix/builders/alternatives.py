"""update-alternatives in auto mode, from the postinst scripts' literal calls.

Not a builder itself: dpkgdb.py imports it (standard library only). Every literal
``update-alternatives --install LINK NAME PATH PRIORITY [--slave LINK NAME PATH]...`` call of
a postinst whose PATH exists in the trees counts; per NAME the highest priority wins (ties:
the smaller path), as dpkg's auto mode picks. Written: ``etc/alternatives/NAME -> PATH``,
``LINK -> /etc/alternatives/NAME`` (unless a tree ships LINK itself) and dpkg's
``var/lib/dpkg/alternatives/NAME`` database, so ``update-alternatives --display NAME`` and
later ``--config`` see them. Slaves whose PATH is absent get no link, as update-alternatives
does. A call with a shell variable or command substitution in its arguments cannot be read
without running the script: it is skipped with a note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from maintscript import logical_lines, script_calls
from trees import Find, canonical

ALT_NAME_RE = re.compile(r"^[A-Za-z0-9_.+@-][A-Za-z0-9_.+@:-]{0,127}$")


@dataclass(frozen=True)
class Choice:
    package: str
    link: str
    name: str
    path: str
    priority: int
    slaves: tuple[tuple[str, str, str], ...]  # (link, name, path)


def parse_alternatives(package: str, script: bytes, notes: list[str]) -> list[Choice]:
    """The literal ``update-alternatives --install`` calls of a postinst."""
    found: list[Choice] = []
    lines = logical_lines(script.decode("utf-8", "replace"))
    for _n, _tool, args in script_calls(lines, ("update-alternatives",), package, notes):
        args = [a for a in args if a not in ("--quiet", "--force", "--verbose")]
        if not args or args[0] != "--install":
            continue
        if any("$" in a or "`" in a for a in args):
            notes.append(f"{package}: update-alternatives call with shell variables skipped")
            continue
        choice = _choice(package, args[1:])
        if choice is None:
            notes.append(f"{package}: malformed update-alternatives --install skipped")
        else:
            found.append(choice)
    return found


def _choice(package: str, args: list[str]) -> Choice | None:
    if len(args) < 4 or not args[3].lstrip("-").isdigit():
        return None
    link, name, path, prio = args[:4]
    rest = args[4:]
    slaves = []
    while rest:
        if rest[0] != "--slave" or len(rest) < 4:
            return None
        slaves.append((rest[1], rest[2], rest[3]))
        rest = rest[4:]
    for lk, nm, pth in [(link, name, path), *slaves]:
        if not lk.startswith("/") or not pth.startswith("/") or not ALT_NAME_RE.match(nm):
            return None
    return Choice(package, link, name, path, int(prio), tuple(slaves))


def alternatives(choices: list[Choice], find: Find, notes: list[str]
                 ) -> tuple[list[tuple[str, str]], dict[str, bytes]]:
    """Auto mode: (symlinks to write as (rel, target), dpkg alternatives db files by name)."""
    by_name: dict[str, list[Choice]] = {}
    for c in choices:
        if find(canonical(c.path)) is None:
            notes.append(f"alternative {c.name}: {c.path} ({c.package}) is not installed")
            continue
        by_name.setdefault(c.name, []).append(c)
    links: list[tuple[str, str]] = []
    db: dict[str, bytes] = {}
    for name, group in sorted(by_name.items()):
        group.sort(key=lambda c: (-c.priority, c.path))
        best = group[0]
        slave_names = sorted({s[1]: s[0] for c in group for s in c.slaves}.items())
        links.append((f"etc/alternatives/{name}", best.path))
        if find(canonical(best.link)) is None:
            links.append((canonical(best.link), f"/etc/alternatives/{name}"))
        best_slaves = {s[1]: s for s in best.slaves}
        for sname, _slink in slave_names:
            s = best_slaves.get(sname)
            if s is None or find(canonical(s[2])) is None:
                continue
            links.append((f"etc/alternatives/{sname}", s[2]))
            if find(canonical(s[0])) is None:
                links.append((canonical(s[0]), f"/etc/alternatives/{sname}"))
        lines = ["auto", best.link]
        for sname, slink in slave_names:
            lines += [sname, slink]
        lines.append("")
        for c in sorted(group, key=lambda c: c.path):
            lines += [c.path, str(c.priority)]
            mine = {s[1]: s[2] for s in c.slaves}
            lines += [mine.get(sname, "") for sname, _ in slave_names]
        lines.append("")
        db[name] = ("\n".join(lines) + "\n").encode("utf-8")
    unique: dict[str, str] = {}
    for rel, target in links:
        if rel in unique:
            notes.append(f"alternatives: {rel} claimed twice; kept -> {unique[rel]}")
            continue
        unique[rel] = target
    return sorted(unique.items()), db

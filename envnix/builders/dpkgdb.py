"""What dpkg and the maintainer scripts would have left in /var/lib/dpkg and /etc, computed
from the package trees (unpack_deb.py's $out/dpkg/) without running any script.

Not a builder itself: mkmeta.py imports it (standard library only). Reproduced:

* ``var/lib/dpkg/info/PKG.{list,md5sums,conffiles,postinst,...}`` (``PKG:ARCH`` for
  ``Multi-Arch: same``, as dpkg names them), so ``dpkg -L``, ``dpkg -S`` and ``dpkg -V`` work;
* ``Conffiles:`` in each status stanza, with the md5 of the shipped conffile;
* update-alternatives in auto mode: every literal ``update-alternatives --install LINK NAME
  PATH PRIORITY [--slave LINK NAME PATH]...`` call of a postinst whose PATH exists in the
  trees; per NAME the highest priority wins (ties: the smaller path), as dpkg's auto mode
  picks. Written: ``etc/alternatives/NAME -> PATH``, ``LINK -> /etc/alternatives/NAME``
  (unless a tree ships LINK itself) and dpkg's ``var/lib/dpkg/alternatives/NAME`` database,
  so ``update-alternatives --display NAME`` and later ``--config`` see them. Slaves whose
  PATH is absent get no link, as update-alternatives does. A call with a shell variable or
  command substitution in its arguments cannot be read without running the script: it is
  skipped with a note.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

import _archive as A

ALIASED = ("bin/", "sbin/", "lib/", "lib32/", "lib64/", "libx32/")
SCRIPTS = frozenset({"preinst", "postinst", "prerm", "postrm", "config"})
Find = Callable[[str], "str | None"]
"""Where a canonical image path is in the trees (the file on disk), or None."""
ALT_NAME_RE = re.compile(r"^[A-Za-z0-9_.+@-][A-Za-z0-9_.+@:-]{0,127}$")


def canonical(path: str) -> str:
    """An absolute image path as stored in the trees: no leading "/", merged /usr."""
    rel = A.safe_relpath(path.lstrip("/"), "alternatives path")
    if rel.startswith(ALIASED) or rel in {a.rstrip("/") for a in ALIASED}:
        rel = "usr/" + rel
    return rel


@dataclass
class DebInfo:
    """One deb tree's dpkg view: its control fields and $out/dpkg/ files."""

    path: str
    name: str
    arch: str
    multi_arch: str
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def info_name(self) -> str:
        return f"{self.name}:{self.arch}" if self.multi_arch == "same" else self.name


def load_info(tree_path: str, fields: dict[str, str]) -> DebInfo:
    info = DebInfo(tree_path, fields.get("package", ""), fields.get("architecture", ""),
                   fields.get("multi-arch", "").lower())
    d = os.path.join(tree_path, "dpkg")
    if os.path.isdir(d):
        for fn in sorted(os.listdir(d)):
            full = os.path.join(d, fn)
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    info.files[fn] = f.read()
    return info


def conffiles_field(info: DebInfo, find: Find) -> str:
    """The status ``Conffiles:`` value (leading newline) or "" : " PATH MD5" per conffile."""
    lines = []
    for raw in info.files.get("conffiles", b"").decode("utf-8", "replace").splitlines():
        parts = raw.split()
        if not parts:
            continue
        path = parts[-1]
        flags = parts[:-1]
        if not path.startswith("/"):
            continue
        tree_file = find(canonical(path))
        digest = "newconffile"
        if tree_file is not None and os.path.isfile(tree_file) and not os.path.islink(tree_file):
            with open(tree_file, "rb") as f:
                digest = hashlib.md5(f.read()).hexdigest()
        lines.append(f" {path} {digest}" + (" remove-on-upgrade"
                                            if "remove-on-upgrade" in flags else ""))
    return ("\n" + "\n".join(lines)) if lines else ""


def info_files(info: DebInfo) -> list[tuple[str, bytes, int]]:
    """(file name under var/lib/dpkg/info, content, mode) for one package."""
    out = []
    for fn, data in sorted(info.files.items()):
        out.append((f"{info.info_name}.{fn}", data, 0o755 if fn in SCRIPTS else 0o644))
    return out


def triggers(infos: list[DebInfo]) -> dict[str, bytes]:
    """var/lib/dpkg/triggers/ as dpkg keeps it after the packages' ``interest`` directives:
    ``File`` maps watched paths to packages, one file per named trigger lists its packages,
    and an empty ``Unincorp`` (nothing pending)."""
    files: list[str] = []
    named: dict[str, list[str]] = {}
    for info in sorted(infos, key=lambda i: i.info_name):
        owner = f"{info.name}:{info.arch}" if info.multi_arch == "same" else info.name
        for line in info.files.get("triggers", b"").decode("utf-8", "replace").splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) != 2 or not parts[0].startswith("interest"):
                continue
            who = owner + ("/noawait" if parts[0].endswith("-noawait") else "")
            if parts[1].startswith("/"):
                files.append(f"{parts[1]} {who}")
            elif ALT_NAME_RE.match(parts[1]):
                named.setdefault(parts[1], []).append(who)
    out = {"Unincorp": b""}
    if files:
        out["File"] = ("\n".join(files) + "\n").encode("utf-8")
    for name, who in named.items():
        if name not in ("File", "Unincorp", "Lock"):
            out[name] = ("\n".join(who) + "\n").encode("utf-8")
    return out


# ------------------------------------------------------------------------------ alternatives


@dataclass(frozen=True)
class Choice:
    package: str
    link: str
    name: str
    path: str
    priority: int
    slaves: tuple[tuple[str, str, str], ...]  # (link, name, path)


def _logical_lines(script: str) -> list[str]:
    return script.replace("\\\n", " ").splitlines()


def parse_alternatives(package: str, script: bytes, notes: list[str]) -> list[Choice]:
    """The literal ``update-alternatives --install`` calls of a postinst."""
    found: list[Choice] = []
    text = script.decode("utf-8", "replace")
    for line in _logical_lines(text):
        if "update-alternatives" not in line or "--install" not in line:
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            notes.append(f"{package}: unreadable update-alternatives line skipped")
            continue
        for i, tok in enumerate(tokens):
            if os.path.basename(tok) == "update-alternatives":
                args = tokens[i + 1:]
                break
        else:
            continue
        for stop in (";", "&&", "||", "|"):
            if stop in args:
                args = args[:args.index(stop)]
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

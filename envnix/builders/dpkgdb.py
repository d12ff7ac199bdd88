"""What dpkg leaves in /var/lib/dpkg, computed from the package trees (unpack_deb.py's
$out/dpkg/) without running any script.

Not a builder itself: mkmeta.py imports it (standard library only). Reproduced:

* ``var/lib/dpkg/status``: every deb tree's control stanza with ``Status: install ok
  installed`` and ``Conffiles:`` (with the md5 of the shipped conffile);
* ``var/lib/dpkg/info/PKG.{list,md5sums,conffiles,postinst,...}`` (``PKG:ARCH`` for
  ``Multi-Arch: same``, as dpkg names them), so ``dpkg -L``, ``dpkg -S`` and ``dpkg -V`` work;
* ``var/lib/dpkg/triggers/`` after the packages' ``interest`` directives;
* the alternatives the postinst scripts install (alternatives.py) and the diversions the
  scripts make (diversions.py), with the links and renames they bring.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import _builder as B
import _treewrite as T
from alternatives import ALT_NAME_RE, Choice, alternatives, parse_alternatives
from diversions import Diversion, diversions, diversions_file, parse_diversions
from trees import Find, Tree, canonical, read_regular

SCRIPTS = frozenset({"preinst", "postinst", "prerm", "postrm", "config"})


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


STATUS_LINE = "Status: install ok installed"


def status_stanza(control: str, where: str, conffiles: str = ""
                  ) -> tuple[tuple[str, str, str], str]:
    """The control stanza with a Status line after Package (and *conffiles*, the value of a
    Conffiles field, before Description); also (package, arch, version)."""
    lines = control.replace("\r\n", "\n").strip("\n").split("\n")
    out: list[str] = []
    fields: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            raise B.BuilderError(f"{where}: control file has more than one stanza")
        if line[0] in " \t":
            if not out:
                raise B.BuilderError(f"{where}: control file starts with a continuation")
            out.append(line)
            continue
        field, sep, value = line.partition(":")
        if not sep or not field:
            raise B.BuilderError(f"{where}: bad control line {line!r}")
        key = field.lower()
        if key in ("status", "conffiles"):
            continue
        if key == "description" and conffiles:
            out.append("Conffiles:" + conffiles)
        fields.setdefault(key, value.strip())
        out.append(line)
        if key == "package":
            out.append(STATUS_LINE)
    if not fields.get("package"):
        raise B.BuilderError(f"{where}: control file has no Package field")
    if conffiles and "description" not in fields:
        out.append("Conffiles:" + conffiles)
    key3 = (fields["package"], fields.get("architecture", ""), fields.get("version", ""))
    return key3, "\n".join(out) + "\n"


def control_fields(control: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in control.splitlines():
        if line and line[0] not in " \t":
            k, _, v = line.partition(":")
            fields.setdefault(k.strip().lower(), v.strip())
    return fields


def deb_infos(trees: list[Tree]) -> list[tuple[Tree, str, DebInfo]]:
    """(tree, control text, dpkg info) of every deb tree."""
    out = []
    for t in trees:
        if t.kind != "deb":
            continue
        with open(os.path.join(t.path, "control"), encoding="utf-8") as f:
            control = f.read()
        out.append((t, control, load_info(t.path, control_fields(control))))
    return out


def dpkg_status(debs: list[tuple[Tree, str, DebInfo]], find: Find
                ) -> bytes | None:
    stanzas: dict[tuple[str, str], tuple[str, str]] = {}
    for t, control, info in debs:
        (pkg, arch, ver), text = status_stanza(control, t.path,
                                               conffiles_field(info, find))
        old = stanzas.get((pkg, arch))
        if old is not None and old[1] != text:
            raise B.BuilderError(f"two different deb trees for package {pkg}:{arch}")
        stanzas[(pkg, arch)] = (ver, text)
    if not stanzas:
        return None
    return "".join(text + "\n" for _, (_, text) in sorted(stanzas.items())).encode("utf-8")


Read = Callable[[str], "bytes | None"]
"""A base image's file by image path (onbase.py), or None where it has none."""


def merged_lines(base: bytes | None, new: bytes) -> bytes:
    """A line-per-entry database file: the base's lines, then the new ones it lacks."""
    old = (base or b"").splitlines(keepends=True)
    if old and not old[-1].endswith(b"\n"):
        old[-1] += b"\n"
    return b"".join(old) + b"".join(line for line in new.splitlines(keepends=True)
                                    if line not in old)


def write_dpkg_database(debs: list[tuple[Tree, str, DebInfo]], find: Find,
                        writer: T.TreeWriter, base: Read | None = None
                        ) -> list[tuple[str, str]]:
    """info/ files of every package, then alternatives in auto mode (see alternatives.py); returns
    the alternatives' links (rel, target). On a ``base`` image its trigger interests are kept
    and an alternative it already has is left as the base has it."""
    notes: list[str] = []
    choices: list[Choice] = []
    written: set[str] = set()
    # Database layout 1: "PKG:ARCH.list" for Multi-Arch: same packages (dpkg reads the
    # plain names without this file).
    writer.add_file("var/lib/dpkg/info/format", b"1\n", 0o644)
    for _t, _control, info in sorted(debs, key=lambda d: d[2].info_name):
        if info.info_name in written:
            continue
        written.add(info.info_name)
        for fname, data, mode in info_files(info):
            writer.add_file(f"var/lib/dpkg/info/{fname}", data, mode)
        if "postinst" in info.files:
            choices += parse_alternatives(info.name, info.files["postinst"], notes)
    writer.add_file("var/lib/dpkg/arch", f"{B.target_arch()}\n".encode(), 0o644)
    for name, data in sorted(triggers([d[2] for d in debs]).items()):
        rel = f"var/lib/dpkg/triggers/{name}"
        writer.add_file(rel, merged_lines(base(rel), data) if base else data, 0o644)
    links, db = alternatives(choices, find, notes)
    kept = {name for name in db
            if base is not None and base(f"var/lib/dpkg/alternatives/{name}") is not None}
    for name in sorted(kept):
        notes.append(f"alternative {name}: the base has it; its choice stays")
    for name, data in sorted(db.items()):
        if name not in kept:
            writer.add_file(f"var/lib/dpkg/alternatives/{name}", data, 0o644)
    for rel, target in links:
        if rel.rpartition("/")[2] not in kept or not rel.startswith("etc/alternatives/"):
            writer.add_symlink(rel, target)
    for note in notes:
        writer.note(note)
    return links


def write_diversions(debs: list[tuple[Tree, str, DebInfo]], find: Find,
                     writer: T.TreeWriter, base: Read | None = None) -> set[str]:
    """var/lib/dpkg/diversions from the scripts' dpkg-divert calls (see diversions.py), with
    what the calls do to the files: a --rename diversion puts the other package's file at
    the diverted name (and the diverting package's own file, if it ships one, at the path);
    a helper's link is made where nothing else is. Returns the paths written."""
    notes: list[str] = []
    calls: list[tuple[str, Diversion]] = []
    for _t, _control, info in sorted(debs, key=lambda d: d[2].info_name):
        for script in ("preinst", "postinst"):
            calls += parse_diversions(info.name, info.files.get(script, b""), notes)
    active = diversions(calls, notes)
    text = diversions_file(active)  # a base's diversions first: dpkg-divert appends
    writer.add_file("var/lib/dpkg/diversions", (base("var/lib/dpkg/diversions") or b"") + text
                    if base else text, 0o644)
    written: set[str] = set()
    for d in reversed(active):
        rel = canonical(d.path)
        if d.rename:
            _apply_rename(debs, d, rel, writer, written, notes)
        parent = find(os.path.dirname(rel))
        if d.link and parent is not None and os.path.isdir(parent) and find(rel) is None \
                and rel not in written:
            writer.add_symlink(rel, d.link)
            written.add(rel)
    for note in notes:
        writer.note(note)
    return written


def _copy_entry(src: str, rel: str, writer: T.TreeWriter) -> None:
    if os.path.islink(src):
        writer.add_symlink(rel, os.readlink(src))
    else:
        writer.add_file(rel, read_regular(src), os.lstat(src).st_mode & 0o7777)


def _apply_rename(debs: list[tuple[Tree, str, DebInfo]], d: Diversion,
                  rel: str, writer: T.TreeWriter, written: set[str], notes: list[str]) -> None:
    shipped = [(info.name, t.inside(rel)) for t, _c, info in debs if t.has(rel)]
    other = next((p for name, p in shipped if name != d.package and p), None)
    own = next((p for name, p in shipped if name == d.package and p), None)
    target = canonical(d.divert_to)
    if other is None or target in written:
        return
    _copy_entry(other, target, writer)
    written.add(target)
    if own is not None:
        _copy_entry(own, rel, writer)
        written.add(rel)
    else:
        notes.append(f"diversion of {d.path}: the lower layer's file stays at the path")

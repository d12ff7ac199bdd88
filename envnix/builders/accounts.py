"""etc/passwd, etc/group and (with passwd installed) etc/shadow and etc/gshadow: base-passwd's
masters, the image's users (the ``users`` env), then the system accounts the packages'
scripts add (sysaccounts.py).

Not a builder itself: mkmeta.py imports it (standard library only).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import _builder as B
import _treewrite as T
from dpkgdb import DebInfo
from sysaccounts import SYSUSERS, Accounts, adduser_conf, apply_sysusers, parse_accounts
from trees import Find, Tree, image_rel, read_regular

USER_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")
MAX_ID = 2**32 - 2


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str


def _check_field(value: object, what: str) -> str:
    if not isinstance(value, str) or any(c in value for c in ":\n\0"):
        raise B.BuilderError(f"users: bad {what} {value!r}")
    return value


def _check_id(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise B.BuilderError(f"users: bad {what} {value!r}")
    return value


def read_master(trees: list[Tree], name: str) -> list[list[str]] | None:
    """base-passwd's usr/share/base-passwd/NAME.master as split lines (None if no tree has
    it): what its postinst (update-passwd) installs as /etc/passwd and /etc/group."""
    for t in trees:
        path = t.inside(f"usr/share/base-passwd/{name}.master")
        if path is not None and os.path.isfile(path) and not os.path.islink(path):
            text = read_regular(path).decode("utf-8")
            return [line.split(":") for line in text.splitlines() if line.strip()]
    return None


def master_users(trees: list[Tree]) -> dict[str, User] | None:
    rows = read_master(trees, "passwd")
    if rows is None:
        return None
    users = {}
    for row in rows:
        if len(row) != 7:
            raise B.BuilderError(f"base-passwd passwd.master: bad line {':'.join(row)!r}")
        users[row[0]] = User(row[0], int(row[2]), int(row[3]), row[4], row[5], row[6])
    return users


def master_groups(trees: list[Tree]) -> dict[int, str]:
    rows = read_master(trees, "group") or []
    groups = {}
    for row in rows:
        if len(row) != 4:
            raise B.BuilderError(f"base-passwd group.master: bad line {':'.join(row)!r}")
        groups[int(row[2])] = row[0]
    return groups


def load_users(trees: list[Tree]) -> tuple[list[User], set[str]]:
    """All users sorted by id, and the names given in the ``users`` env."""
    root_shell = "/bin/bash" if any(t.has("usr/bin/bash") for t in trees) else "/bin/sh"
    users = master_users(trees) or {
        "root": User("root", 0, 0, "root", "/root", root_shell),
        "nobody": User("nobody", 65534, 65534, "nobody", "/nonexistent", "/usr/sbin/nologin"),
    }
    raw = B.getenv("users", "").strip()
    seen: set[str] = set()
    if raw:
        try:
            given = json.loads(raw)
        except ValueError as exc:
            raise B.BuilderError(f"users: not JSON: {exc}") from None
        if not isinstance(given, list):
            raise B.BuilderError("users: must be a JSON list of [name, uid, gid, home, shell]")
        for item in given:
            if not isinstance(item, list) or len(item) != 5:
                raise B.BuilderError(f"users: {item!r} is not [name, uid, gid, home, shell]")
            name = _check_field(item[0], "name")
            if not USER_NAME_RE.match(name):
                raise B.BuilderError(f"users: bad user name {name!r}")
            if name in seen:
                raise B.BuilderError(f"users: {name!r} given twice")
            seen.add(name)
            home = _check_field(item[3], "home")
            shell = _check_field(item[4], "shell")
            if not home.startswith("/") or not shell.startswith("/"):
                raise B.BuilderError(f"users: home and shell of {name!r} must be absolute")
            gecos = users[name].gecos if name in users else ""
            users[name] = User(name, _check_id(item[1], "uid"), _check_id(item[2], "gid"),
                               gecos, home, shell)
    return sorted(users.values(), key=lambda u: (u.uid, u.name)), seen


def groups_for(users: list[User], base: dict[int, str] | None = None
               ) -> list[tuple[str, int]]:
    groups = dict(base) if base else {0: "root", 65534: "nogroup"}
    for u in users:
        if u.gid in groups:
            continue
        if u.name in groups.values():
            raise B.BuilderError(f"users: group name {u.name!r} is already used by another gid")
        groups[u.gid] = u.name
    return [(name, gid) for gid, name in sorted(groups.items())]


def passwd_text(users: list[User]) -> bytes:
    return "".join(f"{u.name}:x:{u.uid}:{u.gid}:{u.gecos}:{u.home}:{u.shell}\n"
                   for u in users).encode("utf-8")


def group_text(groups: list[tuple[str, int]], members: dict[str, list[str]] | None = None
               ) -> bytes:
    members = members or {}
    return "".join(f"{name}:x:{gid}:{','.join(members.get(name, []))}\n"
                   for name, gid in groups).encode("utf-8")


# pwconv/grpconv (passwd's postinst runs "shadowconfig on") give every existing account a
# locked "*" entry with the default aging; useradd -r and groupadd give later accounts "!".
# The last-change day stays empty (aging off): the image's clock is the epoch, and day 0
# would mean "must change the password now", which breaks su and login.
SHADOW_CONVERTED = "{name}:*::0:99999:7:::\n"
SHADOW_CREATED = "{name}:!:::::::\n"
SHADOW_SYSUSERS = "{name}:!*:::::::\n"
SHADOW_GID = 42


def _gshadow_password(group: str, acc: Accounts) -> str:
    if group in acc.sysusers:
        return "!*"
    return "!" if group in acc.created_groups else "*"


def sysusers_confs(trees: list[Tree], find: Find, names: list[str]
                   ) -> list[tuple[str, str]]:
    """(name, text) of the sysusers.d files a systemd-sysusers call names (all of them,
    sorted, when it names none); /etc/sysusers.d overrides /usr/lib/sysusers.d."""
    dirs = ("etc/sysusers.d", "usr/lib/sysusers.d")
    if not names:
        names = sorted({n for t in trees for d in dirs
                        if (p := t.inside(d)) and os.path.isdir(p) and not os.path.islink(p)
                        for n in os.listdir(p) if n.endswith(".conf")})
    out = []
    for name in names:
        path = next((p for d in dirs if (p := find(f"{d}/{name}")) is not None), None)
        if path is not None and os.path.isfile(path):
            out.append((name, read_regular(path).decode("utf-8", "replace")))
    return out


def _rows(text: bytes | None, fields: int) -> list[list[str]]:
    """The well-formed lines of a base image's account file, split (others are kept as
    lines by the callers but never parsed)."""
    rows = []
    for line in (text or b"").decode("utf-8", "replace").splitlines():
        row = line.split(":")
        ids = row[2:4] if fields == 7 else row[2:3]
        if len(row) == fields and row[0] and all(f.isdigit() for f in ids):
            rows.append(row)
    return rows


def _on_base(base: Mapping[str, bytes | None], users: list[User]) -> Accounts:
    """The accounts a base image has, plus the image's users it lacks (and a group for each
    of their gids it lacks), as useradd in the base would add them."""
    accounts = Accounts({r[0]: [int(r[2]), int(r[3]), r[4], r[5], r[6]]
                         for r in _rows(base.get("etc/passwd"), 7)},
                        {r[0]: int(r[2]) for r in _rows(base.get("etc/group"), 4)})
    for r in _rows(base.get("etc/group"), 4):
        if r[3]:
            accounts.members[r[0]] = r[3].split(",")
    for u in users:
        if u.name in accounts.users:
            continue
        if u.gid not in accounts.groups.values():
            accounts.add_group(u.name, u.gid)
        accounts.add_user(u.name, u.uid, u.gid, u.gecos, u.home, u.shell, create_home=False)
    return accounts


def _base_written(base: Mapping[str, bytes | None], acc: Accounts, writer: T.TreeWriter
                  ) -> None:
    """etc/passwd, etc/group (and shadow files where the base has them): the base's lines as
    they are, members the scripts added, then the new accounts in the order made."""
    old_users = {r[0] for r in _rows(base.get("etc/passwd"), 7)}
    old_groups = {r[0] for r in _rows(base.get("etc/group"), 4)}
    new_users = [n for n in acc.users if n not in old_users]
    new_groups = [n for n in acc.groups if n not in old_groups]

    def kept(name: str, fields: int, rewrite: bool) -> str:
        lines = []
        for line in (base.get(name) or b"").decode("utf-8", "replace").splitlines():
            row = line.split(":")
            if rewrite and len(row) == fields and row[0] in acc.members:
                row[-1] = ",".join(acc.members[row[0]])
                line = ":".join(row)
            lines.append(line + "\n")
        return "".join(lines)

    passwd = kept("etc/passwd", 7, False) + "".join(
        f"{n}:x:{':'.join(map(str, acc.users[n][:2]))}:{':'.join(acc.users[n][2:])}\n"
        for n in new_users)
    group = kept("etc/group", 4, True) + "".join(
        f"{n}:x:{acc.groups[n]}:{','.join(acc.members.get(n, []))}\n" for n in new_groups)
    writer.add_file("etc/passwd", passwd.encode("utf-8"), 0o644)
    writer.add_file("etc/group", group.encode("utf-8"), 0o644)
    if base.get("etc/shadow") is not None:
        shadow = kept("etc/shadow", 9, False) + "".join(
            (SHADOW_SYSUSERS if n in acc.sysusers else SHADOW_CREATED).format(name=n)
            for n in new_users)
        writer.add_file("etc/shadow", shadow.encode("utf-8"), 0o640, 0, SHADOW_GID)
    if base.get("etc/gshadow") is not None:
        gshadow = kept("etc/gshadow", 4, True) + "".join(
            f"{n}:{_gshadow_password(n, acc)}::{','.join(acc.members.get(n, []))}\n"
            for n in new_groups)
        writer.add_file("etc/gshadow", gshadow.encode("utf-8"), 0o640, 0, SHADOW_GID)


def write_accounts(trees: list[Tree], debs: list[tuple[Tree, str, DebInfo]],
                   users: list[User], find: Find, writer: T.TreeWriter,
                   base: Mapping[str, bytes | None] | None = None
                   ) -> tuple[list[User], dict[str, int]]:
    """etc/passwd and etc/group (base-passwd's masters, the image's users, then the system
    accounts the packages' scripts add: see sysaccounts.Accounts), and with passwd installed
    etc/shadow and etc/gshadow. Returns every user, and every group's id by name.

    ``base``: a base image's etc/passwd, etc/group, etc/shadow and etc/gshadow (None where
    it has none): its accounts come first and stay as they are (onbase.py)."""
    if base is None:
        acc = Accounts({u.name: [u.uid, u.gid, u.gecos, u.home, u.shell] for u in users},
                       dict(groups_for(users, master_groups(trees))))
    else:
        acc = _on_base(base, users)
    notes: list[str] = []
    conf_path = find("etc/adduser.conf")
    conf = adduser_conf(read_regular(conf_path).decode("utf-8", "replace")
                               if conf_path and os.path.isfile(conf_path) else None)
    tools = {"adduser": "usr/sbin/adduser", "addgroup": "usr/sbin/addgroup",
             "useradd": "usr/sbin/useradd", "groupadd": "usr/sbin/groupadd",
             SYSUSERS: "usr/bin/systemd-sysusers"}
    for _t, _control, info in sorted(debs, key=lambda d: d[2].info_name):
        for script in ("preinst", "postinst"):
            for call in parse_accounts(info.name, info.files.get(script, b""), notes):
                if find(tools[call.tool]) is None:
                    notes.append(f"{info.name}: {call.tool} is not installed; "
                                 f"{call.action} {call.name} not added")
                elif call.action == "sysusers":
                    apply_sysusers(acc, sysusers_confs(trees, find, call.name.split()),
                                          notes)
                else:
                    acc.apply(call, conf, notes)
    everyone = sorted((User(n, *v) for n, v in acc.users.items()), key=lambda u: (u.uid, u.name))
    groups = sorted(((n, g) for n, g in acc.groups.items()), key=lambda x: (x[1], x[0]))
    if base is not None:
        _base_written(base, acc, writer)
        for note in notes:
            writer.note(note)
        return everyone, dict(acc.groups)
    writer.add_file("etc/passwd", passwd_text(everyone), 0o644)
    writer.add_file("etc/group", group_text(groups, acc.members), 0o644)
    if find("usr/sbin/pwconv") is not None:
        shadow = "".join((SHADOW_SYSUSERS if u.name in acc.sysusers else SHADOW_CREATED
                          if u.name in acc.created_users else SHADOW_CONVERTED)
                         .format(name=u.name) for u in everyone)
        gshadow = "".join(f"{n}:{_gshadow_password(n, acc)}::"
                          f"{','.join(acc.members.get(n, []))}\n" for n, _ in groups)
        writer.add_file("etc/shadow", shadow.encode("utf-8"), 0o640, 0, SHADOW_GID)
        writer.add_file("etc/gshadow", gshadow.encode("utf-8"), 0o640, 0, SHADOW_GID)
    for home, uid, gid in acc.homes:
        rel = image_rel(home, "home")
        if rel and find(rel) is None:
            writer.add_dir(rel, 0o755, uid, gid)
    for note in notes:
        writer.note(note)
    return everyone, dict(acc.groups)

"""The system accounts the maintainer scripts add: their literal adduser/addgroup --system,
useradd -r, groupadd and systemd-sysusers calls, applied as those tools decide ids.

Not a builder itself: accounts.py imports it (standard library only). ``Accounts`` is
passwd, group and membership as the scripts leave them; ``apply_sysusers`` follows
systemd-sysusers' rules over the sysusers.d files a call names.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from maintscript import VAR_RE, logical_lines, script_assignments, script_calls

SYSUSERS = "systemd-sysusers"
ACCOUNT_TOOLS = ("adduser", "addgroup", "useradd", "groupadd", SYSUSERS)
ADDUSER_VALUES = {"comment", "gecos", "conf", "firstgid", "firstuid", "lastgid", "lastuid",
                  "gid", "home", "ingroup", "shell", "uid"}
ADDUSER_FLAGS = {"add-extra-groups", "add_extra_groups", "allow-all-names", "allow-badname",
                 "allow-bad-names", "debug", "disabled-login", "disabled-password",
                 "force-badname", "group", "no-create-home", "quiet", "system", "verbose"}
USERADD_VALUES = {"-d": "home", "--home-dir": "home", "-s": "shell", "--shell": "shell",
                  "-g": "gid", "--gid": "gid", "-u": "uid", "--uid": "uid", "-c": "gecos",
                  "--comment": "gecos", "-K": "", "--key": "", "-G": "", "--groups": "",
                  "-b": "", "--base-dir": "", "-k": "", "--skel": "", "-e": "", "-f": "",
                  "-p": "", "--password": "", "-R": "", "--root": "", "-P": "", "--prefix": ""}
USERADD_FLAGS = {"-r": "system", "--system": "system", "-m": "create", "--create-home": "create",
                 "-M": "", "--no-create-home": "", "-N": "nogroup", "--no-user-group": "nogroup",
                 "-U": "", "--user-group": "", "-o": "", "--non-unique": "", "-l": "",
                 "--no-log-init": ""}
GROUPADD_VALUES = {"-g": "gid", "--gid": "gid", "-K": "", "--key": "", "-p": "",
                   "--password": "", "-R": "", "--root": "", "-P": "", "--prefix": ""}
GROUPADD_FLAGS = {"-r": "system", "--system": "system", "-f": "", "--force": "", "-o": "",
                  "--non-unique": ""}


@dataclass(frozen=True)
class Account:
    """One literal account call of a maintainer script, as the tool would read it."""

    package: str
    tool: str  # adduser, addgroup, useradd, groupadd, systemd-sysusers
    action: str  # "user", "group", "member" or "sysusers" (name: the .conf files, or "")
    name: str
    opts: tuple[tuple[str, str], ...] = ()

    def opt(self, key: str) -> str | None:
        return dict(self.opts).get(key)


def parse_accounts(package: str, script: bytes, notes: list[str]) -> list[Account]:
    """The literal adduser/addgroup --system, useradd -r and groupadd calls of a script,
    in script order. Variables set once at the top level with a literal are filled in; a
    call that still needs the shell is skipped with a note."""
    text = script.decode("utf-8", "replace")
    assigned = script_assignments(text)
    found: list[Account] = []
    for _n, tool, args in script_calls(logical_lines(text), ACCOUNT_TOOLS, package, notes):
        args = [VAR_RE.sub(lambda m: assigned.get(m.group(1), m.group(0)), a) for a in args]
        if any("$" in a or "`" in a for a in args) and tool != SYSUSERS:
            notes.append(f"{package}: {tool} call with shell variables skipped")
            continue
        if tool == SYSUSERS:
            confs = [a for a in args if not a.startswith("-") and "$" not in a
                     and "/" not in a and a.endswith(".conf")]
            found.append(Account(package, tool, "sysusers", " ".join(confs)))
            continue
        account = (_adduser(package, tool, args) if tool in ("adduser", "addgroup")
                   else _useradd(package, tool, args))
        if account is None:
            notes.append(f"{package}: {tool} {' '.join(args)!r} not understood; skipped")
        elif account.action:
            found.append(account)
    return found


def _options(args: list[str], values: dict[str, str], flags: dict[str, str]
             ) -> tuple[dict[str, str], list[str]] | None:
    """Options (by field name; "" drops one) and operands of a command line, or None for an
    option the table does not know. A value option takes the next word, or ``--opt=value``."""
    opts: dict[str, str] = {}
    names: list[str] = []
    k = 0
    while k < len(args):
        a = args[k]
        k += 1
        key, eq, value = a.partition("=") if a.startswith("--") else (a, "", "")
        if key in values:
            if not eq:
                if k >= len(args):
                    return None
                value = args[k]
                k += 1
            if values[key]:
                opts[values[key]] = value
        elif key in flags and not eq:
            if flags[key]:
                opts[flags[key]] = "1"
        elif a.startswith("-"):
            return None
        else:
            names.append(a)
    return opts, names


def _adduser(package: str, tool: str, args: list[str]) -> Account | None:
    parsed = _options(args, {f"--{k}": k for k in ADDUSER_VALUES},
                      {"-q": "", **{f"--{k}": k for k in ADDUSER_FLAGS}})
    if parsed is None:
        return None
    opts, names = parsed
    system = "system" in opts
    if tool == "adduser" and len(names) == 2 and not system and "group" not in opts:
        return Account(package, tool, "member", names[0], (("group", names[1]),))
    if len(names) != 1:
        return None
    if not system:
        return Account(package, tool, "", names[0])  # a login user: not a package's business
    action = "group" if tool == "addgroup" else "user"
    return Account(package, tool, action, names[0], tuple(sorted(opts.items())))


def _useradd(package: str, tool: str, args: list[str]) -> Account | None:
    parsed = (_options(args, USERADD_VALUES, USERADD_FLAGS) if tool == "useradd"
              else _options(args, GROUPADD_VALUES, GROUPADD_FLAGS))
    if parsed is None:
        return None
    opts, names = parsed
    if len(names) != 1:
        return None
    if "system" not in opts and ("uid" if tool == "useradd" else "gid") not in opts:
        return Account(package, tool, "", names[0])  # a login account: not a package's
    return Account(package, tool, "group" if tool == "groupadd" else "user", names[0],
                   tuple(sorted(opts.items())))


ADDUSER_DEFAULTS = {"FIRST_SYSTEM_UID": 100, "LAST_SYSTEM_UID": 999,
                    "FIRST_SYSTEM_GID": 100, "LAST_SYSTEM_GID": 999}
NOGROUP = 65534
USERS_GID = 100  # /etc/default/useradd GROUP, for useradd -N


def adduser_conf(text: str | None) -> dict[str, int]:
    """adduser.conf's system id ranges (its defaults when a key is unset)."""
    conf = dict(ADDUSER_DEFAULTS)
    for line in (text or "").splitlines():
        key, eq, value = line.split("#", 1)[0].strip().partition("=")
        if eq and key in conf and value.strip().strip('"').isdigit():
            conf[key] = int(value.strip().strip('"'))
    return conf


@dataclass
class Accounts:
    """passwd, group and membership as the scripts leave them; ``users`` maps a name to
    [uid, gid, gecos, home, shell]. ``created`` records what the scripts added, in order."""

    users: dict[str, list]
    groups: dict[str, int]
    members: dict[str, list[str]] = field(default_factory=dict)
    created_users: list[str] = field(default_factory=list)
    created_groups: list[str] = field(default_factory=list)
    homes: list[tuple[str, int, int]] = field(default_factory=list)
    sysusers: set[str] = field(default_factory=set)  # names systemd-sysusers created

    def _free(self, used: set[int], lo: int, hi: int, down: bool) -> int | None:
        ids = range(hi, lo - 1, -1) if down else range(lo, hi + 1)
        return next((i for i in ids if i not in used), None)

    def free_uid(self, lo: int, hi: int, down: bool = False) -> int | None:
        return self._free({u[0] for u in self.users.values()}, lo, hi, down)

    def free_gid(self, lo: int, hi: int, down: bool = False) -> int | None:
        return self._free(set(self.groups.values()), lo, hi, down)

    def gid_of(self, value: str) -> int | None:
        if value.isdigit():
            return int(value) if int(value) in self.groups.values() else None
        return self.groups.get(value)

    def add_group(self, name: str, gid: int) -> None:
        self.groups[name] = gid
        self.created_groups.append(name)

    def add_user(self, name: str, uid: int, gid: int, gecos: str, home: str, shell: str,
                 create_home: bool) -> None:
        self.users[name] = [uid, gid, gecos, home, shell]
        self.created_users.append(name)
        if create_home and home not in ("/", "/nonexistent") and home.startswith("/"):
            self.homes.append((home, uid, gid))

    def apply(self, a: Account, conf: dict[str, int], notes: list[str]) -> None:
        """What one call does to the account files (as adduser 3.13x and shadow's useradd
        and groupadd decide ids); an existing name is left alone, as the tools do."""
        def fail(why: str) -> None:
            notes.append(f"{a.package}: {a.tool} {a.name}: {why}; skipped")

        if a.action == "member":
            group = a.opt("group") or ""
            if a.name not in self.users or group not in self.groups:
                return fail(f"user or group {group} does not exist")
            if a.name not in self.members.setdefault(group, []):
                self.members[group].append(a.name)
            return None
        lo_u, hi_u = conf["FIRST_SYSTEM_UID"], conf["LAST_SYSTEM_UID"]
        lo_g, hi_g = conf["FIRST_SYSTEM_GID"], conf["LAST_SYSTEM_GID"]
        if a.action == "group":
            if a.name in self.groups:
                return None
            given = a.opt("gid")
            if given is not None and not given.isdigit():
                return fail(f"bad gid {given!r}")
            gid = int(given) if given else self.free_gid(lo_g, hi_g, down=a.tool == "groupadd")
            if gid is None or gid in self.groups.values():
                return fail("no free gid")
            self.add_group(a.name, gid)
            return None
        if a.name in self.users:
            return None
        given_uid = a.opt("uid")
        if given_uid is not None and not given_uid.isdigit():
            return fail(f"bad uid {given_uid!r}")
        if a.tool == "adduser":
            return self._adduser_system(a, conf, fail)
        uid = int(given_uid) if given_uid else self.free_uid(lo_u, hi_u, down=True)
        if uid is None:
            return fail("no free uid")
        if a.opt("gid"):
            gid = self.gid_of(a.opt("gid") or "")
            if gid is None:
                return fail(f"group {a.opt('gid')} does not exist")
        elif a.opt("nogroup"):
            gid = USERS_GID
        elif a.name in self.groups:
            gid = self.groups[a.name]
        else:
            gid = uid if uid not in self.groups.values() else self.free_gid(lo_g, hi_g, True)
            if gid is None:
                return fail("no free gid")
            self.add_group(a.name, gid)
        self.add_user(a.name, uid, gid, a.opt("gecos") or "",
                      a.opt("home") or f"/home/{a.name}", a.opt("shell") or "/bin/sh",
                      bool(a.opt("create")))
        return None

    def _adduser_system(self, a: Account, conf: dict[str, int], fail) -> None:
        make_group = bool(a.opt("group"))
        ingroup, gid_opt, uid_opt = a.opt("ingroup"), a.opt("gid"), a.opt("uid")
        lo_u = int(a.opt("firstuid") or conf["FIRST_SYSTEM_UID"])
        hi_u = int(a.opt("lastuid") or conf["LAST_SYSTEM_UID"])
        lo_g = int(a.opt("firstgid") or conf["FIRST_SYSTEM_GID"])
        hi_g = int(a.opt("lastgid") or conf["LAST_SYSTEM_GID"])
        gid: int | None
        if gid_opt is not None:
            gid = self.gid_of(gid_opt)
            if gid is None:
                return fail(f"gid {gid_opt} does not exist")
        elif ingroup:
            gid = self.groups.get(ingroup)
            if gid is None:
                return fail(f"group {ingroup} does not exist")
        elif make_group:
            gid = None
        else:
            gid = NOGROUP
        if uid_opt is not None:
            uid = int(uid_opt)
            if gid is None:
                gid = uid
        else:
            found = self.free_uid(lo_u, hi_u)
            if found is None:
                return fail("no free uid")
            uid = found
            if gid is None:
                gid = self.free_gid(lo_g, hi_g)
                if gid is None:
                    return fail("no free gid")
        if make_group and gid_opt is None and not ingroup:
            if a.name in self.groups:
                gid = self.groups[a.name]
            else:
                self.add_group(a.name, gid)
        home = a.opt("home") or "/nonexistent"
        create = not a.opt("no-create-home") and not re.match(r"^/+nonexistent(/|$)", home)
        self.add_user(a.name, uid, gid, a.opt("gecos") or a.opt("comment") or "", home,
                      a.opt("shell") or "/usr/sbin/nologin", create)
        return None


SYSUSERS_RANGE = (100, 999)  # Debian's systemd: SYSTEM_ALLOC_UID_MIN, SYSTEM_UID_MAX


@dataclass
class SysItem:
    kind: str  # "u", "g" or "m"
    name: str
    id: str = "-"
    gecos: str = "-"
    home: str = "-"
    shell: str = "-"


def parse_sysusers(text: str, where: str, notes: list[str]) -> list[SysItem]:
    """The u, g and m lines of a sysusers.d file (r lines and specifiers are noted)."""
    items = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            notes.append(f"{where}: unreadable line {line!r}")
            continue
        if words[0] not in ("u", "g", "m") or len(words) < 3 or any("%" in w for w in words):
            notes.append(f"{where}: line {line!r} not applied")
            continue
        items.append(SysItem(words[0], *words[1:6]) if words[0] != "m"
                     else SysItem("m", words[1], words[2]))
    return items


def _sys_apply(acc: Accounts, items: list[SysItem], notes: list[str]) -> None:
    """One systemd-sysusers run (v252's rules): groups first, then users; without a given
    id a group takes its user's uid when free, a user its group's gid, and otherwise both
    count down from 999 through one shared cursor, skipping an id whose uid or gid is held
    by another name."""
    lo, hi = SYSUSERS_RANGE
    cursor = [hi + 1]
    todo_users: dict[int, str] = {}
    todo_groups: dict[int, str] = {}

    def uid_ok(uid: int, name: str) -> bool:
        if uid in todo_users or uid in {u[0] for u in acc.users.values()}:
            return False
        owner = todo_groups.get(uid) or next((g for g, i in acc.groups.items() if i == uid), None)
        return owner is None or owner == name

    def gid_ok(gid: int, name: str, with_uid: bool = True) -> bool:
        if gid in todo_groups or gid in acc.groups.values():
            return False
        if with_uid:
            owner = todo_users.get(gid) or next((u for u, v in acc.users.items()
                                                 if v[0] == gid), None)
            return owner is None or owner == name
        return True

    def next_free(ok) -> int | None:
        while cursor[0] > lo:
            cursor[0] -= 1
            if ok(cursor[0]):
                return cursor[0]
        return None

    def split_id(spec: str) -> tuple[int | None, str | None]:
        uid, _, grp = spec.partition(":")
        return (int(uid) if uid.isdigit() else None), (grp or None)

    def add_group(name: str, gid: int | None, uid: int | None) -> int | None:
        if name in acc.groups:
            return acc.groups[name]
        if gid is not None and not gid_ok(gid, name, False):
            gid = None
        if gid is None and uid is not None and gid_ok(uid, name):
            gid = uid
        if gid is None:
            gid = next_free(lambda i: gid_ok(i, name))
            if gid is None:
                notes.append(f"systemd-sysusers: no free gid for {name}")
                return None
        todo_groups[gid] = name
        acc.add_group(name, gid)
        acc.sysusers.add(name)
        return gid

    groups = [i for i in items if i.kind == "g"]
    users = [i for i in items if i.kind == "u"]
    for m in (i for i in items if i.kind == "m"):
        if m.id not in {g.name for g in groups}:
            groups.append(SysItem("g", m.id))
    seen: set[str] = set()
    for g in groups:
        if g.name not in seen:
            seen.add(g.name)
            gid, _ = split_id(g.id)
            add_group(g.name, gid, None)
    for u in users:
        if u.name in acc.users:
            continue
        uid, grp = split_id(u.id)
        gid = int(grp) if grp and grp.isdigit() else None
        if gid is None:
            gid = add_group(grp or u.name, None, uid)
            if gid is None:
                continue
        if uid is not None and not uid_ok(uid, u.name):
            uid = None
        if uid is None and uid_ok(gid, u.name):
            uid = gid
        if uid is None:
            uid = next_free(lambda i, n=u.name: uid_ok(i, n))
            if uid is None:
                notes.append(f"systemd-sysusers: no free uid for {u.name}")
                continue
        todo_users[uid] = u.name
        acc.add_user(u.name, uid, gid, "" if u.gecos == "-" else u.gecos,
                     "/" if u.home == "-" else u.home,
                     "/usr/sbin/nologin" if u.shell == "-" else u.shell, False)
        acc.sysusers.add(u.name)
    for m in (i for i in items if i.kind == "m"):
        if m.name in acc.users and m.id in acc.groups \
                and m.name not in acc.members.setdefault(m.id, []):
            acc.members[m.id].append(m.name)


def apply_sysusers(acc: Accounts, confs: list[tuple[str, str]], notes: list[str]) -> None:
    """A systemd-sysusers call over the given (name, text) sysusers.d files."""
    items = [i for name, text in confs for i in parse_sysusers(text, name, notes)]
    _sys_apply(acc, items, notes)

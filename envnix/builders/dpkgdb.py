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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import _treewrite as T

ALIASED = ("bin/", "sbin/", "lib/", "lib32/", "lib64/", "libx32/")
SCRIPTS = frozenset({"preinst", "postinst", "prerm", "postrm", "config"})
Find = Callable[[str], "str | None"]
"""Where a canonical image path is in the trees (the file on disk), or None."""
ALT_NAME_RE = re.compile(r"^[A-Za-z0-9_.+@-][A-Za-z0-9_.+@:-]{0,127}$")


def canonical(path: str) -> str:
    """An absolute image path as stored in the trees: no leading "/", merged /usr."""
    rel = T.safe_relpath(path.lstrip("/"), "alternatives path")
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


# ------------------------------------------------------------------------------ accounts

SYSUSERS = "systemd-sysusers"
ACCOUNT_TOOLS = ("adduser", "addgroup", "useradd", "groupadd", SYSUSERS)
ASSIGN_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(\S+)\s*$")
VAR_RE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
REDIRECT_RE = re.compile(r"^[0-9]*[<>]")
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


# ------------------------------------------------------------------------------ diversions

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

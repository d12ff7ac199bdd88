"""Nix builder: the "metadata" package tree that maintainer scripts would have produced,
or (``skeleton=1``) the root skeleton with the merged-/usr links.

Environment:
  out       output directory (Nix's $out)
  trees     package trees to describe: a JSON list of store paths, or the path of a file
            holding that JSON list (for Nix's passAsFile). Optional with skeleton=1.
  workdir   optional image path of an empty working directory to create (e.g.
            /home/envd/quickstart). It and its parents below a user's home are owned by
            that user.
  users     optional JSON list of [name, uid, gid, home, shell]; replaces a default of the
            same name. Defaults: root 0:0 /root (shell /bin/bash if a tree has usr/bin/bash,
            else /bin/sh) and nobody 65534:65534 /nonexistent /usr/sbin/nologin.
            Each given user except root gets its home directory (owned by it).
  aptSources optional JSON list of the lock's apt sources ({uri, suite, components,
            snapshot?}); with apt in a tree, written as etc/apt/sources.list.d/envnix.sources
  aptAuto   optional JSON list of package names apt should see as automatically installed
            (var/lib/apt/extended_states), with apt in a tree
  skeleton  "1": build the skeleton instead (see below); users/workdir are ignored.
  pkgName, pkgVersion   optional, for meta.json (default "meta"/"skeleton" and "0").

Metadata mode writes, under $out/root:
  etc/passwd, etc/group   sorted by id; groups: root, one per user gid, nogroup 65534; with
                          base-passwd in a tree, its passwd.master and group.master users and
                          groups first (what update-passwd installs), then the given users,
                          then the system accounts the scripts' literal adduser/useradd/
                          groupadd calls add (dpkgdb.Accounts)
  etc/shadow, etc/gshadow with passwd installed: a line per account (shadowconfig on)
  var/lib/dpkg/status     every deb tree's control stanza with "Status: install ok installed"
                          after Package and its Conffiles, sorted by package name (only if
                          there are deb trees)
  var/lib/dpkg/info/      each package's file list, md5sums, conffiles and maintainer scripts
  etc/alternatives/, var/lib/dpkg/alternatives/, the alternatives' links
                          update-alternatives in auto mode, from the postinst scripts' literal
                          --install calls (see dpkgdb.py)
  var/lib/dpkg/diversions the scripts' dpkg-divert calls (and dash's claim_binsh), with the
                          renames and links they make
  etc/ld.so.cache         with libc-bin: what its ldconfig writes (see ldcache.py), and the
                          SONAME links ldconfig adds
  etc/ssl/certs/ca-certificates.crt
                          all usr/share/ca-certificates/**/*.crt of the trees, sorted by path
                          (what update-ca-certificates would have made; only if any exist),
                          with its NAME.pem and HASH.0 links when ca-certificates is there
  etc/apt/sources.list.d/envnix.sources, var/lib/apt/lists/partial and
  var/cache/apt/archives/partial (0700, owned by _apt)
                          with apt in a tree (see apt_state)
  usr/bin/sh -> dash      if no tree has usr/bin/sh but one has usr/bin/dash
  tmp (mode 1777), root (0700), the users' homes and the workdir
Skeleton mode writes: bin -> usr/bin, sbin -> usr/sbin, lib -> usr/lib, lib64 -> usr/lib64
(plus lib32/libx32 -> usr/... when a tree has usr/lib32 or usr/libx32), and the dirs usr/bin
usr/sbin usr/lib usr/lib64 etc tmp(1777) var/tmp(1777) root(0700) home proc sys dev run.
$out/meta.json is {"kind": "meta", ...} with the non-default modes/owners.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from dataclasses import dataclass

import _builder as B
import _treewrite as T
import cacerts
import dpkgdb
import ldcache
import pamconfig
import services

CA_TOP = "usr/share/ca-certificates/"
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,127}$")
USER_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")
MAX_ID = 2**32 - 2
STATUS_LINE = "Status: install ok installed"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str


@dataclass(frozen=True)
class Tree:
    path: str
    kind: str

    @property
    def root(self) -> str:
        return os.path.join(self.path, "root")

    def inside(self, rel: str) -> str | None:
        """``root/rel`` if its parent directories are real dirs of this tree (no symlinks)."""
        path = os.path.join(self.root, rel)
        parent = os.path.dirname(path)
        if os.path.realpath(parent) != os.path.join(os.path.realpath(self.root),
                                                    os.path.dirname(rel)).rstrip("/"):
            return None
        return path

    def has(self, rel: str) -> bool:
        path = self.inside(rel)
        return path is not None and os.path.lexists(path)


# ------------------------------------------------------------------------------ inputs


def load_trees(required: bool) -> list[Tree]:
    raw = B.getenv("trees", "" if not required else None).strip()
    if not raw:
        return []
    paths = B.json_path_list(raw, "trees")
    trees = []
    for p in sorted(set(paths)):
        try:
            with open(os.path.join(p, "meta.json"), encoding="utf-8") as f:
                meta = json.load(f)
        except FileNotFoundError:
            raise B.BuilderError(f"{p} is not a package tree (no meta.json)") from None
        trees.append(Tree(p, str(meta.get("kind", ""))))
    return trees


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
            text = _read_regular(path).decode("utf-8")
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


def image_rel(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise B.BuilderError(f"{what} {path!r} must be an absolute image path")
    return T.safe_relpath(path[1:] or ".", what)


# ------------------------------------------------------------------------------ outputs


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


def _gshadow_password(group: str, acc: dpkgdb.Accounts) -> str:
    if group in acc.sysusers:
        return "!*"
    return "!" if group in acc.created_groups else "*"


def sysusers_confs(trees: list[Tree], find: dpkgdb.Find, names: list[str]
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
            out.append((name, _read_regular(path).decode("utf-8", "replace")))
    return out


def write_accounts(trees: list[Tree], debs: list[tuple[Tree, str, dpkgdb.DebInfo]],
                   users: list[User], find: dpkgdb.Find, writer: T.TreeWriter
                   ) -> tuple[list[User], dict[str, int]]:
    """etc/passwd and etc/group (base-passwd's masters, the image's users, then the system
    accounts the packages' scripts add: see dpkgdb.Accounts), and with passwd installed
    etc/shadow and etc/gshadow. Returns every user, and every group's id by name."""
    base = groups_for(users, master_groups(trees))
    acc = dpkgdb.Accounts({u.name: [u.uid, u.gid, u.gecos, u.home, u.shell] for u in users},
                          {name: gid for name, gid in base})
    notes: list[str] = []
    conf_path = find("etc/adduser.conf")
    conf = dpkgdb.adduser_conf(_read_regular(conf_path).decode("utf-8", "replace")
                               if conf_path and os.path.isfile(conf_path) else None)
    tools = {"adduser": "usr/sbin/adduser", "addgroup": "usr/sbin/addgroup",
             "useradd": "usr/sbin/useradd", "groupadd": "usr/sbin/groupadd",
             dpkgdb.SYSUSERS: "usr/bin/systemd-sysusers"}
    for _t, _control, info in sorted(debs, key=lambda d: d[2].info_name):
        for script in ("preinst", "postinst"):
            for call in dpkgdb.parse_accounts(info.name, info.files.get(script, b""), notes):
                if find(tools[call.tool]) is None:
                    notes.append(f"{info.name}: {call.tool} is not installed; "
                                 f"{call.action} {call.name} not added")
                elif call.action == "sysusers":
                    dpkgdb.apply_sysusers(acc, sysusers_confs(trees, find, call.name.split()),
                                          notes)
                else:
                    acc.apply(call, conf, notes)
    everyone = sorted((User(n, *v) for n, v in acc.users.items()), key=lambda u: (u.uid, u.name))
    groups = sorted(((n, g) for n, g in acc.groups.items()), key=lambda x: (x[1], x[0]))
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


def finder(trees: list[Tree]) -> dpkgdb.Find:
    """The file behind a canonical image path in the first tree that has it (or None)."""
    def find(rel: str) -> str | None:
        for t in trees:
            path = t.inside(rel)
            if path is not None and os.path.lexists(path):
                return path
        return None
    return find


def control_fields(control: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in control.splitlines():
        if line and line[0] not in " \t":
            k, _, v = line.partition(":")
            fields.setdefault(k.strip().lower(), v.strip())
    return fields


def deb_infos(trees: list[Tree]) -> list[tuple[Tree, str, dpkgdb.DebInfo]]:
    """(tree, control text, dpkg info) of every deb tree."""
    out = []
    for t in trees:
        if t.kind != "deb":
            continue
        with open(os.path.join(t.path, "control"), encoding="utf-8") as f:
            control = f.read()
        out.append((t, control, dpkgdb.load_info(t.path, control_fields(control))))
    return out


def dpkg_status(debs: list[tuple[Tree, str, dpkgdb.DebInfo]], find: dpkgdb.Find
                ) -> bytes | None:
    stanzas: dict[tuple[str, str], tuple[str, str]] = {}
    for t, control, info in debs:
        (pkg, arch, ver), text = status_stanza(control, t.path,
                                               dpkgdb.conffiles_field(info, find))
        old = stanzas.get((pkg, arch))
        if old is not None and old[1] != text:
            raise B.BuilderError(f"two different deb trees for package {pkg}:{arch}")
        stanzas[(pkg, arch)] = (ver, text)
    if not stanzas:
        return None
    return "".join(text + "\n" for _, (_, text) in sorted(stanzas.items())).encode("utf-8")


def write_dpkg_database(debs: list[tuple[Tree, str, dpkgdb.DebInfo]], find: dpkgdb.Find,
                        writer: T.TreeWriter) -> list[tuple[str, str]]:
    """info/ files of every package, then alternatives in auto mode (see dpkgdb.py); returns
    the alternatives' links (rel, target)."""
    notes: list[str] = []
    choices: list[dpkgdb.Choice] = []
    written: set[str] = set()
    # Database layout 1: "PKG:ARCH.list" for Multi-Arch: same packages (dpkg reads the
    # plain names without this file).
    writer.add_file("var/lib/dpkg/info/format", b"1\n", 0o644)
    for _t, _control, info in sorted(debs, key=lambda d: d[2].info_name):
        if info.info_name in written:
            continue
        written.add(info.info_name)
        for fname, data, mode in dpkgdb.info_files(info):
            writer.add_file(f"var/lib/dpkg/info/{fname}", data, mode)
        if "postinst" in info.files:
            choices += dpkgdb.parse_alternatives(info.name, info.files["postinst"], notes)
    writer.add_file("var/lib/dpkg/arch", b"amd64\n", 0o644)
    for name, data in sorted(dpkgdb.triggers([d[2] for d in debs]).items()):
        writer.add_file(f"var/lib/dpkg/triggers/{name}", data, 0o644)
    links, db = dpkgdb.alternatives(choices, find, notes)
    for name, data in sorted(db.items()):
        writer.add_file(f"var/lib/dpkg/alternatives/{name}", data, 0o644)
    for rel, target in links:
        writer.add_symlink(rel, target)
    for note in notes:
        writer.note(note)
    return links


def write_diversions(debs: list[tuple[Tree, str, dpkgdb.DebInfo]], find: dpkgdb.Find,
                     writer: T.TreeWriter) -> set[str]:
    """var/lib/dpkg/diversions from the scripts' dpkg-divert calls (see dpkgdb.py), with
    what the calls do to the files: a --rename diversion puts the other package's file at
    the diverted name (and the diverting package's own file, if it ships one, at the path);
    a helper's link is made where nothing else is. Returns the paths written."""
    notes: list[str] = []
    calls: list[tuple[str, dpkgdb.Diversion]] = []
    for _t, _control, info in sorted(debs, key=lambda d: d[2].info_name):
        for script in ("preinst", "postinst"):
            calls += dpkgdb.parse_diversions(info.name, info.files.get(script, b""), notes)
    active = dpkgdb.diversions(calls, notes)
    writer.add_file("var/lib/dpkg/diversions", dpkgdb.diversions_file(active), 0o644)
    written: set[str] = set()
    for d in reversed(active):
        rel = dpkgdb.canonical(d.path)
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
        writer.add_file(rel, _read_regular(src), os.lstat(src).st_mode & 0o7777)


def _apply_rename(debs: list[tuple[Tree, str, dpkgdb.DebInfo]], d: dpkgdb.Diversion,
                  rel: str, writer: T.TreeWriter, written: set[str], notes: list[str]) -> None:
    shipped = [(info.name, t.inside(rel)) for t, _c, info in debs if t.has(rel)]
    other = next((p for name, p in shipped if name != d.package and p), None)
    own = next((p for name, p in shipped if name == d.package and p), None)
    target = dpkgdb.canonical(d.divert_to)
    if other is None or target in written:
        return
    _copy_entry(other, target, writer)
    written.add(target)
    if own is not None:
        _copy_entry(own, rel, writer)
        written.add(rel)
    else:
        notes.append(f"diversion of {d.path}: the lower layer's file stays at the path")


def image_view(trees: list[Tree], links: dict[str, str]) -> ldcache.View:
    """The image root as the trees, the merged-/usr links and *links* (rel -> target, the
    links this tree adds) make it, for scans that follow links as the running system does."""
    aliases = {a.rstrip("/"): "usr/" + a.rstrip("/") for a in dpkgdb.ALIASED}

    def node(rel: str) -> ldcache.Node | None:
        if rel in aliases:
            return ldcache.Node("link", aliases[rel])
        if rel in links:
            return ldcache.Node("link", links[rel])
        for t in trees:
            path = t.inside(rel)
            if path is None:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                return ldcache.Node("link", os.readlink(path))
            kind = "dir" if stat.S_ISDIR(st.st_mode) else \
                "file" if stat.S_ISREG(st.st_mode) else "other"
            return ldcache.Node(kind, path)
        return None

    def listdir(rel: str) -> list[str]:
        names: set[str] = set(aliases) if not rel else set()
        for t in trees:
            path = t.inside(rel) if rel else t.root
            if path is not None and os.path.isdir(path) and not os.path.islink(path):
                names.update(os.listdir(path))
        names.update(k.rpartition("/")[2] for k in links if k.rpartition("/")[0] == rel)
        return sorted(names)

    return ldcache.View(node, listdir)


def ld_cache(trees: list[Tree], find: dpkgdb.Find, links: list[tuple[str, str]],
             writer: T.TreeWriter) -> None:
    """etc/ld.so.cache as libc-bin's ldconfig writes it when libc6 is configured (and the
    SONAME links it would add), so a library in an /etc/ld.so.conf.d directory is found."""
    ldconfig = find("usr/sbin/ldconfig")
    if ldconfig is None or not os.path.isfile(ldconfig) or find("etc/ld.so.cache"):
        return
    view = image_view(trees, dict(links))
    notes: list[str] = []
    entries, soname_links = ldcache.scan(view, notes)
    for rel, target in soname_links:
        writer.add_symlink(rel, target)
    gen = ldcache.generator(_read_regular(ldconfig))
    writer.add_file("etc/ld.so.cache", ldcache.cache_bytes(entries, gen), 0o644)
    for note in notes:
        writer.note(note)


def _read_regular(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def ca_bundle(certs: dict[str, bytes]) -> bytes | None:
    """Concatenated usr/share/ca-certificates/**/*.crt (``ca_certificates``), sorted by path."""
    if not certs:
        return None
    return b"".join(data for _, data in sorted(certs.items()))


def ca_certificates(trees: list[Tree]) -> dict[str, bytes]:
    """usr/share/ca-certificates/**/*.crt of the trees by path (regular files only)."""
    certs: dict[str, bytes] = {}
    for t in trees:
        top = t.inside("usr/share/ca-certificates")
        if top is None or not os.path.isdir(top) or os.path.islink(top):
            continue
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames.sort()
            for fn in sorted(filenames):
                if not fn.endswith(".crt"):
                    continue
                full = os.path.join(dirpath, fn)
                if not stat.S_ISREG(os.lstat(full).st_mode):
                    continue
                rel = os.path.relpath(full, t.root)
                data = _read_regular(full)
                if not data.endswith(b"\n"):
                    data += b"\n"
                if rel in certs and certs[rel] != data:
                    raise B.BuilderError(f"two trees provide different {rel}")
                certs[rel] = data
    return certs


def ca_links(shipped: dict[str, bytes], find: dpkgdb.Find, writer: T.TreeWriter) -> None:
    """update-ca-certificates' NAME.pem and HASH.N links in etc/ssl/certs (see cacerts.py)."""
    if find("usr/sbin/update-ca-certificates") is None:
        return
    certs = {rel.removeprefix(CA_TOP): data for rel, data in shipped.items()}
    links, notes = cacerts.links(certs)
    for rel, target in links:
        if find(rel) is None:
            writer.add_symlink(rel, target)
    for note in notes:
        writer.note(note)


BASE_FILES_COPIES = (("dot.profile", "root/.profile"), ("dot.bashrc", "root/.bashrc"),
                     ("profile", "etc/profile"), ("motd", "etc/motd"))
BASE_FILES_DIRS = (("mnt", 0o755, 0), ("srv", 0o755, 0), ("opt", 0o755, 0),
                   ("etc/opt", 0o755, 0), ("var/opt", 0o755, 0), ("media", 0o755, 0),
                   ("var/mail", 0o2775, 8), ("run/lock", 0o1777, 0),
                   *((f"usr/local/{d}", 0o755, 0) for d in (
                       "share/man", "bin", "games", "lib", "include", "sbin", "src", "etc")))
# base-files ships var/run and var/lock as directories and its postinst turns them into links
# to /run: a layer above cannot replace a directory of a layer below, so they stay directories.
BASE_FILES_LINKS = (("var/spool/mail", "../mail"), ("usr/local/man", "share/man"))
UTMP_GID = 43
BASE_FILES_LOGS = (("var/log/wtmp", 0o664), ("var/log/btmp", 0o660), ("var/log/lastlog", 0o664))


def base_system(trees: list[Tree], find: dpkgdb.Find, writer: T.TreeWriter) -> None:
    """What the postinst of base-files and debianutils do on a first install (their scripts
    only copy shipped defaults and make directories, so the result is a function of the
    trees): /etc/profile, /etc/motd, root's dot files, mnt srv opt media..., the login
    records, the dpkg origins link, /etc/shells and update-shells' state."""
    if find("usr/share/base-files/profile") is not None:
        for src, dest in BASE_FILES_COPIES:
            path = find(f"usr/share/base-files/{src}")
            if path is not None and find(dest) is None and os.path.isfile(path):
                writer.add_file(dest, _read_regular(path), 0o644)
        for rel, mode, gid in BASE_FILES_DIRS:
            if find(rel) is None:
                writer.add_dir(rel, mode, 0, gid)
        for rel, target in BASE_FILES_LINKS:
            if find(rel) is None:
                writer.add_symlink(rel, target)
        for rel, mode in BASE_FILES_LOGS:
            if find(rel) is None:
                writer.add_file(rel, b"", mode, 0, UTMP_GID)
        info = find("usr/share/base-files/info.dir")
        if info is not None and find("usr/share/info") is not None and \
                find("usr/share/info/dir") is None:
            writer.add_file("usr/share/info/dir", _read_regular(info), 0o644)
        if find("etc/dpkg/origins/default") is None:
            for origin in ("debian", "ubuntu"):
                if find(f"etc/dpkg/origins/{origin}") is not None:
                    writer.add_symlink("etc/dpkg/origins/default", origin)
                    break
    # libc-bin, readline-common and libpam-modules install these defaults when absent
    for src, dest, mode in (("usr/share/libc-bin/nsswitch.conf", "etc/nsswitch.conf", 0o644),
                            ("usr/share/readline/inputrc", "etc/inputrc", 0o644)):
        path = find(src)
        if path is not None and find(dest) is None and os.path.isfile(path):
            writer.add_file(dest, _read_regular(path), mode)
    if find("usr/lib/x86_64-linux-gnu/security/pam_env.so") is not None:
        for dest, mode in (("etc/environment", 0o644), ("etc/security/opasswd", 0o600)):
            if find(dest) is None:
                writer.add_file(dest, b"", mode)
    # python3.X's postinst makes the site directory pip installs into
    pythons = sorted({n for t in trees if (d := t.inside("usr/bin")) and os.path.isdir(d)
                      for n in os.listdir(d) if re.fullmatch(r"python3\.[0-9]+", n)})
    for name in pythons:
        if find(f"usr/local/lib/{name}/dist-packages") is None:
            writer.add_dir(f"usr/local/lib/{name}/dist-packages", 0o755)
    shells = find("usr/share/debianutils/shells")
    if shells is not None and find("etc/shells") is None:
        text = _read_regular(shells).decode("utf-8")
        listed = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("/")]
        files: dict[str, str] = {}  # each shell package ships its own shells.d file
        for t in trees:
            d = t.inside("usr/share/debianutils/shells.d")
            if d is not None and os.path.isdir(d) and not os.path.islink(d):
                for n in os.listdir(d):
                    if os.path.isfile(os.path.join(d, n)):
                        files.setdefault(n, os.path.join(d, n))
        extra = [ln.strip() for _, path in sorted(files.items())
                 for ln in _read_regular(path).decode("utf-8").splitlines()
                 if ln.strip().startswith("/")]
        merged = list(dict.fromkeys([*listed, *extra]))
        # update-shells on a merged-/usr system lists each /bin or /sbin shell under /usr too
        merged += [f"/usr{sh}" for sh in merged
                   if sh.startswith(("/bin/", "/sbin/")) and f"/usr{sh}" not in merged]
        header = [ln for ln in text.splitlines() if ln.startswith("#")]
        writer.add_file("etc/shells", ("\n".join([*header, *merged]) + "\n").encode(), 0o644)
        state = [x for sh in dict.fromkeys([*listed, *extra])
                 for x in (sh, *([f"/usr{sh}"] if sh.startswith(("/bin/", "/sbin/")) else []))]
        if find("var/lib/shells.state") is None:
            writer.add_file("var/lib/shells.state",
                            ("\n".join(dict.fromkeys(state)) + "\n").encode(), 0o644)
    if find("usr/share/ca-certificates") is not None and \
            find("usr/local/share/ca-certificates") is None:
        writer.add_dir("usr/local/share/ca-certificates", 0o755)  # ca-certificates' postinst


KEYRINGS = ("usr/share/keyrings/debian-archive-keyring.gpg",
            "usr/share/keyrings/ubuntu-archive-keyring.gpg")
SOURCE_WORD_RE = re.compile(r"^[A-Za-z0-9./][A-Za-z0-9._~:/?&=+%@!,;*-]*$")


def apt_sources_text(raw: str, find: dpkgdb.Find) -> bytes | None:
    """deb822 sources for the lock's apt sources (``aptSources``: JSON list of {uri, suite,
    components, snapshot?}), so apt-get in the image reads the archive the image was locked
    from; None for an empty list. A snapshot's Release files have expired long ago: apt
    must not check Valid-Until for it."""
    given = B.json_input(raw, "aptSources")
    if not isinstance(given, list):
        raise B.BuilderError("aptSources: must be a JSON list")
    keyring = next((k for k in KEYRINGS if find(k) is not None), None)
    stanzas = []
    for src in given:
        if not isinstance(src, dict):
            raise B.BuilderError(f"aptSources: {src!r} is not an object")
        uri, suite = src.get("uri"), src.get("suite")
        comps = src.get("components", [])
        words = [uri, suite, *comps] if isinstance(comps, list) else [None]
        if not all(isinstance(w, str) and SOURCE_WORD_RE.match(w) for w in words):
            raise B.BuilderError(f"aptSources: bad source {src!r}")
        lines = ["Types: deb", f"URIs: {uri}", f"Suites: {suite}"]
        if comps:
            lines.append(f"Components: {' '.join(comps)}")
        if keyring and not suite.endswith("/"):
            lines.append(f"Signed-By: /{keyring}")
        if src.get("snapshot"):
            lines.append("Check-Valid-Until: no")
        stanzas.append("\n".join(lines) + "\n")
    return "\n".join(stanzas).encode("utf-8") if stanzas else None


# apt runs its download methods as _apt and makes these its own (0700) on first use, as a
# Debian system that ran apt has them (apt's .deb ships them root:root 0755).
APT_PARTIAL_DIRS = ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial")


def apt_state(users: list[User], find: dpkgdb.Find, writer: T.TreeWriter) -> None:
    """With apt in the trees: its sources (the ``aptSources`` env), which packages came in
    as dependencies (``aptAuto``: extended_states) and the download directories owned by
    _apt (the user base-passwd lists and apt's postinst would add)."""
    if find("usr/bin/apt-get") is None:
        return
    raw = B.getenv("aptSources", "").strip()
    text = apt_sources_text(raw, find) if raw else None
    if text is not None:
        writer.add_file("etc/apt/sources.list.d/envnix.sources", text, 0o644)
    auto = B.json_input(B.getenv("aptAuto", "").strip() or "[]", "aptAuto")
    if not isinstance(auto, list) or not all(isinstance(n, str) and PACKAGE_RE.match(n)
                                             for n in auto):
        raise B.BuilderError("aptAuto: must be a JSON list of package names")
    if auto:  # as apt writes it, with the native architecture for every package
        writer.add_file("var/lib/apt/extended_states", "".join(
            f"Package: {n}\nArchitecture: amd64\nAuto-Installed: 1\n\n"
            for n in sorted(auto)).encode(), 0o644)
    apt_user = next((u for u in users if u.name == "_apt"), None)
    if apt_user is not None:
        for rel in APT_PARTIAL_DIRS:
            if find(rel) is not None:
                writer.add_dir(rel, 0o700, apt_user.uid, 0)


def pam_inputs(trees: list[Tree], find: dpkgdb.Find) -> dict[str, str]:
    """The pam-auth-update profiles and templates in the trees (see pamconfig.py), by path;
    nothing without libpam-runtime's templates."""
    if find(f"{pamconfig.TEMPLATES_DIR}/common-auth") is None:
        return {}
    read: dict[str, str] = {}
    for t in trees:
        d = t.inside(pamconfig.PROFILES_DIR)
        if d is not None and os.path.isdir(d) and not os.path.islink(d):
            for name in sorted(os.listdir(d)):
                read.setdefault(f"{pamconfig.PROFILES_DIR}/{name}", "")
    for typ in pamconfig.TYPES:
        read[f"{pamconfig.TEMPLATES_DIR}/common-{typ}"] = ""
    for rel in list(read):
        path = find(rel)
        if path is None or not os.path.isfile(path) or os.path.islink(path):
            del read[rel]
        else:
            read[rel] = _read_regular(path).decode("utf-8", "replace")
    return read


def build_meta(out: str, writer: T.TreeWriter) -> None:
    trees = load_trees(required=True)
    users, given = load_users(trees)
    find = finder(trees)
    debs = deb_infos(trees)

    writer.add_dir("tmp", 0o1777)
    writer.add_dir("root", 0o700)
    users, groups = write_accounts(trees, debs, users, find, writer)

    certs = ca_certificates(trees)  # read once: the bundle, its links and the .conf list
    status = dpkg_status(debs, find)
    diverted: set[str] = set()
    if status is not None:
        writer.add_file("var/lib/dpkg/status", status, 0o644)
        alt_links = write_dpkg_database(debs, find, writer)
        diverted = write_diversions(debs, find, writer)
        ld_cache(trees, find, alt_links, writer)
        ca_names = [rel.removeprefix(CA_TOP) for rel in certs]
        notes: list[str] = []
        services.write_services([d[2] for d in debs], find, ca_names,
                                ({u.name: u.uid for u in users}, groups), writer, notes)
        for rel, data in sorted(pamconfig.pam_files(pam_inputs(trees, find), notes).items()):
            writer.add_file(rel, data, 0o644)
        for note in notes:
            writer.note(note)
    base_system(trees, find, writer)
    apt_state(users, find, writer)
    bundle = ca_bundle(certs)
    if bundle is not None:
        writer.add_file("etc/ssl/certs/ca-certificates.crt", bundle, 0o644)
        ca_links(certs, find, writer)
    if not any(t.has("usr/bin/sh") for t in trees) and any(t.has("usr/bin/dash")
                                                             for t in trees) \
            and "usr/bin/sh" not in diverted:
        writer.add_symlink("usr/bin/sh", "dash")

    homes: dict[str, User] = {}
    for u in users:
        # base-passwd's system users have their homes from packages (or none): only the
        # users the image asks for get one made here.
        if u.name == "root" or u.name not in given or u.home in ("/", "/nonexistent"):
            continue
        rel = image_rel(u.home, f"home of {u.name}")
        if rel and rel not in homes:
            homes[rel] = u
    for rel, u in sorted(homes.items()):
        writer.add_dir(rel, 0o755, u.uid, u.gid)

    workdir = B.getenv("workdir", "")
    if workdir:
        rel = image_rel(workdir, "workdir")
        if not rel:
            raise B.BuilderError("workdir must not be /")
        owner_home = max((h for h in homes if rel == h or rel.startswith(h + "/")), key=len,
                         default=None)
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if owner_home is not None and len(p) > len(owner_home):
                u = homes[owner_home]
                writer.add_dir(p, 0o755, u.uid, u.gid)
            elif i == len(parts) and owner_home is None:
                writer.add_dir(p, 0o755)


def build_skeleton(writer: T.TreeWriter) -> None:
    trees = load_trees(required=False)
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "home", "proc", "sys",
              "dev", "run"):
        writer.add_dir(d, 0o755)
    writer.add_dir("tmp", 0o1777)
    writer.add_dir("var/tmp", 0o1777)
    writer.add_dir("root", 0o700)
    links = ["bin", "sbin", "lib", "lib64"]
    links += [d for d in ("lib32", "libx32") if any(t.has(f"usr/{d}") for t in trees)]
    for link in links:
        writer.add_symlink(link, f"usr/{link}")


def main() -> None:
    out = B.getenv("out")
    skeleton = B.getenv("skeleton", "") not in ("", "0")
    name = B.getenv("pkgName", "skeleton" if skeleton else "meta")
    version = B.getenv("pkgVersion", "0")
    B.set_context(f"{'skeleton' if skeleton else 'meta'} {name}")
    os.makedirs(out, exist_ok=True)
    writer = T.TreeWriter(os.path.join(out, "root"), what="path")
    if skeleton:
        build_skeleton(writer)
    else:
        build_meta(out, writer)
    B.write_meta(out, "meta", name, version, writer.modes, writer.notes)


if __name__ == "__main__":
    B.main_wrapper(main, "mkmeta")
    sys.exit(0)

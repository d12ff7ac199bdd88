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
            Each user except root/nobody gets its home directory (owned by it).
  skeleton  "1": build the skeleton instead (see below); users/workdir are ignored.
  pkgName, pkgVersion   optional, for meta.json (default "meta"/"skeleton" and "0").

Metadata mode writes, under $out/root:
  etc/passwd, etc/group   sorted by id; groups: root, one per user gid, nogroup 65534
  var/lib/dpkg/status     every deb tree's control stanza with "Status: install ok installed"
                          after Package, sorted by package name (only if there are deb trees)
  etc/ssl/certs/ca-certificates.crt
                          all usr/share/ca-certificates/**/*.crt of the trees, sorted by path
                          (what update-ca-certificates would have made; only if any exist)
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

import _archive as A

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
    raw = A.getenv("trees", "" if not required else None).strip()
    if not raw:
        return []
    paths = A.json_path_list(raw, "trees")
    trees = []
    for p in sorted(set(paths)):
        try:
            with open(os.path.join(p, "meta.json"), encoding="utf-8") as f:
                meta = json.load(f)
        except FileNotFoundError:
            raise A.BuilderError(f"{p} is not a package tree (no meta.json)") from None
        trees.append(Tree(p, str(meta.get("kind", ""))))
    return trees


def _check_field(value: object, what: str) -> str:
    if not isinstance(value, str) or any(c in value for c in ":\n\0"):
        raise A.BuilderError(f"users: bad {what} {value!r}")
    return value


def _check_id(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise A.BuilderError(f"users: bad {what} {value!r}")
    return value


def load_users(trees: list[Tree]) -> list[User]:
    root_shell = "/bin/bash" if any(t.has("usr/bin/bash") for t in trees) else "/bin/sh"
    users = {
        "root": User("root", 0, 0, "root", "/root", root_shell),
        "nobody": User("nobody", 65534, 65534, "nobody", "/nonexistent", "/usr/sbin/nologin"),
    }
    raw = A.getenv("users", "").strip()
    if raw:
        try:
            given = json.loads(raw)
        except ValueError as exc:
            raise A.BuilderError(f"users: not JSON: {exc}") from None
        if not isinstance(given, list):
            raise A.BuilderError("users: must be a JSON list of [name, uid, gid, home, shell]")
        seen: set[str] = set()
        for item in given:
            if not isinstance(item, list) or len(item) != 5:
                raise A.BuilderError(f"users: {item!r} is not [name, uid, gid, home, shell]")
            name = _check_field(item[0], "name")
            if not USER_NAME_RE.match(name):
                raise A.BuilderError(f"users: bad user name {name!r}")
            if name in seen:
                raise A.BuilderError(f"users: {name!r} given twice")
            seen.add(name)
            home = _check_field(item[3], "home")
            shell = _check_field(item[4], "shell")
            if not home.startswith("/") or not shell.startswith("/"):
                raise A.BuilderError(f"users: home and shell of {name!r} must be absolute")
            gecos = users[name].gecos if name in users else ""
            users[name] = User(name, _check_id(item[1], "uid"), _check_id(item[2], "gid"),
                               gecos, home, shell)
    return sorted(users.values(), key=lambda u: (u.uid, u.name))


def groups_for(users: list[User]) -> list[tuple[str, int]]:
    groups = {0: "root", 65534: "nogroup"}
    for u in users:
        if u.gid in groups:
            continue
        if u.name in groups.values():
            raise A.BuilderError(f"users: group name {u.name!r} is already used by another gid")
        groups[u.gid] = u.name
    return [(name, gid) for gid, name in sorted(groups.items())]


def image_rel(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise A.BuilderError(f"{what} {path!r} must be an absolute image path")
    return A.safe_relpath(path[1:] or ".", what)


# ------------------------------------------------------------------------------ outputs


def passwd_text(users: list[User]) -> bytes:
    return "".join(f"{u.name}:x:{u.uid}:{u.gid}:{u.gecos}:{u.home}:{u.shell}\n"
                   for u in users).encode("utf-8")


def group_text(groups: list[tuple[str, int]]) -> bytes:
    return "".join(f"{name}:x:{gid}:\n" for name, gid in groups).encode("utf-8")


def status_stanza(control: str, where: str) -> tuple[tuple[str, str, str], str]:
    """The control stanza with a Status line after Package; also (package, arch, version)."""
    lines = control.replace("\r\n", "\n").strip("\n").split("\n")
    out: list[str] = []
    fields: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            raise A.BuilderError(f"{where}: control file has more than one stanza")
        if line[0] in " \t":
            if not out:
                raise A.BuilderError(f"{where}: control file starts with a continuation")
            out.append(line)
            continue
        field, sep, value = line.partition(":")
        if not sep or not field:
            raise A.BuilderError(f"{where}: bad control line {line!r}")
        key = field.lower()
        if key == "status":
            continue
        fields.setdefault(key, value.strip())
        out.append(line)
        if key == "package":
            out.append(STATUS_LINE)
    if not fields.get("package"):
        raise A.BuilderError(f"{where}: control file has no Package field")
    key3 = (fields["package"], fields.get("architecture", ""), fields.get("version", ""))
    return key3, "\n".join(out) + "\n"


def dpkg_status(trees: list[Tree]) -> bytes | None:
    stanzas: dict[tuple[str, str], tuple[str, str]] = {}
    for t in trees:
        if t.kind != "deb":
            continue
        with open(os.path.join(t.path, "control"), encoding="utf-8") as f:
            (pkg, arch, ver), text = status_stanza(f.read(), t.path)
        old = stanzas.get((pkg, arch))
        if old is not None and old[1] != text:
            raise A.BuilderError(f"two different deb trees for package {pkg}:{arch}")
        stanzas[(pkg, arch)] = (ver, text)
    if not stanzas:
        return None
    return "".join(text + "\n" for _, (_, text) in sorted(stanzas.items())).encode("utf-8")


def _read_regular(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def ca_bundle(trees: list[Tree]) -> bytes | None:
    """Concatenated usr/share/ca-certificates/**/*.crt (regular files only), sorted by path."""
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
                    raise A.BuilderError(f"two trees provide different {rel}")
                certs[rel] = data
    if not certs:
        return None
    return b"".join(data for _, data in sorted(certs.items()))


def build_meta(out: str, writer: A.TreeWriter) -> None:
    trees = load_trees(required=True)
    users = load_users(trees)

    writer.add_dir("tmp", 0o1777)
    writer.add_dir("root", 0o700)
    writer.add_file("etc/passwd", passwd_text(users), 0o644)
    writer.add_file("etc/group", group_text(groups_for(users)), 0o644)

    status = dpkg_status(trees)
    if status is not None:
        writer.add_file("var/lib/dpkg/status", status, 0o644)
    bundle = ca_bundle(trees)
    if bundle is not None:
        writer.add_file("etc/ssl/certs/ca-certificates.crt", bundle, 0o644)
    if not any(t.has("usr/bin/sh") for t in trees) and any(t.has("usr/bin/dash")
                                                             for t in trees):
        writer.add_symlink("usr/bin/sh", "dash")

    homes: dict[str, User] = {}
    for u in users:
        if u.name == "root" or u.home in ("/", "/nonexistent"):
            continue
        rel = image_rel(u.home, f"home of {u.name}")
        if rel and rel not in homes:
            homes[rel] = u
    for rel, u in sorted(homes.items()):
        writer.add_dir(rel, 0o755, u.uid, u.gid)

    workdir = A.getenv("workdir", "")
    if workdir:
        rel = image_rel(workdir, "workdir")
        if not rel:
            raise A.BuilderError("workdir must not be /")
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


def build_skeleton(writer: A.TreeWriter) -> None:
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
    out = A.getenv("out")
    skeleton = A.getenv("skeleton", "") not in ("", "0")
    name = A.getenv("pkgName", "skeleton" if skeleton else "meta")
    version = A.getenv("pkgVersion", "0")
    A.set_context(f"{'skeleton' if skeleton else 'meta'} {name}")
    os.makedirs(out, exist_ok=True)
    writer = A.TreeWriter(os.path.join(out, "root"), what="path")
    if skeleton:
        build_skeleton(writer)
    else:
        build_meta(out, writer)
    A.write_meta(out, "meta", name, version, writer.modes, writer.notes)


if __name__ == "__main__":
    A.main_wrapper(main, "mkmeta")
    sys.exit(0)

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
  dpkgFilter optional JSON list of dpkg `path-exclude`/`path-include` lines (a slim image):
            written as etc/dpkg/dpkg.cfg.d/envnix-slim, so apt in the image follows them
  skeleton  "1": build the skeleton instead (see below); users/workdir are ignored.
  pkgName, pkgVersion   optional, for meta.json (default "meta"/"skeleton" and "0").

Metadata mode writes, under $out/root:
  etc/passwd, etc/group   sorted by id; groups: root, one per user gid, nogroup 65534; with
                          base-passwd in a tree, its passwd.master and group.master users and
                          groups first (what update-passwd installs), then the given users,
                          then the system accounts the scripts' literal adduser/useradd/
                          groupadd calls add (sysaccounts.py)
  etc/shadow, etc/gshadow with passwd installed: a line per account (shadowconfig on)
  var/lib/dpkg/status     every deb tree's control stanza with "Status: install ok installed"
                          after Package and its Conffiles, sorted by package name (only if
                          there are deb trees)
  var/lib/dpkg/info/      each package's file list, md5sums, conffiles and maintainer scripts
  etc/alternatives/, var/lib/dpkg/alternatives/, the alternatives' links
                          update-alternatives in auto mode, from the postinst scripts' literal
                          --install calls (see alternatives.py)
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

import os
import stat
import sys

import _builder as B
import _pathfilter
import _treewrite as T
import cacerts
import ldcache
import pamconfig
import services
import ucffiles
from accounts import User, load_users, write_accounts
from aptstate import apt_state
from basesystem import base_system
from dpkgdb import deb_infos, dpkg_status, write_diversions, write_dpkg_database
from onbase import (
    ACCOUNT_FILES,
    STATUS,
    combined,
    load_base,
    merged_status,
    split_usr,
    split_usr_links,
)
from trees import ALIASED, Find, Tree, finder, image_rel, load_trees, read_regular

CA_TOP = "usr/share/ca-certificates/"


def image_view(trees: list[Tree], links: dict[str, str],
               split: frozenset[str] = frozenset()) -> ldcache.View:
    """The image root as the trees, the merged-/usr links and *links* (rel -> target, the
    links this tree adds) make it, for scans that follow links as the running system does.
    ``split``: top-level directories a base has as real directories (no merged-/usr link)."""
    aliases = {a.rstrip("/"): "usr/" + a.rstrip("/") for a in ALIASED
               if a.rstrip("/") not in split}

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


def ld_cache(trees: list[Tree], find: Find, links: list[tuple[str, str]],
             writer: T.TreeWriter, own: Find | None = None,
             split: frozenset[str] = frozenset()) -> None:
    """etc/ld.so.cache as libc-bin's ldconfig writes it when libc6 is configured (and the
    SONAME links it would add), so a library in an /etc/ld.so.conf.d directory is found.
    ``own``: on a base image, the added trees only (the base's cache is then replaced by
    one that also lists their libraries)."""
    ldconfig = find("usr/sbin/ldconfig")
    if ldconfig is None or not os.path.isfile(ldconfig) or (own or find)("etc/ld.so.cache"):
        return
    view = image_view(trees, dict(links), split)
    notes: list[str] = []
    entries, soname_links = ldcache.scan(view, notes, B.target_arch())
    for rel, target in soname_links:
        writer.add_symlink(rel, target)
    gen = ldcache.generator(read_regular(ldconfig))
    writer.add_file("etc/ld.so.cache", ldcache.cache_bytes(entries, gen), 0o644)
    for note in notes:
        writer.note(note)


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
                data = read_regular(full)
                if not data.endswith(b"\n"):
                    data += b"\n"
                if rel in certs and certs[rel] != data:
                    raise B.BuilderError(f"two trees provide different {rel}")
                certs[rel] = data
    return certs


def ca_links(shipped: dict[str, bytes], find: Find, writer: T.TreeWriter) -> None:
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


def pam_inputs(trees: list[Tree], find: Find) -> dict[str, str]:
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
            read[rel] = read_regular(path).decode("utf-8", "replace")
    return read


def build_meta(out: str, writer: T.TreeWriter) -> None:
    trees = load_trees(required=True)
    base = load_base()
    users, given = load_users(trees)
    own_find = finder(trees)
    debs = deb_infos(trees)
    if base is not None:  # the base has its OS: only the users asked for are added to it
        users = [u for u in users if u.name in given]
        find, read = combined(own_find, base), base.read
    else:
        find, read = own_find, None
    # what scans that take the first tree holding a path look at: the base's layers last
    scanned = trees + base.top_first() if base else trees

    if base is None:
        writer.add_dir("tmp", 0o1777)
        writer.add_dir("root", 0o700)
    users, groups = write_accounts(trees, debs, users, find, writer,
                                   {f: base.read(f) for f in ACCOUNT_FILES} if base else None)

    # read once: the bundle, its links and the .conf list (a base's certificates too, when
    # the added packages bring some: the bundle then replaces the base's)
    certs = ca_certificates(trees)
    if base is not None and certs:
        certs = {**ca_certificates(base.top_first()), **certs}
    status = dpkg_status(debs, find)
    diverted: set[str] = set()
    if status is not None:
        if base is not None:
            status = merged_status(base.read(STATUS), status)
        writer.add_file("var/lib/dpkg/status", status, 0o644)
        alt_links = write_dpkg_database(debs, find, writer, read)
        diverted = write_diversions(debs, find, writer, read)
        split = split_usr(base) if base else frozenset()
        for rel, target in split_usr_links(split, debs, own_find):
            writer.add_symlink(rel, target)
        ld_cache(scanned, find, alt_links, writer, own_find if base else None, split)
        ca_names = [rel.removeprefix(CA_TOP) for rel in certs]
        notes: list[str] = []
        services.write_services([d[2] for d in debs], find, ca_names,
                                ({u.name: u.uid for u in users}, groups), writer, notes, read)
        if base is None or any(t.has(pamconfig.PROFILES_DIR) for t in trees):
            pam = pamconfig.pam_files(pam_inputs(scanned, find), notes)
            for rel, data in sorted(pam.items()):
                writer.add_file(rel, data, 0o644)
        for note in notes:
            writer.note(note)
        for rel, data in ucffiles.ucf_files(find, read_regular):
            writer.add_file(rel, data, 0o644)
    if base is None:  # a base keeps its own base files, apt sources and /bin/sh
        base_system(trees, find, writer)
        apt_state(users, find, writer)
    bundle = ca_bundle(certs)
    if bundle is not None:
        writer.add_file("etc/ssl/certs/ca-certificates.crt", bundle, 0o644)
        ca_links(certs, own_find if base else find, writer)
    if base is None and not any(t.has("usr/bin/sh") for t in trees) \
            and any(t.has("usr/bin/dash") for t in trees) and "usr/bin/sh" not in diverted:
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

    dpkg_filter(writer)
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


def dpkg_filter(writer: T.TreeWriter) -> None:
    """etc/dpkg/dpkg.cfg.d/envnix-slim from dpkgFilter (the lines mklayer applied)."""
    value = B.getenv("dpkgFilter", "")
    lines = B.json_input(value, "dpkgFilter") if value else []
    if not isinstance(lines, list):
        raise B.BuilderError("dpkgFilter must be a JSON list of dpkg path-exclude/-include lines")
    if not lines:
        return
    try:
        _pathfilter.parse(lines)
    except _pathfilter.FilterError as e:
        raise B.BuilderError(str(e)) from None
    text = ("# envnix --slim or a slim base: what the image was built without; dpkg leaves\n"
            "# the same out of later installs (delete this file to get docs, man pages and\n"
            "# locales again).\n"
            + "".join(line + "\n" for line in lines))
    writer.add_file("etc/dpkg/dpkg.cfg.d/envnix-slim", text.encode(), 0o644)


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

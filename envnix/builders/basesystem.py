"""What the postinst scripts of base-files, debianutils and a few other base packages leave on
a first install: they only copy shipped defaults and make directories, so the result is a
function of the trees.

Not a builder itself: mkmeta.py imports it (standard library only).
"""

from __future__ import annotations

import os
import re

import _treewrite as T
from trees import Find, Tree, read_regular

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


def base_system(trees: list[Tree], find: Find, writer: T.TreeWriter) -> None:
    """What the postinst of base-files and debianutils do on a first install (their scripts
    only copy shipped defaults and make directories, so the result is a function of the
    trees): /etc/profile, /etc/motd, root's dot files, mnt srv opt media..., the login
    records, the dpkg origins link, /etc/shells and update-shells' state."""
    if find("usr/share/base-files/profile") is not None:
        for src, dest in BASE_FILES_COPIES:
            path = find(f"usr/share/base-files/{src}")
            if path is not None and find(dest) is None and os.path.isfile(path):
                writer.add_file(dest, read_regular(path), 0o644)
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
            writer.add_file("usr/share/info/dir", read_regular(info), 0o644)
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
            writer.add_file(dest, read_regular(path), mode)
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
        text = read_regular(shells).decode("utf-8")
        listed = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("/")]
        files: dict[str, str] = {}  # each shell package ships its own shells.d file
        for t in trees:
            d = t.inside("usr/share/debianutils/shells.d")
            if d is not None and os.path.isdir(d) and not os.path.islink(d):
                for n in os.listdir(d):
                    if os.path.isfile(os.path.join(d, n)):
                        files.setdefault(n, os.path.join(d, n))
        extra = [ln.strip() for _, path in sorted(files.items())
                 for ln in read_regular(path).decode("utf-8").splitlines()
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

"""Nix builder: run the image's own cache compilers over the image root, as the packages'
postinst scripts and file triggers would, and emit the files they wrote as a package tree.

Why: gschemas.compiled, loaders.cache, the mime database, fontconfig's caches and compiled
locales are binary outputs of a program (GVariant serialisation, dlopen'ed loaders...);
reimplementing them is not worth owning. The image's own tools, run through proot with
fixed inputs and a fixed environment, write the same bytes Debian's would (docs/debian.md,
"The compiled caches"). Only run_steps.execute runs anything: one root composer, one proot
launcher (_rootfs.is_executable only looks for the tools).

Environment: out, trees, proot, prootLoader (as for run_steps.py) and
  triggers  JSON list of trigger names (TRIGGERS' keys) the lock's packages bring
  epoch     the image's mtime (plan.mtime): SOURCE_DATE_EPOCH for the tools, so fontconfig
            records the directory time the layers will carry (its caches stay valid)
A trigger runs only when its tool is an executable file in the image; its command line is
the postinst's own (logs to /dev/null instead of /var/log). With no tool present the tree
is empty.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

import _builder as B
import run_steps as R
from _rootfs import Rootfs, is_executable

# The locales postinst with debconf's defaults (no locale selected, no default environment):
# /etc/locale.gen lists every supported locale commented out, locale-gen compiles the enabled
# ones (none unless an image file enables some), update-locale writes /etc/default/locale.
LOCALE_GEN_HEADER = (
    "# This file lists locales that you wish to have built. You can find a list",
    "# of valid supported locales at /usr/share/i18n/SUPPORTED, and you can add",
    "# user defined locales to /usr/local/share/i18n/SUPPORTED. If you change",
    "# this file, you need to rerun locale-gen.", "", "")  # the heredoc's "#" line: blanked
# by the postinst's sed for the (empty) selected locale, "0,/^[# ]* *$/ s/^[# ]* *$//"
LOCALE_GEN = (
    "if [ ! -e /etc/locale.gen ]; then { printf '%s\\n' "
    + " ".join(f"'{line}'" for line in LOCALE_GEN_HEADER)
    + "; sed -e '/^[a-zA-Z]/!d' -e 's/ *$//g' /usr/share/i18n/SUPPORTED | LC_ALL=C sort -u"
    " | sed -e 's/^/# /'; } > /etc/locale.gen; fi",
    "if grep -q '^[a-zA-Z]' /etc/locale.gen; then locale-gen; fi",
    "if [ ! -e /etc/default/locale ]; then update-locale --no-checks LANG; fi",
)


@dataclass(frozen=True)
class Trigger:
    """One postinst/trigger action: the package's tool, the other programs its command line
    needs from the image (a minimal-profile image may lack them), the commands."""

    tool: str
    needs: tuple[str, ...]
    commands: tuple[str, ...]


def trigger_table(lib: str) -> dict[str, Trigger]:
    """The triggers of an image whose libraries are in ``lib`` (/usr/lib/<triplet>), in the
    order dpkg would leave them (independent anyway: no tool reads another's output)."""
    pixbuf = f"{lib}/gdk-pixbuf-2.0"
    return {
        # libglib2.0-0: interest-await /usr/share/glib-2.0/schemas (and postinst configure)
        "glib-schemas": Trigger(f"{lib}/glib-2.0/glib-compile-schemas", (), (
            f"if [ -d /usr/share/glib-2.0/schemas ]; then "
            f"{lib}/glib-2.0/glib-compile-schemas /usr/share/glib-2.0/schemas || true; fi",)),
        # libglib2.0-0: interest-noawait .../gio/modules (no module: no giomodule.cache)
        "gio-modules": Trigger(f"{lib}/glib-2.0/gio-querymodules", (), (
            f"if [ -d {lib}/gio/modules ]; then {lib}/glib-2.0/gio-querymodules "
            f"{lib}/gio/modules || true; fi",)),
        # libgdk-pixbuf-2.0-0: the loaders found by find, sorted, into loaders.cache
        "gdk-pixbuf-loaders": Trigger(f"{pixbuf}/gdk-pixbuf-query-loaders", ("find", "sort"), (
            f"if [ -d {pixbuf}/2.10.0/loaders ] "
            "|| [ -d /usr/lib/gdk-pixbuf-2.0/2.10.0/loaders ];"
            f" then {pixbuf}/gdk-pixbuf-query-loaders $(find {pixbuf}/2.10.0/loaders "
            "/usr/lib/gdk-pixbuf-2.0/2.10.0/loaders -name '*.so' 2>/dev/null | LC_ALL=C sort) "
            f"> {pixbuf}/2.10.0/loaders.cache || true; fi",)),
        # shared-mime-info: interest-noawait /usr/share/mime/packages
        "mime": Trigger("/usr/bin/update-mime-database", (),
                        ("update-mime-database /usr/share/mime",)),
        # fontconfig: postinst configure (the -f run); its log is not kept
        "fontconfig": Trigger("/usr/bin/fc-cache", ("mkdir",), (
            "mkdir -p /var/cache/fontconfig", "fc-cache -s -f -v >/dev/null")),
        # locales: postinst configure; update-locale is perl
        "locales": Trigger("/usr/sbin/locale-gen",
                           ("sed", "sort", "grep", "perl", "update-locale"), LOCALE_GEN),
        # python3.X-minimal and python3.X: py_compile of libpython3.X-{minimal,stdlib}'s
        # modules; every package's `py3compile -p PKG` (dh_python3). Commands:
        # bytecode_commands().
        "python-bytecode": Trigger("/usr/bin/py3compile", ("dpkg", "sed", "grep"), ()),
    }


TRIGGERS = trigger_table("/usr/lib/x86_64-linux-gnu")
"""amd64's table: its names are every image's (the lock lists them)."""


# A postinst's dh_python3 line: ``py3compile -p PKG[:ARCH] [DIR]``, literal words only.
PY3COMPILE_RE = re.compile(
    r"^\s*py3compile\s+-p\s+([a-z0-9][a-z0-9.+-]*(?::[a-z0-9]+)?)((?:\s+/[A-Za-z0-9._/+-]*)?)"
    r"\s*(?:\|\|.*)?$", re.M)
PATH_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def bytecode_commands(rootfs: Rootfs) -> list[str]:
    """What the Python packages' postinsts run to byte-compile, for this image: each
    python3.X's py_compile over its libpython3.X-minimal and -stdlib modules (as listed by
    dpkg; sitecustomize.py only where its link resolves, as python3.X-minimal does), then
    every literal ``py3compile -p PKG`` of a postinst in dpkg's database, in package order.
    With SOURCE_DATE_EPOCH set, Python writes hash-checked .pyc: valid whatever the mtimes."""
    out: list[str] = []
    bindir = os.path.join(rootfs.root, "usr/bin")
    versions = sorted((n for n in os.listdir(bindir) if re.fullmatch(r"python3\.[0-9]+", n)),
                      key=lambda n: int(n.split(".")[1])) if os.path.isdir(bindir) else []
    info = os.path.join(rootfs.root, "var/lib/dpkg/info")
    listed = set(os.listdir(info)) if os.path.isdir(info) else set()
    for py in versions:
        # python3.X-minimal leaves sitecustomize.py out when its link does not resolve
        site = (f" | {{ if [ -e /usr/lib/{py}/sitecustomize.py ]; then cat; else grep -v "
                "sitecustomize.py; fi; }")
        for lib, skip in ((f"lib{py}-minimal", site), (f"lib{py}-stdlib", "")):
            if not ({f"{lib}.list", f"{lib}:{B.target_arch()}.list"} & listed):
                continue
            out.append(f"files=$(dpkg -L {lib} | sed -n '/^\\/usr\\/lib\\/{py}\\/.*\\.py$/p'"
                       f"{skip}); if [ -n \"$files\" ]; then /usr/bin/{py} -E -S "
                       f"/usr/lib/{py}/py_compile.py $files; fi")
    for name in sorted(n for n in listed if n.endswith(".postinst")):
        path = os.path.join(info, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        for m in PY3COMPILE_RE.finditer(text):
            out.append(f"py3compile -p {m.group(1)}{m.group(2)}")
    return out


# What no trigger of the table reads or writes: documentation, manual and info pages,
# message catalogues (the tools run with LC_ALL=C.UTF-8) and lintian overrides. The root the
# tools run in has these directories empty: they were a third of its files, and copying the
# files in (the store is read-only, Nix's sandbox forbids hard links out of it) was most of
# this builder's time. A directory a postinst's py3compile names is kept.
UNREAD = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
          "usr/share/lintian")


def unread_dirs(trees: list[str]) -> list[str]:
    """UNREAD but the directories a literal ``py3compile -p PKG DIR`` of a postinst in the
    trees compiles in (or lies in), so what it compiles is the same."""
    named: list[str] = []
    for tree in trees:
        info = os.path.join(tree, "root", "var/lib/dpkg/info")
        if not os.path.isdir(info) or os.path.islink(info):
            continue
        for name in sorted(os.listdir(info)):
            path = os.path.join(info, name)
            if name.endswith(".postinst") and os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
                named += [m.group(2).strip().strip("/") for m in PY3COMPILE_RE.finditer(text)
                          if m.group(2).strip()]
    return [d for d in UNREAD if not any(
        n in ("", d) or n.startswith(d + "/") or d.startswith(n + "/") for n in named)]


def set_image_times(root: str, epoch: int) -> None:
    """Give every path the mtime it has in the image (the layers' epoch): fontconfig keys
    each cache by its directory's mtime and drops caches whose time does not match."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


def commands_for(names: list[str], epoch: int, notes: list[str],
                 table: dict[str, Trigger] = TRIGGERS) -> Callable[[Rootfs], list[str]]:
    """The commands of the named triggers whose programs the image has (others: a note)."""
    def pick(rootfs: Rootfs) -> list[str]:
        def has(prog: str) -> bool:
            if prog.startswith("/"):
                return is_executable(rootfs, prog)
            return any(is_executable(rootfs, f"{d}/{prog}") for d in PATH_DIRS)

        shell = has("bash") or has("sh")
        out: list[str] = []
        for name, trigger in table.items():  # the table's order, not the caller's
            if name not in names or not has(trigger.tool):
                continue
            missing = [p for p in trigger.needs if not has(p)] + ([] if shell else ["sh"])
            if missing:
                notes.append(f"trigger {name} not run: the image has no {', '.join(missing)}")
                continue
            out += bytecode_commands(rootfs) if name == "python-bytecode" else trigger.commands
        if out:
            set_image_times(rootfs.root, epoch)
        return out
    return pick


def main() -> None:
    out = B.getenv("out")
    trees = R.load_trees()
    names = R.json_input("triggers", "[")
    if not isinstance(names, list) or not all(n in TRIGGERS for n in names):
        raise B.BuilderError(f"triggers: must be a JSON list of {sorted(TRIGGERS)}")
    epoch = B.getenv("epoch", "0")
    if not epoch.isdigit():
        raise B.BuilderError(f"epoch {epoch!r} is not a non-negative integer")
    B.set_context("triggers")
    env = {**R.DEFAULT_ENV, "SOURCE_DATE_EPOCH": epoch, "TZ": "UTC", "LC_ALL": "C.UTF-8",
           "HOME": "/root"}
    notes: list[str] = []
    table = trigger_table(f"/usr/lib/{B.MULTIARCH[B.target_arch()]}")
    R.execute(out, trees, commands_for(names, int(epoch), notes, table), env, "/",
              B.getenv("proot"), json.loads(B.getenv("prootLoader", "[]")), "", "triggers",
              "0", notes, keep_pyc=True, qemu=B.getenv("qemu", ""), skip=unread_dirs(trees))


if __name__ == "__main__":
    B.main_wrapper(main, "triggers")
    sys.exit(0)

"""Nix builder: run the image's own cache compilers over the image root, as the packages'
postinst scripts and file triggers would, and emit the files they wrote as a package tree.

Why: gschemas.compiled, loaders.cache, the mime database, fontconfig's caches and compiled
locales are binary outputs of a program (GVariant serialisation, dlopen'ed loaders...);
reimplementing them is not worth owning. The image's own tools, run through proot with
fixed inputs and a fixed environment, write the same bytes Debian's would (docs/debian.md,
"The compiled caches"). Only run_steps.execute is used: one root composer, one proot launcher.

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
import sys

import _archive as A
import run_steps as R

MULTIARCH = "/usr/lib/x86_64-linux-gnu"
PIXBUF = f"{MULTIARCH}/gdk-pixbuf-2.0"
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

# name -> (tool that must be in the image, commands). In the order dpkg would leave them
# (independent anyway: no tool reads another's output).
TRIGGERS: dict[str, tuple[str, tuple[str, ...]]] = {
    # libglib2.0-0: interest-await /usr/share/glib-2.0/schemas (and postinst configure)
    "glib-schemas": (f"{MULTIARCH}/glib-2.0/glib-compile-schemas", (
        f"if [ -d /usr/share/glib-2.0/schemas ]; then {MULTIARCH}/glib-2.0/glib-compile-schemas"
        " /usr/share/glib-2.0/schemas || true; fi",)),
    # libglib2.0-0: interest-noawait .../gio/modules (no module: no giomodule.cache)
    "gio-modules": (f"{MULTIARCH}/glib-2.0/gio-querymodules", (
        f"if [ -d {MULTIARCH}/gio/modules ]; then {MULTIARCH}/glib-2.0/gio-querymodules "
        f"{MULTIARCH}/gio/modules || true; fi",)),
    # libgdk-pixbuf-2.0-0: the loaders found by find, sorted, into loaders.cache
    "gdk-pixbuf-loaders": (f"{PIXBUF}/gdk-pixbuf-query-loaders", (
        f"if [ -d {PIXBUF}/2.10.0/loaders ] || [ -d /usr/lib/gdk-pixbuf-2.0/2.10.0/loaders ];"
        f" then {PIXBUF}/gdk-pixbuf-query-loaders $(find {PIXBUF}/2.10.0/loaders "
        "/usr/lib/gdk-pixbuf-2.0/2.10.0/loaders -name '*.so' 2>/dev/null | LC_ALL=C sort) "
        f"> {PIXBUF}/2.10.0/loaders.cache || true; fi",)),
    # shared-mime-info: interest-noawait /usr/share/mime/packages
    "mime": ("/usr/bin/update-mime-database", ("update-mime-database /usr/share/mime",)),
    # fontconfig: postinst configure (the -f run); its log is not kept
    "fontconfig": ("/usr/bin/fc-cache", (
        "mkdir -p /var/cache/fontconfig", "fc-cache -s -f -v >/dev/null")),
    "locales": ("/usr/sbin/locale-gen", LOCALE_GEN),
}


def set_image_times(root: str, epoch: int) -> None:
    """Give every path the mtime it has in the image (the layers' epoch): fontconfig keys
    each cache by its directory's mtime and drops caches whose time does not match."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


def commands_for(names: list[str], epoch: int) -> R.Callable[[R.Rootfs], list[str]]:
    def pick(rootfs: R.Rootfs) -> list[str]:
        out: list[str] = []
        for name in TRIGGERS:  # the table's order, not the caller's
            tool, commands = TRIGGERS[name]
            if name in names and R._is_executable(rootfs, tool):
                out += commands
        if out:
            set_image_times(rootfs.root, epoch)
        return out
    return pick


def main() -> None:
    out = A.getenv("out")
    trees = R.load_trees()
    names = R._json_input("triggers", "[")
    if not isinstance(names, list) or not all(n in TRIGGERS for n in names):
        raise A.BuilderError(f"triggers: must be a JSON list of {sorted(TRIGGERS)}")
    epoch = A.getenv("epoch", "0")
    if not epoch.isdigit():
        raise A.BuilderError(f"epoch {epoch!r} is not a non-negative integer")
    A.set_context("triggers")
    env = {**R.DEFAULT_ENV, "SOURCE_DATE_EPOCH": epoch, "TZ": "UTC", "LC_ALL": "C.UTF-8",
           "HOME": "/root"}
    R.execute(out, trees, commands_for(names, int(epoch)), env, "/", A.getenv("proot"),
              json.loads(A.getenv("prootLoader", "[]")), "", "triggers", "0")


if __name__ == "__main__":
    A.main_wrapper(main, "triggers")
    sys.exit(0)

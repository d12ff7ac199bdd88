"""The triggers layer: the caches Debian's postinsts and file triggers compile (glib schemas
and GIO modules, gdk-pixbuf loaders, the mime database, fontconfig, locales) are written by
the image's own tools, run through proot in the Nix sandbox (builders/triggers.py).

Checked against mmdebstrap's root of the same packages from the same mirror, under podman
with the programs that read the caches, and by a rebuild in a second (chroot) store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from _cli import Built, build
from _mmdebstrap import mmdebstrap
from _podman import podman
from test_triggers_offline import PIXBUF

from envnix.render import nix_options

PACKAGES = ["libglib2.0-0", "libglib2.0-bin", "gsettings-desktop-schemas",
            "libgdk-pixbuf-2.0-0", "shared-mime-info", "fontconfig", "fonts-dejavu-core",
            "locales"]
# What the tools write, relative to the root; compared byte for byte with mmdebstrap's.
IDENTICAL = ("usr/share/glib-2.0/schemas/gschemas.compiled",
             "usr/lib/x86_64-linux-gnu/gio/modules/giomodule.cache",
             f"{PIXBUF}/2.10.0/loaders.cache", "etc/locale.gen", "etc/default/locale")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Built:
    context = tmp_path_factory.mktemp("trg") / "caches"
    context.mkdir()
    quoted = ", ".join(json.dumps(p) for p in PACKAGES)
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        f"    install.apt_packages(name=[{quoted}])\n")
    return build(context, "-t", "caches:dev")


def _unpack(built: Built, dest: Path) -> Path:
    subprocess.run(["umoci", "unpack", "--image", f"{built.layout}:dev", str(dest)],
                   check=True, capture_output=True)
    return dest / "rootfs"


def _files(root: Path, under: str) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted((root / under).rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap is not installed")
def test_caches_equal_mmdebstraps(image: Built, tmp_path: Path) -> None:
    lock = json.loads((image.context / "envnix.lock").read_text())
    ref = mmdebstrap(lock["inputs"]["apt"]["packages"], tmp_path / "ref")
    ours = _unpack(image, tmp_path / "bundle")
    for rel in IDENTICAL:
        assert (ours / rel).read_bytes() == (ref / rel).read_bytes(), rel
    # update-mime-database: every generated file (mime.cache, globs, the per-type XML)
    mime, ref_mime = _files(ours, "usr/share/mime"), _files(ref, "usr/share/mime")
    assert len(mime) > 800
    assert sorted(mime) == sorted(ref_mime)
    assert [k for k in mime if mime[k] != ref_mime[k]] == []
    # fontconfig-config's postinst: conf.d links from debconf's default answers, and an empty
    # /usr/local/share/fonts (2775 root:staff) whose cache fc-cache writes too
    links = {p.name: os.readlink(p) for p in (ref / "etc/fonts/conf.d").iterdir()
             if p.is_symlink()}
    assert {"10-hinting-slight.conf", "70-no-bitmaps.conf"} <= set(links)
    assert links == {p.name: os.readlink(p) for p in (ours / "etc/fonts/conf.d").iterdir()
                     if p.is_symlink()}
    local_fonts, ref_local = (ours / "usr/local/share/fonts").stat(), \
        (ref / "usr/local/share/fonts").stat()
    assert (local_fonts.st_mode, local_fonts.st_uid, local_fonts.st_gid) == \
        (ref_local.st_mode, ref_local.st_uid, ref_local.st_gid)
    # fontconfig: the same cache files (named by the md5 of the directory's path) and bytes,
    # except the directory's mtime they hold (offsets 48-63: the image epoch here, the install
    # time there).
    cache_dir, ref_cache_dir = ours / "var/cache/fontconfig", ref / "var/cache/fontconfig"
    caches = {p.name for p in cache_dir.iterdir()}
    local = hashlib.md5(b"/usr/local/share/fonts").hexdigest() + "-le64.cache-8"
    assert caches == {p.name for p in ref_cache_dir.iterdir()} and local in caches
    assert len(caches) == 5 and "CACHEDIR.TAG" in caches
    for name in caches:
        data, ref_data = (cache_dir / name).read_bytes(), (ref_cache_dir / name).read_bytes()
        if name.endswith(".cache-8"):
            data, ref_data = data[:48] + data[64:], ref_data[:48] + ref_data[64:]
        assert data == ref_data, name


CHECKS = r"""
set -e
gsettings get org.gnome.desktop.interface font-name
gsettings list-schemas | wc -l
gio info -a standard::content-type /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
    | grep content-type
fc-list : family | sort -u | head -3
fc-cache -s -v 2>&1 | grep -c 'existing cache is valid'
P=/usr/lib/x86_64-linux-gnu/gdk-pixbuf-2.0
cmp <($P/gdk-pixbuf-query-loaders $(find $P/2.10.0/loaders -name '*.so' | LC_ALL=C sort)) \
    $P/2.10.0/loaders.cache && echo loaders-cache-current
"""


@pytest.mark.network
@pytest.mark.slow
def test_programs_read_the_caches(image: Built, podman_environ: dict) -> None:
    out = podman("run", "--rm", f"oci:{image.layout}", "/bin/bash", "-c", CHECKS,
                 env=podman_environ).stdout.splitlines()
    print("\n".join(out))
    # gschemas.compiled: a default from gsettings-desktop-schemas' XML, and its schemas
    assert out[0] == "'Cantarell 11'"
    assert int(out[1]) > 10
    # the mime database: a type from the file's name and magic (no database: octet-stream)
    assert out[2].split() == ["standard::content-type:", "font/ttf"]
    assert out[3:6] == ["DejaVu Sans", "DejaVu Sans Mono", "DejaVu Serif"]
    # every font directory's cache is valid in the image (its mtime is the epoch recorded)
    assert out[6] == "4"  # the three font directories and /usr/local/share/fonts
    assert out[7] == "loaders-cache-current"


@pytest.mark.network
@pytest.mark.slow
def test_second_store_gives_the_same_digest(image: Built, tmp_path: Path) -> None:
    context = tmp_path / "caches"  # the context's name is part of the image (workdir)
    shutil.copytree(image.context, context, ignore=shutil.ignore_patterns(".envnix"))
    store = tmp_path / "store"
    again = build(context, "-t", "caches:dev", "--locked", "--store", str(store))
    print(f"store 1: {image.manifest}\nstore 2: {again.manifest}")
    assert (again.config, again.manifest) == (image.config, image.manifest)
    subprocess.run(["chmod", "-R", "u+w", str(store)], check=False)


@pytest.mark.network
@pytest.mark.slow
def test_an_enabled_locale_is_compiled_reproducibly(tmp_path: Path, podman_environ: dict) -> None:
    """/etc/locale.gen from the build context enables en_US.UTF-8: locale-gen compiles it in
    the sandbox, the program sees it, and Nix's --check rebuild gives the same bytes."""
    context = tmp_path / "loc"
    context.mkdir()
    (context / "locale.gen").write_text("en_US.UTF-8 UTF-8\n")
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    install.apt_packages(name=["locales"])\n'
        '    io.copy(host_path="locale.gen", envd_path="/etc/locale.gen")\n')
    built = build(context, "-t", "loc:dev")
    out = podman("run", "--rm", f"oci:{built.layout}", "/bin/bash", "-c",
                 "locale -a; LC_ALL=en_US.UTF-8 date -d @0 +%c", env=podman_environ).stdout
    assert "en_US.utf8" in out.splitlines()
    assert "Thu 01 Jan 1970 12:00:00 AM UTC" in out  # en_US's %c, not C's
    subprocess.run(["nix-build", str(context / ".envnix" / "default.nix"), "-A", "triggersTree",
                    "--check", "--no-out-link", *nix_options("pinned")],
                   check=True, capture_output=True)

"""The offline tests of tests/integration/test_triggers.py (no network, no program started).

The triggers layer: the caches Debian's postinsts and file triggers compile (glib schemas
and GIO modules, gdk-pixbuf loaders, the mime database, fontconfig, locales) are written by
the image's own tools, run through proot in the Nix sandbox (builders/triggers.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _cli import EXAMPLES

from envnix.lock.model import read_lock
from envnix.render import image_triggers, plan_layers

PIXBUF = "usr/lib/x86_64-linux-gnu/gdk-pixbuf-2.0"


def test_only_images_with_trigger_packages_get_the_layer() -> None:
    """The quickstart has GLib and Debian's python3, so it gets the glib and byte-code
    triggers; a layer list without them has no triggers layer at all (its digest stays what
    it was)."""
    lock = read_lock(EXAMPLES / "quickstart" / "envnix.lock")
    assert lock is not None
    assert image_triggers(lock) == ["gio-modules", "glib-schemas", "python-bytecode"]
    names = [layer["name"] for layer in plan_layers({}, with_triggers=True)]
    assert names == ["skeleton", "meta", "triggers"]
    assert "triggers" not in [layer["name"] for layer in plan_layers({})]
    assert "triggers" not in [layer["name"] for layer in
                              plan_layers({}, custom_base=True, with_triggers=True)]


def _tree(path: Path, files: dict[str, int]) -> str:
    """A package tree (root/ + meta.json) holding empty files with the given modes."""
    for rel, mode in files.items():
        f = path / "root" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"")
        f.chmod(mode)
    (path / "meta.json").write_text('{"kind": "deb", "name": "t", "version": "1"}')
    return str(path)


def test_a_trigger_runs_only_with_its_tool_and_the_programs_its_line_needs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A minimal-profile image with GLib has no shell: nothing runs, a note says why; with a
    shell the GLib lines run, and the gdk-pixbuf line waits for find and sort."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "envnix" / "builders"))
    import _rootfs
    import triggers

    glib = "usr/lib/x86_64-linux-gnu/glib-2.0"
    pixbuf = f"{PIXBUF}/gdk-pixbuf-query-loaders"
    names = ["gdk-pixbuf-loaders", "glib-schemas", "mime"]
    for case, files in (("bare", {f"{glib}/glib-compile-schemas": 0o755}),
                        ("shell", {f"{glib}/glib-compile-schemas": 0o755, "bin/sh": 0o755,
                                   pixbuf: 0o755, "usr/bin/find": 0o644})):
        rootfs = _rootfs.Rootfs(str(tmp_path / f"{case}-root"))
        rootfs.add_tree(_tree(tmp_path / case, files))
        notes: list[str] = []
        commands = triggers.commands_for(names, 0, notes)(rootfs)
        if case == "bare":
            assert commands == []
            assert notes == ["trigger glib-schemas not run: the image has no sh"]
        else:
            assert commands == list(triggers.TRIGGERS["glib-schemas"].commands)
            assert notes == ["trigger gdk-pixbuf-loaders not run: the image has no find, sort"]
            assert os.lstat(tmp_path / "shell-root" / glib).st_mtime == 0


def test_the_tools_root_leaves_docs_out_but_what_a_py3compile_line_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tools run over a root whose docs, manuals and message catalogues are empty
    directories (no trigger reads them); a postinst compiling a directory there keeps it."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "envnix" / "builders"))
    import _rootfs
    import triggers

    pkg = _tree(tmp_path / "pkg", {"usr/share/doc/pkg/copyright": 0o644,
                                   "usr/share/doc/pkg/examples/demo.py": 0o644,
                                   "usr/share/man/man1/pkg.1.gz": 0o644,
                                   "usr/share/pkg/mod.py": 0o644})
    assert triggers.unread_dirs([pkg]) == list(triggers.UNREAD)
    rootfs = _rootfs.Rootfs(str(tmp_path / "root"))
    rootfs.add_tree(pkg, triggers.unread_dirs([pkg]))
    root = tmp_path / "root"
    assert sorted(os.listdir(root / "usr/share")) == ["doc", "man", "pkg"]
    assert os.listdir(root / "usr/share/doc") == os.listdir(root / "usr/share/man") == []
    assert (root / "usr/share/pkg/mod.py").exists()

    info = tmp_path / "meta" / "root" / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (tmp_path / "meta" / "meta.json").write_text('{"kind": "meta"}')
    (info / "pkg.postinst").write_text(
        "#!/bin/sh\nset -e\npy3compile -p pkg /usr/share/doc/pkg/examples\n")
    assert "usr/share/doc" not in triggers.unread_dirs([pkg, str(tmp_path / "meta")])
    (info / "pkg.postinst").write_text("#!/bin/sh\npy3compile -p pkg /\n")
    assert triggers.unread_dirs([pkg, str(tmp_path / "meta")]) == []

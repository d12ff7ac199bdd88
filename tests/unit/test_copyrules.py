"""io.copy placement: envd's (BuildKit's) copy rule, file and directory, with and without a
trailing slash on either side, against the image's directories at that moment."""

from __future__ import annotations

from pathlib import Path

import pytest

from envnix.frontend import load_spec
from envnix.spec.copyrules import BASE_DIRS, CopyRequest, copy_targets, source_name

# (source as written, is a directory, target as written, where the copy itself lands)
CASES = [
    # a directory: a new target is the directory itself, with or without the source's slash
    ("bpe", True, "/opt/bpe", "/opt/bpe"),
    ("bpe/", True, "/opt/bpe", "/opt/bpe"),
    ("./bpe", True, "/opt/bpe", "/opt/bpe"),
    # ... a target ending in / is a directory it goes into, under its own name
    ("bpe", True, "/opt/bpe/", "/opt/bpe/bpe"),
    ("bpe/", True, "/opt/bpe/", "/opt/bpe/bpe"),
    ("bpe", True, "/opt/bpe/.", "/opt/bpe/bpe"),
    # ... and so is a directory the image already has
    ("bpe", True, "/opt", "/opt/bpe"),
    ("bpe/", True, "/opt/", "/opt/bpe"),
    ("models/bpe", True, "/", "/bpe"),
    # a file: a new target is the file; a directory target (slash or existing) keeps its name
    ("vocab.txt", False, "/opt/vocab", "/opt/vocab"),
    ("vocab.txt", False, "/opt/vocab/", "/opt/vocab/vocab.txt"),
    ("data/vocab.txt", False, "/opt", "/opt/vocab.txt"),
    ("data/vocab.txt", False, "/opt/", "/opt/vocab.txt"),
    ("vocab.txt", False, "/etc/apt", "/etc/apt/vocab.txt"),
    # the context itself, or dir/., names nothing: its contents land in the target
    (".", True, "/srv/app", "/srv/app"),
    (".", True, "/srv/app/", "/srv/app"),
    (".", True, "/srv", "/srv"),
    ("bpe/.", True, "/opt", "/opt"),
    ("bpe/.", True, "/opt/bpe", "/opt/bpe"),
]


@pytest.mark.parametrize(("source", "is_dir", "target", "lands"), CASES)
def test_one_copy_lands_where_buildkit_puts_it(source: str, is_dir: bool, target: str,
                                               lands: str) -> None:
    assert copy_targets([CopyRequest(source, is_dir, target)], BASE_DIRS) == [lands]


@pytest.mark.parametrize(("source", "name"), [
    ("bpe", "bpe"), ("bpe/", "bpe"), ("./bpe", "bpe"), ("a/b/", "b"), (".", ""), ("./", ""),
    ("a/.", ""), ("a/..", ""), ("a/./", "a")])
def test_the_name_buildkit_appends_is_the_cleaned_sources_last_element(source: str,
                                                                       name: str) -> None:
    assert source_name(source) == name


def test_earlier_copies_make_the_directories_later_ones_see(tmp_path: Path) -> None:
    (tmp_path / "bpe" / "merges").mkdir(parents=True)
    (tmp_path / "bpe" / "link").symlink_to("merges")
    copies = [
        CopyRequest("bpe", True, "/opt/bpe", str(tmp_path / "bpe")),  # makes /opt/bpe
        CopyRequest("a.txt", False, "/opt/bpe"),            # now a directory: goes inside
        CopyRequest("b.txt", False, "/opt/bpe/merges"),     # bpe's own subdirectory
        CopyRequest("c.txt", False, "/opt/bpe/link"),       # a symlink is not followed
        CopyRequest("d.txt", False, "/x/y/"),               # makes /x/y ...
        CopyRequest("e.txt", False, "/x"),                  # ... and its parent /x
        CopyRequest("f.txt", False, "/home/envd"),          # no dev user: a file named envd
    ]
    assert copy_targets(copies, BASE_DIRS) == [
        "/opt/bpe", "/opt/bpe/a.txt", "/opt/bpe/merges/b.txt", "/opt/bpe/link", "/x/y/d.txt",
        "/x/e.txt", "/home/envd"]


def test_the_frontend_places_copies_by_the_rule(tmp_path: Path) -> None:
    """Through build.envd: a dev image has /home/envd; a relative target is under the workdir."""
    (tmp_path / "bpe").mkdir()
    (tmp_path / "bpe" / "vocab.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(image="debian:12", dev=True)\n'
        '    io.copy("bpe", "/opt/bpe")\n    io.copy("bpe/", "/opt/tok/")\n'
        '    io.copy("notes.txt", "/home/envd")\n    io.copy("notes.txt", "docs/")\n')
    spec = load_spec(tmp_path, warn=lambda _: None)
    workdir = f"/home/envd/{tmp_path.name}"
    assert [(c.source, c.target) for c in spec.copies] == [
        ("bpe", "/opt/bpe"), ("bpe", "/opt/tok/bpe"), ("notes.txt", "/home/envd/notes.txt"),
        ("notes.txt", f"{workdir}/docs/notes.txt")]


def test_positional_io_copy_does_not_make_a_v1_file_v0(tmp_path: Path) -> None:
    (tmp_path / "bpe").mkdir()
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(dev=True)\n    install.python()\n    io.copy("bpe", "/opt/bpe")\n')
    spec = load_spec(tmp_path, warn=lambda _: None)
    assert spec.syntax == "v1" and [c.target for c in spec.copies] == ["/opt/bpe"]

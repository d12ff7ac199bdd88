"""A real .deb's hard links survive into the image (issue 17: the store, NAR, has none, so
every name used to be a copy): tar hard links in the layer, one inode per group in a running
container, every file's content as the package's own md5sums say."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from _cli import build
from _podman import podman

pytestmark = [pytest.mark.network, pytest.mark.slow]

# bzip2 (49 kB) ships bin/bunzip2 with two hard-linked names; perl-base (Essential) ships
# usr/bin/perl and its versioned name as one file. The first name in archive order holds it.
ENVD = ('def build():\n    base(os="debian12", language="python3.11")\n'
        '    install.apt_packages(name=["bzip2"])\n')
GROUPS = {"usr/bin/bunzip2": ["usr/bin/bzcat", "usr/bin/bzip2"],
          "usr/bin/perl": ["usr/bin/perl5.36.0"]}
NAMES = {name for first, others in GROUPS.items() for name in [first, *others]}


def layer_members(layout: Path) -> dict[str, tarfile.TarInfo]:
    """Every layer's tar members by name (the image's layers hold no path twice here)."""
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    members: dict[str, tarfile.TarInfo] = {}
    for layer in manifest["layers"]:
        with tarfile.open(blobs / layer["digest"][7:], "r:gz") as tf:
            members.update((m.name, m) for m in tf.getmembers() if m.name in NAMES)
    return members


def test_deb_hard_links_are_one_file_in_the_image(tmp_path: Path,
                                                  podman_environ: dict) -> None:
    context = tmp_path / "bzip2"
    context.mkdir()
    (context / "build.envd").write_text(ENVD)
    built = build(context, "-t", "hardlinks:dev")

    members = layer_members(built.layout)
    for first, others in GROUPS.items():
        assert members[first].isreg() and members[first].size > 0
        for name in others:
            assert members[name].islnk() and members[name].linkname == first, name

    script = ("stat -c '%i %h %n' /" + " /".join(sorted(NAMES)) + " && cd / && "
              "md5sum --quiet -c var/lib/dpkg/info/bzip2.md5sums "
              "var/lib/dpkg/info/perl-base.md5sums && "
              "echo hard-linked | bzip2 | bzcat && perl5.36.0 -e 'print qq(perl ok\\n)'")
    out = podman("run", "--rm", f"oci:{built.layout}", "sh", "-c", script,
                 env=podman_environ).stdout.splitlines()
    stats = {name.lstrip("/"): (ino, int(links))
             for ino, links, name in (line.split() for line in out[:len(NAMES)])}
    for first, others in GROUPS.items():
        assert {stats[n] for n in [first, *others]} == {(stats[first][0], 1 + len(others))}
    assert stats["usr/bin/bzip2"][0] != stats["usr/bin/perl"][0]
    assert out[len(NAMES):] == ["hard-linked", "perl ok"]

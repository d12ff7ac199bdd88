"""Ownership and permissions as Dockerfile users expect them (issue 19, item 7): a serving
image with config.owner (or envd's --owner) runs as that non-root user, who owns its workdir
and io.copy's files; /tmp is 1777; a copied script stays executable. podman runs the image.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import build
from _podman import podman

pytestmark = pytest.mark.slow

ENVD = ("# syntax=v1\ndef build():\n"
        '    base(image="debian:12", dev=False)\n'
        "    config.owner(uid=1000, gid=1000)\n"
        '    io.copy(source="app", target="/srv/")\n')
CHECK = ('touch "$PWD/written" && echo "pwd=$PWD" && id -u && id -g && '
         'stat -c "%n %a %u:%g" /tmp /srv/app /srv/app/run.sh /srv/app/conf.txt')


def _context(tmp_path: Path) -> Path:
    context = tmp_path / "owned"
    (context / "app").mkdir(parents=True)
    (context / "app" / "conf.txt").write_text("port = 8080\n")
    (context / "app" / "run.sh").write_text("#!/bin/sh\necho serving\n")
    (context / "app" / "run.sh").chmod(0o755)
    (context / "build.envd").write_text(ENVD)
    return context


def _stats(out: str) -> dict[str, tuple[str, str]]:
    rows = [line.split() for line in out.splitlines() if line.startswith("/")]
    return {path: (mode, owner) for path, mode, owner in rows}


def test_serving_image_runs_as_the_owner_who_owns_its_files(tmp_path: Path,
                                                           podman_environ: dict) -> None:
    context = _context(tmp_path)
    built = build(context, "-t", "owned:1")
    out = podman("run", "--rm", "--user", "1000:1000", f"oci:{built.layout}", "/bin/sh", "-c",
                 CHECK, env=podman_environ).stdout
    lines = out.splitlines()
    assert lines[:3] == ["pwd=/home/envd/owned", "1000", "1000"], out
    assert _stats(out) == {"/tmp": ("1777", "0:0"), "/srv/app": ("755", "1000:1000"),
                           "/srv/app/run.sh": ("755", "1000:1000"),
                           "/srv/app/conf.txt": ("644", "1000:1000")}
    # the image's own account for those ids: named, with its home
    who = podman("run", "--rm", "--user", "1000", f"oci:{built.layout}", "/bin/sh", "-c",
                 'id -un && echo "$HOME"', env=podman_environ).stdout.split()
    assert who == ["envd", "/home/envd"]

    # envd's --owner beats config.owner
    other = build(context, "-t", "owned:2", "--owner", "2000:2001")
    out = podman("run", "--rm", "--user", "2000:2001", f"oci:{other.layout}", "/bin/sh", "-c",
                 CHECK, env=podman_environ).stdout
    assert _stats(out)["/srv/app/conf.txt"] == ("644", "2000:2001"), out
    assert out.splitlines()[1:3] == ["2000", "2001"]

"""run(mount_host=True) end to end: the build context (its .dockerignore applied, as for
io.copy) is an input of that run() group and appears at the working directory while the
commands run; nothing of it, and nothing they write there, is in the layer. Editing a
context file changes the image without a re-lock, as an io.copy source does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import build
from _podman import podman

from envnix.oci.imagediff import flatten, read_layout

pytestmark = [pytest.mark.network, pytest.mark.slow]


def _context(root: Path) -> Path:
    context = root / "mnt"
    (context / "data").mkdir(parents=True)
    (context / "data" / "hello.txt").write_text("hello from the context\n")
    (context / "secret.txt").write_text("never in the build\n")
    (context / ".dockerignore").write_text("secret.txt\n")
    (context / "build.envd").write_text(
        'def build():\n'
        '    base(image="debian:12", dev=False)\n'
        '    run(commands=[\n'
        '        "pwd > /seen.txt",\n'
        '        "cat data/hello.txt >> /seen.txt",\n'
        '        "test ! -e secret.txt && echo ignored >> /seen.txt",\n'
        '        "echo scratch > made.txt && cat made.txt >> /seen.txt",\n'
        '    ], mount_host=True)\n'
        '    run(commands=["ls -A /home/envd/mnt | wc -l > /after.txt"])\n')
    return context


def test_the_context_is_seen_while_the_step_runs_and_kept_out_of_the_layer(
        tmp_path: Path, podman_environ: dict[str, str]) -> None:
    context = _context(tmp_path)
    built = build(context, "--no-load")
    out = podman("run", "--rm", f"oci:{built.layout}", "/bin/sh", "-c",
                 "cat /seen.txt /after.txt", env=podman_environ)
    assert out.stdout == ("/home/envd/mnt\nhello from the context\nignored\nscratch\n0\n")
    tree = flatten(read_layout(built.layout, None, "built"))
    assert tree["/home/envd/mnt"][0] == "dir"
    assert not [p for p in tree if p.startswith("/home/envd/mnt/")]

    (context / "data" / "hello.txt").write_text("edited\n")
    edited = build(context, "--locked", "--no-load")  # not stale: the mount is read by Nix
    assert edited.manifest != built.manifest
    out = podman("run", "--rm", f"oci:{edited.layout}", "/bin/sh", "-c", "sed -n 2p /seen.txt",
                 env=podman_environ)
    assert out.stdout == "edited\n"

"""render writes only inside its output directory, only into a directory it made, never
through a symbolic link, with ordinary file modes, and quotes every user string it puts into
a .nix file. Each attack is tried for real, then the host is checked."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from _cli import envnix
from _tiny import tiny_context
from test_render_safety_offline import spec

from envnix.core.errors import UsageError
from envnix.lock.model import Lock
from envnix.render import MARKER, render


def tree(root: Path) -> dict[str, str]:
    """Every path below ``root`` -> kind, to compare before and after."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath, name)
            out[str(p.relative_to(root))] = ("link" if p.is_symlink() else
                                             "dir" if p.is_dir() else p.read_bytes().hex())
    return out


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("envnix: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


# --- item 1: every image path lands inside the output directory ---------------------------


def test_hostile_mount_through_the_cli_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    rel = "../" * 12 + str(victim).lstrip("/")
    context = tiny_context(tmp_path, envd='def build():\n'
                           '    base(os="debian12", language="python3.11")\n'
                           f'    runtime.mount(host_path="/data", envd_path="/{rel}")\n')
    before = tree(tmp_path)
    proc = envnix("render", str(context), "--locked", check=False)
    assert proc.returncode == 3, proc.stderr
    assert "runtime.mount" in one_error(proc) or "mount" in proc.stderr
    assert not victim.exists()
    after = tree(tmp_path)
    assert {k for k in after if not k.startswith("tiny/.envnix")} == set(before)


# --- item 3: the output directory is envnix's -----------------------------------------------

def _user_dir(root: Path) -> Path:
    d = root / "mine"
    for rel in ("files/notes.txt", "builders/tool.py", "context/data.csv", "README"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(f"the user's {rel}\n")
    return d


def test_render_refuses_a_users_directory_and_leaves_it_alone(tmp_path: Path) -> None:
    context = tiny_context(tmp_path)
    mine = _user_dir(tmp_path)
    before = tree(mine)
    for command in ("render", "build"):
        proc = envnix(command, str(context), "--locked", "--out-dir", str(mine), check=False)
        assert proc.returncode == 2, proc.stderr
        assert "not made by envnix" in one_error(proc)
        assert "hint: give a new or empty directory" in proc.stderr
        assert tree(mine) == before


def test_render_into_its_own_directory_deletes_only_what_it_made(tmp_path: Path) -> None:
    context = tiny_context(tmp_path)
    out = tmp_path / "gen"
    envnix("render", str(context), "--locked", "--out-dir", str(out))
    assert json.loads((out / MARKER).read_text())["format"] == 1
    (out / "notes.txt").write_text("mine\n")
    (out / "builders" / "mine.py").write_text("print('mine')\n")
    (out / "builders" / "mklayer.py").write_text("stale")
    envnix("render", str(context), "--locked", "--out-dir", str(out))
    assert (out / "notes.txt").read_text() == "mine\n"
    assert (out / "builders" / "mine.py").read_text() == "print('mine')\n"
    assert (out / "builders" / "mklayer.py").read_text() != "stale"  # its own, rewritten
    empty = tmp_path / "empty"
    empty.mkdir()
    envnix("render", str(context), "--locked", "--out-dir", str(empty))
    assert (empty / MARKER).is_file()


def test_symlinks_in_a_shipped_envnix_directory_are_never_followed(tmp_path: Path) -> None:
    """A cloned repository can ship .envnix with envnix's marker and links to the host."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep\n")
    context = tiny_context(tmp_path, envd='def build():\n'
                           '    base(os="debian12", language="python3.11")\n'
                           '    runtime.mount(host_path="/d", envd_path="/data")\n')
    out = context / ".envnix"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"format": 1, "builders": ["../../victim/keep.txt"]}))
    for name in ("files", "builders", "toolchain", "context"):
        (out / name).symlink_to(victim)
    (out / "default.nix").symlink_to(victim / "keep.txt")
    before = tree(victim)
    envnix("render", str(context), "--locked")
    assert tree(victim) == before
    assert (out / "builders").is_dir() and not (out / "builders").is_symlink()
    for name in ("files", "context"):  # what renders before lib.buildImage wrote: removed
        assert not (out / name).exists() and not (out / name).is_symlink()
    assert not (out / "default.nix").is_symlink()
    # the output directory itself as a link: refused
    link_context = tiny_context(tmp_path, "linked")
    (link_context / ".envnix").symlink_to(victim)
    proc = envnix("render", str(link_context), "--locked", check=False)
    assert proc.returncode == 2 and "is a symbolic link" in one_error(proc)
    assert tree(victim) == before


def test_unwritable_output_directory_is_one_line_without_errno(tmp_path: Path) -> None:
    context = tiny_context(tmp_path)
    (tmp_path / "afile").write_text("")
    proc = envnix("render", str(context), "--locked", "--out-dir",
                  str(tmp_path / "afile" / "out"), check=False)
    assert proc.returncode == 2
    line = one_error(proc)
    assert "[Errno" not in line and "not a directory" in line, line


# --- item 12: modes ------------------------------------------------------------------------

def test_everything_render_writes_is_0644_or_0755_under_umask_022(tmp_path: Path) -> None:
    context = tiny_context(tmp_path, envd='def build():\n'
                           '    base(os="debian12", language="python3.11")\n'
                           '    runtime.init(commands=["true"])\n'
                           '    runtime.mount(host_path="/d", envd_path="/data")\n'
                           '    io.copy(host_path="build.envd", envd_path="/opt/b.envd")\n')
    proc = subprocess.run([sys.executable, "-c",
                           "import os, sys; os.umask(0o022); from envnix.cli import main; "
                           "sys.argv = ['envnix', 'render', sys.argv[1], '--locked']; main()",
                           str(context)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = context / ".envnix"
    seen = {}
    for dirpath, dirnames, filenames in os.walk(out):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath, name)
            mode = stat.S_IMODE(p.lstat().st_mode)
            seen[str(p.relative_to(out))] = mode
            assert mode == (0o755 if p.is_dir() else 0o644), (p, oct(mode))
    assert {"default.nix", "image.nix", "toolchain.nix", "envnix.lock", MARKER,
            "builders/mktree.py"} <= set(seen)
    assert stat.S_IMODE((context / "envnix.lock").stat().st_mode) == 0o644


# --- item 9: user strings in .nix files ----------------------------------------------------

def nix_eval(directory: Path, expr: str) -> object:
    proc = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
                          cwd=directory, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


INJECTIONS = ['x"; builtins.abort "owned', "${builtins.abort \"owned\"}", "a\nb = 1;",
              "back\\slash$", "''${x}"]


@pytest.mark.parametrize("text", INJECTIONS)
def test_user_strings_are_nix_string_literals(tmp_path: Path, text: str) -> None:
    """The manifest name and the context's path reach default.nix only as quoted literals."""
    odd = spec(manifest=f"dir/{text}.envd")
    context = tmp_path / f"ctx {text}".replace("/", "-")
    context.mkdir()
    out = render(odd, Lock(inputs={}), tmp_path / "out", "demo:dev", context=context).directory
    assert nix_eval(out, "builtins.isFunction (import ./default.nix)") is True
    assert nix_eval(out, "(import ./default.nix {}).image.name") == "envnix-image-demo-dev"
    first = (out / "default.nix").read_text().splitlines()  # the manifest's stays a comment
    assert any(ln.lstrip().startswith("# Generated by envnix") for ln in first[:3])


@pytest.mark.parametrize("tag", ['x"; builtins.exec ["sh"]; "', "a${b}", "UPPER:1", "a b",
                                 "a:b:c", f"x@sha256:{'0' * 64}"])
def test_hostile_tags_are_refused_by_the_cli_and_by_render(tmp_path: Path, tag: str) -> None:
    context = tiny_context(tmp_path)
    for command in ("render", "build"):
        proc = envnix(command, str(context), "--locked", "-t", tag, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "not a valid image name" in one_error(proc) or "digest" in proc.stderr
    assert not (context / ".envnix").exists()
    if "@" not in tag:
        with pytest.raises(UsageError):
            render(spec(), Lock(inputs={}), tmp_path / "out", tag)


def test_a_directory_a_newer_envnix_rendered_says_upgrade(tmp_path: Path) -> None:
    """A newer marker format is not "not made by envnix": it says which envnix to use."""
    context = tiny_context(tmp_path)
    out = tmp_path / "gen"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"format": 2, "builders": []}))
    proc = envnix("render", str(context), "--locked", "--out-dir", str(out), check=False)
    assert proc.returncode == 2, proc.stderr
    assert one_error(proc) == (f"envnix: {out / MARKER}: format 2 is not 1: written by "
                               "another envnix version (a newer one: upgrade envnix to read it)")
    assert "hint: upgrade envnix, or give another directory with --out-dir" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [MARKER]


def test_a_project_rendered_before_markers_is_adopted(tmp_path: Path) -> None:
    """An .envnix an older envnix wrote has no marker; its default.nix says who made it."""
    context = tiny_context(tmp_path)
    old = context / ".envnix"
    (old / "builders").mkdir(parents=True)
    (old / "default.nix").write_text("# Generated by envnix 0.1.0 from build.envd\n{ }: { }\n")
    (old / "builders" / "gone.py").write_text("")
    envnix("render", str(context), "--locked")
    assert (old / MARKER).is_file() and (old / "builders" / "mkimage.py").is_file()
    assert (old / "builders" / "gone.py").exists()  # not listed by a marker: not envnix's


@pytest.mark.parametrize("kind", ["oci", "tar"])
def test_exported_archives_are_0644_under_umask_022(tmp_path: Path, kind: str) -> None:
    context = tiny_context(tmp_path)
    dest = tmp_path / f"image.{kind}.tar"
    proc = subprocess.run([sys.executable, "-c",
                           "import os, sys; os.umask(0o022); from envnix.cli import main; "
                           "sys.argv = ['envnix', *sys.argv[1:]]; main()",
                           "build", str(context), "--locked", "-o", f"type={kind},dest={dest}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

"""A stranger's build.envd cannot write outside the output directory, read special files or
smuggle bad names into the image: each attack tried through the real CLI, host checked after.

Rendering needs a lock; these tests write one offline (the inputs are the real ones, the one
artifact is a placeholder) so that `envnix render --locked` runs without a network.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_untrusted_input_offline import BASE, context_with

from envnix.frontend import load_spec
from envnix.lock import LOCK_NAME, Lock, lock_inputs, write_lock


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "envnix", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def assert_one_line(proc: subprocess.CompletedProcess[str], pattern: str) -> None:
    """Exit 3, one `envnix:` line matching ``pattern`` (warnings and a hint line allowed)."""
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines()
             if not line.startswith(("envnix: warning: ", "lock: "))]
    assert lines and re.fullmatch(pattern, lines[0]), proc.stderr
    assert all(line.startswith("  hint: ") for line in lines[1:]), proc.stderr


def snapshot(root: Path) -> set[str]:
    """Every path under ``root`` (symlinks not followed)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def write_offline_lock(context: Path) -> None:
    spec = load_spec(context, warn=lambda _: None)
    file = "pool/main/g/glibc/libc6_2.36-9_amd64.deb"
    write_lock(context / LOCK_NAME, Lock(inputs=lock_inputs(spec, context), apt_packages=[
        {"name": "libc6", "version": "2.36-9", "arch": "amd64", "filename": file,
         "url": f"http://mirror.invalid/{file}", "sha256": "1" * 64, "size": 2_000_000,
         "priority": "required", "essential": False, "source_suite": "bookworm",
         "control": "Package: libc6\nVersion: 2.36-9\n"}]))


# -- item 1: image paths ------------------------------------------------------------------------
@pytest.mark.parametrize(("call", "what"), [
    ('io.copy(host_path="payload.txt", envd_path="/../../../tmp/x")', "io.copy: envd_path"),
    ('io.copy(src="payload.txt", dest="/../../../tmp/x")', "io.copy: dest"),
    ('io.copy(source="payload.txt", target="/../../../tmp/x")', "io.copy: target"),
    ('io.copy(host_path="payload.txt", envd_path="a/../../../../x")', "io.copy: envd_path"),
    ('runtime.mount(host_path="/tmp", envd_path="/../../../tmp/m")', "runtime.mount: envd_path"),
    ('io.mount(src="/tmp", dest="~/../../../../tmp/m")', "io.mount: dest"),
])
def test_dotdot_image_paths_are_refused(tmp_path: Path, call: str, what: str) -> None:
    """On main each of these made `envnix render` exit 0 after writing outside --out-dir."""
    context = context_with(tmp_path, call)
    before = snapshot(tmp_path)
    proc = run("render", str(context), "--out-dir", str(tmp_path / "out"))
    target = re.search(r'(?:envd_path|dest|target)="([^"]+)"', call)[1]  # type: ignore[index]
    assert_one_line(proc, rf"envnix: build\.envd:3:5: {what} {re.escape(repr(target))} "
                          r"contains a '\.\.' component")
    assert snapshot(tmp_path) == before  # nothing created, not even the output directory


def test_copied_symlink_is_never_written_through(tmp_path: Path) -> None:
    """a/b/c/d/e/up -> ../../../../.. stays inside the context, but copied to /d/e/up it
    points above the output directory; a second io.copy beneath it wrote there on main."""
    context = context_with(tmp_path, 'io.copy(host_path="a/b/c/d", envd_path="/")\n'
                                     'io.copy(host_path="payload.txt", '
                                     'envd_path="/d/e/up/pwned.txt")')
    (context / "a/b/c/d/e").mkdir(parents=True)
    (context / "a/b/c/d/e/up").symlink_to("../../../../..")
    write_offline_lock(context)
    out = tmp_path / "work" / "out"
    out.parent.mkdir()
    before = snapshot(tmp_path)
    proc = run("render", str(context), "--locked", "--out-dir", str(out))
    assert_one_line(proc, re.escape(
        "envnix: io.copy('payload.txt', '/d/e/up/pwned.txt') puts /d/e/up/pwned.txt beneath "
        "/d/e/up, which io.copy('a/b/c/d', '/d') makes a symlink; envnix does not write "
        "through it"))
    after = snapshot(tmp_path)
    assert {p for p in after - before if not p.startswith("work/out")} == set()
    assert not any(p.endswith("pwned.txt") for p in after)


def test_stale_symlink_from_an_earlier_render_is_replaced_not_followed(tmp_path: Path) -> None:
    context = context_with(tmp_path, 'io.copy(host_path="a/b/c/d", envd_path="/")')
    (context / "a/b/c/d/e").mkdir(parents=True)
    (context / "a/b/c/d/e/up").symlink_to("../../../../..")
    write_offline_lock(context)
    out = tmp_path / "work" / "out"
    assert run("render", str(context), "--locked", "--out-dir", str(out)).returncode == 0
    # render writes no copy of the context any more (mktree.py makes the tree in Nix, in a
    # fresh $out): an earlier render leaves no link for a later one to write through.
    assert not (out / "context").exists()
    (context / "build.envd").write_text(BASE + '    io.copy(host_path="payload.txt", '
                                               'envd_path="/d/e/up/pwned.txt")\n')
    write_offline_lock(context)
    before = snapshot(tmp_path)
    proc = run("render", str(context), "--locked", "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert {p for p in snapshot(tmp_path) - before if not p.startswith("work/out")} == set()


# -- item 6: special files ----------------------------------------------------------------------
def test_symlink_to_dev_zero_is_outside_the_context(tmp_path: Path) -> None:
    """On main this copied /dev/zero forever."""
    context = context_with(tmp_path, 'io.copy(host_path="zero", envd_path="/z")')
    (context / "zero").symlink_to("/dev/zero")
    assert_one_line(run("spec", str(context), timeout=60),
                    r"envnix: build\.envd:3:5: io.copy: 'zero' is outside the build context "
                    r"\(or a symlink pointing out of it\)")


def test_special_files_named_by_io_copy(tmp_path: Path) -> None:
    context = context_with(tmp_path, 'io.copy(host_path="fifo", envd_path="/f")')
    os.mkfifo(context / "fifo")
    assert_one_line(run("spec", str(context), timeout=60),
                    r"envnix: build\.envd:3:5: io.copy: 'fifo' is a FIFO \(named pipe\); only "
                    r"files, directories and symlinks can be copied")
    (context / "build.envd").write_text(BASE + '    install.python_packages(requirements='
                                               '"fifo")\n')
    assert_one_line(run("spec", str(context), timeout=60),
                    r"envnix: build\.envd:3:5: requirements file 'fifo' is a FIFO \(named "
                    r"pipe\), not a file")


def _special(kind: str, path: Path) -> socket.socket | None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return sock
    elif kind == "device":
        try:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
        except PermissionError:
            pytest.skip("creating a device node needs CAP_MKNOD")
    else:
        path.symlink_to("/dev/zero")
    return None


@pytest.mark.parametrize(("kind", "message"), [
    ("fifo", "is a FIFO \\(named pipe\\); only files, directories and symlinks can be copied"),
    ("socket", "is a socket; only files, directories and symlinks can be copied"),
    ("device", "is a character device; only files, directories and symlinks can be copied"),
])
def test_special_files_inside_a_copied_directory(tmp_path: Path, kind: str,
                                                 message: str) -> None:
    """Physically inside the context: found by the render's walk, never opened."""
    context = context_with(tmp_path, 'io.copy(host_path="data", envd_path="/")')
    (context / "data").mkdir()
    (context / "data" / "ok.txt").write_text("ok\n")
    sock = _special(kind, context / "data" / "special")
    try:
        write_offline_lock(context)
        out = tmp_path / "out"
        proc = run("render", str(context), "--locked", "--out-dir", str(out), timeout=60)
    finally:
        if sock:
            sock.close()
    assert_one_line(proc, rf"envnix: io.copy\('data', '/data'\): data/special {message}")
    assert not out.exists()  # refused while the lock's image section is made


def test_symlink_to_a_device_inside_a_copied_directory(tmp_path: Path) -> None:
    context = context_with(tmp_path, 'io.copy(host_path="data", envd_path="/")')
    (context / "data").mkdir()
    (context / "data" / "zero").symlink_to("/dev/zero")
    write_offline_lock(context)
    proc = run("render", str(context), "--locked", "--out-dir", str(tmp_path / "out"),
               timeout=60)
    assert_one_line(proc, r"envnix: io.copy: data/zero is a symlink pointing out of the build "
                          r"context \(/dev/zero\)")


# -- item 11: environment variable names ----------------------------------------------------------
@pytest.mark.parametrize("name", ["A B", "1X", "A=B", "", "é", "-x"])
def test_bad_environment_variable_names(tmp_path: Path, name: str) -> None:
    context = context_with(tmp_path, f"runtime.environ(env={{{name!r}: '1', 'OK': '2'}})")
    assert_one_line(run("spec", str(context)),
                    rf"envnix: build\.envd:3:5: runtime.environ: env: {re.escape(repr(name))} "
                    "is not a valid environment variable name")


@pytest.mark.parametrize("env", ['{"A\\x00B": "1"}', '{"A": "x\\x00y"}'])
def test_nul_in_environment(tmp_path: Path, env: str) -> None:
    context = context_with(tmp_path, f"runtime.environ(env={env})")
    assert_one_line(run("spec", str(context)),
                    r"envnix: build\.envd:3:5: runtime.environ: parameter env: '(A\\x00B|"
                    r"x\\x00y)' contains a NUL character")


def test_good_names_and_env_yaml_variables(tmp_path: Path) -> None:
    context = context_with(tmp_path, 'runtime.environ(env={"_A1": "x=y z", "PATH": "/bin"})')
    spec = load_spec(context, warn=lambda _: None)
    assert spec.env == {"_A1": "x=y z", "PATH": "/bin"}
    (context / "env.yaml").write_text("name: x\ndependencies:\n  - python=3.11\n"
                                      "variables:\n  OK: '1'\n  BAD NAME: '2'\n")
    (context / "build.envd").write_text(BASE + '    install.conda_packages(env_file='
                                               '"env.yaml")\n')
    assert_one_line(run("spec", str(context)),
                    r"envnix: env\.yaml: variables: 'BAD NAME' is not a valid environment "
                    "variable name")


def test_nul_anywhere_is_refused_with_position(tmp_path: Path) -> None:
    """A NUL in a path used to raise ValueError ("embedded null byte") with a traceback."""
    for call in ('io.copy(host_path="payload.txt\\x00", envd_path="/x")',
                 'install.python_packages(requirements="r\\x00.txt")',
                 'run(commands=["echo \\x00"])'):
        context = context_with(tmp_path, call)
        assert_one_line(run("spec", str(context)),
                        r"envnix: build\.envd:3:5: .*contains a NUL character")
    (tmp_path / "ctx" / "build.envd").write_text('load("x\\x00.envd", "y")\n' + BASE)
    assert_one_line(run("spec", str(tmp_path / "ctx")),
                    r"envnix: build\.envd:1:1: load\('x\\x00\.envd'\): the name contains a NUL "
                    "character")


# -- strings that land in line-based files inside the image -----------------------------------
@pytest.mark.parametrize(("call", "message"), [
    ('config.pip_index(url="http://x/simple\\nextra-index-url=http://evil/")',
     r"config\.pip_index: url .* is not an http\(s\) URL without spaces or control characters"),
    ('config.pip_index(url="file:///etc/pip")',
     r"config\.pip_index: url 'file:///etc/pip' is not an http\(s\) URL.*"),
    ('config.pip_index(url="http://x/simple", extra_url="http://y/ http://z/")',
     r"config\.pip_index: extra_url .* is not an http\(s\) URL.*"),
    ('git_config(name="me\\n[core]\\n\\tpager = evil", email="me@x")',
     r"git_config: name .* contains a control character"),
    ('install.python_packages(name=["six\\r-r /etc/hostname"])',
     r"pip requirement .* contains a control character"),
])
def test_line_breaks_in_strings_for_line_based_files(tmp_path: Path, call: str,
                                                     message: str) -> None:
    context = context_with(tmp_path, call)
    assert_one_line(run("spec", str(context)), r"envnix: build\.envd:3:5: " + message)


# -- a hostile lock read by Nix alone (lib.buildImage, no envnix to check it first) --------------
@pytest.mark.parametrize(("edit", "message"), [
    (lambda image: image["copies"].append({"source": "../secret", "target": "/s"}),
     'io.copy source "../secret" is not a relative path inside the build context'),
    (lambda image: image["copies"].append({"source": "/etc", "target": "/s"}),
     'io.copy source "/etc" is not a relative path inside the build context'),
    (lambda image: image["sources"].update({"../../etc/passwd": "0" * 64}),
     'source "../../etc/passwd" is not a relative path inside the build context'),
    (lambda image: image.update({"format": 9}), "image format 9: this envnix reads 1"),
])
def test_image_nix_refuses_a_hostile_lock_on_its_own(tmp_path: Path, edit: Any,
                                                     message: str) -> None:
    """image.nix checks what it reads from the lock before touching a path: a lock edited
    after envnix wrote it (or never seen by envnix) cannot point Nix outside the context."""
    (tmp_path / "secret").write_text("no\n")
    context = context_with(tmp_path, 'io.copy(host_path="payload.txt", envd_path="/p")')
    write_offline_lock(context)
    proc = run("render", str(context))
    assert proc.returncode == 0, proc.stderr
    rendered = context / ".envnix" / LOCK_NAME
    data = json.loads(rendered.read_text())
    edit(data["image"])
    rendered.write_text(json.dumps(data))
    out = subprocess.run(["nix-instantiate", str(context / ".envnix" / "default.nix"),
                          "-A", "image"], capture_output=True, text=True, check=False)
    assert out.returncode == 1, out.stdout
    assert message in out.stderr, out.stderr
    assert "/nix/store" not in out.stdout

"""Tests for envnix/builders/run_steps.py: one envd run() group, run hermetically under proot
over the image's rootfs, its file changes emitted as a package tree.

The builder always runs as a subprocess the way Nix runs it (empty environment plus its inputs,
``/usr/bin/python3 -E -s -B run_steps.py``).

* Offline: a tiny rootfs made of this machine's static busybox (applet symlinks) plus, for
  envd's ``bash -c 'set -euo pipefail ...'``, the host's bash with its three libraries; the
  skeleton and metadata trees come from mkmeta.py.
* ``slow``: the same inside a real Nix sandbox (nix-build --option sandbox true), with
  ``--check`` proving the output is reproducible there.
* ``network`` (+slow): real bookworm .debs (bash, coreutils; python3 + pip + setuptools +
  wheel) unpacked by unpack_deb.py, then the seed's ``pip install -e /detectron2`` offline.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.server
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_builders_run_offline import TIMINGS

BUILDERS = Path(__file__).resolve().parents[2] / "envnix" / "builders"
HOST_PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
PROOT = shutil.which("proot") or "/usr/bin/proot"
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ls", "mkdir", "echo", "rm", "cat", "pwd", "wget", "true", "false", "chmod",
           "touch", "mv", "cp", "ln", "test", "mkfifo", "id", "rmdir")
WORKDIR = "/home/envd/demo"

sys.path.insert(0, str(BUILDERS))

pytestmark = pytest.mark.skipif(not os.path.exists(PROOT) or not os.path.exists(BUSYBOX),
                                reason="needs proot and busybox-static (./scripts/setup)")


# ------------------------------------------------------------------------------ helpers


def run_builder(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A builder with only ``env`` plus what Nix itself sets in a sandbox."""
    cwd.mkdir(parents=True, exist_ok=True)
    full = {"HOME": "/homeless-shelter", "PATH": "/path-not-set", "TMPDIR": str(cwd),
            "NIX_BUILD_TOP": str(cwd), "NIX_BUILD_CORES": "1", **env}
    return subprocess.run([HOST_PY, "-E", "-s", "-B", str(BUILDERS / script)], env=full,
                          cwd=cwd, capture_output=True, text=True, check=False)


def assert_ok(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 0, r.stderr
    assert "envnix-builder:" not in r.stderr, r.stderr


def error_line(r: subprocess.CompletedProcess[str]) -> str:
    """The one ``envnix-builder:`` line, which must be the last line of stderr."""
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert lines and lines[-1].startswith("envnix-builder: "), r.stderr
    assert sum(line.startswith("envnix-builder:") for line in lines) == 1, r.stderr
    return lines[-1]


def make_tree(path: Path, entries: dict[str, object], kind: str = "files", name: str = "t",
              modes: dict[str, list[int]] | None = None) -> Path:
    """A package tree: entries map a path to bytes (file), ("x", bytes) (executable),
    ("link", target), ("dir",) or ("copy", host path)."""
    root = path / "root"
    root.mkdir(parents=True)
    for rel, spec in sorted(entries.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, bytes):
            p.write_bytes(spec)
        elif spec[0] == "x":
            p.write_bytes(spec[1])
            p.chmod(0o755)
        elif spec[0] == "link":
            p.symlink_to(spec[1])
        elif spec[0] == "dir":
            p.mkdir(exist_ok=True)
        elif spec[0] == "copy":
            shutil.copyfile(spec[1], p)
            p.chmod(0o755 if os.stat(spec[1]).st_mode & 0o111 else 0o644)
    meta = {"kind": kind, "name": name, "version": "0", "modes": modes or {}}
    (path / "meta.json").write_text(json.dumps(meta, sort_keys=True))
    return path


def host_bash_entries() -> dict[str, object]:
    """The host's bash and the libraries ldd names, at merged-/usr paths."""
    entries: dict[str, object] = {"usr/bin/bash": ("copy", "/usr/bin/bash")}
    ldd = subprocess.run(["ldd", "/usr/bin/bash"], capture_output=True, text=True, check=True)
    for line in ldd.stdout.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if not m:
            continue
        lib = m.group(1)
        rel = os.path.realpath(os.path.dirname(lib)).lstrip("/")
        rel = rel if rel.startswith("usr/") else "usr/" + rel
        entries[f"{rel}/{os.path.basename(lib)}"] = ("copy", os.path.realpath(lib))
    return entries


def mkmeta(out: Path, trees: list[Path], skeleton: bool = False) -> Path:
    env = {"out": str(out), "trees": json.dumps([str(t) for t in trees])}
    if skeleton:
        env["skeleton"] = "1"
    else:
        env["workdir"] = WORKDIR
        env["users"] = json.dumps([["envd", 1000, 1000, "/home/envd", "/bin/bash"]])
    r = run_builder("mkmeta.py", env, out.parent / f"build-{out.name}")
    assert r.returncode == 0, r.stderr
    return out


def image_trees(base: Path, with_bash: bool = True, extra: dict[str, object] | None = None,
                ) -> list[Path]:
    """skeleton + busybox (+ host bash) + a small 'etc' tree + meta: a runnable image."""
    entries: dict[str, object] = {"usr/bin/busybox": ("copy", BUSYBOX)}
    entries |= {f"usr/bin/{a}": ("link", "busybox") for a in APPLETS}
    if with_bash:
        entries |= host_bash_entries()
    pkg = make_tree(base / "busybox", entries, name="busybox")
    files = make_tree(base / "files", {
        "etc/motd": b"hello\n", "srv/data/a": b"a\n", "srv/data/b/c": b"c\n",
        "usr/bin/suid-tool": ("x", b"#!/bin/sh\n"), "etc/readonly": b"ro\n",
        **(extra or {}),
    }, name="files", modes={"usr/bin/suid-tool": [0o4755, 0, 0], "etc/readonly": [0o444, 0, 0]})
    skeleton = mkmeta(base / "skeleton", [pkg], skeleton=True)
    meta = mkmeta(base / "meta", [pkg, files])
    return [skeleton, pkg, files, meta]


def run_group(tmp: Path, tree_list: list[Path], command_list: list[str], label: str = "run",
              **extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp / f"out-{label}"
    env = {"out": str(out), "trees": json.dumps([str(t) for t in tree_list]),
           "commands": json.dumps(command_list), "workdir": WORKDIR, "proot": PROOT,
           "env": json.dumps({"PATH": "/usr/bin:/bin"}), **extra}
    t0 = time.monotonic()
    r = run_builder("run_steps.py", env, tmp / f"build-{label}")
    TIMINGS[label] = round(time.monotonic() - t0, 3)
    return r, out


def listing(out: Path) -> dict[str, object]:
    """path -> content/link target/'dir' of $out/root, plus the meta.json modes."""
    root = out / "root"
    items: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                items[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                items[rel] = "dir"
            else:
                items[rel] = p.read_bytes()
    return items


def meta(out: Path) -> dict:
    return json.loads((out / "meta.json").read_text())


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return image_trees(tmp_path_factory.mktemp("image"))


# ------------------------------------------------------------------------------ offline


def test_writes_files_in_workdir(image: list[Path], tmp_path: Path) -> None:
    r, out = run_group(tmp_path, image, ["mkdir -p /opt/x", "echo hello > /opt/x/hello.txt",
                                         "pwd > /out.txt", "id -u > uid.txt"])
    assert_ok(r)
    assert listing(out) == {
        "home": "dir", "home/envd": "dir", "home/envd/demo": "dir",
        "home/envd/demo/uid.txt": b"0\n",
        "opt": "dir", "opt/x": "dir", "opt/x/hello.txt": b"hello\n",
        "out.txt": WORKDIR.encode() + b"\n",
    }
    m = meta(out)
    assert m["kind"] == "run" and m["name"] == "run"
    # Parents keep the image's owners (mkmeta made /home/envd* owned by envd).
    assert m["modes"] == {"home/envd": [0o755, 1000, 1000],
                          "home/envd/demo": [0o755, 1000, 1000]}


def test_deletions_become_whiteouts(image: list[Path], tmp_path: Path) -> None:
    r, out = run_group(tmp_path, image, ["rm /etc/motd", "rm -r /srv/data/b",
                                         "rm /usr/bin/cat"])
    assert_ok(r)
    assert listing(out) == {"etc": "dir", "etc/.wh.motd": b"", "srv": "dir",
                            "srv/data": "dir", "srv/data/.wh.b": b"", "usr": "dir",
                            "usr/bin": "dir", "usr/bin/.wh.cat": b""}
    # mklayer.py packs the whiteouts as ordinary (empty) members: the OCI whiteout entries.
    r = run_builder("mklayer.py", {"out": str(tmp_path / "layer"),
                                   "trees": json.dumps([str(out)])}, tmp_path / "build-layer")
    assert r.returncode == 0, r.stderr
    with tarfile.open(tmp_path / "layer" / "layer.tar.gz") as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert members["etc/.wh.motd"].isfile() and members["etc/.wh.motd"].size == 0
    assert {"srv/data/.wh.b", "usr/bin/.wh.cat"} <= set(members)
    r, out = run_group(tmp_path, image, ["rm -r /srv/data"], "rmdir")
    assert_ok(r)
    assert listing(out) == {"srv": "dir", "srv/.wh.data": b""}


def test_later_run_sees_earlier_whiteouts(image: list[Path], tmp_path: Path) -> None:
    r, first = run_group(tmp_path, image, ["rm /etc/motd", "rm -r /srv/data"], "first")
    assert_ok(r)
    r, out = run_group(tmp_path, [*image, first], [
        "test ! -e /etc/motd", "test ! -e /srv/data", "ls /srv > /opt-srv.txt",
        "mkdir /srv/data", "echo new > /srv/data/n"], "second")
    assert_ok(r)
    assert listing(out) == {"opt-srv.txt": b"", "srv": "dir", "srv/data": "dir",
                            "srv/data/n": b"new\n"}


def test_modes_types_and_untouched_files(image: list[Path], tmp_path: Path) -> None:
    r, out = run_group(tmp_path, image, [
        "touch /etc/motd",                       # same content: not a change
        "cp /srv/data/a /tmp/a && mv /tmp/a /srv/data/a",  # new inode, same bytes
        "echo more >> /etc/readonly",            # 0444 in the image: stays 0444
        "chmod 0700 /usr/bin/busybox",           # a real mode change
        "echo s > /usr/bin/new && chmod 0750 /usr/bin/new",
        "rm /srv/data/b/c && mkdir /srv/data/b/c",  # file -> dir: no whiteout
        "ln -sfn /etc/motd /srv/data/a-link",
        "echo r > /root/r.txt",                  # /root is 0700 in the image
        "mkfifo /srv/fifo",
    ])
    assert_ok(r)
    got = listing(out)
    assert got == {
        "etc": "dir", "etc/readonly": b"ro\nmore\n", "root": "dir", "root/r.txt": b"r\n",
        "srv": "dir", "srv/data": "dir", "srv/data/a-link": ("link", "/etc/motd"),
        "srv/data/b": "dir", "srv/data/b/c": "dir",
        "usr": "dir", "usr/bin": "dir", "usr/bin/busybox": Path(BUSYBOX).read_bytes(),
        "usr/bin/new": b"s\n",
    }
    m = meta(out)
    assert m["modes"] == {"etc/readonly": [0o444, 0, 0], "root": [0o700, 0, 0],
                          "usr/bin/busybox": [0o700, 0, 0], "usr/bin/new": [0o750, 0, 0]}
    assert m["notes"] == ["/srv/fifo: skipped (not a file, directory or symlink)"]


def test_volatile_paths_and_pyc_are_dropped(image: list[Path], tmp_path: Path) -> None:
    r, out = run_group(tmp_path, image, [
        "mkdir -p /opt/p/__pycache__ /opt/q/__pycache__ /root/.cache/pip /var/tmp/v",
        "echo b > /opt/p/__pycache__/m.cpython-311.pyc",
        "echo b > /opt/q/__pycache__/m.cpython-311.pyc && echo keep > /opt/q/__pycache__/x",
        "echo t > /tmp/t && echo c > /root/.cache/pip/c && echo v > /var/tmp/v/x",
        "echo m > /opt/p/m.py",
    ])
    assert_ok(r)
    assert listing(out) == {"opt": "dir", "opt/p": "dir", "opt/p/m.py": b"m\n",
                            "opt/q": "dir", "opt/q/__pycache__": "dir",
                            "opt/q/__pycache__/x": b"keep\n"}


def test_set_euo_pipefail(image: list[Path], tmp_path: Path) -> None:
    r, out = run_group(tmp_path, image, ["echo a > /a.txt", "false", "echo b > /b.txt"])
    assert error_line(r) == "envnix-builder: run: command failed (exit 1): false"
    assert not (out / "meta.json").exists()
    r, _ = run_group(tmp_path, image, ["echo start", "false | true", "echo after"], "pipe")
    assert error_line(r) == "envnix-builder: run: command failed (exit 1): false | true"
    r, _ = run_group(tmp_path, image, ["echo $UNSET_VAR", "true"], "nounset")
    assert error_line(r) == "envnix-builder: run: command failed (exit 1): echo $UNSET_VAR"
    r, _ = run_group(tmp_path, image, ["true", "for i in 1 2; do\n  echo $i\n  exit 3\ndone"],
                     "exit")
    assert error_line(r).startswith("envnix-builder: run: command failed (exit 3) (one of 2")


def test_failure_shows_output_tail(image: list[Path], tmp_path: Path) -> None:
    r, _ = run_group(tmp_path, image, [
        "i=0; while [ $i -lt 50 ]; do echo line$i; i=$((i+1)); done", "echo oops >&2",
        "nosuchcommand --flag"])
    line = error_line(r)
    assert line == "envnix-builder: run: command failed (exit 127): nosuchcommand --flag"
    tail = r.stderr.splitlines()[:-1]
    assert len(tail) == 20, r.stderr
    assert "line49" in r.stderr and "line20" not in r.stderr and "oops" in r.stderr
    assert "nosuchcommand: command not found" in tail[-1]


def test_deterministic(image: list[Path], tmp_path: Path) -> None:
    cmds = ["for i in 3 1 2; do echo $i > /opt-$i; done", "mkdir -p /var/lib/x",
            "ln -s ../../etc/motd /var/lib/x/link", "rm /etc/motd", "chmod 600 /opt-1"]
    outs = []
    for n in range(2):
        r, out = run_group(tmp_path, image, cmds, f"det{n}")
        assert_ok(r)
        outs.append(out)
    assert listing(outs[0]) == listing(outs[1])
    assert (outs[0] / "meta.json").read_bytes() == (outs[1] / "meta.json").read_bytes()
    assert tree_digest(outs[0]) == tree_digest(outs[1])


def tree_digest(out: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(out):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            st = p.lstat()
            h.update(f"{p.relative_to(out)}\0{stat.S_IFMT(st.st_mode)}\0"
                     f"{st.st_mode & 0o111}\0".encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif p.is_file():
                h.update(p.read_bytes())
    return h.hexdigest()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_network_attempts_fail_with_advice(image: list[Path], tmp_path: Path) -> None:
    # A server in the host's network namespace: the run must not reach it.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.status == 200  # reachable from the host
        r, _ = run_group(tmp_path, image, ["true", f"wget -O /x http://127.0.0.1:{port}/"])
    finally:
        server.shutdown()
    assert error_line(r) == (
        f'envnix-builder: run(): "wget -O /x http://127.0.0.1:{port}/" needs the network, '
        "which builds do not have; use io.http(url=\"http://127.0.0.1:" f'{port}/", '
        'checksum="sha256:...") or put the file in the build context and io.copy it')
    t0 = time.monotonic()
    r, _ = run_group(tmp_path, image, ["wget http://deb.debian.org/debian/"], "dns")
    assert time.monotonic() - t0 < 20
    assert "needs the network" in error_line(r)


def test_sh_fallback_without_bash(tmp_path: Path) -> None:
    trees = image_trees(tmp_path / "img", with_bash=False)
    r, out = run_group(tmp_path, trees, ["echo $0 > /shell.txt"])
    assert_ok(r)
    assert listing(out)["shell.txt"] == b"/bin/sh\n"
    r, _ = run_group(tmp_path, trees, ["false | true"], "pipefail")  # busybox ash has it
    assert error_line(r) == "envnix-builder: run: command failed (exit 1): false | true"
    r, _ = run_group(tmp_path, trees, ["true", "false", "true"], "fail")
    assert error_line(r) == ("envnix-builder: run: command failed (exit 1) (one of 3 "
                             "commands): true; false; true")
    r, _ = run_group(tmp_path, trees, ["true"], "explicit", shell="/usr/bin/bash")
    assert error_line(r) == "envnix-builder: run: the image has no executable /usr/bin/bash"


def test_bad_inputs(image: list[Path], tmp_path: Path) -> None:
    r, _ = run_group(tmp_path, image, [], "empty")
    assert error_line(r) == "envnix-builder: run: commands: the run() group is empty"
    r, _ = run_group(tmp_path, image, ["touch /etc/.wh.motd"], "wh")
    assert error_line(r) == ("envnix-builder: run: the commands created /etc/.wh.motd; names "
                             "starting with '.wh.' mean deletions in OCI layers")
    r, _ = run_group(tmp_path, image, ["true"], "rel", workdir="home/envd")
    assert "must be an absolute image path" in error_line(r)
    r, _ = run_group(tmp_path, image, ["true"], "proot", proot="/nonexistent/proot")
    assert error_line(r) == ("envnix-builder: run: proot '/nonexistent/proot' is not an "
                             "executable file")
    r, _ = run_group(tmp_path, image, ["ln -s ../../../../x /opt-link"], "escape")
    assert "climbs above the root" in error_line(r)


def test_host_paths_stay_invisible(image: list[Path], tmp_path: Path) -> None:
    """proot 5.1 passes faccessat2/statx/openat2 through untranslated; the builder's seccomp
    filter turns them into ENOSYS so libc falls back to calls proot translates."""
    host_only = tmp_path / "host-only.sh"
    host_only.write_text("#!/bin/sh\n")
    host_only.chmod(0o755)
    r, out = run_group(tmp_path, image, [
        f"if [ -x {host_only} ]; then echo leak; else echo hidden; fi > /probe.txt",
        f"if [ -e {host_only} ]; then echo leak; else echo hidden; fi >> /probe.txt",
        "if [ -x /usr/bin/busybox ]; then echo seen; fi >> /probe.txt"])
    assert_ok(r)
    assert listing(out)["probe.txt"] == b"hidden\nhidden\nseen\n"


def test_leftover_processes_are_killed(image: list[Path], tmp_path: Path) -> None:
    """As in a Docker RUN the shell is PID 1: what it leaves running dies with it."""
    t0 = time.monotonic()
    r, out = run_group(tmp_path, image, [
        "busybox sleep 60 &", "(busybox sleep 2; echo late > /late.txt) &",
        "echo $$ > /pid.txt", "set +e; false; true", "echo done > /done.txt"])
    assert_ok(r)
    assert time.monotonic() - t0 < 30
    assert listing(out) == {"done.txt": b"done\n", "pid.txt": b"1\n"}


def test_workdir_created_when_missing(image: list[Path], tmp_path: Path) -> None:
    r, out = run_group(tmp_path, image, ["pwd > here"], workdir="/home/envd/other/deep")
    assert_ok(r)
    assert listing(out) == {"home": "dir", "home/envd": "dir", "home/envd/other": "dir",
                            "home/envd/other/deep": "dir",
                            "home/envd/other/deep/here": b"/home/envd/other/deep\n"}


def test_inputs_from_files(image: list[Path], tmp_path: Path) -> None:
    (tmp_path / "trees.json").write_text(json.dumps([str(t) for t in image]))
    (tmp_path / "cmds.json").write_text(json.dumps(['echo "$GREETING" > /g.txt']))
    (tmp_path / "env.json").write_text(json.dumps({"PATH": "/usr/bin", "GREETING": "hi"}))
    r, out = run_group(tmp_path, image, [], trees=str(tmp_path / "trees.json"),
                       commands=str(tmp_path / "cmds.json"), env=str(tmp_path / "env.json"))
    assert_ok(r)
    assert listing(out) == {"g.txt": b"hi\n"}


def test_environment_is_clean(image: list[Path], tmp_path: Path) -> None:
    r, out = run_group(tmp_path, image, ["set > /opt-env.txt 2>&1 || true",
                                         "busybox env > /opt-exported.txt"])
    assert_ok(r)
    exported = (out / "root/opt-exported.txt").read_text()
    names = sorted(line.split("=", 1)[0] for line in exported.splitlines())
    assert "PROOT_TMP_DIR" not in names and "NIX_BUILD_TOP" not in names
    assert "SOURCE_DATE_EPOCH=315532800" in exported.splitlines()
    assert "PATH=/usr/bin:/bin" in exported.splitlines()
    assert str(tmp_path) not in exported


# ------------------------------------------------------------------------------ Nix sandbox


NIX_OPTS = ["--option", "sandbox", "true", "--option", "substituters", "",
            "--option", "extra-sandbox-paths", "/usr /lib /lib64"]


def nix_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def nix_expr(trees: list[Path], commands: list[str], tag: str) -> str:
    tree_exprs = " ".join(f'(builtins.path {{ path = {t}; name = "tree-{i}"; }})'
                          for i, t in enumerate(trees))
    return textwrap.dedent(f"""\
        let
          builders = builtins.path {{ path = {BUILDERS}; name = "envnix-builders";
            filter = p: t: builtins.match ".*__pycache__.*" p == null; }};
        in derivation {{
          name = "run-{tag}";
          system = "x86_64-linux";
          builder = "/usr/bin/python3";
          args = [ "-E" "-s" "-B" "${{builders}}/run_steps.py" ];
          trees = builtins.toJSON [ {tree_exprs} ];
          commands = {nix_str(json.dumps(commands))};
          workdir = "{WORKDIR}";
          env = builtins.toJSON {{ PATH = "/usr/bin:/bin"; }};
          proot = "/usr/bin/proot";
        }}
        """)


@pytest.mark.slow
def test_in_nix_sandbox(tmp_path: Path) -> None:
    if not shutil.which("nix-build"):
        pytest.skip("nix-build is not installed")
    trees = image_trees(tmp_path / "img")
    cmds = ["mkdir -p /opt/x", "echo hello > /opt/x/hello.txt", "pwd > /out.txt",
            "rm /etc/motd", "id -u > /opt/x/uid", "echo more >> /etc/readonly",
            "echo s > /usr/bin/new && chmod 4755 /usr/bin/new", "cat /proc/self/status >/dev/null",
            'echo "${HOME}" > /opt/x/home', "echo $$ > /opt/x/pid",
            # /build is the sandbox's build dir, not in the image (faccessat2 must not leak).
            "if [ -x /build ]; then echo leak; else echo hidden; fi > /opt/x/leak"]
    nonce = f"{os.getpid()}-{time.time_ns()}"
    expr = tmp_path / "run.nix"
    expr.write_text(nix_expr(trees, cmds, nonce))
    t0 = time.monotonic()
    r = subprocess.run(["nix-build", str(expr), "--no-out-link", *NIX_OPTS],
                       capture_output=True, text=True, check=False)
    TIMINGS["nix sandbox build"] = round(time.monotonic() - t0, 3)
    assert r.returncode == 0, r.stderr
    out = Path(r.stdout.strip().splitlines()[-1])
    got = listing(out)
    assert got["opt/x/hello.txt"] == b"hello\n"
    assert got["opt/x/uid"] == b"0\n"
    assert got["out.txt"] == WORKDIR.encode() + b"\n"
    assert got["etc/.wh.motd"] == b""
    assert got["etc/readonly"] == b"ro\nmore\n"
    assert got["opt/x/home"] == b"/root\n"
    assert got["opt/x/pid"] == b"1\n"  # our PID namespace works inside Nix's sandbox
    assert got["opt/x/leak"] == b"hidden\n"
    # Nix's seccomp filter forbids setuid bits; proot -0 fakes the chmod's success.
    assert meta(out)["modes"] == {"etc/readonly": [0o444, 0, 0]}
    assert got["usr/bin/new"] == b"s\n"
    # Rebuild in the sandbox and compare bit for bit.
    t0 = time.monotonic()
    r = subprocess.run(["nix-build", str(expr), "--no-out-link", "--check", *NIX_OPTS],
                       capture_output=True, text=True, check=False)
    TIMINGS["nix sandbox --check"] = round(time.monotonic() - t0, 3)
    assert r.returncode == 0, r.stderr

    fail_expr = tmp_path / "fail.nix"
    fail_expr.write_text(nix_expr(trees, ["echo ok", "wget http://deb.debian.org/x"],
                                  nonce + "-fail"))
    r = subprocess.run(["nix-build", str(fail_expr), "--no-out-link", *NIX_OPTS],
                       capture_output=True, text=True, check=False)
    assert r.returncode != 0
    lines = [line.strip() for line in r.stderr.splitlines()
             if line.strip().startswith("envnix-builder:")]
    assert lines == ['envnix-builder: run(): "wget http://deb.debian.org/x" needs the network, '
                     'which builds do not have; use io.http(url="http://deb.debian.org/x", '
                     'checksum="sha256:...") or put the file in the build context and io.copy '
                     "it"], r.stderr


# ------------------------------------------------------------------------------ real debs


def fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=300) as resp:
            return resp.read()
    except (urllib.error.URLError, TimeoutError) as exc:
        pytest.skip(f"network unavailable: {url}: {exc}")


@pytest.fixture(scope="module")
def bookworm_index(tmp_path_factory: pytest.TempPathFactory) -> object:
    from envnix.core.errors import EnvnixError
    from envnix.lock.apt.fetch import load_index
    from envnix.lock.apt.sources import machine_apt_sources
    try:
        _, index = load_index(machine_apt_sources("bookworm", components=("main",)))
    except EnvnixError as exc:
        pytest.skip(f"no bookworm index: {exc}")
    return index


def deb_image(index: object, roots: list[str], base: Path) -> list[Path]:
    """Resolve, download (sha256-checked) and unpack ``roots``' closure; add skeleton + meta."""
    from envnix.lock.apt.resolver import resolve
    pkgs = resolve(index, roots)  # type: ignore[arg-type]
    debs = base / "debs"
    debs.mkdir(parents=True)

    def one(pkg: object) -> Path:
        data = fetch(pkg.url)  # type: ignore[attr-defined]
        assert hashlib.sha256(data).hexdigest() == pkg.sha256  # type: ignore[attr-defined]
        deb = debs / f"{pkg.name}.deb"  # type: ignore[attr-defined]
        deb.write_bytes(data)
        out = base / "trees" / pkg.name  # type: ignore[attr-defined]
        r = run_builder("unpack_deb.py", {"src": str(deb), "out": str(out)},
                        base / "build" / pkg.name)  # type: ignore[attr-defined]
        assert r.returncode == 0, r.stderr
        return out

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        trees = list(ex.map(one, pkgs))
    TIMINGS[f"fetch+unpack {len(pkgs)} debs ({' '.join(roots)})"] = round(
        time.monotonic() - t0, 3)
    skeleton = mkmeta(base / "skeleton", trees, skeleton=True)
    meta_tree = mkmeta(base / "meta", trees)
    return [skeleton, *trees, meta_tree]


@pytest.mark.network
@pytest.mark.slow
def test_real_bash_coreutils(bookworm_index: object, tmp_path: Path) -> None:
    trees = deb_image(bookworm_index, ["bash", "coreutils"], tmp_path / "img")
    cmds = ["mkdir -p /opt/x && echo hello > /opt/x/hello.txt", "pwd > /out.txt",
            "rm /etc/debian_version",
            # coreutils' ls and stat call statx: they must see the image, not the host.
            "ls -ln --time-style=+ /opt/x > /opt/ls.txt", "ls / > /opt/root.txt",
            "stat -c '%n %s' /opt/x/hello.txt > /opt/stat.txt",
            "cp -a /opt/x /opt/y && mv /opt/y/hello.txt /opt/y/moved.txt",
            "[[ $BASH_VERSION == 5.* ]]"]
    r, out = run_group(tmp_path, trees, cmds, "debs", env=json.dumps({}))
    assert_ok(r)
    got = listing(out)
    assert got["opt/x/hello.txt"] == b"hello\n"
    assert got["opt/y/moved.txt"] == b"hello\n"
    assert got["out.txt"] == WORKDIR.encode() + b"\n"
    assert got["etc/.wh.debian_version"] == b""
    assert got["opt/ls.txt"] == b"total 4\n-rw-r--r-- 1 0 0 6  hello.txt\n"
    assert got["opt/stat.txt"] == b"/opt/x/hello.txt 6\n"
    image_top = {n for t in trees for n in os.listdir(t / "root")} | {"opt", "out.txt"}
    assert got["opt/root.txt"] == "".join(f"{n}\n" for n in sorted(image_top)).encode()
    r2, out2 = run_group(tmp_path, trees, cmds, "debs2", env=json.dumps({}))
    assert_ok(r2)
    assert tree_digest(out) == tree_digest(out2)
    r, _ = run_group(tmp_path, trees, ["cat /etc/os-release >/dev/null", "false",
                                       "echo never"], "debs-fail")
    assert error_line(r) == "envnix-builder: run: command failed (exit 1): false"


SETUP_PY = """\
from setuptools import setup, find_packages
setup(name="detectron2", version="0.6", packages=find_packages(),
      entry_points={"console_scripts": ["d2-hello=detectron2:hello"]})
"""


PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "pep660proj"
version = "1.0"
"""


@pytest.mark.network
@pytest.mark.slow
def test_seed_pip_install_editable(bookworm_index: object, tmp_path: Path) -> None:
    """The seed's `pip install -e /detectron2`, offline, build dependencies in the image."""
    trees = deb_image(bookworm_index, ["bash", "python3", "python3-pip", "python3-setuptools",
                                       "python3-wheel"], tmp_path / "img")
    project = make_tree(tmp_path / "detectron2", {
        "detectron2/setup.py": SETUP_PY.encode(),
        "detectron2/detectron2/__init__.py": b"def hello():\n    print('hello from d2')\n",
    }, kind="copy", name="detectron2")
    trees = [*trees, project]
    outs = []
    for n in range(2):
        r, out = run_group(tmp_path, trees, [
            "pip install --no-build-isolation --no-index -e /detectron2"], f"pip{n}",
            env=json.dumps({}))
        assert_ok(r)
        outs.append(out)
    assert tree_digest(outs[0]) == tree_digest(outs[1])
    got = listing(outs[0])
    site = "usr/local/lib/python3.11/dist-packages"
    pth = {k: v for k, v in got.items() if k.startswith(site) and k.endswith((".pth",
                                                                              ".egg-link"))}
    assert pth and any(b"/detectron2" in v for v in pth.values() if isinstance(v, bytes)), got
    assert "usr/local/bin/d2-hello" in got
    assert not [k for k in got if k.endswith(".pyc") or k.startswith(("tmp/", "root/.cache"))]
    # A later run() group sees the installed package.
    r, out = run_group(tmp_path, [*trees, outs[0]], [
        "python3 -c 'import detectron2, sys; print(detectron2.__file__)' > /where.txt",
        "d2-hello > /hello.txt"], "use", env=json.dumps({}))
    assert_ok(r)
    assert listing(out) == {"where.txt": b"/detectron2/detectron2/__init__.py\n",
                            "hello.txt": b"hello from d2\n"}
    # A pyproject.toml project (PEP 660 editable wheel through setuptools' backend).
    pep660 = make_tree(tmp_path / "pep660", {
        "pep660proj/pyproject.toml": PYPROJECT.encode(),
        "pep660proj/pep660proj/__init__.py": b"VALUE = 42\n",
    }, kind="copy", name="pep660proj")
    r, out = run_group(tmp_path, [*trees, pep660], [
        "pip install --no-build-isolation --no-index -e /pep660proj",
        "python3 -c 'import pep660proj; print(pep660proj.VALUE)' > /value.txt"], "pep660",
        env=json.dumps({}))
    assert_ok(r)
    got = listing(out)
    assert got["value.txt"] == b"42\n"
    assert any(k.startswith(f"{site}/__editable__") and k.endswith(".pth") for k in got), got
    assert not [k for k in got if k.endswith(".pyc") or k.startswith("tmp/")]
    # With build isolation pip would download setuptools: the advice names it.
    r, _ = run_group(tmp_path, [*trees, pep660], ["pip install -e /pep660proj"], "isolated",
                     env=json.dumps({}))
    assert error_line(r) == (
        'envnix-builder: run(): "pip install -e /pep660proj" needs the network, which builds '
        "do not have (pip fetches the project's build dependencies); put them in the image "
        'with install.python_packages(name=["setuptools>=61"]) and add --no-build-isolation')
    # Without the network, a PyPI install fails with the declarative replacement.
    t0 = time.monotonic()
    r, _ = run_group(tmp_path, trees, ["pip install six"], "pip-net", env=json.dumps({}))
    TIMINGS["pip install six (offline failure)"] = round(time.monotonic() - t0, 3)
    assert error_line(r) == ('envnix-builder: run(): "pip install six" needs the network, '
                             'which builds do not have; use install.python_packages('
                             'name=["six"])')

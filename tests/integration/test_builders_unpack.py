"""Tests for the package-tree builders: unpack_deb.py, install_wheel.py, mkmeta.py (+ _archive).

Every builder runs as a subprocess the way Nix runs it: an empty environment plus the
builder's inputs (like ``env -i out=... src=... /usr/bin/python3 envnix/builders/X.py``).

* Offline tests craft small (often malicious) .deb/.whl files with tarfile/zipfile.
  Set ENVNIX_TEST_PYTHONS=/path/python3.12:/path/python3.13 to also run them on newer Pythons.
* ``network`` tests download real bookworm .debs (mirror taken from this machine's apt sources,
  Packages.xz fetched once per session) and real wheels from PyPI (simple JSON API).
"""

from __future__ import annotations

import base64
import csv
import glob
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

BUILDERS = Path(__file__).resolve().parents[2] / "envnix" / "builders"
sys.path.insert(0, str(BUILDERS))  # the builders import their siblings as top-level modules
import _builder as B  # noqa: E402

HOST_PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
PYTHONS = [HOST_PY] + [p for p in os.environ.get("ENVNIX_TEST_PYTHONS", "").split(":") if p]
SITE = "/usr/local/lib/python3.11/dist-packages"
INTERP = "/usr/bin/python3.11"


def wheel_env(src: Path, out: Path, name: str, **extra: str) -> dict[str, str]:
    return {
        "src": str(src), "out": str(out), "pkgName": name, "sitePackages": SITE,
        "scriptsDir": "/usr/local/bin", "dataDir": "/usr/local",
        "headersDir": f"/usr/local/include/python3.11/{name}", "interpreter": INTERP, **extra,
    }


# ------------------------------------------------------------------------------ helpers


def run_builder(script: str, env: dict[str, str], cwd: Path,
                python: str = HOST_PY) -> subprocess.CompletedProcess[str]:
    """Run a builder with only ``env`` plus what Nix itself sets in a sandbox."""
    cwd.mkdir(parents=True, exist_ok=True)
    full = {"HOME": "/homeless-shelter", "PATH": "/path-not-set", "TMPDIR": str(cwd),
            "NIX_BUILD_TOP": str(cwd), "NIX_BUILD_CORES": "1", **env}
    return subprocess.run([python, str(BUILDERS / script)], env=full, cwd=cwd,
                          capture_output=True, text=True, check=False)


def assert_ok(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


def assert_one_line_error(r: subprocess.CompletedProcess[str], out: Path,
                          *needles: str) -> str:
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("envnix-builder: "), lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    assert not (out / "meta.json").exists()
    return lines[0]


def tree_listing(top: Path) -> list[tuple[str, ...]]:
    """Sorted (path, kind, mode, sha256 | link target) of everything under ``top``."""
    rows: list[tuple[str, ...]] = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, top)
            st = os.lstat(p)
            mode = oct(stat.S_IMODE(st.st_mode))
            if stat.S_ISLNK(st.st_mode):
                rows.append((rel, "l", mode, os.readlink(p)))
            elif stat.S_ISDIR(st.st_mode):
                rows.append((rel, "d", mode, ""))
            else:
                rows.append((rel, "f", mode, hashlib.sha256(Path(p).read_bytes()).hexdigest()))
    return sorted(rows)


def meta(out: Path) -> dict:
    text = (out / "meta.json").read_text()
    assert text.endswith("\n") and "\n" not in text[:-1]
    return json.loads(text)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


# ---- crafting .deb files


def ar_archive(members: list[tuple[str, bytes]]) -> bytes:
    parts = [b"!<arch>\n"]
    for name, data in members:
        parts.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode())
        parts.append(data)
        if len(data) % 2:
            parts.append(b"\n")
    return b"".join(parts)


Entry = tuple  # ("file", name, data, mode, uid, gid) | ("dir", name, mode) | ("sym", name, t)


def tar_bytes(entries: list[Entry], compression: str = "xz") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for e in entries:
            kind, name = e[0], e[1]
            ti = tarfile.TarInfo(name)
            data = None
            if kind == "file":
                data = e[2]
                ti.size = len(data)
                ti.mode = e[3] if len(e) > 3 else 0o644
                ti.uid, ti.gid = (e[4], e[5]) if len(e) > 5 else (0, 0)
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, e[2] if len(e) > 2 else 0o755
            elif kind == "sym":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, e[2], 0o777
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, e[2]
                ti.mode = e[3] if len(e) > 3 else 0o755
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    data = raw.getvalue()
    if compression == "xz":
        return lzma.compress(data)
    if compression == "gz":
        import gzip
        return gzip.compress(data, mtime=0)
    if compression == "bz2":
        import bz2
        return bz2.compress(data)
    if compression == "zst":
        zstandard = pytest.importorskip("zstandard")
        return zstandard.ZstdCompressor().compress(data)
    return data


CONTROL = b"Package: demo\nVersion: 1.0-1\nArchitecture: amd64\nDescription: demo\n x\n"


def make_deb(path: Path, entries: list[Entry], compression: str = "xz",
             control: bytes = CONTROL) -> Path:
    ctl = tar_bytes([("dir", "./"), ("file", "./control", control)], "xz")
    suffix = "" if compression == "none" else "." + compression
    path.write_bytes(ar_archive([
        ("debian-binary", b"2.0\n"), ("control.tar.xz", ctl),
        (f"data.tar{suffix}", tar_bytes(entries, compression)),
    ]))
    return path


def unpack(tmp: Path, entries: list[Entry], python: str = HOST_PY, compression: str = "xz",
           name: str = "demo") -> tuple[subprocess.CompletedProcess[str], Path]:
    deb = make_deb(tmp / f"{name}.deb", entries, compression)
    out = tmp / f"out-{name}"
    r = run_builder("unpack_deb.py", {"src": str(deb), "out": str(out), "pkgName": name,
                                      "pkgVersion": "1.0-1"}, tmp / "build", python)
    return r, out


# ---- crafting wheels


def make_wheel(path: Path, files: dict[str, bytes | tuple[bytes, int]], *,
               dist: str = "demo-1.0", wheel_version: str = "1.0",
               tamper: dict[str, bytes] | None = None,
               unlisted: tuple[str, ...] = ()) -> Path:
    """A wheel with a correct RECORD, then ``tamper`` (content swapped after hashing) and
    ``unlisted`` (left out of RECORD) applied."""
    members: dict[str, tuple[bytes, int]] = {}
    for name, v in files.items():
        members[name] = v if isinstance(v, tuple) else (v, 0o644)
    members[f"{dist}.dist-info/WHEEL"] = (
        f"Wheel-Version: {wheel_version}\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n".encode(), 0o644)
    members.setdefault(f"{dist}.dist-info/METADATA",
                       (b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n", 0o644))
    rows = [(n, f"sha256={b64(d)}", str(len(d))) for n, (d, _) in members.items()
            if n not in unlisted]
    rows.append((f"{dist}.dist-info/RECORD", "", ""))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    members[f"{dist}.dist-info/RECORD"] = (buf.getvalue().encode(), 0o644)
    for n, d in (tamper or {}).items():
        members[n] = (d, members[n][1])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, (d, mode) in members.items():
            zi = zipfile.ZipInfo(n, (1980, 1, 1, 0, 0, 0))
            zi.create_system = 3
            zi.external_attr = (0o100000 | mode) << 16
            zf.writestr(zi, d)
    return path


def install(tmp: Path, whl: Path, python: str = HOST_PY,
            **extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp / f"out-{whl.stem}"
    r = run_builder("install_wheel.py", wheel_env(whl, out, "demo", **extra), tmp / "build",
                    python)
    return r, out


# ------------------------------------------------------------------------------ offline: deb


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("compression", ["xz", "gz", "bz2", "none"])
def test_crafted_deb_extracts(tmp_path: Path, python: str, compression: str) -> None:
    r, out = unpack(tmp_path, [
        ("dir", "./"), ("dir", "./bin/"), ("file", "./bin/foo", b"#!/bin/sh\n", 0o755),
        ("sym", "./usr/bin/foo", "/bin/foo"),           # usr-merge compat link: file wins
        ("sym", "./usr/bin/bar", "/bin/foo"),
        ("dir", "./lib64/"), ("sym", "./lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so"),
        ("dir", "./usr/lib/x", 0o700), ("file", "./usr/lib/x/ro", b"ro", 0o444),
        ("file", "./usr/bin/su", b"su", 0o4755), ("file", "./usr/bin/chage", b"c", 0o2755, 0, 42),
        ("file", "./home/u/f", b"u", 0o644, 1000, 1000),
        ("sym", "./usr/share/rel", "../lib/x/ro"),
        ("hard", "./usr/bin/foo2", "./bin/foo"), ("hard", "./usr/bin/foo3", "./usr/bin/foo2"),
        ("chr", "./dev/null"), ("fifo", "./run/fifo"),
    ], python=python, compression=compression)
    assert_ok(r)
    root = out / "root"
    assert sorted(os.listdir(root)) == ["home", "usr"]
    assert (root / "usr/bin/foo").read_bytes() == b"#!/bin/sh\n"
    assert not (root / "usr/bin/foo").is_symlink()
    assert os.readlink(root / "usr/bin/bar") == "/bin/foo"
    assert os.readlink(root / "usr/lib64/ld.so") == "/lib/x86_64-linux-gnu/ld.so"
    assert os.readlink(root / "usr/share/rel") == "../lib/x/ro"
    assert (root / "usr/bin/foo2").read_bytes() == b"#!/bin/sh\n"
    assert not (root / "usr/bin/foo2").is_symlink()
    assert (root / "usr/bin/foo2").stat().st_mode & 0o111
    assert not (root / "dev").exists()
    m = meta(out)
    assert m["kind"] == "deb" and m["name"] == "demo" and m["version"] == "1.0-1"
    # Hard links (merged-/usr names, a link to a link too) are one group for mklayer.
    assert m["hardlinks"] == [["usr/bin/foo", "usr/bin/foo2", "usr/bin/foo3"]]
    assert m["modes"] == {
        "home/u/f": [0o644, 1000, 1000], "usr/bin/chage": [0o2755, 0, 42],
        "usr/bin/su": [0o4755, 0, 0], "usr/lib/x": [0o700, 0, 0],
        "usr/lib/x/ro": [0o444, 0, 0],
    }
    notes = "\n".join(m["notes"])
    assert "dev/null: skipped device node" in notes and "run/fifo: skipped fifo" in notes
    assert (out / "control").read_bytes() == CONTROL


def test_crafted_deb_hard_link_with_another_mode_is_a_copy(tmp_path: Path) -> None:
    """A hard link cannot have a mode of its own: one whose header says another mode (or a
    name shipped before) is written as a copy, outside the groups."""
    r, out = unpack(tmp_path, [("file", "./usr/bin/a", b"x", 0o755),
                               ("hard", "./usr/bin/b", "./usr/bin/a", 0o700),
                               ("hard", "./usr/bin/c", "./usr/bin/a")])
    assert_ok(r)
    root = out / "root/usr/bin"
    assert (root / "b").read_bytes() == b"x" and (root / "b").stat().st_nlink == 1
    assert (root / "c").stat().st_ino == (root / "a").stat().st_ino
    m = meta(out)
    assert m["hardlinks"] == [["usr/bin/a", "usr/bin/c"]]
    assert m["modes"] == {"usr/bin/b": [0o700, 0, 0]}


def test_crafted_deb_symlink_then_file_wins(tmp_path: Path) -> None:
    r, out = unpack(tmp_path, [("sym", "./usr/bin/foo", "/bin/foo"),
                               ("file", "./bin/foo", b"x", 0o755)])
    assert_ok(r)
    assert (out / "root/usr/bin/foo").read_bytes() == b"x"


def test_crafted_deb_zstd(tmp_path: Path) -> None:
    pytest.importorskip("zstandard")
    entries: list[Entry] = [("dir", "./"), ("file", "./bin/z", b"zstd data", 0o755)]
    r, out = unpack(tmp_path, entries, python=sys.executable, compression="zst")
    assert_ok(r)
    assert (out / "root/usr/bin/z").read_bytes() == b"zstd data"
    has_zstd = subprocess.run([HOST_PY, "-c", "import zstandard"], capture_output=True,
                              check=False).returncode == 0
    if not has_zstd:  # the host toolchain's python has no zstandard: a clear one-line error
        r, out = unpack(tmp_path, entries, compression="zst", name="demo2")
        assert_one_line_error(r, out, "zstandard")


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize(("case", "entries", "needle"), [
    ("dotdot", [("file", "./usr/../../evil", b"x")], "'..'"),
    ("dotdot-plain", [("file", "../evil", b"x")], "'..'"),
    ("absolute", [("file", "/abs", b"x")], "absolute path"),
    ("symlink-climbs", [("sym", "./a", "../../x")], "climbs above the root"),
    ("symlink-climbs-nested", [("sym", "./usr/share/a", "../../../etc/x")],
     "climbs above the root"),
    ("write-through-symlink", [("sym", "./a", "/etc"), ("file", "./a/passwd", b"x")],
     "through the symlink 'a'"),
    ("write-through-rel-symlink", [("sym", "./usr/d", "."), ("file", "./usr/d/x", b"x")],
     "through the symlink 'usr/d'"),
    ("dir-through-symlink", [("sym", "./a", "/etc"), ("dir", "./a/b/")], "through the symlink"),
    ("hardlink-outside", [("hard", "./x", "../../etc/passwd")], "outside the archive"),
    ("hardlink-absolute", [("hard", "./x", "/etc/passwd")], "outside the archive"),
    ("hardlink-not-yet", [("hard", "./x", "./later"), ("file", "./later", b"x")],
     "not (yet) extracted"),
    ("hardlink-to-symlink", [("sym", "./s", "/etc/passwd"), ("hard", "./x", "./s")],
     "not a regular file"),
    ("two-different-files", [("file", "./bin/x", b"a"), ("file", "./usr/bin/x", b"b")],
     "different content"),
    ("two-different-symlinks", [("sym", "./bin/x", "a"), ("sym", "./usr/bin/x", "b")],
     "different targets"),
    ("file-over-dir", [("dir", "./d/"), ("file", "./d", b"x")], "conflicts"),
])
def test_crafted_deb_rejected(tmp_path: Path, python: str, case: str, entries: list[Entry],
                              needle: str) -> None:
    r, out = unpack(tmp_path, entries, python=python)
    assert_one_line_error(r, out, needle)
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize(("blob", "needle"), [
    (b"not an archive", "not an ar archive"),
    (ar_archive([("debian-binary", b"3.0\n")]), "unsupported .deb format"),
    (ar_archive([("debian-binary", b"2.0\n"), ("control.tar.xz", b"garbage")]),
     "exactly one data.tar"),
    (ar_archive([("debian-binary", b"2.0\n"), ("control.tar.xz", b"garbage"),
                 ("data.tar.xz", b"\xfd7zXZ\x00garbage")]), "bad"),
    (b"!<arch>\ndebian-binary   0           0     0     100644  99999     `\n2.0\n",
     "truncated"),
])
def test_bad_deb_container(tmp_path: Path, blob: bytes, needle: str) -> None:
    deb = tmp_path / "bad.deb"
    deb.write_bytes(blob)
    out = tmp_path / "out"
    r = run_builder("unpack_deb.py", {"src": str(deb), "out": str(out), "pkgName": "bad"},
                    tmp_path / "build")
    assert_one_line_error(r, out, "envnix-builder: deb bad", needle)


def test_missing_env(tmp_path: Path) -> None:
    r = run_builder("unpack_deb.py", {"out": str(tmp_path / "o")}, tmp_path)
    assert_one_line_error(r, tmp_path / "o", "'src' is not set")


# ------------------------------------------------------------------------------ offline: wheel

DIST = "demo-1.0"
DEMO_FILES: dict[str, bytes | tuple[bytes, int]] = {
    "pkg/__init__.py": b"",
    "pkg/cli.py": b"class main:\n    @staticmethod\n    def run():\n        print('ran')\n"
                  b"        return 0\n",
    "pkg/gui.py": b"def start():\n    return 0\n",
    "pkg/tool.so": (b"\x7fELF fake", 0o755),
    f"{DIST}.data/scripts/demo-script": (b"#!python -u\nprint(1)\n", 0o644),
    f"{DIST}.data/scripts/shell.sh": (b"#!/bin/sh\necho hi\n", 0o644),
    f"{DIST}.data/headers/demo.h": b"int x;\n",
    f"{DIST}.data/data/share/demo/x.txt": b"data\n",
    f"{DIST}.data/platlib/plat.py": b"P = 1\n",
    f"{DIST}.dist-info/entry_points.txt":
        b"[console_scripts]\ndemo = pkg.cli:main.run [extra]\n"
        b"[gui_scripts]\ndemo-gui = pkg.gui:start\n[demo.plugins]\nx = y\n",
}


@pytest.mark.parametrize("python", PYTHONS)
def test_crafted_wheel_installs(tmp_path: Path, python: str) -> None:
    whl = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", DEMO_FILES)
    r, out = install(tmp_path, whl, python)
    assert_ok(r)
    root = out / "root"
    site = root / SITE[1:]
    bindir = root / "usr/local/bin"
    assert (site / "pkg/cli.py").exists() and (site / "plat.py").read_bytes() == b"P = 1\n"
    assert (site / "pkg/tool.so").stat().st_mode & 0o777 == 0o755
    assert (site / "pkg/cli.py").stat().st_mode & 0o777 == 0o644
    assert (root / "usr/local/include/python3.11/demo/demo.h").read_bytes() == b"int x;\n"
    assert (root / "usr/local/share/demo/x.txt").read_bytes() == b"data\n"
    assert not (site / f"{DIST}.data").exists()
    assert (bindir / "demo-script").read_bytes() == b"#!/usr/bin/python3.11 -u\nprint(1)\n"
    assert (bindir / "shell.sh").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (bindir / "demo").read_text() == (
        "#!/usr/bin/python3.11\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n"
        "from pkg.cli import main\n"
        'if __name__ == "__main__":\n'
        '    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])\n'
        "    sys.exit(main.run())\n")
    assert "from pkg.gui import start\n" in (bindir / "demo-gui").read_text()
    assert not (bindir / "x").exists()
    for s in ("demo", "demo-gui", "demo-script", "shell.sh"):
        assert (bindir / s).stat().st_mode & 0o777 == 0o755, s
    # the generated wrapper works
    run = subprocess.run([HOST_PY, str(bindir / "demo")], capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"},
                         check=False)
    assert run.returncode == 0 and run.stdout == "ran\n", run.stderr
    # INSTALLER and RECORD
    di = site / f"{DIST}.dist-info"
    assert (di / "INSTALLER").read_bytes() == b"envnix\n"
    rows = list(csv.reader((di / "RECORD").read_text().splitlines()))
    assert rows[-1] == [f"{DIST}.dist-info/RECORD", "", ""]
    paths = [row[0] for row in rows[:-1]]
    assert paths == sorted(paths)
    assert "../../../bin/demo" in paths and "../../../include/python3.11/demo/demo.h" in paths
    assert "../../../share/demo/x.txt" in paths and f"{DIST}.dist-info/INSTALLER" in paths
    for path, h, size in rows[:-1]:
        data = (site / path).read_bytes()
        assert h == f"sha256={b64(data)}" and int(size) == len(data), path
    n_files = sum(len(f) for _, _, f in os.walk(root))
    assert n_files == len(rows)
    assert meta(out) == {"format": B.META_FORMAT, "kind": "wheel", "name": "demo",
                         "version": "1.0", "modes": {}}


def test_wheel_long_interpreter_uses_sh_wrapper(tmp_path: Path) -> None:
    pydir = tmp_path / "my python"
    pydir.mkdir()
    (pydir / "python3").symlink_to(HOST_PY)
    whl = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", DEMO_FILES)
    r, out = install(tmp_path, whl, interpreter=str(pydir / "python3"))
    assert_ok(r)
    site = out / "root" / SITE[1:]
    script = out / "root/usr/local/bin/demo"
    assert script.read_text().startswith("#!/bin/sh\n'''exec' ")
    run = subprocess.run([str(script)], capture_output=True, text=True, check=False,
                         env={"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"})
    assert run.returncode == 0 and run.stdout == "ran\n", run.stderr


def test_wheel_deterministic(tmp_path: Path) -> None:
    whl = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", DEMO_FILES)
    r1, out1 = install(tmp_path / "a", whl)
    r2, out2 = install(tmp_path / "b", whl)
    assert_ok(r1)
    assert_ok(r2)
    assert tree_listing(out1) == tree_listing(out2)


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize(("case", "kwargs", "needle"), [
    ("hash-mismatch", {"tamper": {"pkg/cli.py": b"evil()\n"}}, "does not match RECORD"),
    ("script-hash-mismatch", {"tamper": {f"{DIST}.data/scripts/shell.sh": b"#!/bin/sh\nrm\n"}},
     "does not match RECORD"),
    ("not-in-record", {"unlisted": ("pkg/gui.py",)}, "not listed with a hash in RECORD"),
    ("dotdot", {"files": {"../evil.py": b"x"}}, "'..'"),
    ("absolute", {"files": {"/etc/evil": b"x"}}, "absolute path"),
    ("data-dotdot", {"files": {f"{DIST}.data/scripts/../../x": b"x"}}, "'..'"),
    ("unknown-scheme", {"files": {f"{DIST}.data/etc/passwd": b"x"}}, "known"),
    ("scheme-root", {"files": {f"{DIST}.data/scripts": b"x"}}, "known"),
    ("wheel-version-2", {"wheel_version": "2.0"}, "unsupported Wheel-Version 2.0"),
    ("bad-entry-point", {"files": {f"{DIST}.dist-info/entry_points.txt":
                                   b"[console_scripts]\nx = not a module\n"}}, "entry_points"),
    ("entry-point-slash", {"files": {f"{DIST}.dist-info/entry_points.txt":
                                     b"[console_scripts]\n../x = a:b\n"}}, "bad script name"),
])
def test_crafted_wheel_rejected(tmp_path: Path, python: str, case: str, kwargs: dict,
                                needle: str) -> None:
    kwargs = dict(kwargs)  # the parametrize dict is shared between runs
    files = dict(DEMO_FILES)
    files.update(kwargs.pop("files", {}))
    whl = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", files, **kwargs)
    r, out = install(tmp_path, whl, python)
    line = assert_one_line_error(r, out, needle)
    assert line.startswith("envnix-builder: wheel demo")


def test_wheel_bad_zip_and_env(tmp_path: Path) -> None:
    whl = tmp_path / "x.whl"
    whl.write_bytes(b"PK nonsense")
    r, out = install(tmp_path, whl)
    assert_one_line_error(r, out, "bad zip archive")
    whl = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", DEMO_FILES)
    r, out = install(tmp_path, whl, sitePackages="relative/site")
    assert_one_line_error(r, out, "must be an absolute image path")


# ------------------------------------------------------------------------------ offline: mkmeta


def fake_tree(path: Path, kind: str, files: dict[str, str | None],
              control: str | None = None) -> Path:
    """A package tree; a None value makes a symlink to 'x'."""
    for rel, text in files.items():
        p = path / "root" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            p.symlink_to("x")
        else:
            p.write_text(text)
    (path / "meta.json").write_text(json.dumps({"kind": kind, "name": path.name,
                                                "version": "1", "modes": {}}) + "\n")
    if control is not None:
        (path / "control").write_text(control)
    return path


def test_mkmeta_crafted(tmp_path: Path) -> None:
    t1 = fake_tree(tmp_path / "t1", "deb", {
        "usr/bin/dash": "d", "usr/share/ca-certificates/mozilla/B.crt": "B-cert",
        "usr/share/ca-certificates/mozilla/link.crt": None},
        "Package: zz\nVersion: 2\nStatus: purge ok not-installed\nDescription: z\n more\n")
    t2 = fake_tree(tmp_path / "t2", "deb", {"usr/share/ca-certificates/a/A.crt": "A-cert\n"},
                   "Package: aa\nVersion: 1\n\n")
    t3 = fake_tree(tmp_path / "t3", "wheel", {"usr/local/bin/x": "x"})
    trees_file = tmp_path / "trees.json"
    trees_file.write_text(json.dumps([str(t3), str(t1), str(t2)]))
    users = [["envd", 1000, 1001, "/home/envd", "/bin/bash"]]
    out = tmp_path / "out"
    r = run_builder("mkmeta.py", {"out": str(out), "trees": str(trees_file),
                                  "workdir": "/home/envd/work/proj",
                                  "users": json.dumps(users)}, tmp_path / "build")
    assert_ok(r)
    root = out / "root"
    assert (root / "etc/passwd").read_text() == (
        "root:x:0:0:root:/root:/bin/sh\nenvd:x:1000:1001::/home/envd:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    assert (root / "etc/group").read_text() == "root:x:0:\nenvd:x:1001:\nnogroup:x:65534:\n"
    assert (root / "var/lib/dpkg/status").read_text() == (
        "Package: aa\nStatus: install ok installed\nVersion: 1\n\n"
        "Package: zz\nStatus: install ok installed\nVersion: 2\nDescription: z\n more\n\n")
    assert (root / "etc/ssl/certs/ca-certificates.crt").read_text() == "A-cert\nB-cert\n"
    assert os.readlink(root / "usr/bin/sh") == "dash"
    assert (root / "home/envd/work/proj").is_dir()
    assert meta(out)["modes"] == {
        "home/envd": [0o755, 1000, 1001], "home/envd/work": [0o755, 1000, 1001],
        "home/envd/work/proj": [0o755, 1000, 1001], "root": [0o700, 0, 0],
        "tmp": [0o1777, 0, 0],
    }
    # same inputs given inline, in another order: same tree
    out2 = tmp_path / "out2"
    r = run_builder("mkmeta.py", {"out": str(out2), "trees": json.dumps([str(t1), str(t2),
                                                                         str(t3)]),
                                  "workdir": "/home/envd/work/proj",
                                  "users": json.dumps(users)}, tmp_path / "build")
    assert_ok(r)
    assert tree_listing(out) == tree_listing(out2)


def test_mkmeta_workdir_outside_home_and_bad_users(tmp_path: Path) -> None:
    t = fake_tree(tmp_path / "t", "deb", {"usr/bin/sh": "s", "usr/bin/bash": "b"},
                  "Package: a\nVersion: 1\n")
    out = tmp_path / "out"
    r = run_builder("mkmeta.py", {"out": str(out), "trees": json.dumps([str(t)]),
                                  "workdir": "/srv/app"}, tmp_path / "build")
    assert_ok(r)
    assert (out / "root/srv/app").is_dir() and not (out / "root/usr").exists()
    assert (out / "root/etc/passwd").read_text().startswith("root:x:0:0:root:/root:/bin/bash\n")
    assert "srv/app" not in meta(out)["modes"]
    for i, (users, needle) in enumerate([('[["bad:name", 1, 1, "/h", "/bin/sh"]]', "bad name"),
                          ('[["a", -1, 1, "/h", "/bin/sh"]]', "bad uid"),
                          ('[["a", 1, 1, "h", "/bin/sh"]]', "must be absolute"),
                          ("not json", "not JSON")]):
        o = tmp_path / f"bad{i}"
        r = run_builder("mkmeta.py", {"out": str(o), "trees": "[]", "users": users},
                        tmp_path / "build")
        assert_one_line_error(r, o, needle)


def test_mkmeta_does_not_follow_tree_symlinks(tmp_path: Path) -> None:
    """A tree whose usr/share is a symlink to a host dir must not pull host files in."""
    host = tmp_path / "host/usr/share/ca-certificates/mozilla"
    host.mkdir(parents=True)
    (host / "HOST.crt").write_text("host cert\n")
    t = fake_tree(tmp_path / "t", "deb", {"usr/bin/dash": "d"}, "Package: a\n")
    (t / "root/usr/share").symlink_to(tmp_path / "host/usr/share")
    (t / "root/usr/sbin").symlink_to(tmp_path / "host")
    out = tmp_path / "out"
    assert_ok(run_builder("mkmeta.py", {"out": str(out), "trees": json.dumps([str(t)])},
                          tmp_path / "build"))
    assert not (out / "root/etc/ssl").exists()


def test_mkmeta_skeleton(tmp_path: Path) -> None:
    t = fake_tree(tmp_path / "t", "deb", {"usr/lib32/ld.so": "x"})
    out = tmp_path / "out"
    r = run_builder("mkmeta.py", {"out": str(out), "skeleton": "1",
                                  "trees": json.dumps([str(t)])}, tmp_path / "build")
    assert_ok(r)
    root = out / "root"
    links = {p.name: os.readlink(p) for p in root.iterdir() if p.is_symlink()}
    assert links == {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib",
                     "lib64": "usr/lib64", "lib32": "usr/lib32"}
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "tmp", "var/tmp", "root",
              "home", "proc", "sys", "dev", "run"):
        assert (root / d).is_dir() and not (root / d).is_symlink(), d
    m = meta(out)
    assert m["kind"] == "meta"
    assert m["modes"] == {"root": [0o700, 0, 0], "tmp": [0o1777, 0, 0],
                          "var/tmp": [0o1777, 0, 0]}
    out2 = tmp_path / "out2"
    assert_ok(run_builder("mkmeta.py", {"out": str(out2), "skeleton": "1"}, tmp_path / "b"))
    assert not (out2 / "root/lib32").exists()


# ------------------------------------------------------------------------------ network

DEBS = ("dash", "libc6", "ca-certificates", "libgl1", "perl-base", "mount")


def debian_mirror() -> str:
    """The bookworm 'main' mirror URI from this machine's apt sources (deb822 or one-line)."""
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", Path(f).read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            if ("deb" in fields.get("types", "").split()
                    and "bookworm" in fields.get("suites", "").split()
                    and "main" in fields.get("components", "").split()
                    and fields.get("enabled", "yes").lower() != "no" and fields.get("uris")):
                return fields["uris"].split()[0].rstrip("/")
    for f in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if not os.path.exists(f):
            continue
        for line in Path(f).read_text().splitlines():
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 4 and words[0] == "deb" and words[2] == "bookworm" \
                    and "main" in words[3:]:
                return words[1].rstrip("/")
    pytest.skip("no bookworm main entry in this machine's apt sources")


def fetch(url: str, headers: dict[str, str] | None = None) -> bytes:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.read()
    except (urllib.error.URLError, TimeoutError) as exc:
        pytest.skip(f"network unavailable: {url}: {exc}")


@pytest.fixture(scope="session")
def bookworm_packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    """(mirror, {package: {Filename, SHA256, Version}}) from Packages.xz, fetched once."""
    mirror = debian_mirror()
    cache = tmp_path_factory.mktemp("apt") / "Packages.xz"
    if not cache.exists():
        cache.write_bytes(fetch(f"{mirror}/dists/bookworm/main/binary-amd64/Packages.xz"))
    index: dict[str, dict[str, str]] = {}
    for stanza in lzma.decompress(cache.read_bytes()).decode("utf-8").split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version|Filename|SHA256): (.*)$", stanza, re.M))
        if fields.get("Package") in DEBS:
            index[fields["Package"]] = fields
    return mirror, index


@pytest.fixture(scope="module")
def real_debs(bookworm_packages: tuple[str, dict],
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    mirror, index = bookworm_packages
    d = tmp_path_factory.mktemp("debs")
    paths = {}
    for name in DEBS:
        info = index[name]
        data = fetch(f"{mirror}/{info['Filename']}")
        assert hashlib.sha256(data).hexdigest() == info["SHA256"], name
        paths[name] = d / os.path.basename(info["Filename"])
        paths[name].write_bytes(data)
    return paths


WHEELS = {"six": r"-py2\.py3-none-any\.whl$|-py3-none-any\.whl$",
          "tqdm": r"-py3-none-any\.whl$",
          "numpy": r"-cp311-cp311-manylinux[^-]*x86_64\.whl$"}


@pytest.fixture(scope="module")
def real_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("wheels")
    paths = {}
    for name, pattern in WHEELS.items():
        index = json.loads(fetch(f"https://pypi.org/simple/{name}/",
                                 {"Accept": "application/vnd.pypi.simple.v1+json"}))
        files = [f for f in index["files"]
                 if re.search(pattern, f["filename"]) and not f.get("yanked")]
        best = max(files, key=lambda f: (f.get("upload-time", ""), f["filename"]))
        data = fetch(best["url"])
        assert hashlib.sha256(data).hexdigest() == best["hashes"]["sha256"]
        paths[name] = d / best["filename"]
        paths[name].write_bytes(data)
    return paths


TIMINGS: dict[str, float] = {}


def timed_run(label: str, script: str, env: dict[str, str], cwd: Path,
              ) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    r = run_builder(script, env, cwd)
    TIMINGS[label] = round(time.monotonic() - t0, 3)
    return r


@pytest.fixture(scope="module")
def deb_trees(real_debs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
              ) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("debtrees")
    outs = {}
    for name, deb in real_debs.items():
        out = d / name
        r = timed_run(f"unpack_deb {name}", "unpack_deb.py",
                      {"src": str(deb), "out": str(out), "pkgName": name,
                       "pkgVersion": deb.name.split("_")[1]}, d / "build")
        assert_ok(r)
        outs[name] = out
    return outs


@pytest.fixture(scope="module")
def wheel_trees(real_wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
                ) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("wheeltrees")
    outs = {}
    for name, whl in real_wheels.items():
        out = d / name
        r = timed_run(f"install_wheel {name}", "install_wheel.py",
                      wheel_env(whl, out, name, version=whl.name.split("-")[1]), d / "build")
        assert_ok(r)
        outs[name] = out
    return outs


@pytest.mark.network
def test_real_debs(deb_trees: dict[str, Path]) -> None:
    libc = deb_trees["libc6"] / "root"
    assert (libc / "usr/lib/x86_64-linux-gnu/libc.so.6").is_file()
    ld = libc / "usr/lib64/ld-linux-x86-64.so.2"
    assert ld.is_symlink() and os.readlink(ld) == "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    for name, out in deb_trees.items():
        top = set(os.listdir(out / "root"))
        assert not top & {"bin", "sbin", "lib", "lib64"}, (name, top)
        control = (out / "control").read_text()
        assert control.startswith(f"Package: {name}\n"), name
        m = meta(out)
        assert m["kind"] == "deb" and m["name"] == name
    dash = deb_trees["dash"] / "root/usr/bin/dash"
    assert dash.is_file() and dash.stat().st_mode & 0o111
    assert (deb_trees["libgl1"] / "root/usr/lib/x86_64-linux-gnu/libGL.so.1").is_symlink()
    certs = list((deb_trees["ca-certificates"] / "root/usr/share/ca-certificates")
                 .rglob("*.crt"))
    assert len(certs) > 100
    assert meta(deb_trees["mount"])["modes"]["usr/bin/mount"] == [0o4755, 0, 0]
    perl = deb_trees["perl-base"] / "root/usr/bin"
    assert (perl / "perl").read_bytes() == (perl / "perl5.36.0").read_bytes()
    assert not (perl / "perl5.36.0").is_symlink()


@pytest.mark.network
@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_real_debs_match_dpkg_deb(real_debs: dict[str, Path], deb_trees: dict[str, Path],
                                  tmp_path: Path) -> None:
    """Same files, links and exec bits as ``dpkg-deb -x`` once paths are merged-/usr."""
    aliased = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"}
    for name, deb in real_debs.items():
        x = tmp_path / name
        subprocess.run(["dpkg-deb", "-x", str(deb), str(x)], check=True)
        want = {}
        for row in tree_listing(x):
            rel, kind, mode, val = row
            if rel.split("/")[0] in aliased:
                rel = "usr/" + rel
            exe = kind == "f" and bool(int(mode, 8) & 0o111)
            want[rel] = (kind, val, exe)
        got = {rel: (kind, val, kind == "f" and bool(int(mode, 8) & 0o111))
               for rel, kind, mode, val in tree_listing(deb_trees[name] / "root")}
        assert got == want, name


@pytest.mark.network
def test_real_debs_deterministic(real_debs: dict[str, Path], deb_trees: dict[str, Path],
                                 tmp_path: Path) -> None:
    for name in ("libc6", "perl-base", "ca-certificates"):
        out = tmp_path / name
        r = run_builder("unpack_deb.py", {"src": str(real_debs[name]), "out": str(out),
                                          "pkgName": name, "pkgVersion":
                                          real_debs[name].name.split("_")[1]}, tmp_path / "b")
        assert_ok(r)
        assert tree_listing(out) == tree_listing(deb_trees[name]), name


@pytest.mark.network
def test_real_wheels(wheel_trees: dict[str, Path]) -> None:
    site = SITE[1:]
    six = wheel_trees["six"] / "root" / site
    assert (six / "six.py").is_file()
    tq = wheel_trees["tqdm"] / "root"
    script = tq / "usr/local/bin/tqdm"
    assert script.read_bytes().startswith(b"#!/usr/bin/python3.11\n")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert "from tqdm.cli import main\n" in script.read_text()
    for name, out in wheel_trees.items():
        sp = out / "root" / site
        (di,) = [p for p in sp.iterdir() if p.name.endswith(".dist-info")]
        assert (di / "INSTALLER").read_bytes() == b"envnix\n"
        rows = list(csv.reader((di / "RECORD").read_text().splitlines()))
        assert rows[-1] == [f"{di.name}/RECORD", "", ""]
        assert [r[0] for r in rows[:-1]] == sorted(r[0] for r in rows[:-1])
        for path, h, size in rows[:-1]:
            data = (sp / path).read_bytes()
            assert h == f"sha256={b64(data)}" and int(size) == len(data), (name, path)
        assert sum(len(f) for _, _, f in os.walk(out / "root")) == len(rows), name
        assert meta(out)["kind"] == "wheel"
    tq_record = next((tq / site).glob("tqdm-*.dist-info")) / "RECORD"
    up = [r[0] for r in csv.reader(tq_record.read_text().splitlines()) if r[0].startswith("..")]
    assert up == ["../../../bin/tqdm"]
    np_site = wheel_trees["numpy"] / "root" / site
    assert (np_site / "numpy/__init__.py").is_file()
    assert (wheel_trees["numpy"] / "root/usr/local/bin/f2py").is_file()


@pytest.mark.network
@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64",
                    reason="runs the cp311 x86_64 numpy wheel")
def test_real_wheels_run(wheel_trees: dict[str, Path]) -> None:
    ok = subprocess.run([HOST_PY, "-c", "import sys; assert sys.version_info[:2] == (3, 11)"],
                        check=False).returncode == 0
    if not ok:
        pytest.skip("host python is not 3.11")
    paths = ":".join(str(wheel_trees[n] / "root" / SITE[1:]) for n in wheel_trees)
    env = {"PYTHONPATH": paths, "PYTHONDONTWRITEBYTECODE": "1"}
    r = subprocess.run([HOST_PY, "-c", "import numpy, six, tqdm; print(numpy.arange(4).sum())"],
                       env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0 and r.stdout == "6\n", r.stderr
    r = subprocess.run([HOST_PY, str(wheel_trees["tqdm"] / "root/usr/local/bin/tqdm"),
                        "--version"], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


@pytest.mark.network
def test_real_wheel_deterministic(real_wheels: dict[str, Path], wheel_trees: dict[str, Path],
                                  tmp_path: Path) -> None:
    for name in ("numpy", "tqdm"):
        whl = real_wheels[name]
        out = tmp_path / name
        r = run_builder("install_wheel.py",
                        wheel_env(whl, out, name, version=whl.name.split("-")[1]), tmp_path)
        assert_ok(r)
        assert tree_listing(out) == tree_listing(wheel_trees[name]), name


@pytest.mark.network
def test_real_mkmeta(deb_trees: dict[str, Path], tmp_path: Path) -> None:
    trees = [str(deb_trees[n]) for n in ("libc6", "dash", "ca-certificates")]
    env = {"trees": json.dumps(trees), "workdir": "/home/envd/quickstart",
           "users": json.dumps([["envd", 1000, 1000, "/home/envd", "/bin/bash"]])}
    out = tmp_path / "meta"
    assert_ok(timed_run("mkmeta 3 trees", "mkmeta.py", {"out": str(out), **env}, tmp_path))
    root = out / "root"
    passwd = (root / "etc/passwd").read_text().splitlines()
    assert passwd[0] == "root:x:0:0:root:/root:/bin/sh"
    assert "envd:x:1000:1000::/home/envd:/bin/bash" in passwd
    status = (root / "var/lib/dpkg/status").read_text()
    assert status.endswith("\n\n")
    stanzas = status.rstrip("\n").split("\n\n")
    assert [s.splitlines()[0] for s in stanzas] == [
        "Package: ca-certificates", "Package: dash", "Package: libc6"]
    assert all(s.splitlines()[1] == "Status: install ok installed" for s in stanzas)
    bundle = (root / "etc/ssl/certs/ca-certificates.crt").read_text()
    n_crt = len(list((deb_trees["ca-certificates"] / "root/usr/share/ca-certificates")
                     .rglob("*.crt")))
    assert bundle.count("-----BEGIN CERTIFICATE-----") == n_crt > 100
    # dash ships bin/sh -> dash itself, so mkmeta must not add usr/bin/sh
    assert os.readlink(deb_trees["dash"] / "root/usr/bin/sh") == "dash"
    assert not (root / "usr/bin/sh").exists()
    assert (root / "home/envd/quickstart").is_dir()
    out2 = tmp_path / "meta2"
    assert_ok(run_builder("mkmeta.py", {"out": str(out2), **env}, tmp_path))
    assert tree_listing(out) == tree_listing(out2)


@pytest.mark.network
def test_zz_print_timings(deb_trees: dict[str, Path], wheel_trees: dict[str, Path]) -> None:
    """Shown with ``pytest -s``: how long each builder took on the real inputs."""
    for label, secs in sorted(TIMINGS.items()):
        print(f"{label}: {secs:.3f}s")
    assert TIMINGS

"""Tests for envnix/builders/install_conda.py: conda packages into package trees, as conda would.

The packages are real conda packages built here (info/index.json, paths.json, link.json and the
payload), each written as a ``.tar.bz2`` and as a ``.conda`` (zip of metadata.json,
info-*.tar.zst, pkg-*.tar.zst). The builder runs exactly as Nix runs it:
``env -i out=... src=... /usr/bin/python3 -E -s -B install_conda.py``. /usr/bin/python3 has no
``zstandard``, so ``zstdPath`` points at the directory holding this venv's copy.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard
from test_builders_conda_offline import BUILDER

HOST_PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
ZSTD_DIR = os.path.dirname(os.path.dirname(zstandard.__file__))
PREFIX = "/opt/conda/envs/envd"
OLD_PH = "/opt/anaconda1anaconda2anaconda3"
# conda-build's long placeholder: _h_env followed by _placehold up to 255 characters.
LONG_PH = ("/opt/conda/conda-bld/pkg_1700000000000/_h_env" + "_placehold" * 30)[:255]
FORMATS = ("tar.bz2", "conda")


# ------------------------------------------------------------------------------ packages


@dataclass
class M:
    """An archive member. ``kind``: file, symlink, hardlink (``target`` = link target)."""

    path: str
    data: bytes = b""
    mode: int = 0o644
    kind: str = "file"
    target: str = ""
    placeholder: str = ""
    file_mode: str = ""
    listed: bool = True  # in info/paths.json


def tar_bytes(members: list[M]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            ti = tarfile.TarInfo(m.path)
            ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = m.mode, 0, 1000, 1000, "", ""
            if m.kind == "symlink":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, m.target, 0o777
                tf.addfile(ti)
            elif m.kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, m.target
                tf.addfile(ti)
            else:
                ti.size = len(m.data)
                tf.addfile(ti, io.BytesIO(m.data))
    return buf.getvalue()


def paths_json(payload: list[M]) -> dict:
    paths = []
    content = {m.path: m.data for m in payload if m.kind == "file"}
    for m in payload:
        if not m.listed:
            continue
        row: dict = {"_path": m.path}
        if m.kind == "symlink":
            row["path_type"] = "softlink"
        else:
            data = content.get(m.target, b"") if m.kind == "hardlink" else m.data
            row.update(path_type="hardlink", sha256=hashlib.sha256(data).hexdigest(),
                       size_in_bytes=len(data))
        if m.placeholder:
            row.update(prefix_placeholder=m.placeholder, file_mode=m.file_mode or "text")
        paths.append(row)
    return {"paths": paths, "paths_version": 1}


def make_package(directory: Path, name: str, version: str, build: str, payload: list[M], *,
                 noarch: str | None = None, link: dict | None = None,
                 info: dict[str, bytes | None] | None = None) -> dict[str, Path]:
    """Write ``<name>-<version>-<build>`` as .tar.bz2 and .conda; returns {format: path}."""
    index = {"name": name, "version": version, "build": build, "build_number": 0,
             "depends": ["python >=3.8"] if noarch == "python" else [], "license": "MIT",
             "subdir": "noarch" if noarch else "linux-64", "timestamp": 1700000000000}
    if noarch:
        index["noarch"] = noarch
    files: dict[str, bytes | None] = {"info/index.json": json.dumps(index).encode(),
             "info/paths.json": json.dumps(paths_json(payload)).encode(),
             "info/files": "".join(m.path + "\n" for m in payload if m.listed).encode()}
    if link is not None:
        files["info/link.json"] = json.dumps(link).encode()
    files.update(info or {})
    info_members = [M(p, d) for p, d in sorted(files.items()) if d is not None]
    stem = f"{name}-{version}-{build}"
    directory.mkdir(parents=True, exist_ok=True)
    out = {"tar.bz2": directory / f"{stem}.tar.bz2", "conda": directory / f"{stem}.conda"}
    out["tar.bz2"].write_bytes(bz2.compress(tar_bytes(info_members + payload)))
    zc = zstandard.ZstdCompressor(level=3)
    with zipfile.ZipFile(out["conda"], "w", zipfile.ZIP_STORED) as zf:
        for member, data in (
            ("metadata.json", b'{"conda_pkg_format_version": 2}'),
            (f"info-{stem}.tar.zst", zc.compress(tar_bytes(info_members))),
            (f"pkg-{stem}.tar.zst", zc.compress(tar_bytes(payload))),
        ):
            zf.writestr(zipfile.ZipInfo(member, (1980, 1, 1, 0, 0, 0)), data)
    return out


def record_for(pkg: Path, name: str, version: str, build: str, **extra: object) -> dict:
    data = pkg.read_bytes()
    subdir = "noarch" if extra.get("noarch") else "linux-64"
    return {"name": name, "version": version, "build": build, "build_number": 0,
            "subdir": subdir, "fn": pkg.name, "channel": "https://conda.example.org/fixture",
            "url": f"https://conda.example.org/fixture/{subdir}/{pkg.name}",
            "sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest(),
            "size": len(data), "depends": [], "constrains": [], "license": "MIT",
            "timestamp": 1700000000000, **extra}


# ------------------------------------------------------------------------------ running


def run_install(tmp: Path, pkg: Path, record: dict, *, prefix: str = PREFIX,
                python_version: str = "3.11", zstd: bool = True,
                env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the builder like Nix: empty environment, a store-like ``src`` name, -E -s -B.

    ``env`` overrides (or adds) builder inputs last.
    """
    out = tmp / f"out-{pkg.name}"
    store = tmp / "store"
    store.mkdir(parents=True, exist_ok=True)
    src = store / f"{hashlib.sha256(pkg.read_bytes()).hexdigest()[:32]}-src"
    if not src.exists():
        shutil.copyfile(pkg, src)
    inputs = {"out": str(out), "src": str(src), "pkgFile": pkg.name, "prefix": prefix,
              "pythonVersion": python_version, "record": json.dumps(record),
              **({"zstdPath": ZSTD_DIR} if zstd else {}), **(env or {})}
    cmd = ["env", "-i", *(f"{k}={v}" for k, v in inputs.items()),
           HOST_PY, "-E", "-s", "-B", str(BUILDER)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, check=False)
    return r, out


def install_ok(tmp: Path, pkg: Path, record: dict, **kw: Any) -> Path:
    r, out = run_install(tmp, pkg, record, **kw)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout == ""
    assert not (out / ".stage").exists()
    return out


def assert_one_line_error(r: subprocess.CompletedProcess[str], out: Path, *needles: str) -> str:
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("envnix-builder: "), lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    assert not (out / "meta.json").exists()
    assert not (out / ".stage").exists()
    return lines[0]


def tree_listing(top: Path) -> list[tuple[str, ...]]:
    """Sorted (path, kind, mode, sha256 | link target) of everything under ``top``."""
    rows: list[tuple[str, ...]] = []
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel, mode = os.path.relpath(p, top), oct(stat.S_IMODE(st.st_mode))
            if stat.S_ISLNK(st.st_mode):
                rows.append((rel, "l", mode, os.readlink(p)))
            elif stat.S_ISDIR(st.st_mode):
                rows.append((rel, "d", mode, ""))
            else:
                rows.append((rel, "f", mode, hashlib.sha256(Path(p).read_bytes()).hexdigest()))
    return sorted(rows)


def env_root(out: Path, prefix: str = PREFIX) -> Path:
    return out / "root" / prefix.lstrip("/")


def conda_meta(out: Path, dist: str, prefix: str = PREFIX) -> tuple[dict, str]:
    text = (env_root(out, prefix) / "conda-meta" / f"{dist}.json").read_text()
    return json.loads(text), text


def meta(out: Path) -> dict:
    text = (out / "meta.json").read_text()
    assert text.endswith("\n") and "\n" not in text[:-1]
    return json.loads(text)


def paths_by_name(record: dict) -> dict[str, dict]:
    return {p["_path"]: p for p in record["paths_data"]["paths"]}


# ------------------------------------------------------------------------------ (1) text


SCRIPT = (f"#!{OLD_PH}/bin/python3 -E\n"
          f"print('installed in {OLD_PH}')  # {OLD_PH}/lib\n").encode()
CONF = f"prefix={OLD_PH}\nlib={OLD_PH}/lib\nunrelated=/opt/other\n".encode()
UTF16 = f"data in {OLD_PH}/share\n".encode("utf-16-le")


def text_payload() -> list[M]:
    return [
        M("bin/tinyutil", SCRIPT, 0o755, placeholder=OLD_PH, file_mode="text"),
        M("bin/tinyutil-group", b"#!/bin/sh\necho hi\n", 0o775),
        M("etc/tiny.conf", CONF, placeholder=OLD_PH, file_mode="text"),
        M("share/tiny/utf16.txt", UTF16, placeholder=OLD_PH, file_mode="text"),
        M("share/tiny/plain.txt", f"not replaced without a placeholder: {OLD_PH}\n".encode()),
        M("lib/libtiny.so.1", b"\x7fELF fake"),
        M("lib/libtiny.so", kind="symlink", target="libtiny.so.1"),
        M("lib/hard.so.1", kind="hardlink", target="lib/libtiny.so.1"),
        M("bin/.tinyutil-post-link.sh", b"echo post-link >> \"$PREFIX/.messages.txt\"\n", 0o755),
        M("share/tiny/unlisted.txt", b"not in paths.json\n", listed=False),
    ]


@pytest.fixture(scope="module")
def text_pkgs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_package(tmp_path_factory.mktemp("text"), "tinyutil", "1.0", "h0_0",
                        text_payload())


@pytest.mark.parametrize("fmt", FORMATS)
def test_text_prefix_replacement(tmp_path: Path, text_pkgs: dict[str, Path], fmt: str) -> None:
    pkg = text_pkgs[fmt]
    out = install_ok(tmp_path, pkg, record_for(pkg, "tinyutil", "1.0", "h0_0"))
    env = env_root(out)
    assert (env / "bin/tinyutil").read_bytes() == (
        f"#!{PREFIX}/bin/python3 -E\nprint('installed in {PREFIX}')  # {PREFIX}/lib\n").encode()
    assert (env / "etc/tiny.conf").read_bytes() == (
        f"prefix={PREFIX}\nlib={PREFIX}/lib\nunrelated=/opt/other\n").encode()
    # conda also replaces the UTF-16/32 encodings of the placeholder.
    assert (env / "share/tiny/utf16.txt").read_bytes() == \
        f"data in {PREFIX}/share\n".encode("utf-16-le")
    assert OLD_PH in (env / "share/tiny/plain.txt").read_text()
    assert os.readlink(env / "lib/libtiny.so") == "libtiny.so.1"
    assert (env / "lib/hard.so.1").read_bytes() == b"\x7fELF fake"
    assert not (env / "share/tiny/unlisted.txt").exists()
    assert not (env / "info").exists()
    assert os.stat(env / "bin/tinyutil").st_mode & 0o777 == 0o755

    m = meta(out)
    assert (m["kind"], m["name"], m["version"], m["build"]) == ("conda", "tinyutil", "1.0",
                                                                "h0_0")
    base = PREFIX.lstrip("/")
    assert m["modes"] == {f"{base}/bin/tinyutil-group": [0o775, 0, 0]}  # owners are 0:0
    assert m["notes"] == [
        "share/tiny/unlisted.txt: in the archive but not in info/paths.json; not installed "
        "(as conda)",
        "bin/.tinyutil-post-link.sh: post-link script installed but not run",
    ]

    rec, text = conda_meta(out, "tinyutil-1.0-h0_0")
    assert rec["files"] == sorted(
        m.path for m in text_payload() if m.listed)
    pd = paths_by_name(rec)
    conf = pd["etc/tiny.conf"]
    assert conf["prefix_placeholder"] == OLD_PH and conf["file_mode"] == "text"
    assert conf["sha256"] == hashlib.sha256(CONF).hexdigest()
    assert conf["sha256_in_prefix"] == hashlib.sha256(
        (env / "etc/tiny.conf").read_bytes()).hexdigest()
    assert conf["size_in_bytes"] == len(CONF)
    assert pd["lib/libtiny.so"] == {"_path": "lib/libtiny.so", "path_type": "softlink"}
    plain = pd["lib/libtiny.so.1"]
    assert plain["sha256"] == plain["sha256_in_prefix"] and "file_mode" not in plain
    assert rec["paths_data"]["paths_version"] == 1
    assert [p["_path"] for p in rec["paths_data"]["paths"]] == rec["files"]
    assert rec["link"] == {"source": "", "type": 1}
    assert rec["url"].endswith(pkg.name) and rec["channel"].startswith("https://")
    assert text == json.dumps(rec, indent=2, sort_keys=True)


@pytest.mark.parametrize("prefix", ["/opt/" + "x" * 120 + "/envd", "/opt/my envs/envd"])
def test_text_long_or_spaced_prefix_uses_usr_bin_env(tmp_path: Path, text_pkgs: dict[str, Path],
                                                     prefix: str) -> None:
    """conda's rule: a shebang over 127 bytes, or a prefix with spaces -> /usr/bin/env."""
    pkg = text_pkgs["conda"]
    out = install_ok(tmp_path, pkg, record_for(pkg, "tinyutil", "1.0", "h0_0"), prefix=prefix)
    env = env_root(out, prefix)
    assert (env / "bin/tinyutil").read_bytes() == (
        f"#!/usr/bin/env python3 -E\nprint('installed in {prefix}')  # {prefix}/lib\n").encode()
    assert (env / "etc/tiny.conf").read_text().startswith(f"prefix={prefix}\n")


# ------------------------------------------------------------------------------ (2) binary

C_SOURCE = """\
#include <stdio.h>
static const char prefix[] = PH;
static const char data[] = PH "/share/tinybin/data.txt";
static const char paths[] = PH "/lib:" PH "/lib64";
int main(void) { puts(prefix); puts(data); puts(paths); return 0; }
"""


@pytest.fixture(scope="module")
def binary_pkgs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], bytes]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("binary")
    (d / "tinybin.c").write_text(C_SOURCE)
    subprocess.run(["gcc", "-O0", f'-DPH="{LONG_PH}"', "-o", str(d / "tinybin"),
                    str(d / "tinybin.c")], check=True)
    exe = (d / "tinybin").read_bytes()
    assert exe.count(LONG_PH.encode()) == 4
    payload = [M("bin/tinybin", exe, 0o755, placeholder=LONG_PH, file_mode="binary"),
               M("share/tinybin/data.txt", b"data\n")]
    return make_package(d / "pkgs", "tinybin", "2.0", "h1234567_0", payload), exe


@pytest.mark.parametrize("fmt", FORMATS)
def test_binary_prefix_replacement_runs(tmp_path: Path,
                                        binary_pkgs: tuple[dict[str, Path], bytes],
                                        fmt: str) -> None:
    pkgs, exe = binary_pkgs
    pkg = pkgs[fmt]
    out = install_ok(tmp_path, pkg, record_for(pkg, "tinybin", "2.0", "h1234567_0"))
    binary = env_root(out) / "bin/tinybin"
    new = binary.read_bytes()
    assert len(new) == len(exe)
    assert LONG_PH.encode() not in new
    # Each string is NUL-padded to its old length: the prefix string is followed by
    # len(placeholder) - len(prefix) extra NULs.
    assert (PREFIX.encode() + b"\0" * (len(LONG_PH) - len(PREFIX) + 1)) in new
    r = subprocess.run([str(binary)], capture_output=True, text=True, check=True)
    assert r.stdout == (f"{PREFIX}\n{PREFIX}/share/tinybin/data.txt\n"
                        f"{PREFIX}/lib:{PREFIX}/lib64\n")
    rec, _ = conda_meta(out, "tinybin-2.0-h1234567_0")
    row = paths_by_name(rec)["bin/tinybin"]
    assert row["file_mode"] == "binary" and row["prefix_placeholder"] == LONG_PH
    assert row["size_in_bytes"] == len(exe) and row["sha256"] == hashlib.sha256(exe).hexdigest()
    assert row["sha256_in_prefix"] == hashlib.sha256(new).hexdigest()


# ------------------------------------------------------------------------------ (6) too long


@pytest.mark.parametrize("fmt", FORMATS)
def test_binary_prefix_longer_than_placeholder(tmp_path: Path, fmt: str) -> None:
    blob = b"\x7fELF" + OLD_PH.encode() + b"/lib\0rest"
    pkgs = make_package(tmp_path / "pkgs", "short", "1.0", "0",
                        [M("lib/libshort.so", blob, placeholder=OLD_PH, file_mode="binary")])
    prefix = "/opt/conda/envs/an-environment-name-longer-than-the-placeholder"
    r, out = run_install(tmp_path, pkgs[fmt], record_for(pkgs[fmt], "short", "1.0", "0"),
                         prefix=prefix)
    line = assert_one_line_error(r, out, "conda short 1.0 0", "lib/libshort.so",
                                 "longer than its placeholder")
    assert prefix in line


# ------------------------------------------------------------------------------ (3) noarch


CLI = b"""\
import sys


def main():
    print("tinypy main", sys.argv[1:])
    return 3


class Sub:
    @staticmethod
    def run():
        print("tinypy sub")
"""
NOARCH_LINK = {"noarch": {"type": "python",
                          "entry_points": ["tinypy = tinypy.cli:main",
                                           "tinypy-sub=tinypy.cli:Sub.run"]},
               "package_metadata_version": 1}


@pytest.fixture(scope="module")
def noarch_pkgs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    payload = [
        M("site-packages/tinypy/__init__.py", b"VERSION = '0.1'\n"),
        M("site-packages/tinypy/cli.py", CLI),
        M("site-packages/tinypy-0.1.dist-info/METADATA", b"Name: tinypy\nVersion: 0.1\n"),
        M("python-scripts/tinypy-legacy", f"#!{OLD_PH}/bin/python\nprint('legacy')\n".encode(),
          0o755, placeholder=OLD_PH, file_mode="text"),
        M("share/tinypy/readme.txt", b"stays where it is\n"),
    ]
    return make_package(tmp_path_factory.mktemp("noarch"), "tinypy", "0.1", "pyh_0", payload,
                        noarch="python", link=NOARCH_LINK)


def expected_entry_point(module: str, func: str, python: str) -> bytes:
    return (f"#!{python}\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n\n"
            f"from {module} import {func.split('.')[0]}\n\n"
            "if __name__ == '__main__':\n"
            "    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
            f"    sys.exit({func}())\n").encode()


@pytest.mark.parametrize("fmt", FORMATS)
def test_noarch_python(tmp_path: Path, noarch_pkgs: dict[str, Path], fmt: str) -> None:
    pkg = noarch_pkgs[fmt]
    out = install_ok(tmp_path, pkg, record_for(pkg, "tinypy", "0.1", "pyh_0", noarch="python"))
    env = env_root(out)
    site = env / "lib/python3.11/site-packages"
    assert (site / "tinypy/cli.py").read_bytes() == CLI
    assert (site / "tinypy-0.1.dist-info/METADATA").exists()
    assert not (env / "site-packages").exists() and not (env / "python-scripts").exists()
    assert (env / "share/tinypy/readme.txt").exists()
    assert (env / "bin/tinypy-legacy").read_text().startswith(f"#!{PREFIX}/bin/python\n")
    assert not list(env.rglob("__pycache__")) and not list(env.rglob("*.pyc"))

    # conda: #!<prefix>/bin/pythonX.Y (get_python_short_path) and its own template.
    python = f"{PREFIX}/bin/python3.11"
    script = env / "bin/tinypy"
    assert script.read_bytes() == expected_entry_point("tinypy.cli", "main", python)
    assert (env / "bin/tinypy-sub").read_bytes() == \
        expected_entry_point("tinypy.cli", "Sub.run", python)
    assert os.stat(script).st_mode & 0o777 == 0o755

    # The script works: the host python with the tree's site-packages.
    run_env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(["/usr/bin/python3", str(script), "a", "b"], capture_output=True,
                       text=True, env=run_env, check=False)
    assert (r.returncode, r.stdout) == (3, "tinypy main ['a', 'b']\n"), r.stderr
    r = subprocess.run(["/usr/bin/python3", str(env / "bin/tinypy-sub")], capture_output=True,
                       text=True, env=run_env, check=False)
    assert (r.returncode, r.stdout) == (0, "tinypy sub\n"), r.stderr

    rec, _ = conda_meta(out, "tinypy-0.1-pyh_0")
    assert rec["noarch"] == "python"
    assert "lib/python3.11/site-packages/tinypy/cli.py" in rec["files"]
    assert "bin/tinypy" in rec["files"] and "bin/tinypy-legacy" in rec["files"]
    assert not any(f.startswith(("site-packages/", "python-scripts/")) for f in rec["files"])
    pd = paths_by_name(rec)
    assert pd["bin/tinypy"] == {"_path": "bin/tinypy", "path_type": "unix_python_entry_point",
                                "size_in_bytes": script.stat().st_size}
    assert rec["depends"] == []  # the record's (patched) depends win over index.json's


def test_noarch_python_site_packages_override(tmp_path: Path,
                                              noarch_pkgs: dict[str, Path]) -> None:
    pkg = noarch_pkgs["tar.bz2"]
    out = install_ok(tmp_path, pkg, record_for(pkg, "tinypy", "0.1", "pyh_0", noarch="python"),
                     python_version="3.13",
                     env={"pythonSitePackages": "lib/python3.13t/site-packages"})
    env = env_root(out)
    assert (env / "lib/python3.13t/site-packages/tinypy/cli.py").exists()
    assert (env / "bin/tinypy").read_text().startswith(f"#!{PREFIX}/bin/python3.13\n")


def test_noarch_python_needs_python(tmp_path: Path, noarch_pkgs: dict[str, Path]) -> None:
    pkg = noarch_pkgs["conda"]
    r, out = run_install(tmp_path, pkg, record_for(pkg, "tinypy", "0.1", "pyh_0"),
                         python_version="")
    assert_one_line_error(r, out, "noarch: python", "pythonVersion")


# ------------------------------------------------------------------------------ (4) malicious

INFO_OK = [M("lib/ok.txt", b"ok\n")]
DEEP_UP = "../" * 8  # above the image root from <prefix>/lib


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("case", "payload", "needle"), [
    ("dotdot", [M("../escape.txt", b"x")], "'..' component"),
    ("dotdot-inner", [M("lib/../../../../../escape.txt", b"x")], "'..' component"),
    ("absolute", [M("/abs.txt", b"x")], "absolute path"),
    ("symlink-up", [M("lib/evil", kind="symlink", target=DEEP_UP + "etc/passwd")],
     "climbs above the root"),
    ("hardlink-out", [M("lib/h", kind="hardlink", target="../../etc/passwd")],
     "outside the archive"),
    ("through-symlink", [M("lib/d", kind="symlink", target="/etc"),
                         M("lib/d/passwd", b"pwned")], "through the symlink"),
    ("paths-json-dotdot", INFO_OK, "'..' component"),
])
def test_malicious_archives(tmp_path: Path, fmt: str, case: str, payload: list[M],
                            needle: str) -> None:
    info: dict[str, bytes | None] | None = None
    if case == "paths-json-dotdot":
        info = {"info/paths.json": json.dumps({"paths_version": 1, "paths": [
            {"_path": "../../outside.txt", "path_type": "hardlink"}]}).encode()}
    pkgs = make_package(tmp_path / "pkgs", "evil", "1.0", "0", payload, info=info)
    r, out = run_install(tmp_path, pkgs[fmt], record_for(pkgs[fmt], "evil", "1.0", "0"))
    assert_one_line_error(r, out, needle)
    assert not list(tmp_path.rglob("escape.txt")) and not list(tmp_path.rglob("outside.txt"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_symlinks_inside_the_image_are_kept(tmp_path: Path, fmt: str) -> None:
    """Targets may leave the prefix (absolute, or ``..`` that stays below the image root)."""
    payload = [M("lib/abs", kind="symlink", target="/etc/ssl/certs/ca-certificates.crt"),
               M("lib/up", kind="symlink", target="../../../../../usr/lib/x")]
    pkgs = make_package(tmp_path / "pkgs", "links", "1.0", "0", payload)
    out = install_ok(tmp_path, pkgs[fmt], record_for(pkgs[fmt], "links", "1.0", "0"))
    env = env_root(out)
    assert os.readlink(env / "lib/abs") == "/etc/ssl/certs/ca-certificates.crt"
    assert os.readlink(env / "lib/up") == "../../../../../usr/lib/x"


# ------------------------------------------------------------------------------ (5) determinism


def test_deterministic_and_no_host_paths(tmp_path: Path, text_pkgs: dict[str, Path],
                                         binary_pkgs: tuple[dict[str, Path], bytes],
                                         noarch_pkgs: dict[str, Path]) -> None:
    cases = [(text_pkgs["conda"], ("tinyutil", "1.0", "h0_0"), {}),
             (binary_pkgs[0]["conda"], ("tinybin", "2.0", "h1234567_0"), {}),
             (noarch_pkgs["conda"], ("tinypy", "0.1", "pyh_0"), {"noarch": "python"})]
    for pkg, (name, version, build), extra in cases:
        # A record carrying conda's build-host fields: they must not reach conda-meta.
        record = record_for(pkg, name, version, build, **extra,
                            extracted_package_dir="/nix/store/x-pkgs/" + name,
                            package_tarball_full_path="/nix/store/x-pkgs/" + pkg.name)
        a = install_ok(tmp_path / "a", pkg, record)
        b = install_ok(tmp_path / "b", pkg, record)
        assert tree_listing(a) == tree_listing(b)
        assert (a / "meta.json").read_bytes() == (b / "meta.json").read_bytes()
        _, text = conda_meta(a, f"{name}-{version}-{build}")
        for bad in ("/nix/store", str(tmp_path), "extracted_package_dir",
                    "package_tarball_full_path", ".stage", "/tmp/"):
            assert bad not in text, bad
        assert not any(str(tmp_path) in line for row in tree_listing(a) for line in row)


# ------------------------------------------------------------------------------ (7) formats


def test_both_formats_give_identical_trees(tmp_path: Path, text_pkgs: dict[str, Path],
                                           binary_pkgs: tuple[dict[str, Path], bytes],
                                           noarch_pkgs: dict[str, Path]) -> None:
    for pkgs, (name, version, build), extra in [
        (text_pkgs, ("tinyutil", "1.0", "h0_0"), {}),
        (binary_pkgs[0], ("tinybin", "2.0", "h1234567_0"), {}),
        (noarch_pkgs, ("tinypy", "0.1", "pyh_0"), {"noarch": "python"}),
    ]:
        record = record_for(pkgs["conda"], name, version, build, **extra)  # one lock entry
        a = install_ok(tmp_path, pkgs["tar.bz2"], record)
        b = install_ok(tmp_path, pkgs["conda"], record)
        assert tree_listing(a) == tree_listing(b)
        assert (a / "meta.json").read_bytes() == (b / "meta.json").read_bytes()


# ------------------------------------------------------------------------------ other inputs


def test_legacy_files_and_has_prefix(tmp_path: Path) -> None:
    """No paths.json: info/files + info/has_prefix (bare path = text, default placeholder)."""
    blob = b"\x7fELF" + LONG_PH.encode() + b"/etc\0end"
    payload = [M("bin/old", f"#!{OLD_PH}/bin/sh\necho {OLD_PH}\n".encode(), 0o755),
               M("lib/libold.so", blob), M("lib/libold.so.0", kind="symlink",
                                              target="libold.so")]
    info: dict[str, bytes | None] = {"info/paths.json": None,
            "info/has_prefix": f"# comment\nbin/old\n{LONG_PH} binary lib/libold.so\n".encode(),
            "info/no_link": b"lib/libold.so\n"}
    pkgs = make_package(tmp_path / "pkgs", "old", "0.9", "1", payload, info=info)
    out = install_ok(tmp_path, pkgs["tar.bz2"], record_for(pkgs["tar.bz2"], "old", "0.9", "1"))
    env = env_root(out)
    assert (env / "bin/old").read_text() == f"#!{PREFIX}/bin/sh\necho {PREFIX}\n"
    new = (env / "lib/libold.so").read_bytes()
    assert len(new) == len(blob) and (PREFIX + "/etc\0").encode() in new
    rec, _ = conda_meta(out, "old-0.9-1")
    pd = paths_by_name(rec)
    assert pd["bin/old"]["prefix_placeholder"] == OLD_PH and pd["bin/old"]["file_mode"] == "text"
    assert pd["lib/libold.so"]["file_mode"] == "binary" and pd["lib/libold.so"]["no_link"]
    assert pd["lib/libold.so.0"]["path_type"] == "softlink"


def test_conda_without_zstandard_is_a_clear_error(tmp_path: Path,
                                                  text_pkgs: dict[str, Path]) -> None:
    has = subprocess.run([HOST_PY, "-E", "-s", "-c", "import zstandard"], capture_output=True,
                         check=False).returncode == 0
    if has:
        pytest.skip(f"{HOST_PY} has zstandard")
    pkg = text_pkgs["conda"]
    r, out = run_install(tmp_path, pkg, record_for(pkg, "tinyutil", "1.0", "h0_0"), zstd=False)
    assert_one_line_error(r, out, "zstandard", "zstdPath")
    # .tar.bz2 needs nothing beyond the standard library.
    pkg = text_pkgs["tar.bz2"]
    install_ok(tmp_path, pkg, record_for(pkg, "tinyutil", "1.0", "h0_0"), zstd=False)


@pytest.mark.parametrize(("change", "needle"), [
    ({"pkgFile": "tinyutil-1.0-h0_0.zip"}, "expected a .conda or .tar.bz2"),
    ({"pkgFile": "dir/tinyutil-1.0-h0_0.conda"}, "must be a file name"),
    ({"prefix": "opt/conda"}, "must be an absolute image path"),
    ({"prefix": "/opt/conda/"}, "canonical"),
    ({"prefix": "/opt//conda"}, "canonical"),
    ({"prefix": "/"}, "canonical"),
    ({"record": "{not json"}, "record: not valid JSON"),
    ({"record": "[]"}, "record: not a JSON object"),
    ({"record": json.dumps({"name": "other"})}, "record says name 'other'"),
    ({"pythonVersion": "3"}, "must be X.Y"),
    ({"zstdPath": "/nonexistent"}, "zstdPath"),
    ({"zstdPath": ""}, "set zstdPath"),
])
def test_bad_inputs(tmp_path: Path, text_pkgs: dict[str, Path], change: dict[str, str],
                    needle: str) -> None:
    pkg = text_pkgs["conda"]
    r, out = run_install(tmp_path, pkg, record_for(pkg, "tinyutil", "1.0", "h0_0"), env=change)
    assert_one_line_error(r, out, needle)


def test_corrupt_archives(tmp_path: Path) -> None:
    bad = tmp_path / "bad-1.0-0.conda"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    r, out = run_install(tmp_path, bad, {})
    assert_one_line_error(r, out, "conda bad-1.0-0.conda", "zip")
    bad2 = tmp_path / "bad-1.0-0.tar.bz2"
    bad2.write_bytes(b"BZh91AY&SY garbage")
    r, out = run_install(tmp_path, bad2, {})
    assert_one_line_error(r, out, "conda bad-1.0-0.tar.bz2")
    missing = make_package(tmp_path / "pkgs", "gone", "1.0", "0", [M("a", b"a")],
                           info={"info/paths.json": json.dumps({"paths_version": 1, "paths": [
                               {"_path": "b", "path_type": "hardlink"}]}).encode()})
    r, out = run_install(tmp_path, missing["conda"], {})
    assert_one_line_error(r, out, "lists 'b' but the archive does not contain it")


@pytest.mark.parametrize(("entry", "needle"), [
    ("../evil = tinypy.cli:main", "entry point"),
    (".hidden = tinypy.cli:main", "entry point"),
    ("cmd = tinypy.class:main", "entry point"),  # a keyword is not an import path
    ("cmd = tinypy.cli", "entry point"),
    ("no-equals-sign", "entry point"),
])
def test_bad_entry_points(tmp_path: Path, entry: str, needle: str) -> None:
    link = {"noarch": {"type": "python", "entry_points": [entry]}, "package_metadata_version": 1}
    pkgs = make_package(tmp_path / "pkgs", "badep", "1.0", "py_0",
                        [M("site-packages/tinypy/cli.py", CLI)], noarch="python", link=link)
    r, out = run_install(tmp_path, pkgs["conda"], record_for(pkgs["conda"], "badep", "1.0",
                                                             "py_0", noarch="python"))
    assert_one_line_error(r, out, needle, repr(entry))


def test_noarch_from_link_json_directories_and_menus(tmp_path: Path) -> None:
    """The record may lack ``noarch`` (conda issue #8311): link.json decides. ``directory``
    entries become (empty) directories; Menu/*.json gets a note."""
    payload = [M("site-packages/tinypy/cli.py", CLI), M("Menu/tinypy.json", b"{}")]
    paths = paths_json(payload)
    paths["paths"].append({"_path": "var/cache/tinypy", "path_type": "directory"})
    pkgs = make_package(tmp_path / "pkgs", "dirs", "1.0", "py_0", payload, link=NOARCH_LINK,
                        info={"info/paths.json": json.dumps(paths).encode()})
    record = record_for(pkgs["tar.bz2"], "dirs", "1.0", "py_0")
    assert "noarch" not in record
    out = install_ok(tmp_path, pkgs["tar.bz2"], record)
    env = env_root(out)
    assert (env / "lib/python3.11/site-packages/tinypy/cli.py").exists()
    assert (env / "bin/tinypy").exists()
    assert (env / "var/cache/tinypy").is_dir() and not any((env / "var/cache/tinypy").iterdir())
    rec, _ = conda_meta(out, "dirs-1.0-py_0")
    assert paths_by_name(rec)["var/cache/tinypy"] == {"_path": "var/cache/tinypy",
                                                      "path_type": "directory"}
    assert "var/cache/tinypy" not in rec["files"]
    assert meta(out)["notes"] == ["Menu/tinypy.json: menu shortcut not created (menuinst is "
                                  "not run)"]


@pytest.mark.parametrize(("info", "needle"), [
    ({"info/paths.json": b'{"paths_version": 2, "paths": []}'}, "unsupported paths_version 2"),
    ({"info/link.json": b'{"package_metadata_version": 2}'}, "package_metadata_version"),
    ({"info/index.json": None}, "info/index.json is missing"),
    ({"info/paths.json": json.dumps({"paths_version": 1, "paths": [
        {"_path": "a", "path_type": "hardlink", "prefix_placeholder": OLD_PH}]}).encode()},
     "file_mode is 'missing'"),
    ({"info/paths.json": json.dumps({"paths_version": 1, "paths": [
        {"_path": "a", "path_type": "pipe"}]}).encode()}, "unknown path_type 'pipe'"),
])
def test_bad_metadata(tmp_path: Path, info: dict[str, bytes | None], needle: str) -> None:
    pkgs = make_package(tmp_path / "pkgs", "meta", "1.0", "0", [M("a", b"a")], info=info)
    r, out = run_install(tmp_path, pkgs["conda"], record_for(pkgs["conda"], "meta", "1.0", "0"))
    assert_one_line_error(r, out, needle)

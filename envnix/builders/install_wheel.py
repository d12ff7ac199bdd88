"""Nix builder: install one wheel (.whl) into an envnix package tree, without pip/installer.

Follows the binary distribution format (PEP 427 / PyPA "binary distribution format" spec):
WHEEL must say Wheel-Version 1.x; every file is checked against RECORD; ``<dist>.data/<scheme>``
goes to its scheme dir; ``#!python`` script shebangs and console/gui entry points get the
target ``interpreter``; INSTALLER is ``envnix`` and RECORD is rewritten. No .pyc is compiled
(that must be done with the target Python, see locking-notes §5.2).

Environment (all image paths are absolute paths inside the image, e.g. /usr/local/...):
  src           path of the .whl (a fixed-output fetch), or of a directory holding one .whl
                (build_sdist.py's output: a wheel built from the lock's sdist)
  out           output directory (Nix's $out)
  pkgName       distribution name for meta.json (optional: from the .dist-info dir name)
  pkgVersion    version for meta.json (optional: from the .dist-info dir name)
  sitePackages  purelib and platlib, e.g. /usr/local/lib/python3.11/dist-packages
  scriptsDir    scripts and entry points, e.g. /usr/local/bin
  dataDir       the "data" scheme, e.g. /usr/local
  headersDir    the "headers" scheme, e.g. /usr/local/include/python3.11/<name>
  interpreter   the shebang target, e.g. /usr/bin/python3.11

Output: ``$out/root/<image path>`` files and ``$out/meta.json`` ({"kind": "wheel", ...}).
RECORD lists every installed file relative to sitePackages (``../../../bin/x`` for scripts),
sorted by path, with RECORD itself last and no hash.
"""

from __future__ import annotations

import base64
import configparser
import csv
import hashlib
import io
import os
import posixpath
import re
import sys
import zipfile
from dataclasses import dataclass

import _builder as B
import _treewrite as T

SCHEMES = ("purelib", "platlib", "scripts", "headers", "data")
SIGNATURE_FILES = ("RECORD.jws", "RECORD.p7s")
WEAK_HASHES = {"md5", "sha1"}
ENTRY_POINT_RE = re.compile(
    r"^(?P<module>[\w.]+)\s*(?::\s*(?P<attr>[\w.]+))?\s*(?:\[[^\]]*\])?\s*$"
)
INSTALLER = b"envnix\n"


@dataclass(frozen=True)
class RecordEntry:
    algo: str
    digest: bytes | None
    size: int | None


def b64_digest(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def image_dir(var: str) -> str:
    """An absolute image path from env var ``var``, as a root-relative path ``usr/...``."""
    value = B.getenv(var)
    if not value.startswith("/"):
        raise B.BuilderError(f"{var}={value!r} must be an absolute image path")
    rel = T.safe_relpath(value[1:] or ".", var)
    if not rel:
        raise B.BuilderError(f"{var}={value!r} must not be the image root")
    return rel


SH_UNSAFE = frozenset("\"'\\$`\n\0")


def shebang(interpreter: str, args: str = "") -> bytes:
    """``#!interpreter [args]``, or a /bin/sh re-exec when the kernel cannot take that line
    (longer than 127 bytes, or whitespace in the interpreter path)."""
    line = "#!" + interpreter + (" " + args if args else "")
    if len(line.encode("utf-8")) <= 127 and not any(c.isspace() for c in interpreter):
        return (line + "\n").encode("utf-8")
    return sh_exec_shebang(interpreter, args)


def sh_exec_shebang(interpreter: str, args: str = "") -> bytes:
    """The ``#!/bin/sh`` re-exec header (distlib's; conda uses the same three lines)."""
    if SH_UNSAFE & set(interpreter + args):
        raise B.BuilderError(f"interpreter {interpreter!r} with arguments {args!r} cannot be "
                             "quoted for a /bin/sh shebang")
    # Valid sh (exec the interpreter on this file) and valid Python (a string literal). The
    # kernel passes shebang arguments as one word, so args stay one quoted word here too.
    quoted_args = f' "{args}"' if args else ""
    return (f"#!/bin/sh\n'''exec' \"{interpreter}\"{quoted_args} \"$0\" \"$@\"\n' '''\n"
            .encode())


def rewrite_script(content: bytes, interpreter: str) -> bytes:
    """Replace a ``#!python`` / ``#!pythonw`` first line; arguments after it are kept."""
    if not content.startswith(b"#!python"):
        return content
    nl = content.find(b"\n")
    first, rest = (content, b"") if nl < 0 else (content[:nl], content[nl + 1:])
    tail = first.rstrip(b"\r")[len(b"#!python"):]
    if tail.startswith(b"w"):
        tail = tail[1:]
    args = tail.strip() if tail[:1] in (b" ", b"\t") else b""
    return shebang(interpreter, args.decode("utf-8")) + rest


def entry_point_script(interpreter: str, module: str, attr: str) -> bytes:
    head = attr.split(".", 1)[0]
    return (
        shebang(interpreter)
        + (
            "# -*- coding: utf-8 -*-\n"
            "import re\n"
            "import sys\n"
            f"from {module} import {head}\n"
            'if __name__ == "__main__":\n'
            '    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])\n'
            f"    sys.exit({attr}())\n"
        ).encode()
    )


def parse_record(text: str) -> dict[str, RecordEntry]:
    entries: dict[str, RecordEntry] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0]:
            continue
        path = row[0]
        hash_field = row[1] if len(row) > 1 else ""
        size_field = row[2] if len(row) > 2 else ""
        algo, digest = "", None
        if hash_field:
            algo, sep, value = hash_field.partition("=")
            if not sep or algo not in hashlib.algorithms_guaranteed or algo in WEAK_HASHES:
                raise B.BuilderError(f"RECORD: unusable hash {hash_field!r} for {path!r}")
            try:
                digest = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            except ValueError:
                raise B.BuilderError(f"RECORD: bad hash value for {path!r}") from None
        size = None
        if size_field:
            try:
                size = int(size_field)
            except ValueError:
                raise B.BuilderError(f"RECORD: bad size {size_field!r} for {path!r}") from None
        entry = RecordEntry(algo, digest, size)
        if path in entries and entries[path] != entry:
            raise B.BuilderError(f"RECORD lists {path!r} twice with different hashes")
        entries[path] = entry
    return entries


def parse_wheel_file(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line[:1].isspace():
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def parse_entry_points(text: str) -> list[tuple[str, str, str]]:
    """(script name, module, attr) for console_scripts and gui_scripts, sorted by name."""
    cp = configparser.ConfigParser(delimiters=("=",), interpolation=None,
                                   default_section="\0no default section")
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(text, source="entry_points.txt")
    scripts: dict[str, tuple[str, str]] = {}
    for section in ("console_scripts", "gui_scripts"):
        if not cp.has_section(section):
            continue
        for script, value in cp.items(section):
            if (not script or script in (".", "..") or any(c in script for c in "/\\\0")
                    or any(c.isspace() for c in script)):
                raise B.BuilderError(f"entry_points.txt: bad script name {script!r}")
            m = ENTRY_POINT_RE.match(value.strip())
            if not m or not m.group("attr"):
                raise B.BuilderError(
                    f"entry_points.txt: {script} = {value!r} is not 'module:callable'")
            module, attr = m.group("module"), m.group("attr")
            if not all(p.isidentifier() for p in module.split(".") + attr.split(".")):
                raise B.BuilderError(f"entry_points.txt: {script} = {value!r} is not valid")
            old = scripts.get(script)
            if old is not None and old != (module, attr):
                raise B.BuilderError(f"entry_points.txt: script {script!r} defined twice")
            scripts[script] = (module, attr)
    return [(s, mod, attr) for s, (mod, attr) in sorted(scripts.items())]


def find_dist_info(names: list[str], name_hint: str) -> str:
    """The top-level ``<dist>-<ver>.dist-info`` dir that holds WHEEL."""
    cands = sorted({n.split("/", 1)[0] for n in names
                    if n.count("/") == 1 and n.endswith("/WHEEL")
                    and n.split("/", 1)[0].endswith(".dist-info")})
    if len(cands) > 1 and name_hint:
        want = re.sub(r"[-_.]+", "_", name_hint).lower()
        cands = [c for c in cands if re.sub(r"[-_.]+", "_", c.split("-", 1)[0]).lower() == want]
    if len(cands) != 1:
        raise B.BuilderError(
            "expected one .dist-info directory with a WHEEL file, found "
            + (", ".join(cands) or "none"))
    return cands[0]


def main() -> None:
    src = B.getenv("src")
    if os.path.isdir(src):
        built = [f for f in sorted(os.listdir(src)) if f.endswith(".whl")]
        if len(built) != 1:
            raise B.BuilderError(f"{src} holds {len(built)} wheels, not one")
        src = os.path.join(src, built[0])
    out = B.getenv("out")
    name = B.getenv("pkgName", "")
    version = B.getenv("pkgVersion", "")
    B.set_context(f"wheel {name or os.path.basename(src)}" + (f" {version}" if version else ""))
    site = image_dir("sitePackages")
    scheme_dirs = {
        "purelib": site, "platlib": site, "scripts": image_dir("scriptsDir"),
        "headers": image_dir("headersDir"), "data": image_dir("dataDir"),
    }
    interpreter = B.getenv("interpreter")
    if not interpreter.startswith("/"):
        raise B.BuilderError(f"interpreter={interpreter!r} must be an absolute image path")

    with zipfile.ZipFile(src) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        seen: set[str] = set()
        for info in infos:
            rel = T.safe_relpath(info.filename, "wheel member")
            if rel != info.filename:
                raise B.BuilderError(f"wheel member {info.filename!r}: non-canonical path")
            if "\\" in rel:
                raise B.BuilderError(f"wheel member {rel!r}: backslash in path")
            if rel in seen:
                raise B.BuilderError(f"wheel member {rel!r} appears twice")
            seen.add(rel)

        dist_info = find_dist_info([i.filename for i in infos], name)
        stem = dist_info[: -len(".dist-info")]
        if not name or not version:
            dname, _, dver = stem.partition("-")
            name, version = name or dname, version or dver
            B.set_context(f"wheel {name} {version}")
        data_dir = stem + ".data"

        wheel = parse_wheel_file(zf.read(f"{dist_info}/WHEEL").decode("utf-8"))
        wv = wheel.get("wheel-version", "")
        major = wv.split(".", 1)[0]
        if not major.isdigit():
            raise B.BuilderError(f"WHEEL: missing or bad Wheel-Version {wv!r}")
        if int(major) != 1:
            raise B.BuilderError(f"WHEEL: unsupported Wheel-Version {wv} (need 1.x)")
        record_name = f"{dist_info}/RECORD"
        if record_name not in seen:
            raise B.BuilderError(f"{record_name} is missing")
        record = parse_record(zf.read(record_name).decode("utf-8"))

        os.makedirs(out, exist_ok=True)
        writer = T.TreeWriter(os.path.join(out, "root"), what="wheel member")
        installed: dict[str, tuple[str, int]] = {}  # image rel path -> (b64 sha256, size)
        replaced = {record_name, f"{dist_info}/INSTALLER"}
        entry_points_text = ""

        for info in infos:
            member = info.filename
            if member in replaced:
                continue
            is_signature = member in (f"{dist_info}/{s}" for s in SIGNATURE_FILES)
            entry = record.get(member)
            if not is_signature and (entry is None or entry.digest is None):
                raise B.BuilderError(f"{member!r} is not listed with a hash in RECORD")

            scheme = "purelib"
            sub = member
            if member.startswith(data_dir + "/"):
                parts = member.split("/", 2)
                if len(parts) < 3 or parts[1] not in SCHEMES or not parts[2]:
                    raise B.BuilderError(f"wheel member {member!r}: not in a known "
                                         f"{data_dir}/<scheme>/ directory")
                scheme, sub = parts[1], parts[2]
            dest = f"{scheme_dirs[scheme]}/{sub}"
            executable = bool((info.external_attr >> 16) & 0o111)

            checker = hashlib.new(entry.algo) if entry is not None and entry.digest else None
            if scheme == "scripts":
                content = zf.read(info)
                if checker is not None:
                    checker.update(content)
                _verify(member, entry, checker, len(content))
                content = rewrite_script(content, interpreter)
                digest, size = writer.add_file(dest, content, 0o755, source=member)
            else:
                with zf.open(info) as f:
                    digest, size = writer.add_file(
                        dest, f, 0o755 if executable else 0o644, source=member,
                        hashers=[checker] if checker is not None else [])
                _verify(member, entry, checker, size)
            if member == f"{dist_info}/entry_points.txt":
                entry_points_text = zf.read(info).decode("utf-8")
            installed[dest] = (b64_digest(digest), size)

    for script, module, attr in parse_entry_points(entry_points_text):
        dest = f"{scheme_dirs['scripts']}/{script}"
        content = entry_point_script(interpreter, module, attr)
        digest, size = writer.add_file(dest, content, 0o755, source=f"entry point {script}")
        installed[dest] = (b64_digest(digest), size)

    installer_dest = f"{site}/{dist_info}/INSTALLER"
    digest, size = writer.add_file(installer_dest, INSTALLER, 0o644, source="INSTALLER")
    installed[installer_dest] = (b64_digest(digest), size)

    rows = sorted(
        (posixpath.relpath("/" + dest, "/" + site), f"sha256={h}", str(size))
        for dest, (h, size) in installed.items()
    )
    rows.append((f"{dist_info}/RECORD", "", ""))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    writer.add_file(f"{site}/{dist_info}/RECORD", buf.getvalue().encode("utf-8"), 0o644,
                    source="RECORD")

    B.write_meta(out, "wheel", name, version, writer.modes, writer.notes)


def _verify(member: str, entry: RecordEntry | None, checker: T.Hasher | None,
            size: int) -> None:
    if entry is None or entry.digest is None or checker is None:
        return
    got = checker.digest()
    if got != entry.digest:
        raise B.BuilderError(f"{member!r}: {entry.algo} does not match RECORD "
                             f"(got {b64_digest(got)}, RECORD says {b64_digest(entry.digest)})")
    if entry.size is not None and entry.size != size:
        raise B.BuilderError(f"{member!r}: size {size} does not match RECORD ({entry.size})")


if __name__ == "__main__":
    B.main_wrapper(main, "install_wheel")
    sys.exit(0)

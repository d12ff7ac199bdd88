"""Nix builder: install one conda package (.conda or .tar.bz2) into an envnix package tree.

Does what conda's link step does for one package (locking-notes §2; conda/core/portability.py,
path_actions.py, gateways/disk/read.py), without conda, so that every package is its own
cacheable derivation:

* the files listed in ``info/paths.json`` (or, for old packages, ``info/files`` with
  ``info/has_prefix``, ``info/no_link``, ``info/no_softlink``) are installed; other archive
  members, ``info/`` included, are not;
* ``prefix_placeholder`` + ``file_mode: text``: every occurrence is replaced by ``prefix``, then
  conda's shebang rule applies (a first line ``#!<exe> <args>`` longer than 127 bytes, or whose
  directory holds an escaped space, becomes ``#!/usr/bin/env <exe-name><args>``);
  ``file_mode: binary``: each NUL-terminated string holding the placeholder gets it replaced and
  is NUL-padded to its old length; a prefix longer than the placeholder is an error. As conda
  does, both passes run for the UTF-8, UTF-16-LE/BE and UTF-32-LE/BE encodings of the strings;
* ``noarch: python``: ``site-packages/`` goes to ``lib/pythonX.Y/site-packages/`` (or to
  ``pythonSitePackages``, CEP 17), ``python-scripts/`` to ``bin/``, and each entry point of
  ``info/link.json`` becomes ``bin/<command>``, byte for byte the script conda writes
  (``#!<prefix>/bin/pythonX.Y`` and conda's template);
* ``conda-meta/<name>-<version>-<build>.json`` is the lock record plus ``files``, ``paths_data``
  and ``link``, without conda's build-host paths (``extracted_package_dir``,
  ``package_tarball_full_path``, ``link.source``).

Not done, on purpose: conda byte-compiles the ``.py`` files of noarch python packages and lists
the ``.pyc`` files in conda-meta; envnix leaves bytecode out because timestamp pycs are not
reproducible (locking-notes §2.4, §5.2). Pre/post-link scripts are installed but not run and
menu files (``Menu/*.json``) are not turned into shortcuts; meta.json ``notes`` lists them.
File modes are the archive's; owners are 0:0 (conda extracts as the installing user).

Environment:
  src                 path of the package archive (its store name says nothing)
  out                 output directory (Nix's $out)
  pkgFile             the archive's original file name, e.g. numpy-1.24.4-py38h59b608b_0.conda;
                      ``.conda`` or ``.tar.bz2`` decides the format
  prefix              the environment's absolute path in the image, e.g. /opt/conda/envs/envd
  record              JSON object: the lock entry (name, version, build, build_number, subdir,
                      fn, url, channel, sha256, md5, size, depends, constrains, noarch, license,
                      timestamp, ...); fields it lacks are taken from info/index.json
  pythonVersion       X.Y of the environment's python (needed only by noarch: python packages)
  pythonSitePackages  optional: site-packages relative to the prefix (the python record's
                      ``python_site_packages_path``); default lib/pythonX.Y/site-packages
  zstdPath            optional: a directory holding the ``zstandard`` package, for ``.conda``
                      (``python -E`` ignores PYTHONPATH; see _archive.import_zstandard_from)

Output (see README.md, "Package tree format"):
  $out/root/<prefix>/...   the installed files and conda-meta/<name>-<version>-<build>.json
  $out/meta.json           {"kind": "conda", "name", "version", "build", "modes", "notes"?}
"""

from __future__ import annotations

import json
import keyword
import os
import re
import shlex
import shutil
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import _archive as A
import _builder as B
import _treewrite as T
import install_wheel as W

DEFAULT_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
# conda/core/portability.py: the encodings a placeholder is searched in, in this order.
ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
MAX_SHEBANG = 127  # Linux
# First line "#!" [spaces] <executable: "/..." up to unescaped whitespace> <rest of line>.
SHEBANG_RE = re.compile(rb"^(#! *(/(?:\\ |[^ \n\r\t])*)(.*))$", re.MULTILINE)
PATH_TYPES = ("hardlink", "softlink", "directory")
# paths.json keys that conda-meta's paths_data carries over (conda's PathDataV1 fields).
PATH_DATA_KEYS = ("sha256", "size_in_bytes", "no_link", "inode_paths")
HOST_PATH_KEYS = ("extracted_package_dir", "package_tarball_full_path")
LINK_SCRIPT_RE = re.compile(r"^bin/\.[^/]+-(pre-link|post-link)\.sh$")
ENTRY_POINT_TEMPLATE = """\
# -*- coding: utf-8 -*-
import re
import sys

from {module} import {head}

if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])
    sys.exit({func}())
"""


@dataclass
class PathEntry:
    """One ``info/paths.json`` entry (``path`` is relative to the package root)."""

    path: str
    path_type: str
    placeholder: str = ""
    file_mode: str = ""
    data: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Prefix replacement (conda's rules, conda/core/portability.py)


def replace_text(data: bytes, placeholder: str, prefix: str) -> bytes:
    """Text mode: replace everywhere, then conda's long/space shebang fallback."""
    for enc in ENCODINGS:
        nl = data.find(b"\n")
        if nl > -1:
            # A prefix with spaces would split a shebang: escape them here so that the
            # shebang rule below switches to /usr/bin/env (what conda does).
            first, rest = data[:nl], data[nl:]
            old = ("#!" + placeholder).encode(enc)
            if old in first:
                data = first.replace(old, ("#!" + prefix).replace(" ", "\\ ").encode(enc)) + rest
        data = data.replace(placeholder.encode(enc), prefix.encode(enc))
    return replace_long_shebang(data)


def replace_long_shebang(data: bytes) -> bytes:
    """``#!/dir/exe args`` -> ``#!/usr/bin/env exe args`` if longer than 127 bytes or if
    ``/dir`` holds an escaped space. Like conda, every copy of that exact line is replaced."""
    m = SHEBANG_RE.match(data)
    if m is None:
        return data
    whole, executable, options = m.groups()
    directory, _, name = executable.rpartition(b"/")
    if len(whole) > MAX_SHEBANG or b"\\ " in directory:
        data = data.replace(whole, b"#!/usr/bin/env " + name + options)
    return data


def replace_binary(data: bytes, placeholder: str, prefix: str, path: str) -> bytes:
    """Binary mode: the length of the file and of every C string in it stays the same."""
    size = len(data)
    for enc in ENCODINGS:
        old, new, nul = placeholder.encode(enc), prefix.encode(enc), "\0".encode(enc)
        if old not in data:
            continue
        # From a placeholder to the end of its (NUL-terminated, in this encoding) string.
        tail = b"[^\\x00]*\\x00" if len(nul) == 1 else b"(?:(?!" + re.escape(nul) + b").)*" \
            + re.escape(nul)
        pattern = re.compile(re.escape(old) + tail, re.DOTALL)

        def pad(m: re.Match[bytes], old: bytes = old, new: bytes = new) -> bytes:
            s = m.group()
            padding = (len(old) - len(new)) * s.count(old)
            if padding < 0:
                raise B.BuilderError(
                    f"binary file {path!r}: the prefix {prefix!r} ({len(prefix.encode())} "
                    f"bytes) is longer than its placeholder ({len(placeholder.encode())} "
                    "bytes), and a binary prefix cannot grow; choose a shorter prefix")
            return s.replace(old, new) + b"\0" * padding

        data = pattern.sub(pad, data)
    if len(data) != size:  # cannot happen: each match keeps its length
        raise B.BuilderError(f"binary file {path!r}: prefix replacement changed its length")
    return data


# --------------------------------------------------------------------------------------------
# Package metadata


class Package:
    """The extracted archive (a staging tree under ``$out``) and its ``info/`` files."""

    def __init__(self, stage: T.TreeWriter, base: str) -> None:
        self.stage = stage
        self.base = base  # the prefix, relative to the stage root: stage paths are base/<path>

    def entry(self, path: str) -> T._Entry | None:
        return self.stage.entries.get(f"{self.base}/{path}")

    def open(self, path: str) -> IO[bytes]:
        fd = os.open(os.path.join(self.stage.root, self.base, path),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.fdopen(fd, "rb")

    def info(self, name: str) -> bytes | None:
        e = self.entry(f"info/{name}")
        if e is None:
            return None
        if e.kind != "file":
            raise B.BuilderError(f"info/{name} is not a regular file")
        with self.open(f"info/{name}") as f:
            return f.read()

    def info_json(self, name: str) -> dict[str, Any] | None:
        raw = self.info(name)
        if raw is None:
            return None
        try:
            value = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise B.BuilderError(f"info/{name}: not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise B.BuilderError(f"info/{name}: not a JSON object")
        return value


def info_lines(raw: bytes | None) -> Iterator[str]:
    """conda's ``yield_lines``: stripped, without blank lines and ``#`` comments."""
    for line in (raw or b"").decode("utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def read_paths(pkg: Package) -> list[PathEntry]:
    """``info/paths.json`` entries, or the legacy ``info/files`` + ``has_prefix`` form."""
    paths_json = pkg.info_json("paths.json")
    entries: list[PathEntry] = []
    if paths_json is not None:
        if paths_json.get("paths_version") != 1:
            raise B.BuilderError(f"info/paths.json: unsupported paths_version "
                                 f"{paths_json.get('paths_version')!r} (need 1)")
        items = paths_json.get("paths")
        if not isinstance(items, list):
            raise B.BuilderError("info/paths.json: 'paths' is not a list")
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("_path"), str):
                raise B.BuilderError(f"info/paths.json: bad entry {item!r}")
            path = T.safe_relpath(item["_path"], "info/paths.json path")
            path_type = item.get("path_type", "hardlink")
            if path_type not in PATH_TYPES:
                raise B.BuilderError(f"info/paths.json: {path!r} has unknown path_type "
                                     f"{path_type!r}")
            placeholder = item.get("prefix_placeholder") or ""
            file_mode = item.get("file_mode") or ""
            if placeholder and file_mode not in ("text", "binary"):
                raise B.BuilderError(f"info/paths.json: {path!r} has a prefix_placeholder but "
                                     f"file_mode is {file_mode or 'missing'!r}")
            data = {k: item[k] for k in PATH_DATA_KEYS
                    if item.get(k) is not None and item.get(k) is not False}
            entries.append(PathEntry(path, path_type, placeholder, file_mode, data))
    else:
        files = pkg.info("files")
        if files is None:
            raise B.BuilderError("the package has neither info/paths.json nor info/files")
        has_prefix: dict[str, tuple[str, str]] = {}
        for line in info_lines(pkg.info("has_prefix")):
            parts = [p.strip("\"'") for p in shlex.split(line, posix=False)]
            if len(parts) == 1:
                has_prefix[parts[0]] = (DEFAULT_PLACEHOLDER, "text")
            elif len(parts) == 3 and parts[1] in ("text", "binary"):
                has_prefix[parts[2]] = (parts[0], parts[1])
            else:
                raise B.BuilderError(f"info/has_prefix: bad line {line!r}")
        no_link = set(info_lines(pkg.info("no_link"))) | set(info_lines(pkg.info("no_softlink")))
        for line in info_lines(files):
            path = T.safe_relpath(line, "info/files path")
            e = pkg.entry(path)
            path_type = "softlink" if e is not None and e.kind == "symlink" else "hardlink"
            placeholder, file_mode = has_prefix.get(line, ("", ""))
            data: dict[str, Any] = {"no_link": True} if line in no_link else {}
            entries.append(PathEntry(path, path_type, placeholder, file_mode, data))
    seen: set[str] = set()
    for e in entries:
        if e.path in seen:
            raise B.BuilderError(f"info/paths.json lists {e.path!r} twice")
        seen.add(e.path)
    return entries


def noarch_type(record: dict[str, Any], index: dict[str, Any],
                link: dict[str, Any] | None) -> str:
    """"python", "generic" or "" — the record's, else link.json's, else index.json's."""
    value = record.get("noarch")
    if value is None and link is not None and isinstance(link.get("noarch"), dict):
        value = link["noarch"].get("type")
    if value is None:
        value = index.get("noarch")
    if not value:
        return ""
    if value is True:
        return "generic"
    if value not in ("python", "generic"):
        raise B.BuilderError(f"unsupported noarch type {value!r}")
    return str(value)


def entry_points(link: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(command, module, function) per ``noarch.entry_points`` item, checked as conda does."""
    if link is None:
        return []
    noarch = link.get("noarch")
    eps = noarch.get("entry_points") if isinstance(noarch, dict) else None
    if not eps:
        return []
    if not isinstance(eps, list):
        raise B.BuilderError("info/link.json: noarch.entry_points is not a list")
    result = []
    for ep in eps:
        ok = isinstance(ep, str) and "=" in ep
        command, _, definition = ep.partition("=") if ok else ("", "", "")
        module, _, func = definition.strip(" \t\r\n\"'").rpartition(":")
        command, module, func = command.strip(), module.strip(), func.strip()
        if (not ok or not command or command.startswith(".")
                or any(c in command for c in "/\\\0\n\r")
                or not all(p.isidentifier() and not keyword.iskeyword(p)
                           for p in module.split(".") + func.split("."))):
            raise B.BuilderError(f"info/link.json: entry point {ep!r} is not "
                                 "'command = module:function'")
        result.append((command, module, func))
    return result


def entry_point_script(python: str, module: str, func: str) -> bytes:
    """What conda writes (gateways/disk/create.py), shebang included."""
    line = f"#!{python}\n"
    # conda's rule counts the newline, and only a space (not other whitespace) forces the
    # /bin/sh form.
    head = W.sh_exec_shebang(python) if len(line) > MAX_SHEBANG or " " in line else line.encode()
    body = ENTRY_POINT_TEMPLATE.format(module=module, head=func.split(".")[0], func=func)
    return head + body.encode("utf-8")


# --------------------------------------------------------------------------------------------
# Main


@dataclass(frozen=True)
class Inputs:
    out: str
    pkg_file: str
    prefix: str  # as given, e.g. /opt/conda/envs/envd
    base: str  # the prefix relative to the image root, e.g. opt/conda/envs/envd
    record: dict[str, Any]
    py_version: str
    site_packages: str  # relative to the prefix; "" = lib/pythonX.Y/site-packages


def read_inputs() -> Inputs:
    out = B.getenv("out")
    pkg_file = B.getenv("pkgFile")
    B.set_context(f"conda {pkg_file}")
    if "/" in pkg_file:
        raise B.BuilderError(f"pkgFile={pkg_file!r} must be a file name")
    prefix = B.getenv("prefix")
    if not prefix.startswith("/") or "\n" in prefix:
        raise B.BuilderError(f"prefix={prefix!r} must be an absolute image path")
    base = T.safe_relpath(prefix[1:] or ".", "prefix")
    if not base or "/" + base != prefix:
        raise B.BuilderError(f"prefix={prefix!r} must be a canonical path below '/' (no "
                             "trailing '/', '//' or '.')")
    try:
        record = json.loads(B.getenv("record"))
    except ValueError as exc:
        raise B.BuilderError(f"record: not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise B.BuilderError("record: not a JSON object")
    py_version = B.getenv("pythonVersion", "")
    if py_version and not re.fullmatch(r"\d+\.\d+", py_version):
        raise B.BuilderError(f"pythonVersion={py_version!r} must be X.Y")
    site = B.getenv("pythonSitePackages", "")
    if site:
        site = T.safe_relpath(site, "pythonSitePackages")
    return Inputs(out, pkg_file, prefix, base, record, py_version, site)


def extract(src: str, pkg_file: str, stage: T.TreeWriter, base: str) -> None:
    """Both archive formats into the staging tree, at ``base`` (the prefix)."""
    def at_prefix(rel: str, _member: object) -> str:
        return f"{base}/{rel}"

    if pkg_file.endswith(".tar.bz2"):
        with open(src, "rb") as f:
            A.extract_tar(f, stage, at_prefix)
        return
    if not pkg_file.endswith(".conda"):
        raise B.BuilderError(f"pkgFile={pkg_file!r}: expected a .conda or .tar.bz2 file name")
    if not A.zstd_available():
        raise B.BuilderError(".conda packages need the Python module 'zstandard': set "
                             "zstdPath to a directory that holds it")
    stem = pkg_file[: -len(".conda")]
    with zipfile.ZipFile(src) as zf:
        names = zf.namelist()
        if "metadata.json" in names:
            version = json.loads(zf.read("metadata.json")).get("conda_pkg_format_version")
            if version != 2:
                raise B.BuilderError(f"metadata.json: unsupported conda_pkg_format_version "
                                     f"{version!r} (need 2)")
        for component in ("info", "pkg"):
            found = [n for n in names if n.startswith(f"{component}-")
                     and n.endswith(".tar.zst") and "/" not in n]
            if len(found) > 1:
                found = [n for n in found if n == f"{component}-{stem}.tar.zst"]
            if len(found) != 1:
                raise B.BuilderError(f"expected one {component}-*.tar.zst in the .conda zip, "
                                     f"found: {', '.join(names) or 'nothing'}")
            with zf.open(found[0]) as f:
                A.extract_tar(f, stage, at_prefix)


def main() -> None:
    src = B.getenv("src")
    inp = read_inputs()
    zstd_path = B.getenv("zstdPath", "")
    if zstd_path and inp.pkg_file.endswith(".conda"):
        A.import_zstandard_from(zstd_path)
    os.makedirs(inp.out, exist_ok=True)
    # The archive is extracted (safely, by _archive) to a staging tree first: a .tar.bz2 may
    # hold info/paths.json after the files it describes.
    stage_dir = os.path.join(inp.out, ".stage")
    try:
        stage = T.TreeWriter(stage_dir, what="archive member")
        extract(src, inp.pkg_file, stage, inp.base)
        install(Package(stage, inp.base), inp)
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)


def install(pkg: Package, inp: Inputs) -> None:
    index = pkg.info_json("index.json")
    if index is None:
        raise B.BuilderError("info/index.json is missing")
    link = pkg.info_json("link.json") or pkg.info_json("package_metadata.json")
    if link is not None and link.get("package_metadata_version") != 1:
        raise B.BuilderError(f"info/link.json: unsupported package_metadata_version "
                             f"{link.get('package_metadata_version')!r} (need 1)")

    # The lock record wins (channels patch repodata after upload); index.json fills gaps.
    record = inp.record
    for key in ("name", "version", "build"):
        if key in record and key in index and str(record[key]) != str(index[key]):
            raise B.BuilderError(f"record says {key} {record[key]!r} but info/index.json "
                                 f"says {index[key]!r}")
    meta_record: dict[str, Any] = {**index, **record}
    name, version, build = (str(meta_record.get(k) or "") for k in ("name", "version", "build"))
    if not (name and version and build):
        raise B.BuilderError("name, version and build are in neither the record nor "
                             "info/index.json")
    B.set_context(f"conda {name} {version} {build}")

    noarch = noarch_type(record, index, link)
    if noarch == "python" and not inp.py_version:
        raise B.BuilderError("a noarch: python package needs pythonVersion (the environment "
                             "has no python)")
    site = inp.site_packages or f"lib/python{inp.py_version}/site-packages"

    def target(path: str) -> str:
        if noarch == "python":
            if path.startswith("site-packages/"):
                return site + path[len("site-packages"):]
            if path.startswith("python-scripts/"):
                return "bin" + path[len("python-scripts"):]
        return path

    base = inp.base
    writer = T.TreeWriter(os.path.join(inp.out, "root"), what="package path")
    paths_data: list[dict[str, Any]] = []
    files: set[str] = set()
    notes = list(pkg.stage.notes)
    listed: set[str] = set()

    for e in read_paths(pkg):
        dest = target(e.path)
        listed.add(f"{base}/{e.path}")
        staged = pkg.entry(e.path)
        row: dict[str, Any] = {"_path": dest, **e.data}
        if e.path_type == "directory":
            mode = staged.mode if staged is not None and staged.kind == "dir" else 0o755
            writer.add_dir(f"{base}/{dest}", mode, source=e.path)
            paths_data.append({**row, "path_type": "directory"})
            continue
        if staged is None:
            raise B.BuilderError(f"info/paths.json lists {e.path!r} but the archive does "
                                 "not contain it")
        if staged.kind == "dir":
            raise B.BuilderError(f"{e.path!r} is a {e.path_type} in info/paths.json but a "
                                 "directory in the archive")
        files.add(dest)
        if staged.kind == "symlink":
            if e.placeholder and e.path_type != "softlink":
                raise B.BuilderError(f"{e.path!r}: prefix replacement in a symlink")
            writer.add_symlink(f"{base}/{dest}", staged.target, staged.mode, source=e.path)
            paths_data.append({**row, "path_type": "softlink"})
            continue
        if e.path_type == "softlink":  # a regular file listed as a softlink: conda copies it
            copy_file(pkg, writer, e.path, f"{base}/{dest}", staged.mode)
            paths_data.append({**row, "path_type": "softlink"})
            continue
        if e.placeholder:
            with pkg.open(e.path) as f:
                original = f.read()
            if e.file_mode == "text":
                data = replace_text(original, e.placeholder, inp.prefix)
            else:
                data = replace_binary(original, e.placeholder, inp.prefix, e.path)
            digest, _ = writer.add_file(f"{base}/{dest}", data, staged.mode, source=e.path)
            row.update(prefix_placeholder=e.placeholder, file_mode=e.file_mode)
            original_digest, original_size = staged.sha256, len(original)
        else:
            digest, size = copy_file(pkg, writer, e.path, f"{base}/{dest}", staged.mode)
            original_digest, original_size = digest, size
        check_listed(e, original_digest, original_size, notes)
        row.setdefault("sha256", original_digest.hex())
        row.setdefault("size_in_bytes", original_size)
        paths_data.append({**row, "path_type": "hardlink", "sha256_in_prefix": digest.hex()})

    for rel, entry in sorted(pkg.stage.entries.items()):
        if entry.kind != "dir" and rel not in listed and not rel.startswith(f"{base}/info/"):
            notes.append(f"{rel[len(base) + 1:]}: in the archive but not in info/paths.json; "
                         "not installed (as conda)")

    if noarch == "python":
        python = f"{inp.prefix}/bin/python{inp.py_version}"
        for command, module, func in entry_points(link):
            dest = f"bin/{command}"
            script = entry_point_script(python, module, func)
            _, size = writer.add_file(f"{base}/{dest}", script, 0o755,
                                      source=f"entry point {command}")
            files.add(dest)
            paths_data.append({"_path": dest, "path_type": "unix_python_entry_point",
                               "size_in_bytes": size})

    for dest in sorted(files):
        m = LINK_SCRIPT_RE.match(dest)
        if m:
            notes.append(f"{dest}: {m.group(1)} script installed but not run")
        elif dest.startswith("Menu/") and dest.endswith(".json"):
            notes.append(f"{dest}: menu shortcut not created (menuinst is not run)")

    for key in HOST_PATH_KEYS:
        meta_record.pop(key, None)
    meta_record.setdefault("fn", inp.pkg_file)
    meta_record.update(
        files=sorted(files),
        paths_data={"paths": sorted(paths_data, key=lambda r: r["_path"]), "paths_version": 1},
        link={"source": "", "type": 1},
    )
    text = json.dumps(meta_record, indent=2, sort_keys=True, ensure_ascii=True)
    writer.add_file(f"{base}/conda-meta/{name}-{version}-{build}.json", text.encode("ascii"),
                    0o644, source="conda-meta record")
    B.write_meta(inp.out, "conda", name, version, writer.modes, notes + writer.notes,
                 build=build)


def copy_file(pkg: Package, writer: T.TreeWriter, path: str, dest: str,
              mode: int) -> tuple[bytes, int]:
    with pkg.open(path) as f:
        return writer.add_file(dest, f, mode, source=path)


def check_listed(e: PathEntry, digest: bytes, size: int, notes: list[str]) -> None:
    """conda only warns about (and by default does not even hash) a file that differs from
    paths.json; a note keeps that visible."""
    listed_sha, listed_size = e.data.get("sha256"), e.data.get("size_in_bytes")
    if (listed_sha is not None and listed_sha != digest.hex()) or (
            listed_size is not None and listed_size != size):
        notes.append(f"{e.path}: content differs from info/paths.json (sha256/size)")


if __name__ == "__main__":
    B.main_wrapper(main, "install_conda")
    sys.exit(0)

"""Nix builder: unpack one Debian package (.deb) into an envnix package tree, no dpkg needed.

Environment:
  src      path of the .deb (a fixed-output fetch, already checked by hash)
  debs     instead of src/pkgName/pkgVersion: a JSON list of {src, name, version, dir}, each
           unpacked into $out/<dir> as the package tree described below, in parallel on
           NIX_BUILD_CORES cores (templates/image.nix: one derivation per layer's .debs)
  out      output directory (Nix's $out)
  pkgName  package name for meta.json (optional: defaults to the control file's Package)
  pkgVersion package version for meta.json (optional: defaults to the control's Version)

Output (see README.md, "Package tree format"):
  $out/root/...     data.tar.* extracted with merged-/usr paths: top-level bin/ sbin/ lib/
                    lib32/ lib64/ libx32/ are stored under usr/ (the skeleton layer provides
                    the /bin -> usr/bin ... links). Symlink targets are kept as written.
                    Hard links are linked on disk and listed in meta.json "hardlinks"
                    (the store keeps a copy per name; mklayer links them again).
  $out/control      the control file from control.tar.*, verbatim (for /var/lib/dpkg/status)
  $out/dpkg/NAME    every other regular file of control.tar.* (postinst, md5sums, conffiles,
                    triggers, ...), verbatim: mkmeta writes dpkg's info/ database from them
                    and reads the update-alternatives calls of postinst
  $out/dpkg/list    data.tar's paths as dpkg lists them in info/PKG.list ("/." first, then
                    every member as shipped, before the merged-/usr mapping), one per line
  $out/meta.json    {"kind": "deb", "name", "version", "modes", "hardlinks"?, "notes"?}

Maintainer scripts are not run (see mkmeta.py for what they would have produced).
If a canonical path appears twice (``bin/x`` and ``usr/bin/x``) the non-symlink wins; two
regular files with different content are an error.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
import sys
import tarfile
from typing import IO

import _archive as A
import _builder as B
import _treewrite as T

ALIASED_TOP_DIRS = frozenset({"bin", "sbin", "lib", "lib32", "lib64", "libx32"})
DATA_NAMES = ("data.tar", "data.tar.xz", "data.tar.gz", "data.tar.zst", "data.tar.bz2",
              "data.tar.lzma")
CONTROL_NAMES = ("control.tar", "control.tar.xz", "control.tar.gz", "control.tar.zst")


def canonical_path(rel: str, member: tarfile.TarInfo, writer: T.TreeWriter) -> str | None:
    """Merged-/usr: ``bin/x`` -> ``usr/bin/x``; a top-level alias symlink itself is skipped."""
    head = rel.split("/", 1)[0]
    if head not in ALIASED_TOP_DIRS:
        return rel
    if rel == head and member.issym():
        writer.note(f"{rel}: skipped top-level symlink -> {member.linkname} "
                    "(merged-/usr links come from the skeleton)")
        return None
    return "usr/" + rel


def _pick(members: list[A.ArMember], names: tuple[str, ...], what: str) -> A.ArMember:
    found = [m for m in members if m.name in names]
    if len(found) != 1:
        have = ", ".join(m.name for m in members) or "nothing"
        raise B.BuilderError(f"expected exactly one {what} member in the .deb, found: {have}")
    return found[0]


CONTROL_FILE_RE = re.compile(r"^[a-z0-9][a-z0-9_.+-]{0,63}$")


def read_control(f: IO[bytes], member: A.ArMember) -> tuple[bytes, dict[str, bytes]]:
    """The ``control`` file from control.tar.* and its other top-level regular files
    (maintainer scripts, md5sums, conffiles...), read into memory, nothing extracted."""
    control: bytes | None = None
    others: dict[str, bytes] = {}
    with A.open_tar_stream(A.ar_member_reader(f, member)) as tf:
        for m in tf:
            rel = T.safe_relpath(m.name, "control member")
            if rel != "control" and (not m.isreg() or not CONTROL_FILE_RE.match(rel)):
                continue  # "." and anything dpkg would not use
            if not m.isreg():
                raise B.BuilderError("control.tar: 'control' is not a regular file")
            data = tf.extractfile(m)
            if data is None:
                raise B.BuilderError(f"control.tar: cannot read {rel!r}")
            if rel == "control":
                control = data.read()
            elif rel != "list":
                others[rel] = data.read()
    if control is None:
        raise B.BuilderError("control.tar has no 'control' file")
    return control, others


def control_field(control: bytes, field: str) -> str | None:
    prefix = field.lower() + ":"
    for line in control.decode("utf-8", "replace").splitlines():
        if line.lower().startswith(prefix):
            return line[len(prefix):].strip()
    return None


def main() -> None:
    out = B.getenv("out")
    if B.optional_env("debs") is not None:
        unpack_group(out, B.json_input(B.getenv("debs"), "debs", "["))
        return
    src = B.getenv("src")
    name_env = B.getenv("pkgName", "")
    version_env = B.getenv("pkgVersion", "")
    B.set_context(f"deb {name_env or os.path.basename(src)}"
                  + (f" {version_env}" if version_env else ""))
    unpack(src, out, name_env, version_env)


GROUP_DIR_RE = re.compile(r"[A-Za-z0-9+._?=-]{1,200}")


def _group_job(job: dict[str, str]) -> tuple[str, str] | None:
    """One .deb of a group (in a worker process): None, or the (what, why) it failed with."""
    B.set_context(f"deb {job['name']} {job['version']}")
    try:
        unpack(job["src"], job["out"], job["name"], job["version"])
    except Exception as exc:  # reported by the parent, as main_wrapper would
        return B.expected_failure(exc) or B.internal_failure(exc)
    return None


def unpack_group(out: str, debs: object) -> None:
    """Several .debs, each into ``$out/<dir>`` as its own package tree, on every core.

    Why: one derivation per layer's .debs instead of one per .deb; Nix's cost per
    derivation, not the unpacking, was most of a cold build over the floor (bench/profile.py).
    """
    if not isinstance(debs, list) or not all(
            isinstance(d, dict) and all(isinstance(d.get(k), str)
                                        for k in ("src", "name", "version", "dir"))
            for d in debs):
        raise B.BuilderError("debs: must be a JSON list of {src, name, version, dir}")
    dirs = [d["dir"] for d in debs]
    if len(set(dirs)) != len(dirs) or not all(GROUP_DIR_RE.fullmatch(d) and d not in (".", "..")
                                              for d in dirs):
        raise B.BuilderError("debs: each dir must be a distinct plain file name")
    os.makedirs(out)
    jobs = [{**d, "out": os.path.join(out, d["dir"])} for d in debs]
    workers = int(os.environ.get("NIX_BUILD_CORES") or 0) or len(os.sched_getaffinity(0))
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)) or 1,
                                                mp_context=context) as pool:
        for failure in pool.map(_group_job, jobs):
            if failure is not None:
                B.die(*failure)


def unpack(src: str, out: str, name_env: str, version_env: str) -> None:
    """One .deb into the package tree ``out`` (see the module docstring)."""
    with open(src, "rb") as f:
        members = A.read_ar(f)
        if not members or members[0].name != "debian-binary":
            raise B.BuilderError("not a Debian package: first ar member is not debian-binary")
        db = members[0]
        if db.size > 64:
            raise B.BuilderError("debian-binary member is too large")
        f.seek(db.offset)
        fmt = f.read(db.size).decode("ascii", "replace").strip()
        if not fmt.startswith("2."):
            raise B.BuilderError(f"unsupported .deb format version {fmt!r}")
        control_member = _pick(members, CONTROL_NAMES, "control.tar")
        data_member = _pick(members, DATA_NAMES, "data.tar")

        control, control_files = read_control(f, control_member)
        name = name_env or control_field(control, "Package") or ""
        version = version_env or control_field(control, "Version") or ""
        if not name:
            raise B.BuilderError("control file has no Package field and 'name' is not set")

        os.makedirs(out, exist_ok=True)
        writer = T.TreeWriter(os.path.join(out, "root"), what="data.tar member")
        shipped: dict[str, None] = {"/.": None}

        def map_path(rel: str, m: tarfile.TarInfo) -> str | None:
            shipped.setdefault("/" + rel, None)  # (a hard link's target comes back: no-op)
            return canonical_path(rel, m, writer)

        A.extract_tar(A.ar_member_reader(f, data_member), writer, map_path)

    B.write_new_file(os.path.join(out, "control"), control)
    os.makedirs(os.path.join(out, "dpkg"))
    for fname, data in sorted(control_files.items()):
        B.write_new_file(os.path.join(out, "dpkg", fname), data)
    B.write_new_file(os.path.join(out, "dpkg", "list"),
                     "".join(p + "\n" for p in shipped).encode("utf-8"))
    B.write_meta(out, "deb", name, version, writer.modes, writer.notes, writer.hardlinks)


if __name__ == "__main__":
    B.main_wrapper(main, "unpack_deb")
    sys.exit(0)

"""Nix builder: build one sdist into a wheel (PEP 517), offline, over the image's own root.

Why over the image's root: a C extension must be compiled against the image's libc and
Python headers. The root is the image's packages plus what the lock's ``source_builds``
section adds for building only (gcc, libc6-dev, the Python headers as .debs; the build
requirements as wheels installed into the image's site-packages); none of that reaches the
image, only the wheel does, installed by install_wheel.py like any other. The backend runs
through proot exactly as a run() step does (run_steps.execute: new namespaces, no network,
SOURCE_DATE_EPOCH and PYTHONHASHSEED fixed), with the requirements already in place, so no
build isolation or download is attempted.

Environment:
  out          output directory (Nix's $out): the wheel file, alone
  src          the sdist (.tar.gz, .tar.bz2, .tar.xz or .zip; a fixed-output fetch), or a
               source directory (a git reference's tree, from builtins.fetchGit)
  trees        the build root's package trees in order (JSON list, or a file holding it)
  interpreter  the image's Python, e.g. /usr/bin/python3.11
  backend      PEP 517 build-backend, ``module:object`` (the lock read it from pyproject.toml)
  backendPath  JSON list of source-relative directories (PEP 517 backend-path)
  proot, prootLoader, qemu, arch   as run_steps.py
  pkgName, pkgVersion              the sdist's project and version (the wheel must match)

The sdist is unpacked (safely: no member outside its root, no device) into the root's
/tmp/envnix-sdist, and the wheel is written to /envnix-wheel, which the run's diff carries out.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import zipfile

import _archive as A
import _builder as B
import _treewrite as T
import run_steps as R
from _rootfs import remove

SOURCE_DIR = "tmp/envnix-sdist"
FRONTEND = "tmp/envnix-pep517.py"
WHEEL_DIR = "envnix-wheel"
BACKEND_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_.]*)?")


def _top_dir(names: list[str]) -> str:
    """The sdist's one top-level directory (``name-version/``), as PEP 517 sdists have."""
    tops = {n.split("/", 1)[0] for n in names if n}
    if len(tops) != 1:
        raise B.BuilderError(f"the sdist has {len(tops)} top-level entries, not one directory")
    return tops.pop()


def _copy_tree(src: str, writer: T.TreeWriter, prefix: str) -> None:
    """A source directory (a store path: no special files) under ``prefix``, in sorted order."""
    writer.add_dir(prefix, 0o755, 0, 0, source=".")
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, src)
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            target = f"{prefix}/{T.safe_relpath(rel, 'source file')}"
            st = os.lstat(path)
            if os.path.islink(path):
                writer.add_symlink(target, os.readlink(path), 0o777, 0, 0, source=rel)
            elif os.path.isdir(path):
                writer.add_dir(target, 0o755, 0, 0, source=rel)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    writer.add_file(target, f, 0o755 if st.st_mode & 0o111 else 0o644, 0, 0,
                                    source=rel)


def unpack_sdist(src: str, tree: str) -> str:
    """The sdist as a package tree under SOURCE_DIR, plus the frontend; its top directory."""
    writer = T.TreeWriter(os.path.join(tree, "root"), what="sdist member")
    names: list[str] = []
    if os.path.isdir(src):  # a git reference's tree (builtins.fetchGit): copied as it is
        names.append("source")
        _copy_tree(src, writer, f"{SOURCE_DIR}/source")
    elif src.endswith(".zip") or zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as zf:
            for info in zf.infolist():
                rel = T.safe_relpath(info.filename, "sdist member")
                if not rel:
                    continue
                names.append(rel)
                target = f"{SOURCE_DIR}/{rel}"
                executable = (info.external_attr >> 16) & 0o111
                if info.is_dir():
                    writer.add_dir(target, 0o755, 0, 0, source=info.filename)
                else:
                    with zf.open(info) as f:
                        writer.add_file(target, f, 0o755 if executable else 0o644, 0, 0,
                                        source=info.filename)
    else:
        def map_path(rel: str, _member: object) -> str:
            names.append(rel)
            return f"{SOURCE_DIR}/{rel}"

        with open(src, "rb") as f:
            A.extract_tar(f, writer, map_path)
    top = _top_dir(names)
    frontend = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_pep517.py")
    with open(frontend, "rb") as f:
        writer.add_file(FRONTEND, f, 0o644, 0, 0, source="_pep517.py")
    B.write_meta(tree, "sdist", "sdist", "0", writer.modes, writer.notes)
    return top


def main() -> None:
    out = B.getenv("out")
    src = B.getenv("src")
    name, version = B.getenv("pkgName"), B.getenv("pkgVersion")
    B.set_context(f"build {name} {version} from its sdist")
    trees = R.load_trees()
    interpreter = B.getenv("interpreter")
    backend = B.getenv("backend")
    backend_path = R.json_input("backendPath", "[", "[]")
    if not interpreter.startswith("/"):
        raise B.BuilderError(f"interpreter {interpreter!r} is not an absolute image path")
    if not BACKEND_RE.fullmatch(backend):
        raise B.BuilderError(f"backend {backend!r} is not a module:object name")
    if not isinstance(backend_path, list) or not all(
            isinstance(p, str) and T.safe_relpath(p, "backend-path") for p in backend_path):
        raise B.BuilderError("backendPath: must be a JSON list of relative directories")

    top = os.environ.get("NIX_BUILD_TOP") or tempfile.gettempdir()
    work = tempfile.mkdtemp(prefix="envnix-sdist-", dir=top)
    source_tree = os.path.join(work, "source")
    source = unpack_sdist(src, source_tree)
    command = " ".join([
        "cd", shlex.quote(f"/{SOURCE_DIR}/{source}"), "&&",
        shlex.quote(interpreter), f"/{FRONTEND}", shlex.quote(backend),
        shlex.quote(json.dumps(backend_path)), f"/{WHEEL_DIR}"])
    diff = os.path.join(work, "diff")
    R.execute(diff, [*trees, source_tree], lambda _rootfs: [command], dict(R.DEFAULT_ENV), "/",
              B.getenv("proot"), json.loads(B.getenv("prootLoader", "[]")), "", name, version,
              qemu=B.getenv("qemu", ""))
    built_dir = os.path.join(diff, "root", WHEEL_DIR)
    wheels = sorted(os.listdir(built_dir)) if os.path.isdir(built_dir) else []
    if len(wheels) != 1 or not wheels[0].endswith(".whl"):
        raise B.BuilderError(f"the backend {backend} made {wheels or 'no files'}, not one wheel")
    project = re.sub(r"[-_.]+", "_", name).lower()
    if re.sub(r"[-_.]+", "_", wheels[0].split("-", 1)[0]).lower() != project:
        raise B.BuilderError(f"the backend built {wheels[0]}, not a wheel of {name}")
    os.makedirs(out)
    shutil.copyfile(os.path.join(built_dir, wheels[0]), os.path.join(out, wheels[0]))
    remove(work)


if __name__ == "__main__":
    B.main_wrapper(main, "build_sdist")
    sys.exit(0)

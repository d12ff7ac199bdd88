"""The built image as files: image.tar (an OCI layout and a docker-archive) or a rootfs tar.

Why apart from push: only archives need Nix at publish time (image.tar is a second attribute
of the same Nix project, built on demand and checked to be the last build's image), while a
push reads the OCI layout directly. Files are written atomically; ``-`` means stdout.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import shutil
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from envnix.core.errors import PublishError, UsageError, os_reason
from envnix.core.fileio import atomic_writer
from envnix.core.progress import Progress
from envnix.nix import nix_build
from envnix.oci.layout import BuiltImage, open_layer, read_digests, store_real_path


def toolchain_of(generated: Path) -> str:
    """The toolchain default.nix was rendered for (the archive must be built with the same)."""
    try:
        text = (generated / "default.nix").read_text(encoding="utf-8")
    except OSError:
        raise UsageError(f"{generated}/default.nix is missing",
                         hint="run envnix build first") from None
    m = re.search(r'toolchain \? "([a-z]+)"', text)
    return m[1] if m else "host"


def build_archive(generated: Path, image: BuiltImage, store: str | None,
                  progress: Progress, verbose: bool = False) -> Path:
    """Build the ``archive`` attribute (image.tar) of the project that built ``image``."""
    result = nix_build(generated, "archive", toolchain_of(generated), out_link=None,
                       store=store, progress=progress, verbose=verbose)
    root = store_real_path(result.out_path, store)
    archived = read_digests(root / "digests.json", PublishError)
    if archived.get("manifest") != image.manifest:
        raise PublishError(
            f"the Nix project in {generated} no longer builds the last image "
            f"({archived.get('manifest')} instead of {image.manifest})",
            hint="run envnix build again, then retry")
    return root / "image.tar"


@contextlib.contextmanager
def _layer_tar(blob: Path) -> Iterator[tarfile.TarFile]:
    """A layer blob as a tar stream (gzip or zstd)."""
    with open(blob, "rb") as raw, open_layer(raw) as f, tarfile.open(fileobj=f, mode="r|") as tf:
        yield tf


def _norm(name: str) -> str:
    name = posixpath.normpath("/" + name).lstrip("/")
    return "" if name == "." else name


def write_rootfs_tar(image: BuiltImage, out: BinaryIO) -> int:
    """Flatten the layers into one root-filesystem tar (BuildKit's ``tar`` exporter).

    Later layers win; OCI whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are honoured. A directory
    is written at its first appearance (parents before children) with its last metadata. A
    hard link stays one when its target is written from the same layer; when a later layer
    replaced or removed the target, the link becomes a copy of the target as its own layer
    had it. Returns the number of entries written.
    """
    blobs = [image.blob_path(layer.digest) for layer in image.layers]
    final: dict[str, tuple[int, bool]] = {}
    dir_first: dict[str, int] = {}
    dir_info: dict[str, tarfile.TarInfo] = {}
    whiteout: dict[str, int] = {}
    opaque: dict[str, int] = {}
    for i, blob in enumerate(blobs):
        with _layer_tar(blob) as tf:
            for m in tf:
                path = _norm(m.name)
                base, parent = posixpath.basename(path), posixpath.dirname(path)
                if base == ".wh..wh..opq":
                    opaque[parent] = i
                elif base.startswith(".wh."):
                    gone = posixpath.join(parent, base[4:])
                    whiteout[gone] = i
                    dir_first.pop(gone, None)
                elif path:
                    final[path] = (i, m.isdir())
                    if m.isdir():
                        dir_first.setdefault(path, i)
                        dir_info[path] = m
                    else:
                        dir_first.pop(path, None)

    def hidden(path: str, i: int) -> bool:
        if whiteout.get(path, -1) > i:
            return True
        parent = posixpath.dirname(path)
        while parent:
            j, is_dir = final.get(parent, (-1, True))
            if whiteout.get(parent, -1) > i or opaque.get(parent, -1) > i or \
                    (j > i and not is_dir):
                return True
            parent = posixpath.dirname(parent)
        return False

    written = 0
    files_from: dict[str, int] = {}  # regular file written -> the layer it came from
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as w:
        for i, blob in enumerate(blobs):
            with _layer_tar(blob) as tf:
                for m in tf:
                    path = _norm(m.name)
                    base = posixpath.basename(path)
                    if not path or base.startswith(".wh."):
                        continue
                    last, is_dir = final[path]
                    if is_dir and m.isdir():
                        if dir_first.get(path) != i or hidden(path, last):
                            continue
                        info = dir_info[path]
                        info.name = path
                        w.addfile(info)
                    else:
                        if last != i or hidden(path, i):
                            continue
                        m.name = path
                        if m.islnk():
                            _add_link(w, m, blob, i, files_from)
                        else:
                            w.addfile(m, tf.extractfile(m) if m.isreg() else None)
                        if m.isreg():
                            files_from[path] = i
                    written += 1
    return written


def _add_link(w: tarfile.TarFile, m: tarfile.TarInfo, blob: Path, layer: int,
              files_from: dict[str, int]) -> None:
    """Write hard link ``m`` of layer ``layer``: as a link when its target was written from
    that layer, else as a copy of the target's content in that layer (read again)."""
    target = _norm(m.linkname)
    if files_from.get(target) != layer:
        with _layer_tar(blob) as tf:
            for t in tf:
                if _norm(t.name) == target and t.isreg():
                    m.type, m.linkname, m.size = tarfile.REGTYPE, "", t.size
                    w.addfile(m, tf.extractfile(t))
                    return
    m.linkname = target
    w.addfile(m)


def _copy_to(src: Path | None, dest: str | None, producer: Callable[[BinaryIO], object] | None,
             ) -> str:
    """Write ``src`` (or what ``producer`` writes) to the file ``dest`` or to stdout."""
    def emit(f: BinaryIO) -> None:
        if src is not None:
            with open(src, "rb") as s:
                shutil.copyfileobj(s, f, 1024 * 1024)
        elif producer is not None:
            producer(f)

    if dest in (None, "", "-"):
        try:
            emit(sys.stdout.buffer)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise PublishError("stdout was closed before the whole archive was written") \
                from None
        return "stdout"
    target = Path(dest).absolute()
    try:
        with atomic_writer(target) as f:
            emit(f)
    except OSError as e:
        raise PublishError(f"cannot write {dest}: {os_reason(e)}") from None
    return str(dest)


def write_archive(archive: Path, dest: str | None) -> str:
    """Copy image.tar (OCI layout + docker manifest.json in one tar) to ``dest`` or stdout."""
    return _copy_to(archive, dest, None)


def write_rootfs(image: BuiltImage, dest: str | None) -> str:
    return _copy_to(None, dest, lambda f: write_rootfs_tar(image, f))

#!/usr/bin/env python3
"""Where an envnix image's bytes go: gzip and unpacked size, hard links, duplicate files.

Not a timing: sizes, which are deterministic. For every layer of the built image it reads the
tar and counts
- gzip bytes (the blobs a registry stores) and tar bytes;
- unpacked bytes: regular files' sizes, a hard-linked file counted once (what `du -b` of the
  unpacked root says, directories and symlinks aside);
- hard-link entries and the bytes they save;
- duplicates: bytes of regular files whose content, mode and owner equal an earlier file of
  the same layer (what deduplicating by content inside a layer would still save).
With `--conventional` the same packages are also built the conventional way in the same run
(`mmdebstrap --variant=apt` of the lock's apt roots, the locked wheels installed with pip into
the root, then `tar | gzip -6`), and the ratios are printed.

With `--slim` each layer is also re-packed (gzip -6) without what an opt-in slim mode would
drop (docs but their copyright files, man and info pages, locales: Debian's slim images'
dpkg path-excludes), to measure what such a mode would save.

Usage:  .venv/bin/python bench/size.py [CONTEXT] [--conventional] [--slim] [--store-path P]
CONTEXT defaults to bench/contexts/opencv (issue 17's image), built --locked.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

from _common import envnix, field, print_table, work_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _mmdebstrap import mmdebstrap  # noqa: E402

# What an opt-in slim mode would leave out, as Debian's slim images do with dpkg path-exclude
# (the licences, usr/share/doc/*/copyright, stay).
SLIM_DROP = re.compile(r"usr/share/(doc|man|info|groff|lintian|linda|locale)/.")
SLIM_KEEP = re.compile(r"usr/share/doc/[^/]+/copyright")


def slim_drops(name: str) -> bool:
    return bool(SLIM_DROP.match(name)) and not SLIM_KEEP.fullmatch(name)


class _Counter:
    """A write-only sink that counts bytes (the gzip size of a re-packed layer)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def layer_figures(blob: Path, slim: bool = False) -> dict[str, int]:
    """Sizes of one gzip layer blob (see the module docstring); with ``slim``, also the
    layer re-packed without the slim paths (gzip level 6, as mklayer)."""
    fig = dict(gzip=blob.stat().st_size, tar=0, unpacked=0, hardlinks=0, linked_bytes=0,
               duplicates=0, duplicate_bytes=0, slim_gzip=0, slim_unpacked=0)
    sizes: dict[str, int] = {}
    seen: set[tuple[bytes, int, int, int]] = set()
    dropped: set[str] = set()
    counter = _Counter()
    with contextlib.ExitStack() as stack:
        tf = stack.enter_context(tarfile.open(blob, mode="r|gz"))
        out = None
        if slim:
            gz = stack.enter_context(gzip.GzipFile(fileobj=counter, mode="wb",  # type: ignore[arg-type]
                                                   compresslevel=6, mtime=0))
            out = stack.enter_context(tarfile.open(fileobj=gz, mode="w|",
                                                   format=tarfile.PAX_FORMAT))
        for m in tf:
            data = b""
            if m.isreg():
                fig["unpacked"] += m.size
                sizes[m.name] = m.size
                f = tf.extractfile(m)
                assert f is not None
                data = f.read()
                key = (hashlib.sha256(data).digest(), m.mode, m.uid, m.gid)
                if m.size and key in seen:
                    fig["duplicates"] += 1
                    fig["duplicate_bytes"] += m.size
                seen.add(key)
            elif m.islnk():
                fig["hardlinks"] += 1
                fig["linked_bytes"] += sizes.get(m.linkname, 0)
            if out is None:
                continue
            if slim_drops(m.name.rstrip("/")) or (m.islnk() and m.linkname in dropped):
                dropped.add(m.name)
                continue
            fig["slim_unpacked"] += len(data)
            out.addfile(m, io.BytesIO(data) if m.isreg() else None)
    fig["slim_gzip"] = counter.size
    # Layer blobs are symlinks into the layer derivations, next to layer.json.
    fig["tar"] = json.loads((blob.resolve().parent / "layer.json").read_text())["tar_size"]
    return fig


def image_figures(store_path: Path, slim: bool = False) -> dict[str, int]:
    layout = store_path / "oci"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:])
                          .read_text())
    total: dict[str, int] = {"layers": len(manifest["layers"])}
    for layer in manifest["layers"]:
        for k, v in layer_figures(layout / "blobs/sha256" / layer["digest"][7:], slim).items():
            total[k] = total.get(k, 0) + v
    return total


def conventional(lock: dict, work: Path) -> tuple[int, int]:
    """(gzip bytes, unpacked bytes) of mmdebstrap + pip of the same packages."""
    root = mmdebstrap(lock["inputs"]["apt"]["packages"], work / "root",
                      lock["inputs"]["apt"]["release"])
    install_wheels(lock, root, work / "wheels")
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-cf", "-", "."],
                           stdout=subprocess.PIPE)
    gz = subprocess.run(["gzip", "-6"], stdin=tar.stdout, capture_output=True, check=True)
    tar.wait()
    return len(gz.stdout), file_bytes(root)


def install_wheels(lock: dict, root: Path, wheels: Path, extra: tuple[str, ...] = ()) -> None:
    """The lock's wheels downloaded with curl into ``wheels`` (and ``extra`` requirements with
    pip download), then installed with pip into ``root``'s dist-packages, as pip in a chroot
    would put them."""
    wheels.mkdir(parents=True)
    for w in lock["pip"]["wheels"]:
        subprocess.run(["curl", "-sSfL", "-o", str(wheels / w["filename"]), w["url"]],
                       check=True)
    if extra:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "--python-version", "3.11", "-d", str(wheels),
                        *extra], check=True)
    site = root / "usr/local/lib/python3.11/dist-packages"
    if any(wheels.iterdir()):  # an apt-only image has none, and pip refuses an empty install
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-index", "--target", str(site), *map(str, wheels.iterdir())],
                       check=True)


def file_bytes(root: Path) -> int:
    """Regular files' sizes under ``root``, a hard-linked file counted once (as above)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("context", nargs="?", default=str(ROOT / "bench/contexts/opencv"))
    ap.add_argument("--store-path", help="measure this built image instead of building")
    ap.add_argument("--conventional", action="store_true",
                    help="also build the same packages with mmdebstrap + pip")
    ap.add_argument("--slim", action="store_true",
                    help="also measure the image without docs, man pages and locales")
    ap.add_argument("--keep", type=Path, help="keep the conventional root here")
    args = ap.parse_args()
    context = Path(args.context).resolve()
    if args.store_path:
        store = Path(args.store_path)
    else:
        _, out, _ = envnix("build", str(context), "--locked")
        store = Path(field(out, "store"))
    fig = image_figures(store, args.slim)
    mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
    rows = [
        ("layers", str(fig["layers"]), ""),
        ("image, gzip", mb(fig["gzip"]), ""),
        ("image, tar", mb(fig["tar"]), ""),
        ("image, unpacked", mb(fig["unpacked"]), "regular files, hard links once"),
        ("hard links", str(fig["hardlinks"]), f"{mb(fig['linked_bytes'])} not stored twice"),
        ("duplicate files", str(fig["duplicates"]),
         f"{mb(fig['duplicate_bytes'])} same content+mode+owner in one layer"),
    ]
    if args.slim:
        rows += [("slim, gzip", mb(fig["slim_gzip"]),
                  f"-{mb(fig['gzip'] - fig['slim_gzip'])} without docs, man pages, locales"),
                 ("slim, unpacked", mb(fig["slim_unpacked"]),
                  f"-{mb(fig['unpacked'] - fig['slim_unpacked'])}")]
    if args.conventional:
        lock = json.loads((context / "envnix.lock").read_text())
        with work_dir(args.keep, "size") as work:
            gz, unpacked = conventional(lock, work)
        rows[1] = (*rows[1][:2], f"conventional {mb(gz)} = {fig['gzip'] / gz:.2f}x")
        rows[3] = (*rows[3][:2], f"conventional {mb(unpacked)} = "
                                 f"{fig['unpacked'] / unpacked:.2f}x")
    print(f"image: {store}")
    print_table(rows)


if __name__ == "__main__":
    main()

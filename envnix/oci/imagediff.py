"""What changed between two images: layers, and file paths of the flattened root file system.

Why read the tars ourselves: the question is "what would a container see differently", so each
image's layers are applied in order (OCI whiteouts honoured) into one path -> (type, mode,
owner, size, content sha256, link) table, and the two tables are compared. Layers are read as
streams with tarfile and never extracted, so a hostile layer (``../`` names, device nodes,
links out of the tree) cannot touch this machine. ``docker://`` references are first copied
with skopeo into a temporary OCI layout (the registry options are push's).
"""

from __future__ import annotations

import gzip
import hashlib
import posixpath
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from envnix.core import schema as S
from envnix.core.errors import PublishError, UsageError
from envnix.core.reference import DIGEST, DOCKER, InvalidReference, Reference
from envnix.oci.registry import RegistryOptions, copy_to_layout, human_size

__all__ = ["Image", "ImageDiff", "LayerDiff", "config_changes", "diff_images",
           "first_layer_diff", "flatten", "is_image_ref", "layer_entries", "open_image",
           "read_layout"]

OCI = "oci:"
_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"

# path -> (kind, mode, uid, gid, size, sha256 of the contents or the link target)
Entry = tuple[str, int, int, int, int, str]


def is_image_ref(text: str) -> bool:
    return text.startswith((OCI, DOCKER))


@dataclass(frozen=True)
class Image:
    """One image of an OCI layout: its manifest, config and where its blobs are."""

    source: str
    layout: Path
    digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]

    def blob(self, digest: str) -> Path:
        if not DIGEST.fullmatch(digest):
            raise PublishError(f"{self.source}: {digest!r} is not a sha256 digest")
        return self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("layers") or [])


def _read_blob_json(layout: Path, digest: str, source: str) -> dict[str, Any]:
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise PublishError(f"{source}: {digest!r} is not a sha256 digest")
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PublishError(f"{source}: cannot read blob {digest}: {exc.strerror}") from None
    if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
        raise PublishError(f"{source}: blob {digest} does not match its digest")
    return _object(raw, f"{source}: blob {digest}")


def _object(raw: bytes, origin: str) -> dict[str, Any]:
    data = S.parse_json(raw, origin, PublishError)
    if not isinstance(data, dict):
        raise PublishError(f"{origin}: expected a JSON object, got {S.kind(data)}")
    return data


def read_layout(layout: Path, tag: str | None, source: str) -> Image:
    """The image ``tag`` names in an OCI layout (or its only one), checked by digest."""
    try:
        raw = (layout / "index.json").read_bytes()
    except OSError as exc:
        raise UsageError(f"{source}: {layout} is not an OCI layout (index.json: "
                         f"{exc.strerror})") from None
    index = _object(raw, f"{source}: index.json")
    manifests = [m for m in (index.get("manifests") or []) if isinstance(m, dict)]
    if tag is not None:
        manifests = [m for m in manifests if (m.get("annotations") or {}).get(
            "org.opencontainers.image.ref.name") == tag]
    if len(manifests) != 1:
        what = f"no image tagged {tag}" if tag and not manifests else \
            f"{len(manifests)} images"
        raise UsageError(f"{source}: the layout holds {what}",
                         hint="name one as oci:DIR:TAG" if not tag else None)
    digest = manifests[0].get("digest")
    manifest = _read_blob_json(layout, digest, source)
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not all(
            isinstance(x, dict) and isinstance(x.get("digest"), str)
            and isinstance(x.get("size", 0), int) for x in layers):
        raise PublishError(f"{source}: manifest {digest} is not an image manifest (layers)")
    described = manifest.get("config")
    if not isinstance(described, dict):
        raise PublishError(f"{source}: manifest {digest} is not an image manifest (config)")
    config = _read_blob_json(layout, described.get("digest"), source)
    return Image(source, layout, digest, manifest, config)


@contextmanager
def open_image(text: str, opts: RegistryOptions | None = None) -> Iterator[Image]:
    """``oci:DIR[:TAG]`` (skopeo's spelling: DIR ends at the first ':') or ``docker://REF``,
    copied to a temporary layout that is removed afterwards."""
    if text.startswith(OCI):
        path, _, tag = text[len(OCI):].partition(":")
        if not path:
            raise UsageError(f"{text}: oci: needs a directory")
        yield read_layout(Path(path), tag or None, text)
        return
    if not text.startswith(DOCKER):
        raise UsageError(f"{text} is not an image reference",
                         hint="write oci:DIR[:TAG] or docker://HOST/NAME[:TAG]")
    try:
        ref = Reference.parse_docker(text)
    except InvalidReference as exc:
        raise UsageError(f"{text} is not a valid image reference: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="envnix-diff-") as tmp:
        layout = Path(tmp) / "oci"
        copy_to_layout(ref, layout, "image", opts or RegistryOptions())
        yield read_layout(layout, "image", text)


def _open_layer(f: BinaryIO) -> BinaryIO:
    magic = f.read(4)
    f.seek(0)
    if magic.startswith(_GZIP):
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    if magic == _ZSTD:
        return zstandard.ZstdDecompressor().stream_reader(f)  # type: ignore[return-value]
    return f


def _entry(tf: tarfile.TarFile, m: tarfile.TarInfo) -> Entry:
    if m.isreg():
        h = hashlib.sha256()
        src = tf.extractfile(m)
        assert src is not None
        while chunk := src.read(1 << 20):
            h.update(chunk)
        return ("file", m.mode, m.uid, m.gid, m.size, h.hexdigest())
    kind = ("dir" if m.isdir() else "symlink" if m.issym() else "hardlink" if m.islnk()
            else "fifo" if m.isfifo() else "device" if m.isdev() else "other")
    target = m.linkname if (m.issym() or m.islnk()) else \
        f"{m.devmajor},{m.devminor}" if m.isdev() else ""
    return (kind, m.mode, m.uid, m.gid, 0, target)


def _norm(name: str) -> str:
    """``./usr/bin/x``, ``usr/bin/x`` and ``/usr/bin/x`` are one path, ``/usr/bin/x``."""
    return posixpath.normpath("/" + name)


def layer_entries(path: Path, source: str) -> tuple[dict[str, Entry], set[str], set[str]]:
    """One layer: its entries, the paths it whites out and the directories it makes opaque."""
    entries: dict[str, Entry] = {}
    whiteouts: set[str] = set()
    opaque: set[str] = set()
    try:
        with open(path, "rb") as raw, _open_layer(raw) as f, \
                tarfile.open(fileobj=f, mode="r|") as tf:
            for m in tf:
                name = _norm(m.name)
                base, parent = posixpath.basename(name), posixpath.dirname(name)
                if base == ".wh..wh..opq":
                    opaque.add(parent)
                elif base.startswith(".wh."):
                    whiteouts.add(posixpath.join(parent, base[4:]))
                elif name != "/":
                    entries[name] = _entry(tf, m)
    except (OSError, EOFError, tarfile.TarError, zstandard.ZstdError) as exc:
        raise PublishError(f"{source}: layer {path.name[:12]} cannot be read as a tar: "
                           f"{exc}") from None
    return entries, whiteouts, opaque


def _under(paths: dict[str, Entry], top: str) -> list[str]:
    prefix = top.rstrip("/") + "/"
    return [p for p in paths if p.startswith(prefix)]


def flatten(image: Image, cache: dict[str, Any] | None = None) -> dict[str, Entry]:
    """The root file system a container of ``image`` sees, as path -> Entry."""
    tree: dict[str, Entry] = {}
    for layer in image.layers:
        digest = layer.get("digest", "")
        if cache is not None and digest in cache:
            entries, whiteouts, opaque = cache[digest]
        else:
            entries, whiteouts, opaque = layer_entries(image.blob(digest), image.source)
            if cache is not None:
                cache[digest] = (entries, whiteouts, opaque)
        for top in opaque:
            for p in _under(tree, top):
                del tree[p]
        for gone in whiteouts:
            tree.pop(gone, None)
            for p in _under(tree, gone):
                del tree[p]
        tree.update(entries)
    return tree


@dataclass(frozen=True)
class ImageDiff:
    digests: tuple[str, str]
    layers_added: list[dict[str, Any]] = field(default_factory=list)
    layers_removed: list[dict[str, Any]] = field(default_factory=list)
    layers_kept: int = 0
    files_added: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files_changed: list[tuple[str, list[str]]] = field(default_factory=list)
    config_changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.digests[0] != self.digests[1]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "image", "differ": bool(self),
                "manifest": {"from": self.digests[0], "to": self.digests[1]},
                "layers": {"added": self.layers_added, "removed": self.layers_removed,
                           "unchanged": self.layers_kept},
                "files": {"added": self.files_added, "removed": self.files_removed,
                          "changed": [{"path": p, "what": w} for p, w in self.files_changed]},
                "config": {"changed": self.config_changed}}

    def lines(self) -> list[str]:
        if not self:
            return [f"no differences (both {self.digests[0]})"]
        out = [f"manifest: {self.digests[0]} -> {self.digests[1]}",
               f"layers: {len(self.layers_added)} added, {len(self.layers_removed)} removed, "
               f"{self.layers_kept} unchanged"]
        out += [f"  - {x['digest']} ({human_size(x['size'] or 0)})" for x in self.layers_removed]
        out += [f"  + {x['digest']} ({human_size(x['size'] or 0)})" for x in self.layers_added]
        out.append(f"files: {len(self.files_added)} added, {len(self.files_removed)} removed, "
                   f"{len(self.files_changed)} changed")
        rows = [(p, f"+ {p}") for p in self.files_added]
        rows += [(p, f"- {p}") for p in self.files_removed]
        rows += [(p, f"~ {p} ({', '.join(w)})") for p, w in self.files_changed]
        out += [f"  {text}" for _, text in sorted(rows)]
        if self.config_changed:
            out.append("config: " + ", ".join(self.config_changed) + " changed")
        return out


_FIELDS = ("type", "mode", "uid", "gid", "size", "content")


def _diff_trees(a: dict[str, Entry], b: dict[str, Entry]
                ) -> tuple[list[str], list[str], list[tuple[str, list[str]]]]:
    """Paths added, removed and changed (with which fields) from ``a`` to ``b``."""
    changed = []
    for path in sorted(a.keys() & b.keys()):
        if a[path] != b[path]:
            what = [f for f, x, y in zip(_FIELDS, a[path], b[path], strict=True) if x != y]
            if a[path][0] in ("symlink", "hardlink") and "content" in what:
                what[what.index("content")] = "target"
            changed.append((path, what))
    return sorted(b.keys() - a.keys()), sorted(a.keys() - b.keys()), changed


@dataclass(frozen=True)
class LayerDiff:
    """The first layer position where two images differ, and the files of that one layer that
    differ (as the layers' own tar entries, whiteouts aside): what a rebuild check names."""

    index: int                      # 0-based position in the manifests' layer lists
    old: dict[str, Any] | None      # its descriptor in ``old`` (None: ``old`` has fewer layers)
    new: dict[str, Any] | None
    files_added: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files_changed: list[tuple[str, list[str]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "from": self.old, "to": self.new,
                "files": {"added": self.files_added, "removed": self.files_removed,
                          "changed": [{"path": p, "what": w} for p, w in self.files_changed]}}

    def lines(self) -> list[str]:
        def name(x: dict[str, Any] | None) -> str:
            return f"{x['digest']} ({human_size(x.get('size') or 0)})" if x else "(none)"
        rows = [(p, f"+ {p}") for p in self.files_added]
        rows += [(p, f"- {p}") for p in self.files_removed]
        rows += [(p, f"~ {p} ({', '.join(w)})") for p, w in self.files_changed]
        return [f"first differing layer: #{self.index + 1}: {name(self.old)} -> "
                f"{name(self.new)}",
                f"  files: {len(self.files_added)} added, {len(self.files_removed)} removed, "
                f"{len(self.files_changed)} changed",
                *(f"    {text}" for _, text in sorted(rows))]


def first_layer_diff(old: Image, new: Image) -> LayerDiff | None:
    """The first layer position whose digests differ (None: the same layers, in order), with
    that layer's files compared entry by entry."""
    for i in range(max(len(old.layers), len(new.layers))):
        x = old.layers[i] if i < len(old.layers) else None
        y = new.layers[i] if i < len(new.layers) else None
        if x is not None and y is not None and x.get("digest") == y.get("digest"):
            continue
        a = layer_entries(old.blob(x["digest"]), old.source)[0] if x else {}
        b = layer_entries(new.blob(y["digest"]), new.source)[0] if y else {}
        added, removed, changed = _diff_trees(a, b)

        def desc(d: dict[str, Any] | None) -> dict[str, Any] | None:
            return {"digest": d["digest"], "size": d.get("size")} if d else None
        return LayerDiff(i, desc(x), desc(y), added, removed, changed)
    return None


def diff_images(old: Image, new: Image) -> ImageDiff:
    """``old`` -> ``new``. Layers are matched by digest; files by path in the flattened trees
    (a file changed when its type, mode, owner, size, contents or link target did)."""
    cache: dict[str, Any] = {}
    a, b = flatten(old, cache), flatten(new, cache)
    before = [layer.get("digest") for layer in old.layers]
    after = [layer.get("digest") for layer in new.layers]
    added, removed, changed = _diff_trees(a, b)
    return ImageDiff(
        (old.digest, new.digest),
        layers_added=[{"digest": x["digest"], "size": x.get("size")}
                      for x in new.layers if x.get("digest") not in before],
        layers_removed=[{"digest": x["digest"], "size": x.get("size")}
                        for x in old.layers if x.get("digest") not in after],
        layers_kept=sum(1 for d in after if d in before),
        files_added=added,
        files_removed=removed,
        files_changed=changed,
        config_changed=config_changes(old, new),
    )


def config_changes(old: Image, new: Image) -> list[str]:
    """The image config fields that differ (``config.Env``, ``config.Labels (KEY, ...)``,
    top-level fields; the layer list aside): no layer is read."""
    old_cfg = {k: v for k, v in old.config.items() if k not in ("rootfs", "history")}
    new_cfg = {k: v for k, v in new.config.items() if k not in ("rootfs", "history")}
    config = sorted({*old_cfg.get("config", {}), *new_cfg.get("config", {})})
    changed = []
    for k in config:
        x, y = old_cfg.get("config", {}).get(k), new_cfg.get("config", {}).get(k)
        if x == y:
            continue
        keys = sorted(k2 for k2 in {*x, *y} if x.get(k2) != y.get(k2)) \
            if isinstance(x, dict) and isinstance(y, dict) else []
        changed.append(f"config.{k}" + (f" ({', '.join(keys)})" if keys else ""))
    return changed + [k for k in sorted(old_cfg.keys() | new_cfg.keys())
                      if k != "config" and old_cfg.get(k) != new_cfg.get(k)]


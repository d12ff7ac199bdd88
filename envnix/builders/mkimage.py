"""Write an OCI image layout (and optionally a docker/OCI dual tar) from built layers.

Run by Nix as `python3 mkimage.py` with these environment variables:
  out      output directory (created if missing)
  layers   JSON list of layer output paths (mklayer.py outputs), bottom first, or (when it does
           not start with '[') the path of a file holding that list
  config   path of the image config template written by envnix: {"schema": 1, "template":
           {"architecture", "os", "config": {...}, "created"?, "history_comment"?, other OCI
           config keys?}} (the schema is the wrapper's, so the image config gets no extra key)
  tag      optional image reference `name[:tag]` (tag defaults to "latest")
  archive  optional; "1" also writes `$out/image.tar`
  blobs    optional; "link" (default) or "copy": how layer blobs enter `$out/oci/blobs`

Outputs:
  $out/oci/           OCI image layout: oci-layout, index.json, blobs/sha256/*
  $out/digests.json   {"schema": 1, "config": ..., "manifest": ..., "layers": [...]} for the
                      CLI (envnix.oci.layout.read_digests; docs/schemas/digests.schema.json)
  $out/image.tar      (archive=1) one tar that is both an OCI layout (`oci-archive:`) and a
                      docker-archive (`manifest.json`, the Docker >= 25 `docker save` shape),
                      for `podman load` / `docker load`
Why the layer blobs are symlinks by default: podman, skopeo and umoci read `oci:` layouts
through symlinked blobs, so the image output costs no second copy of GBs of layers, and the
links make Nix keep the layers as runtime dependencies of the image. A layer that is a sibling
of `$out` (the store) is linked relatively (`../../../../<layer>/layer.tar.gz`), so the layout
also resolves inside a chroot store (`nix-build --store DIR`); other layers get absolute links.
`blobs=copy` gives a self-contained directory. image.tar always contains real bytes.

All JSON is `sort_keys=True, separators=(",", ":")`, UTF-8, no trailing newline; digests are
over exactly those bytes. `created` defaults to 1970-01-01T00:00:00Z; every history entry
uses it and says `created_by: "envnix <layer name>"` (layer.json's "name", else the layer
path's name, store hash stripped). Errors: one line `envnix-builder: image: ...` on stderr, exit 1.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass

import _builder as B
from _tarwrite import Entry, TarError, TarWriter

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# layer.json's "compression" (gzip when absent) -> the blob's file name and media type
BLOBS = {"gzip": ("layer.tar.gz", MT_LAYER),
         "zstd": ("layer.tar.zst", "application/vnd.oci.image.layer.v1.tar+zstd")}
DEFAULT_CREATED = "1970-01-01T00:00:00Z"
CONFIG_SCHEMA = 1  # image-config.json's version; envnix.render.CONFIG_SCHEMA writes it
DIGESTS_SCHEMA = 1  # digests.json's version; envnix.oci.layout.DIGESTS_SCHEMA reads it

# Docker reference grammar (distribution/reference), lower-case repository, optional tag: the
# same as envnix.core.reference's (which a builder cannot import), IPv6 hosts and ASCII-only
# tags included, so a name the CLI accepts never fails here.
MAX_NAME = 255  # as envnix.core.reference
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"(?:(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?/)?"
_REF = re.compile(
    rf"({_DOMAIN}{_COMPONENT}(?:/{_COMPONENT})*)(?::([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}))?")
_STORE_HASH = re.compile(r"^[0-9a-df-np-sv-z]{32}-")


class ImageError(Exception):
    """Bad input, reported as one line."""


@dataclass(frozen=True)
class Layer:
    """One built layer: where its blob is and what layer.json says about it."""

    path: str
    name: str
    blob: str
    diff_id: str
    digest: str
    size: int
    paths: int | None = None  # tar members, as mklayer counted them (None: not said)
    media_type: str = MT_LAYER


def canonical_json(obj: object) -> bytes:
    """The one serialisation used for every JSON blob and file (digests depend on it)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def parse_tag(tag: str) -> tuple[str, str]:
    """`name[:tag]` -> (name, tag); the tag defaults to "latest" as in docker."""
    m = _REF.fullmatch(tag)
    first, slash, _ = (m.group(1) if m else "").partition("/")
    # A first component is a registry only when docker would read it as one (a dot, a port,
    # localhost or an IPv6 literal); otherwise it is a lowercase path component.
    host = slash and ("." in first or ":" in first or first == "localhost"
                      or first.startswith("["))
    if not m or len(m.group(1)) > MAX_NAME or (not host and not re.fullmatch(_COMPONENT, first)):
        raise ImageError(f"tag {tag!r} is not a valid image reference name[:tag]")
    return m.group(1), m.group(2) or "latest"


def layer_name(path: str) -> str:
    """The derivation name of a layer path (`/nix/store/<hash>-os-base` -> `os-base`)."""
    return _STORE_HASH.sub("", os.path.basename(os.path.normpath(path)))


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_STORE_NAME = re.compile(r"[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,210}")


def read_layer(path: str) -> Layer:
    """Read `<path>/layer.json` and check it against its blob's size (`layer.tar.gz`, or
    the file its "compression" names)."""
    meta_path = os.path.join(path, "layer.json")
    meta = B.load_json(meta_path, f"{path}: cannot read layer.json", ImageError)
    if not (
        isinstance(meta, dict)
        and isinstance(meta.get("diff_id"), str) and _DIGEST.fullmatch(meta["diff_id"])
        and isinstance(meta.get("digest"), str) and _DIGEST.fullmatch(meta["digest"])
        and isinstance(meta.get("size"), int)
    ):
        raise ImageError(f"{meta_path}: needs diff_id, digest (sha256:<hex>) and size")
    compression = meta.get("compression", "gzip")
    if compression not in BLOBS:
        raise ImageError(f"{meta_path}: compression {compression!r}: expected gzip or zstd")
    blob_name, media_type = BLOBS[compression]
    blob = os.path.join(path, blob_name)
    try:
        actual = os.stat(blob).st_size
    except OSError as e:
        raise ImageError(f"{path}: cannot read {blob_name}: {e.strerror}") from None
    if actual != meta["size"]:
        raise ImageError(f"{blob} has {actual} bytes, layer.json says {meta['size']}")
    paths = meta.get("paths")
    name = meta.get("name")
    if name is not None and not (isinstance(name, str) and _STORE_NAME.fullmatch(name)):
        raise ImageError(f"{meta_path}: name {name!r} is not a store path name")
    return Layer(path, name or layer_name(path), blob, meta["diff_id"], meta["digest"],
                 meta["size"], paths if isinstance(paths, int) else None, media_type)


def make_config(template: dict[str, object], layers: list[Layer]) -> bytes:
    """The image config blob: the template plus rootfs and one history entry per layer."""
    config = dict(template)
    comment = config.pop("history_comment", None)
    for key in ("rootfs", "history"):
        if key in config:
            raise ImageError(f"config template must not set {key!r} (mkimage computes it)")
    for key in ("architecture", "os"):
        if not isinstance(config.get(key), str) or not config[key]:
            raise ImageError(f"config template needs a string {key!r}")
    if comment is not None and not isinstance(comment, str):
        raise ImageError("config template history_comment must be a string")
    created = config.setdefault("created", DEFAULT_CREATED)
    if not isinstance(created, str):
        raise ImageError("config template created must be an RFC 3339 string")
    history: list[dict[str, str]] = []
    for layer in layers:
        h = {"created": created, "created_by": f"envnix {layer.name}"}
        if comment:
            h["comment"] = comment
        history.append(h)
    config["history"] = history
    config["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
    return canonical_json(config)


def make_manifest(config: bytes, layers: list[Layer]) -> bytes:
    return canonical_json({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [
            {"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
    })


def make_index(manifest: bytes, ref: tuple[str, str] | None) -> bytes:
    desc: dict[str, object] = {
        "mediaType": MT_MANIFEST, "digest": sha256(manifest), "size": len(manifest),
    }
    if ref:
        desc["annotations"] = {
            "io.containerd.image.name": f"{ref[0]}:{ref[1]}",
            "org.opencontainers.image.ref.name": ref[1],
        }
    return canonical_json({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [desc]})


def make_docker_manifest(config: bytes, layers: list[Layer], ref: tuple[str, str] | None) -> bytes:
    """docker-archive's manifest.json, pointing into the same blobs/ as the OCI layout."""
    return canonical_json([{
        "Config": f"blobs/sha256/{_hex(sha256(config))}",
        "RepoTags": [f"{ref[0]}:{ref[1]}"] if ref else [],
        "Layers": [f"blobs/sha256/{_hex(layer.digest)}" for layer in layers],
    }])


def _link_target(layer: Layer, out: str) -> str:
    """Relative when the layer sits next to $out (the store), else absolute."""
    layer_dir = os.path.abspath(layer.path)
    if os.path.dirname(layer_dir) == os.path.dirname(os.path.abspath(out)):
        return os.path.join("..", "..", "..", "..", os.path.basename(layer_dir),
                            os.path.basename(layer.blob))
    return os.path.abspath(layer.blob)


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def write_layout(
    out: str, layers: list[Layer], blobs: dict[str, bytes], index: bytes, mode: str
) -> None:
    """`$out/oci`: small blobs written, layer blobs linked or copied (once per digest)."""
    blob_dir = os.path.join(out, "oci", "blobs", "sha256")
    os.makedirs(blob_dir, exist_ok=True)
    _write_file(os.path.join(out, "oci", "oci-layout"), canonical_json({
        "imageLayoutVersion": "1.0.0"
    }))
    _write_file(os.path.join(out, "oci", "index.json"), index)
    for digest, data in sorted(blobs.items()):
        _write_file(os.path.join(blob_dir, _hex(digest)), data)
    for layer in layers:
        dest = os.path.join(blob_dir, _hex(layer.digest))
        if os.path.lexists(dest):
            continue
        if mode == "copy":
            shutil.copyfile(layer.blob, dest)
        else:
            os.symlink(_link_target(layer, out), dest)


def write_archive(
    path: str, layers: list[Layer], blobs: dict[str, bytes], index: bytes, docker: bytes
) -> None:
    """image.tar: the OCI layout plus docker's manifest.json, members sorted, mtime 0."""
    files: dict[bytes, bytes | str] = {
        b"oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        b"index.json": index,
        b"manifest.json": docker,
    }
    for digest, data in blobs.items():
        files[b"blobs/sha256/" + _hex(digest).encode()] = data
    for layer in layers:
        files.setdefault(b"blobs/sha256/" + _hex(layer.digest).encode(), layer.blob)
    with open(path, "wb") as f:
        tar = TarWriter(f)
        tar.add(Entry(b"blobs", "dir", 0o755))
        tar.add(Entry(b"blobs/sha256", "dir", 0o755))
        for name in sorted(files, key=lambda p: p.split(b"/")):
            content = files[name]
            if isinstance(content, bytes):
                tar.add(Entry(name, "file", 0o644, size=len(content)), io.BytesIO(content))
            else:
                with open(content, "rb") as src:
                    size = os.fstat(src.fileno()).st_size
                    tar.add(Entry(name, "file", 0o644, size=size), src)
        tar.close()


def build(out: str, layer_paths: list[str], config_path: str, tag: str | None,
          archive: bool, blob_mode: str) -> dict[str, object]:
    """Everything mkimage writes; returns digests.json's content."""
    if not layer_paths:
        raise ImageError("layers is empty")
    # A layer with no member changes no file (a triggers or run() layer that found nothing
    # to do): it is left out, so it costs no pull and no layer slot, as if never planned.
    layers = [layer for layer in map(read_layer, layer_paths) if layer.paths != 0]
    if not layers:
        raise ImageError("every layer is empty")
    data = B.load_json(config_path, f"cannot read config {config_path}", ImageError)
    if not isinstance(data, dict) or not isinstance(data.get("template"), dict):
        raise ImageError(f'{config_path}: expected {{"schema": {CONFIG_SCHEMA}, '
                         '"template": {the config template}}')
    B.check_version(data, "schema", CONFIG_SCHEMA, config_path, ImageError)
    template = data["template"]
    ref = parse_tag(tag) if tag else None

    config = make_config(template, layers)
    manifest = make_manifest(config, layers)
    index = make_index(manifest, ref)
    blobs = {sha256(config): config, sha256(manifest): manifest}
    os.makedirs(out, exist_ok=True)
    write_layout(out, layers, blobs, index, blob_mode)
    if archive:
        docker = make_docker_manifest(config, layers, ref)
        write_archive(os.path.join(out, "image.tar"), layers, blobs, index, docker)
    digests: dict[str, object] = {
        "schema": DIGESTS_SCHEMA,
        "config": sha256(config),
        "manifest": sha256(manifest),
        "layers": [layer.digest for layer in layers],
    }
    _write_file(os.path.join(out, "digests.json"), canonical_json(digests))
    return digests


def _main() -> None:
    env = B.optional_env
    out, layers_value, config = env("out"), env("layers"), env("config")
    if not out or layers_value is None or not config:
        raise ImageError("the environment must set out, layers and config")
    archive = env("archive") or ""
    if archive not in ("", "0", "1"):
        raise ImageError(f"archive={archive!r}: use 1 or leave it unset")
    blob_mode = env("blobs") or "link"
    if blob_mode not in ("link", "copy"):
        raise ImageError(f"blobs={blob_mode!r}: use link or copy")
    build(out, B.json_path_list(layers_value, "layers"), config, env("tag") or None,
          archive == "1", blob_mode)


def main() -> int:
    return B.run_reporting(_main, "image", (ImageError, TarError, B.BuilderError))


if __name__ == "__main__":
    sys.exit(main())

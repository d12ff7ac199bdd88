"""The built image: the OCI layout and ``digests.json`` one ``envnix build`` left in the store.

Why a module of its own: push, load and export all start from the same cross-checked reading of
the build output (index.json, the manifest blob and digests.json must agree), so a damaged or
stale output fails here once, with one message, before any tool runs. ``require_tool`` lives
here too because every later oci module needs an external program (skopeo, podman, docker).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from envnix.core import schema as S
from envnix.core.errors import (
    BuildError,
    EnvnixError,
    PublishError,
    ToolMissingError,
    UsageError,
    os_reason,
)

_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


def open_layer(f: BinaryIO) -> BinaryIO:
    """A layer blob's tar stream, whichever way it is compressed (gzip, zstd, none): envnix
    layers are gzip or, built with ``--compression zstd``, zstd; a registry image may be any."""
    magic = f.read(4)
    f.seek(0)
    if magic.startswith(_GZIP):
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    if magic == _ZSTD:
        import zstandard  # only for zstd layers: the CLI's start-up does not pay for it

        return zstandard.ZstdDecompressor().stream_reader(f)  # type: ignore[return-value]
    return f


DIGESTS_SCHEMA = 1
"""digests.json's ``schema`` (builders/mkimage.py writes it; it cannot import this): bump both
when a field changes meaning. Outputs of an envnix before the field have none: still read."""
_DIGESTS = S.obj({"config": S.digest, "manifest": S.digest, "layers": S.array(S.digest)},
                 {"schema": S.anything})  # checked first, on its own


def read_digests(path: Path, error: type[EnvnixError] = BuildError) -> dict[str, Any]:
    """An image output's digests.json, checked (the CLI prints these digests)."""
    origin = str(path)
    hint = "the image output is damaged: run nix-store --verify --check-contents, then build"
    data = S.parse_json(S.read_bytes(path, origin, error, hint), origin, error, hint)
    if not isinstance(data, dict):
        raise error(f"{origin}: expected a JSON object, got {S.kind(data)}", hint=hint)
    S.check_version(data, "schema", DIGESTS_SCHEMA, origin, error, hint, made="written",
                    missing=None)
    S.validate(data, _DIGESTS, origin, error, hint)
    return data


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


@dataclass(frozen=True)
class BuiltImage:
    """What one build produced: the OCI layout and the digests the build computed."""

    out_path: Path          # the store path Nix reported
    root: Path              # where its files are (differs from out_path in a chroot store)
    ref: str | None         # index.json's org.opencontainers.image.ref.name (the tag part)
    name: str | None        # io.containerd.image.name (name:tag given to the build)
    manifest: str
    config: Blob
    layers: tuple[Blob, ...]
    manifest_size: int

    @property
    def layout(self) -> Path:
        return self.root / "oci"

    @property
    def source(self) -> str:
        """The skopeo source reference of the layout."""
        return f"oci:{self.layout}:{self.ref}" if self.ref else f"oci:{self.layout}"

    @property
    def tag(self) -> str:
        return self.ref or "latest"

    def blob_path(self, digest: str) -> Path:
        return self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise PublishError(f"cannot read {what} {path}: {os_reason(e)}",
                           hint="run envnix build again") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f"line {e.lineno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else "not UTF-8"
        raise PublishError(f"{what} {path} is not valid JSON ({where})",
                           hint="run envnix build again") from None
    if not isinstance(data, dict):
        raise PublishError(f"{what} {path} is not a JSON object")
    return data


def read_image(root: Path, out_path: Path | None = None) -> BuiltImage:
    """Read an image derivation output ($out with oci/ and digests.json) and cross-check it."""
    digests = read_digests(root / "digests.json", PublishError)
    index = read_json(root / "oci" / "index.json", "OCI index")
    manifests = index.get("manifests") or []
    if not isinstance(manifests, list) or len(manifests) != 1 \
            or not isinstance(manifests[0], dict):
        raise PublishError(f"{root}/oci/index.json does not list exactly one manifest",
                           hint="the image output is inconsistent; run envnix build again")
    desc = manifests[0]
    if desc.get("digest") != digests.get("manifest"):
        raise PublishError(f"{root}: index.json names manifest {desc.get('digest')} but "
                           f"digests.json says {digests.get('manifest')}",
                           hint="the image output is inconsistent; run envnix build again")
    manifest_path = root / "oci" / "blobs" / "sha256" / str(desc["digest"]).removeprefix("sha256:")
    try:
        manifest_bytes = manifest_path.read_bytes()
    except OSError as e:
        raise PublishError(f"cannot read the manifest {manifest_path}: {os_reason(e)}",
                           hint="run envnix build again") from None
    if "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() != desc["digest"]:
        raise PublishError(f"{manifest_path} does not match its digest",
                           hint="the store is corrupted; run nix-store --verify --check-contents")
    try:
        manifest = json.loads(manifest_bytes)
        config = Blob(manifest["config"]["digest"], int(manifest["config"]["size"]))
        layers = tuple(Blob(layer["digest"], int(layer["size"])) for layer in manifest["layers"])
    except (ValueError, KeyError, TypeError):
        raise PublishError(f"{manifest_path} is not an OCI image manifest",
                           hint="the image output is inconsistent; run envnix build again") \
            from None
    annotations = desc.get("annotations") or {}
    return BuiltImage(
        out_path=out_path or root,
        root=root,
        ref=annotations.get("org.opencontainers.image.ref.name"),
        name=annotations.get("io.containerd.image.name"),
        manifest=desc["digest"],
        config=config,
        layers=layers,
        manifest_size=len(manifest_bytes),
    )


def store_real_path(out_path: Path, store: str | None) -> Path:
    """Where a store path's files are: under DIR for a chroot store (``--store DIR``)."""
    if store and "://" not in store:
        return Path(str(Path(store).absolute()) + str(out_path))
    return out_path


def last_build(generated: Path, store: str | None = None) -> BuiltImage:
    """The image of the last ``envnix build`` whose Nix project is ``generated`` (.envnix)."""
    result = generated / "result"
    if not os.path.lexists(result):
        raise UsageError(f"no image has been built in {generated.parent} ({result} is missing)",
                         hint="run envnix build first")
    out_path = Path(os.readlink(result))
    if not out_path.is_absolute():
        out_path = (result.parent / out_path).resolve()
    root = store_real_path(out_path, store)
    if not (root / "digests.json").exists():
        raise UsageError(
            f"the last build's image {out_path} is not in the Nix store",
            hint="it was garbage-collected or built with --store: run envnix build again "
                 "(or pass the same --store)")
    return read_image(root, out_path)


def require_tool(name: str, purpose: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ToolMissingError(f"{name} not found on PATH: envnix needs it to {purpose}",
                               hint=f"install it (Debian/Ubuntu: apt-get install {name})")
    return path

"""Join the OCI layouts of one image built for several platforms into one image index.

Run by Nix as `python3 mkindex.py` with these environment variables:
  out        output directory
  images     JSON list of image outputs (mkimage.py's $out, each with oci/), one per platform
  tag        optional image reference `name[:tag]`, as mkimage's

Outputs:
  $out/oci/  an OCI image layout whose index.json names one image index (annotated with the
             tag as mkimage annotates a manifest), which lists each platform's manifest with
             its `platform` (os and architecture from the image's config), in the given
             order: what `skopeo copy --all` pushes as one multi-platform image and what
             podman and docker pick their platform from.

Why a nested index rather than the manifests in index.json itself: a layout's index.json
entries are looked up by their ref.name, and one name must lead to one descriptor.
Blobs are symbolic links into the image outputs (relative when they are siblings of $out
in the store, as mkimage links layers), so the index costs no second copy of the layers.
Errors: one line `envnix-builder: index: ...` on stderr, exit 1.
"""

from __future__ import annotations

import json
import os
import sys

import _builder as B
from mkimage import MT_INDEX, MT_MANIFEST, ImageError, canonical_json, parse_tag, sha256


def _read_json(path: str) -> dict:
    data = B.load_json(path, f"cannot read {path}", ImageError)
    if not isinstance(data, dict):
        raise ImageError(f"{path}: expected a JSON object")
    return data


def _blob(layout: str, digest: str) -> str:
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise ImageError(f"{layout}: {digest!r} is not a sha256 digest")
    return os.path.join(layout, "blobs", "sha256", digest.removeprefix("sha256:"))


def image_entry(image: str) -> tuple[dict[str, object], list[str]]:
    """One image output's manifest descriptor (with its platform) and its blob digests."""
    layout = os.path.join(image, "oci")
    manifests = _read_json(os.path.join(layout, "index.json")).get("manifests")
    if not isinstance(manifests, list) or len(manifests) != 1:
        raise ImageError(f"{layout}/index.json: expected one manifest")
    desc = manifests[0]
    manifest = _read_json(_blob(layout, desc.get("digest")))
    config_desc = manifest.get("config") or {}
    config = _read_json(_blob(layout, config_desc.get("digest")))
    platform = {"architecture": config.get("architecture"), "os": config.get("os")}
    if not all(isinstance(v, str) and v for v in platform.values()):
        raise ImageError(f"{layout}: its config names no os/architecture")
    digests = [desc["digest"], config_desc["digest"],
               *(layer["digest"] for layer in manifest.get("layers", []))]
    return ({"mediaType": MT_MANIFEST, "digest": desc["digest"], "size": desc["size"],
             "platform": platform}, digests)


def _link(src: str, dest: str, out: str) -> None:
    """A symlink to ``src``: relative when its store path is a sibling of ``out``."""
    store = os.path.dirname(os.path.abspath(out))
    real = os.path.abspath(src)
    if os.path.dirname(real.split("/oci/", 1)[0]) == store:
        target = os.path.join("..", "..", "..", "..", os.path.relpath(real, store))
    else:
        target = real
    os.symlink(target, dest)


def build(out: str, images: list[str], tag: str | None) -> str:
    """Write the layout; return the image index's digest."""
    if len(images) < 2:
        raise ImageError("images: an index joins two or more platforms' images")
    entries, seen_platforms = [], set()
    blob_dir = os.path.join(out, "oci", "blobs", "sha256")
    os.makedirs(blob_dir, exist_ok=True)
    for image in images:
        desc, digests = image_entry(image)
        key = json.dumps(desc["platform"], sort_keys=True)
        if key in seen_platforms:
            raise ImageError(f"two images for {desc['platform']}")
        seen_platforms.add(key)
        entries.append(desc)
        for digest in digests:
            dest = os.path.join(blob_dir, digest.removeprefix("sha256:"))
            if not os.path.lexists(dest):
                _link(_blob(os.path.join(image, "oci"), digest), dest, out)
    index = canonical_json({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries})
    digest = sha256(index)
    with open(os.path.join(blob_dir, digest.removeprefix("sha256:")), "wb") as f:
        f.write(index)
    top: dict[str, object] = {"mediaType": MT_INDEX, "digest": digest, "size": len(index)}
    if tag:
        name, ref = parse_tag(tag)
        top["annotations"] = {"io.containerd.image.name": f"{name}:{ref}",
                              "org.opencontainers.image.ref.name": ref}
    with open(os.path.join(out, "oci", "oci-layout"), "wb") as f:
        f.write(canonical_json({"imageLayoutVersion": "1.0.0"}))
    with open(os.path.join(out, "oci", "index.json"), "wb") as f:
        f.write(canonical_json({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [top]}))
    return digest


def _main() -> None:
    out = B.getenv("out")
    images = B.json_path_list(B.getenv("images"), "images")
    build(out, images, B.optional_env("tag") or None)


def main() -> int:
    return B.run_reporting(_main, "index", (ImageError, B.BuilderError))


if __name__ == "__main__":
    sys.exit(main())

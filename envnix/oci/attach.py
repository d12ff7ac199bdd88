"""An SBOM (or any document) attached to an image in a registry as an OCI artifact.

Why an artifact and not a label: the SBOM names the image's digest, which a label inside the
image's own config would change. The artifact is an image manifest whose ``subject`` is the
image (OCI 1.1: registries with the referrers API list it for the image), tagged
``sha256-<hex of the image digest>.sbom`` as ``cosign attach sbom`` tags it, so that tools
find it from the image digest alone on registries without that API too (Debian's
docker-registry is one). A skopeo copy of a small OCI layout pushes it, digest preserved.
(An OCI index under the fallback tag ``sha256-<hex>`` would be the distribution spec's own
way, but skopeo 1.9 rewrites such an index and drops its ``artifactType``.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from envnix.core.fileio import atomic_write

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_EMPTY = "application/vnd.oci.empty.v1+json"  # the artifact's config: "{}"
ARTIFACT_TYPES = {"spdx-json": "application/spdx+json",
                  "cyclonedx-json": "application/vnd.cyclonedx+json"}


def sbom_tag(digest: str) -> str:
    """The tag of the SBOM attached to the image ``digest`` (cosign's spelling)."""
    return digest.replace(":", "-", 1) + ".sbom"


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    atomic_write(layout / "blobs" / "sha256" / digest, data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def referrer_layout(layout: Path, subject: dict[str, Any], payload: bytes,
                    artifact_type: str) -> tuple[str, str]:
    """Write an OCI layout holding ``payload`` as an artifact referring to ``subject`` (a
    descriptor: mediaType, digest, size). Returns the layout's tag for it (``sbom_tag``) and
    the artifact manifest's digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    config = _blob(layout, b"{}")
    layer = _blob(layout, payload)
    manifest = {
        "schemaVersion": 2, "mediaType": MT_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": MT_EMPTY, **config},
        "layers": [{"mediaType": artifact_type, **layer}],
        "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
    }
    artifact = _blob(layout, _canonical(manifest))
    tag = sbom_tag(subject["digest"])
    atomic_write(layout / "oci-layout", '{"imageLayoutVersion":"1.0.0"}')
    atomic_write(layout / "index.json", _canonical({"schemaVersion": 2, "manifests": [
        {"mediaType": MT_MANIFEST, "artifactType": artifact_type, **artifact,
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return tag, artifact["digest"]

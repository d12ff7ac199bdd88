"""An SBOM of a locked image, read from its envnix.lock alone: SPDX 2.3 or CycloneDX 1.5 JSON.

Why from the lock: it already names every artifact the image is built from by URL and sha256,
so the SBOM needs no resolver, no network and no build, and it describes exactly what
``envnix build --locked`` puts in the image. Licenses are what each artifact declares
(envnix.lock.licenses): conda packages in the lock (their index's ``license``); wheels and
.debs in their own files, read when the caller can point at them (``local_file``: the CLI
looks in the Nix store) and left NOASSERTION otherwise. The output is deterministic: the same
lock (and image digest) gives the same bytes; SPDX's required ``created`` is the images' fixed
epoch, 1970-01-01T00:00:00Z.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from envnix import __version__
from envnix.core import schema as S
from envnix.core.reference import InvalidReference, Reference
from envnix.lock.licenses import deb_license, spdx_expression, wheel_license
from envnix.lock.model import Lock
from envnix.spec import KNOWN_RELEASES

__all__ = ["FORMATS", "Component", "components", "cyclonedx", "spdx"]

FORMATS = ("spdx-json", "cyclonedx-json")
EPOCH = "1970-01-01T00:00:00Z"  # the images' own timestamps (render's image config)
NOASSERTION = "NOASSERTION"
_NAMESPACE = uuid.UUID("6f1c1c0e-5b8e-4c55-9a43-6a8f4ad0f6c1")  # envnix's, for uuid5 ids

# SPDX 2.3's download-location grammar wants a DNS name ending in a 2-5 letter label; a mirror
# on an IP address or "localhost" does not fit it, so that URL goes to sourceInfo instead.
_SPDX_HOST = re.compile(r"[a-z0-9]+(?:[-.][a-z0-9]+)*\.[a-z]{2,5}", re.I)


@dataclass(frozen=True)
class Component:
    """One artifact of the image, as both SBOM formats describe it."""

    kind: str  # deb, wheel, sdist, conda
    name: str
    version: str
    sha256: str
    url: str
    purl: str
    license: str | None  # as declared; may or may not be an SPDX expression

    @property
    def ref(self) -> str:
        """An identifier both formats accept (SPDXID's letters, digits, '.' and '-')."""
        return re.sub(r"[^A-Za-z0-9.-]", "-", f"{self.kind}-{self.name}-{self.version}")


def _enc(text: str) -> str:
    return quote(text, safe=".-_~")


def _distro(lock: Lock) -> str:
    """purl's deb namespace: the distribution whose archive the lock's release names."""
    release = str(lock.inputs.get("apt", {}).get("release", ""))
    return next((r.distro for r in KNOWN_RELEASES.values() if r.codename == release), "debian")


def components(lock: Lock, local_file: Callable[[dict[str, Any]], Path | None] | None = None
               ) -> list[Component]:
    """Every .deb, conda package and wheel of the lock, in the lock's order."""
    distro = _distro(lock)
    channel_names = {c["url"]: c["name"] for c in lock.conda_channels}
    found: list[Component] = []
    for deb in lock.apt_packages:
        path = local_file(deb) if local_file else None
        found.append(Component(
            "deb", deb["name"], deb["version"], deb["sha256"], deb["url"],
            f"pkg:deb/{distro}/{_enc(deb['name'])}@{_enc(deb['version'])}?arch={deb['arch']}",
            deb_license(path, deb["name"]) if path else None))
    for pkg in lock.conda_packages:
        channel = channel_names.get(pkg["channel"], pkg["channel"])
        kind = "conda" if pkg["fn"].endswith(".conda") else "tar.bz2"
        qualifiers = (f"build={_enc(pkg['build'])}&channel={_enc(channel)}"
                      f"&subdir={_enc(pkg['subdir'])}&type={kind}")
        found.append(Component(
            "conda", pkg["name"], pkg["version"], pkg["sha256"], pkg["url"],
            f"pkg:conda/{_enc(pkg['name'])}@{_enc(pkg['version'])}?{qualifiers}",
            (pkg.get("license") or "").strip() or None))
    for whl in lock.pip_wheels:
        path = local_file(whl) if local_file else None
        found.append(Component(
            "wheel", whl["name"], whl["version"], whl["sha256"], whl["url"],
            f"pkg:pypi/{_enc(S.pep503(whl['name']))}@{_enc(whl['version'])}",
            wheel_license(path) if path else None))
    for sdist in lock.sdists:  # built into a wheel by the image build: the source is pinned
        found.append(Component(
            "sdist", sdist["name"], sdist["version"], sdist["sha256"], sdist["url"],
            f"pkg:pypi/{_enc(S.pep503(sdist['name']))}@{_enc(sdist['version'])}",
            None))
    return found


@dataclass(frozen=True)
class _Image:
    name: str
    digest: str | None  # the manifest's, when known
    base: dict[str, Any] | None

    def purl(self) -> str:
        version = f"@{_enc(self.digest)}" if self.digest else ""
        return f"pkg:oci/{_enc(self.name.rsplit('/', 1)[-1].split(':')[0])}{version}"


def _ident(lock: Lock, image: _Image) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{lock.digest} {image.name} {image.digest}")


def _base_component(base: dict[str, Any]) -> Component:
    try:
        repo = Reference.parse(base["ref"]).name
    except InvalidReference:  # the lock checks only that it is text: describe it as written
        repo = base["ref"].split("@")[0]
    name = repo.rsplit("/", 1)[-1]
    return Component("base", repo, base["digest"], base["digest"].split(":", 1)[1],
                     NOASSERTION, f"pkg:oci/{_enc(name)}@{_enc(base['digest'])}"
                     f"?repository_url={_enc(repo)}", None)


def _all(lock: Lock, image: _Image, local_file: Callable[[dict[str, Any]], Path | None] | None
         ) -> list[Component]:
    found = components(lock, local_file)
    return [_base_component(image.base), *found] if image.base else found


def spdx(lock: Lock, name: str, digest: str | None = None,
         local_file: Callable[[dict[str, Any]], Path | None] | None = None) -> dict[str, Any]:
    """An SPDX 2.3 document: the image as one package that CONTAINS every artifact."""
    image = _Image(name, digest, lock.base)
    extracted: dict[str, str] = {}

    def declared(text: str | None) -> str:
        if text is None:
            return NOASSERTION
        expression = spdx_expression(text)
        if expression:
            return expression
        ref = "LicenseRef-" + hashlib.sha256(text.encode()).hexdigest()[:16]
        extracted[ref] = text
        return ref

    root: dict[str, Any] = {
        "SPDXID": "SPDXRef-image", "name": name, "downloadLocation": NOASSERTION,
        "filesAnalyzed": False, "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": NOASSERTION, "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION, "supplier": NOASSERTION,
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": image.purl()}],
    }
    if digest:
        root["versionInfo"] = digest
        root["checksums"] = [{"algorithm": "SHA256", "checksumValue": digest.split(":", 1)[1]}]
    packages = [root]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": "SPDXRef-image"}]
    for comp in _all(lock, image, local_file):
        spdx_id = f"SPDXRef-{comp.ref}"
        spdx_host = _SPDX_HOST.fullmatch(urlsplit(comp.url).hostname or "")
        extra = {} if spdx_host or comp.url == NOASSERTION else \
            {"sourceInfo": f"downloaded from {comp.url}"}
        packages.append({
            **extra,
            "SPDXID": spdx_id, "name": comp.name, "versionInfo": comp.version,
            "downloadLocation": comp.url if spdx_host else NOASSERTION, "filesAnalyzed": False,
            "primaryPackagePurpose": "CONTAINER" if comp.kind == "base" else "LIBRARY",
            "checksums": [{"algorithm": "SHA256", "checksumValue": comp.sha256}],
            "licenseConcluded": NOASSERTION, "licenseDeclared": declared(comp.license),
            "copyrightText": NOASSERTION, "supplier": NOASSERTION,
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": comp.purl}],
        })
        relationships.append({"spdxElementId": "SPDXRef-image", "relationshipType": "CONTAINS",
                              "relatedSpdxElement": spdx_id})
    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name} (envnix.lock {lock.digest})",
        "documentNamespace": f"urn:uuid:{_ident(lock, image)}",
        "creationInfo": {"created": EPOCH, "creators": [f"Tool: envnix-{__version__}"],
                         "comment": "created is the image's fixed epoch, not the run's time"},
        "documentDescribes": ["SPDXRef-image"],
        "packages": packages, "relationships": relationships,
    }
    if extracted:
        doc["hasExtractedLicensingInfos"] = [
            {"licenseId": ref, "name": text[:200], "extractedText": text}
            for ref, text in sorted(extracted.items())]
    return doc


def cyclonedx(lock: Lock, name: str, digest: str | None = None,
              local_file: Callable[[dict[str, Any]], Path | None] | None = None
              ) -> dict[str, Any]:
    """A CycloneDX 1.5 BOM: the image as the metadata component, every artifact a library."""
    image = _Image(name, digest, lock.base)
    root: dict[str, Any] = {"type": "container", "bom-ref": "image", "name": name,
                            "purl": image.purl()}
    if digest:
        root["version"] = digest
        root["hashes"] = [{"alg": "SHA-256", "content": digest.split(":", 1)[1]}]
    entries = []
    for comp in _all(lock, image, local_file):
        entry: dict[str, Any] = {
            "type": "container" if comp.kind == "base" else "library",
            "bom-ref": comp.ref, "name": comp.name, "version": comp.version,
            "purl": comp.purl, "hashes": [{"alg": "SHA-256", "content": comp.sha256}],
            "properties": [{"name": "envnix:kind", "value": comp.kind}],
        }
        if comp.license:
            expression = spdx_expression(comp.license)
            entry["licenses"] = ([{"expression": expression}] if expression
                                 else [{"license": {"name": comp.license}}])
        if comp.url != NOASSERTION:
            entry["externalReferences"] = [{"type": "distribution", "url": comp.url}]
        entries.append(entry)
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{_ident(lock, image)}", "version": 1,
        "metadata": {"tools": {"components": [{"type": "application", "name": "envnix",
                                               "version": __version__}]},
                     "component": root,
                     "properties": [{"name": "envnix:lock-digest", "value": lock.digest}]},
        "components": entries,
        "dependencies": [{"ref": "image", "dependsOn": [e["bom-ref"] for e in entries]},
                         *({"ref": e["bom-ref"]} for e in entries)],
    }

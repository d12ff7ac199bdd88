"""An SBOM of a locked image, read from its envnix.lock alone: SPDX 2.3 or CycloneDX 1.5 JSON.

Why from the lock: it already names every artifact the image is built from by URL and sha256,
so the SBOM needs no resolver, no network and no build, and it describes exactly what
``envnix build --locked`` puts in the image. Licenses are what each artifact declares: conda
packages in the lock (their index's ``license``); wheels in their own METADATA, read from the
wheel file when the caller can point at it (``wheel_file``: the CLI looks in the Nix store);
.debs declare none in their control data (Debian's copyright files are free text), so theirs is
NOASSERTION. The output is deterministic: the same lock (and image digest) gives the same
bytes; SPDX's required ``created`` is the images' fixed epoch, 1970-01-01T00:00:00Z.
"""

from __future__ import annotations

import hashlib
import re
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from envnix import __version__
from envnix.core import schema as S
from envnix.core.reference import Reference
from envnix.lock.model import Lock
from envnix.lock.spdx_ids import EXCEPTIONS, LICENSES

__all__ = ["FORMATS", "Component", "components", "cyclonedx", "spdx", "spdx_expression",
           "wheel_license"]

FORMATS = ("spdx-json", "cyclonedx-json")
EPOCH = "1970-01-01T00:00:00Z"  # the images' own timestamps (render's image config)
NOASSERTION = "NOASSERTION"
_NAMESPACE = uuid.UUID("6f1c1c0e-5b8e-4c55-9a43-6a8f4ad0f6c1")  # envnix's, for uuid5 ids

# Trove classifiers that name exactly one SPDX license (most name a family, e.g. "BSD License").
_CLASSIFIERS = {
    "MIT License": "MIT", "MIT No Attribution License (MIT-0)": "MIT-0",
    "ISC License (ISCL)": "ISC", "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0", "The Unlicense (Unlicense)": "Unlicense",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0", "zlib/libpng License": "Zlib",
    "Apache Software License 2.0": "Apache-2.0",
}
_TOKEN = re.compile(r"\(|\)|[^\s()]+")
# SPDX 2.3's download-location grammar wants a DNS name ending in a 2-5 letter label; a mirror
# on an IP address or "localhost" does not fit it, so that URL goes to sourceInfo instead.
_SPDX_HOST = re.compile(r"[a-z0-9]+(?:[-.][a-z0-9]+)*\.[a-z]{2,5}", re.I)


def spdx_expression(text: str | None) -> str | None:
    """``text`` when it is an SPDX license expression of known identifiers, else None."""
    if not text or len(text) > 1000:
        return None
    tokens = _TOKEN.findall(text)
    depth, want_id, after_with = 0, True, False
    for token in tokens:
        if token == "(":
            if not want_id:
                return None
            depth += 1
        elif token == ")":
            depth -= 1
            if depth < 0 or want_id:
                return None
        elif token in ("AND", "OR", "WITH"):
            if want_id:
                return None
            want_id, after_with = True, token == "WITH"
        else:
            if not want_id:
                return None
            known = (token in EXCEPTIONS if after_with
                     else token.removesuffix("+") in LICENSES or token.startswith("LicenseRef-"))
            if not known:
                return None
            want_id, after_with = False, False
    return " ".join(tokens).replace("( ", "(").replace(" )", ")") \
        if tokens and depth == 0 and not want_id else None


def wheel_license(path: Path) -> str | None:
    """The license a wheel declares in its METADATA: License-Expression (PEP 639), else a
    one-line License field, else the one license its classifiers name; None when none says.
    Reads one member of the zip, never the whole wheel."""
    try:
        with zipfile.ZipFile(path) as wheel:
            name = next((n for n in wheel.namelist()
                         if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
            if name is None:
                return None
            raw = wheel.read(name)
    except (OSError, zipfile.BadZipFile):
        return None
    meta = HeaderParser().parsestr(raw.decode("utf-8", "replace"))
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    field = (meta.get("License") or "").strip()
    if field and "\n" not in field and len(field) <= 100 and spdx_expression(field):
        return field
    named = sorted({c.split(" :: ")[-1] for c in meta.get_all("Classifier") or []
                    if c.startswith("License :: ")})
    spdx_named = {_CLASSIFIERS.get(n) for n in named}
    if len(named) == 1 and None not in spdx_named:
        return spdx_named.pop()
    if field and "\n" not in field and len(field) <= 100 and field.upper() != "UNKNOWN":
        return field
    return "; ".join(named) or None


@dataclass(frozen=True)
class Component:
    """One artifact of the image, as both SBOM formats describe it."""

    kind: str  # deb, wheel, conda
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
    release = str(lock.inputs.get("apt", {}).get("release", ""))
    return "ubuntu" if release in ("focal", "jammy", "noble") else "debian"


def components(lock: Lock, wheel_file: Callable[[dict[str, Any]], Path | None] | None = None
               ) -> list[Component]:
    """Every .deb, conda package and wheel of the lock, in the lock's order."""
    distro = _distro(lock)
    channel_names = {c["url"]: c["name"] for c in lock.conda_channels}
    found: list[Component] = []
    for deb in lock.apt_packages:
        found.append(Component(
            "deb", deb["name"], deb["version"], deb["sha256"], deb["url"],
            f"pkg:deb/{distro}/{_enc(deb['name'])}@{_enc(deb['version'])}?arch={deb['arch']}",
            None))
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
        path = wheel_file(whl) if wheel_file else None
        found.append(Component(
            "wheel", whl["name"], whl["version"], whl["sha256"], whl["url"],
            f"pkg:pypi/{_enc(S.pep503(whl['name']))}@{_enc(whl['version'])}",
            wheel_license(path) if path else None))
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
    ref = Reference.parse(base["ref"])
    name = ref.path.rsplit("/", 1)[-1]
    return Component("base", ref.name, base["digest"], base["digest"].split(":", 1)[1],
                     NOASSERTION, f"pkg:oci/{_enc(name)}@{_enc(base['digest'])}"
                     f"?repository_url={_enc(ref.name)}", None)


def _all(lock: Lock, image: _Image, wheel_file: Callable[[dict[str, Any]], Path | None] | None
         ) -> list[Component]:
    found = components(lock, wheel_file)
    return [_base_component(image.base), *found] if image.base else found


def spdx(lock: Lock, name: str, digest: str | None = None,
         wheel_file: Callable[[dict[str, Any]], Path | None] | None = None) -> dict[str, Any]:
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
    for comp in _all(lock, image, wheel_file):
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
              wheel_file: Callable[[dict[str, Any]], Path | None] | None = None
              ) -> dict[str, Any]:
    """A CycloneDX 1.5 BOM: the image as the metadata component, every artifact a library."""
    image = _Image(name, digest, lock.base)
    root: dict[str, Any] = {"type": "container", "bom-ref": "image", "name": name,
                            "purl": image.purl()}
    if digest:
        root["version"] = digest
        root["hashes"] = [{"alg": "SHA-256", "content": digest.split(":", 1)[1]}]
    entries = []
    for comp in _all(lock, image, wheel_file):
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

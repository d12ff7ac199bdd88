"""Packages from an npm registry, pinned like every other artifact (install.codex's build).

npm pins a tarball by its sha512 (``dist.integrity``); envnix fetches every artifact at a
sha256, so the lock downloads the tarball once (lock/tarballs.py), checks it against the
registry's integrity, and records its sha256, its size and its member names.

The registry is ENVNIX_NPM_REGISTRY (config key ``npm.registry``), else the one npm itself
uses (``npm config get registry``), as envd's users' npm would.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import urllib.parse
from typing import Any

from envnix.core import http, options, process
from envnix.core.errors import FetchError, LockError
from envnix.core.nixexpr import url_problem
from envnix.core.progress import Progress
from envnix.lock import tarballs

MAX_PACKUMENT = 64 << 20
"""Bytes a package's metadata may have (codex's, with ~500 versions: 0.5 MB)."""
_VERSION = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?")
_INTEGRITY = re.compile(r"sha512-([A-Za-z0-9+/]+={0,2})")


def registry() -> str:
    """The registry's base URL, without a trailing slash: the setting, else npm's own."""
    configured = options.npm_registry()
    if configured:
        return configured
    if shutil.which("npm") is None:
        raise LockError("no npm registry is configured and npm is not installed to ask",
                        hint="set ENVNIX_NPM_REGISTRY (config key npm.registry) to the "
                             "registry's URL")
    done = process.run(["npm", "config", "get", "registry"], error=LockError, timeout=60)
    url = done.text.strip().rstrip("/")
    if done.returncode != 0 or url_problem(url):
        raise LockError(f"`npm config get registry` gave no registry URL "
                        f"({done.last_error_line() if done.returncode else url!r})",
                        hint="set ENVNIX_NPM_REGISTRY (config key npm.registry)")
    return url


def packument(base: str, name: str) -> dict[str, Any]:
    """The registry's document for package ``name`` (``@scope/name`` allowed)."""
    url = f"{base}/{urllib.parse.quote(name, safe='@')}"
    try:
        body = http.get(url, {"Accept": "application/json"}, limit=MAX_PACKUMENT,
                        what="a package's metadata")
    except http.NotFound:
        raise LockError(f"npm: {base} has no package {name}") from None
    except http.RequestError as err:
        raise FetchError(f"npm: cannot read {url}: {http.reason(err)}",
                         hint="check the network, or set ENVNIX_NPM_REGISTRY to a mirror") \
            from None
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("versions"), dict):
        raise LockError(f"npm: {url} is not a package document (no versions)")
    return data


def pick_version(doc: dict[str, Any], requested: str | None, call: str) -> str:
    """``requested`` if the registry has it, else (None) its ``latest`` tag; one line naming
    the newest releases when it has not. A registry's answer goes into the lock and the build
    only as a plain semantic version."""
    versions = doc["versions"]
    if requested is None:
        latest = (doc.get("dist-tags") or {}).get("latest")
        if isinstance(latest, str) and latest in versions:
            if not _VERSION.fullmatch(latest):
                raise LockError(f"{call}: the registry's latest release of {doc.get('name')} "
                                f"is {latest[:80]!r}, not a version")
            return latest
        raise LockError(f"{call}: the registry names no latest release of {doc.get('name')}",
                        hint="name a version")
    if requested in versions:
        return requested
    releases = sorted((v for v in versions if re.fullmatch(r"\d+\.\d+\.\d+", v)),
                      key=lambda v: [int(x) for x in v.split(".")])
    raise LockError(f"{call}: the registry has no release {requested} of {doc.get('name')}; "
                    f"its newest: {', '.join(releases[-5:]) or 'none'}",
                    hint="name one of those, or leave version out for the latest")


def pin_tarball(meta: dict[str, Any], progress: Progress | None = None) -> tarballs.Tarball:
    """Download the tarball of one version's metadata (``versions[v]``), check it against
    the registry's integrity (sha512, else its sha1 ``shasum``), and pin it by sha256."""
    dist = meta.get("dist") if isinstance(meta.get("dist"), dict) else {}
    url = dist.get("tarball")
    if not isinstance(url, str) or url_problem(url):
        raise LockError(f"npm: {meta.get('_id', 'the release')} has no tarball URL envnix fetches")
    integrity = _INTEGRITY.search(str(dist.get("integrity") or ""))
    expected = ("sha512", base64.b64decode(integrity[1]).hex()) if integrity else \
        ("sha1", str(dist.get("shasum") or "").lower())
    if not re.fullmatch(r"[0-9a-f]{40,128}", expected[1]):
        raise LockError(f"npm: {url} comes with no integrity to check it against")
    pinned = tarballs.pin_tar(url, "npm", progress, also=expected[0],
                              hint="check the network, or set ENVNIX_NPM_REGISTRY to a mirror")
    if pinned.also != expected[1]:
        raise LockError(f"npm: {url} does not match the registry's {expected[0]} for it",
                        hint="the registry or a proxy is serving other bytes; try again later")
    return pinned

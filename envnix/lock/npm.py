"""Packages from an npm registry, pinned like every other artifact (install.codex's build).

npm pins a tarball by its sha512 (``dist.integrity``); envnix fetches every artifact at a
sha256, so the lock downloads the tarball once, checks it against the registry's integrity,
and records its sha256 and size. The member names are read on the same pass: what goes into
the image is read from the archive, not guessed from its version (the layout of a package
changes between releases).

The registry is ENVNIX_NPM_REGISTRY (config key ``npm.registry``), else the one npm itself
uses (``npm config get registry``), as envd's users' npm would.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import tarfile
import urllib.parse
from dataclasses import dataclass
from typing import Any

from envnix.core import http, options, process
from envnix.core.errors import FetchError, LockError
from envnix.core.nixexpr import url_problem
from envnix.core.progress import Progress, transfer

MAX_TARBALL = 2 << 30
"""Bytes a tarball may have: a registry that streams on past it is refused."""
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
        with http.open_url(url, {"Accept": "application/json"}) as resp:
            body = resp.body.read(MAX_PACKUMENT + 1)
    except http.NotFound:
        raise LockError(f"npm: {base} has no package {name}") from None
    except http.RequestError as err:
        raise FetchError(f"npm: cannot read {url}: {http.reason(err)}",
                         hint="check the network, or set ENVNIX_NPM_REGISTRY to a mirror") \
            from None
    if len(body) > MAX_PACKUMENT:
        raise LockError(f"npm: {url} is over {MAX_PACKUMENT >> 20} MB, not a package's metadata")
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("versions"), dict):
        raise LockError(f"npm: {url} is not a package document (no versions)")
    return data


def pick_version(doc: dict[str, Any], requested: str | None, call: str) -> str:
    """``requested`` if the registry has it, else (None) its ``latest`` tag; one line naming
    the newest releases when it has not."""
    versions = doc["versions"]
    if requested is None:
        latest = (doc.get("dist-tags") or {}).get("latest")
        if isinstance(latest, str) and latest in versions:
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


@dataclass(frozen=True)
class Tarball:
    """One release's tarball as the lock pins it, with what it holds."""

    url: str
    filename: str
    sha256: str
    size: int
    files: tuple[str, ...]  # regular files and symbolic links, in archive order


class _Hashing(io.RawIOBase):
    """A body read through every digest, for tarfile's stream mode: one pass, no copy."""

    def __init__(self, body: Any, digests: list[Any], label: str, total: int | None,
                 progress: Progress | None) -> None:
        self.body, self.digests, self.size = body, digests, 0
        self.label, self.total, self.progress = label, total, progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self.body.read(len(buffer))
        self.size += len(chunk)
        if self.size > MAX_TARBALL:
            raise LockError(f"npm: {self.label} goes on past {MAX_TARBALL >> 30} GB")
        for digest in self.digests:
            digest.update(chunk)
        transfer(self.progress, self.label, self.size, self.total)
        buffer[:len(chunk)] = chunk
        return len(chunk)


def pin_tarball(meta: dict[str, Any], progress: Progress | None = None) -> Tarball:
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
    sha256, check = hashlib.sha256(), hashlib.new(expected[0])
    filename = urllib.parse.unquote(url.rsplit("/", 1)[-1])
    files: list[str] = []
    try:
        with http.open_url(url) as resp:
            stream = _Hashing(resp.body, [sha256, check], f"download {filename}", resp.length,
                              progress)
            with tarfile.open(fileobj=io.BufferedReader(stream, http.CHUNK), mode="r|gz") as tf:
                files = [m.name for m in tf if m.isreg() or m.issym()]
            while stream.readinto(bytearray(http.CHUNK)):  # what follows the archive's end
                pass
            size = stream.size
    except http.RequestError as err:
        raise FetchError(f"npm: cannot download {url}: {http.reason(err)}",
                         hint="check the network, or set ENVNIX_NPM_REGISTRY to a mirror") \
            from None
    except (tarfile.TarError, EOFError, OSError) as err:
        raise LockError(f"npm: {url} is not a gzip'd tar archive ({err})") from None
    if check.hexdigest() != expected[1]:
        raise LockError(f"npm: {url} does not match the registry's {expected[0]} for it",
                        hint="the registry or a proxy is serving other bytes; try again later")
    return Tarball(url, filename, sha256.hexdigest(), size, tuple(files))

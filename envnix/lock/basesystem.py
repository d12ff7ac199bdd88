"""What OS a base(image=...) runs, read from its pinned layers: for apt packages on top of it.

Why: apt on a custom base installs what the base lacks, from the base's own distribution
release, as ``apt-get install`` in envd's Dockerfile-like build does. envnix therefore needs
the base's /etc/os-release (which release's archive) and /var/lib/dpkg/status (what is
installed already). Both are read here, at lock time, from the layer blobs the lock pins,
top layer first, stopping as soon as both are found; nothing is extracted. The lock records
the release and the sha256 of the status file; the build reads the same file from the same
layers and checks it against that sha256 (builders/mkmeta.py), so lock and build agree on
what the base has.

Results are cached by manifest digest (``$XDG_CACHE_HOME/envnix/base``): a re-lock with the
base pin kept reads nothing from the registry.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from envnix.core import credentials, fileio, http, options
from envnix.core.errors import FetchError, LockError
from envnix.lock.apt.index import installed_entries
from envnix.lock.image import parse_image_ref
from envnix.spec import KNOWN_RELEASES, OsRelease

__all__ = ["BaseSystem", "base_python", "read_base_system"]

STATUS = "var/lib/dpkg/status"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_STATUS = 64 << 20  # a full CUDA devel image's status is under 2 MB
MAX_OS_RELEASE = 64 << 10
# The distributions whose archives apt packages on a base come from, and the components an
# image of theirs reads (Ubuntu's universe holds much of what Debian has in main).
ARCHIVE_COMPONENTS = {"debian": ("main",), "ubuntu": ("main", "universe")}


@dataclass(frozen=True)
class BaseSystem:
    """The base's OS as /etc/os-release names it, and its dpkg status text ("" if none)."""

    distro: str
    codename: str
    version_id: str
    status: str
    status_sha256: str
    """Of the file's bytes, as the build reads them."""

    def to_lock_dict(self) -> dict[str, str]:
        return {"distro": self.distro, "codename": self.codename,
                "version_id": self.version_id, "dpkg_status": self.status_sha256}

    def release(self, written: str) -> OsRelease:
        """The release whose archive apt packages come from, or one line saying why none."""
        if not self.status:
            raise LockError(f"base image {written} has no dpkg database ({STATUS}): apt "
                            "packages and dev=True need a Debian or Ubuntu base",
                            hint="install the packages in the base image itself, or build "
                                 'on a release base such as base(image="debian:12")')
        for release in KNOWN_RELEASES.values():
            if (release.distro, release.codename) == (self.distro, self.codename):
                return release
        if self.distro in ARCHIVE_COMPONENTS and re.fullmatch(r"[a-z]{2,32}", self.codename):
            # Another release of a distribution envnix reads the archives of (Debian 11,
            # Ubuntu 18.04, ...): the same archive layout; apt never needs its glibc.
            return OsRelease(self.distro, self.version_id, self.codename, "",
                             ARCHIVE_COMPONENTS[self.distro])
        raise LockError(f"base image {written} runs {self.distro or 'an unnamed OS'} "
                        f"{self.codename or self.version_id or '(no release)'}; envnix "
                        "resolves apt packages from Debian and Ubuntu archives only",
                        hint="install the packages in the base image itself, or pick a "
                             "Debian or Ubuntu base")


def base_python(base: dict[str, Any], read_system: Callable[[], BaseSystem]) -> dict[str, str]:
    """The base's own Python, where envd's pip in the base would install to: a python.org
    build in /usr/local when the Env names its PYTHON_VERSION (the official python images'
    convention), else the newest Debian python3.X the dpkg status lists (``read_system``:
    read only then). The lock's ``base.python``: {"provider", "version"}."""
    env = dict(item.split("=", 1) for item in base["config"].get("Env") or [] if "=" in item)
    m = re.match(r"(3\.[0-9]+)(\.|$)", env.get("PYTHON_VERSION", ""))
    if m:
        return {"provider": "local", "version": m[1]}
    versions = [m[1] for e in installed_entries(read_system().status)
                if (m := re.fullmatch(r"python(3\.[0-9]+)-minimal", e.name))]
    if not versions:
        raise LockError(f"base image {base['ref']} has no Python envnix can find (no "
                        "PYTHON_VERSION in its Env, no python3.X package installed)",
                        hint="add install.python() (a conda Python in /opt/conda/envs/envd)")
    newest = max(versions, key=lambda v: tuple(map(int, v.split("."))))
    return {"provider": "system", "version": newest}


def _os_release_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().isidentifier():
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


class _Scan:
    """The files wanted, as the layers seen so far (top first) leave them."""

    def __init__(self) -> None:
        self.found: dict[str, bytes] = {}
        self.hidden: set[str] = set()  # removed by a whiteout in a layer above
        self.links: dict[str, str] = {}  # etc/os-release -> ../usr/lib/os-release

    def wanted(self) -> list[str]:
        names = [STATUS, *OS_RELEASE]
        return [n for n in names if n not in self.found and not self._gone(n)]

    def _gone(self, rel: str) -> bool:
        return rel in self.hidden or any(rel.startswith(h + "/") for h in self.hidden)

    def done(self) -> bool:
        os_release = any(n in self.found for n in OS_RELEASE) or all(
            self._gone(n) for n in OS_RELEASE)
        return (STATUS in self.found or self._gone(STATUS)) and os_release

    def layer(self, tar: tarfile.TarFile, what: str) -> None:
        wanted = set(self.wanted())
        hidden_here: set[str] = set()
        for member in tar:
            rel = posixpath.normpath(member.name.lstrip("/")).removeprefix("./")
            directory, _, name = rel.rpartition("/")
            if name == OPAQUE:
                hidden_here.add(directory)
            elif name.startswith(WHITEOUT):
                hidden_here.add(posixpath.join(directory, name[len(WHITEOUT):]))
            elif rel in wanted:
                wanted.discard(rel)
                if member.issym() and rel in OS_RELEASE:
                    self.links[rel] = posixpath.normpath(
                        posixpath.join(directory, member.linkname)).lstrip("/")
                elif member.isfile():
                    limit = MAX_STATUS if rel == STATUS else MAX_OS_RELEASE
                    if member.size > limit:
                        raise LockError(f"{what}: /{rel} is {member.size} bytes, over "
                                        f"envnix's limit of {limit}")
                    f = tar.extractfile(member)
                    assert f is not None
                    self.found[rel] = f.read()
                else:
                    self.hidden.add(rel)  # a directory or device where the file should be
        # An opaque directory hides what lower layers hold below it, not its own entries.
        self.hidden |= {h for h in hidden_here if h not in self.found}

    def os_release(self) -> dict[str, str]:
        for rel in OS_RELEASE:
            data = self.found.get(rel)
            if data is None and rel in self.links:
                data = self.found.get(self.links[rel])
            if data is not None:
                return _os_release_fields(data.decode("utf-8", "replace"))
        return {}


def _stream_layers(base: dict[str, Any], scan: _Scan) -> None:
    """Read the layers top first until ``scan`` has what it needs."""
    ref = parse_image_ref(base["ref"])
    insecure = ref.host in options.insecure_registries()
    login = credentials.registry_login(ref.api_host)
    headers: dict[str, str] | None = None
    for url, layer in reversed(list(zip(base["blob_urls"], base["manifest"]["layers"],
                                        strict=True))):
        if scan.done():
            return
        what = f"base image {base['ref']}: layer {layer['digest'][:19]}"
        try:
            if headers is None:  # the same for every layer: one repository, one scope
                headers = http.registry_headers(url, login, insecure=insecure)
            with http.open_url(url, headers or {"Authorization": ""}, insecure=insecure,
                               timeout=120) as resp, \
                    tarfile.open(fileobj=resp.body, mode="r|gz") as tar:
                scan.layer(tar, what)
        except http.RequestError as exc:
            raise FetchError(f"{what}: {http.reason(exc)}") from None
        except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
            raise LockError(f"{what} is not a gzip tar archive: {exc}") from None


def read_base_system(base: dict[str, Any]) -> BaseSystem:
    """The base's OS and dpkg status, from the layers the lock's ``base`` section pins."""
    cached = fileio.cache_dir("base") / f"{base['digest'].replace(':', '-')}.json"
    try:
        data = json.loads(cached.read_text())
        return BaseSystem(**data)
    except (OSError, ValueError, TypeError):
        pass
    scan = _Scan()
    _stream_layers(base, scan)
    fields = scan.os_release()
    status = scan.found.get(STATUS, b"")
    system = BaseSystem(fields.get("ID", ""), fields.get("VERSION_CODENAME", ""),
                        fields.get("VERSION_ID", ""), status.decode("utf-8", "replace"),
                        hashlib.sha256(status).hexdigest() if status else "")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fileio.atomic_write(cached, json.dumps(system.__dict__))
    except OSError:
        pass  # a cache it cannot write only costs the next re-lock a download
    return system

"""Where packages come from: the machine's apt sources (one-line and deb822), an
--apt-mirror, and snapshot pinning, as :class:`envnix.spec.apt.AptSource` records; no network
here."""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path

from envnix.core import options
from envnix.core.errors import LockError, UsageError
from envnix.lock.apt.index import deb822_paragraphs
from envnix.lock.apt.relations import ARCH
from envnix.spec.apt import SNAPSHOT_PATTERN, URL_SCHEMES, AptSource, snapshot_of

DEFAULT_KEYRINGS = {
    "debian": options.DEBIAN_KEYRING.default,
    "ubuntu": options.UBUNTU_KEYRING.default,
}


UBUNTU_ARCHIVE = "http://archive.ubuntu.com/ubuntu"
"""Ubuntu's archive: where an Ubuntu release's packages come from when nothing names a mirror,
as apt in an Ubuntu image finds them (the -security pocket lives there too)."""
UBUNTU_SNAPSHOTS = "https://snapshot.ubuntu.com/ubuntu"
"""Ubuntu's snapshot service: the archive as it was at ENVNIX_APT_SNAPSHOT's time."""


def default_keyring(distro: str) -> str:
    """The distribution's archive keyring; Debian's is ENVNIX_DEBIAN_KEYRING when set (so
    envnix's flake checks with the keyring it ships, on a machine without Debian's), Ubuntu's
    ENVNIX_UBUNTU_KEYRING."""
    if distro == "debian":
        return options.debian_keyring()
    return options.ubuntu_keyring() if distro == "ubuntu" else DEFAULT_KEYRINGS.get(distro, "")


def anchor_of(distro: str, keyring: str) -> str:
    """The pinned-fingerprint anchor (envnix.lock.apt.anchors) for a source checked with
    *keyring*: Ubuntu's, when that is Ubuntu's keyring at its standard path (which a Debian
    machine lacks: the keys then come from the archive, trusted by fingerprint)."""
    return "ubuntu" if distro == "ubuntu" and keyring == DEFAULT_KEYRINGS["ubuntu"] else ""


def _keyring_of(signed_by: str, distro: str) -> str:
    """A Signed-By naming the distribution's keyring at its standard path means that keyring:
    the one :func:`default_keyring` names (the same file unless ENVNIX_DEBIAN_KEYRING says)."""
    return default_keyring(distro) if signed_by == DEFAULT_KEYRINGS.get(distro) else signed_by


SNAPSHOT_FORMAT = "%Y%m%dT%H%M%SZ"
"""The archive snapshot services' time stamps (``20260101T000000Z``), in UTC."""

# What an official archive's URI path ends with, per distribution (optionally a snapshot of it):
# the machine's apt sources also list third-party repositories, which must not leak into images.
_ARCHIVE_PATH_RES: dict[str, re.Pattern[str]] = {
    "debian": re.compile(rf"/debian(-security)?(/{SNAPSHOT_PATTERN})?$"),
    # Ubuntu mirrors and snapshots end in /ubuntu (the -security pocket lives there too);
    # /ubuntu-ports is other architectures.
    "ubuntu": re.compile(rf"/ubuntu(/{SNAPSHOT_PATTERN})?$"),
}
# Personal package archives end in /ubuntu and reuse the release codename as their suite, so
# the path alone cannot tell them apart; their hosts are named ppa.* / private-ppa.*.
_PPA_HOST_LABELS = ("ppa", "private-ppa")

# distro -> (message, hint) when the machine's apt sources name no archive for the release
_NO_SOURCE_MESSAGES = {
    "debian": ("no Debian {codename} apt source found in {where}",
               "pass --apt-mirror URL (the base URL of a Debian mirror, ending in /debian), or "
               "set ENVNIX_APT_MIRROR"),
}


def check_snapshot(snapshot: str) -> str:
    """*snapshot* if it is a valid ``YYYYMMDDTHHMMSSZ`` time, else a one-line UsageError."""
    try:
        ok = re.fullmatch(SNAPSHOT_PATTERN, snapshot) is not None and bool(
            datetime.datetime.strptime(snapshot, SNAPSHOT_FORMAT))
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"apt snapshot {snapshot!r} is not a time like 20260101T000000Z "
                         "(YYYYMMDDTHHMMSSZ, UTC)")
    return snapshot


def at_snapshot(url: str, snapshot: str) -> str:
    """*url*, a snapshot service's archive base (``<host>/ubuntu``), at time *snapshot*."""
    check_snapshot(snapshot)
    url = url.rstrip("/")
    current = snapshot_of(url)
    if current == snapshot:
        return url
    if current is not None:
        raise UsageError(f"apt mirror {url} already names snapshot {current}, "
                         f"but ENVNIX_APT_SNAPSHOT asks for {snapshot}")
    return f"{url}/{snapshot}"


def _is_archive_uri(uri: str, distro: str) -> bool:
    """Whether a machine apt source is *distro*'s official archive (a mirror or a snapshot)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in URL_SCHEMES:
        return False
    if (parts.hostname or "").split(".", 1)[0] in _PPA_HOST_LABELS:
        return False
    pattern = _ARCHIVE_PATH_RES.get(distro)
    return pattern is not None and bool(pattern.search(parts.path.rstrip("/")))


def _signed_by(value: str) -> str:
    """A Signed-By value as a keyring list: file paths (an inline key block is left to the
    distribution's default keyring)."""
    paths = [p for p in re.split(r"[\s,]+", value) if p.startswith("/")]
    return os.pathsep.join(paths) if "BEGIN PGP" not in value else ""


def _entries_from_deb822(text: str) -> Iterable[tuple[str, str, tuple[str, ...], str]]:
    for p in deb822_paragraphs(text):
        if p.get("enabled", "yes").lower() == "no" or "deb" not in p.get("types", "").split():
            continue
        arches = p.get("architectures", "").split()
        if arches and ARCH not in arches:
            continue
        components = tuple(p.get("components", "").split())
        keyring = _signed_by(p.get("signed-by", ""))
        for uri in p.get("uris", "").split():
            for suite in p.get("suites", "").split():
                yield uri, suite, components, keyring


def _entries_from_one_line(text: str) -> Iterable[tuple[str, str, tuple[str, ...], str]]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb") or line.split()[0] != "deb":
            continue
        rest = line[3:].strip()
        options = ""
        if rest.startswith("["):
            options, _, rest = rest[1:].partition("]")
        arch_opts = [o.split("=", 1)[1] for o in options.split() if o.startswith("arch=")]
        if arch_opts and ARCH not in arch_opts[0].split(","):
            continue
        keyring = _signed_by(" ".join(o.split("=", 1)[1] for o in options.split()
                                      if o.startswith("signed-by=")))
        words = rest.split()
        if len(words) >= 2:
            yield words[0], words[1], tuple(words[2:]), keyring


def _default_source_files() -> list[Path]:
    files = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    return files


def machine_apt_sources(
    codename: str,
    paths: Iterable[str | os.PathLike[str]] | None = None,
    *,
    distro: str = "debian",
    components: Sequence[str] | None = None,
) -> list[AptSource]:
    """This machine's *distro* sources for *codename* (main, -updates, -security suites).

    Reads deb822 ``*.sources`` and one-line ``*.list`` files (*paths* overrides the default
    /etc/apt locations), keeps enabled ``deb`` entries on the distribution's official archive
    only (URI path ending in /debian or /debian-security, or /ubuntu, or a snapshot of them;
    never a PPA), main suite first. *components* replaces the ones the machine lists: the
    image's release decides what it may contain, not the host's choice.
    """
    files = [Path(p) for p in paths] if paths is not None else _default_source_files()
    rank = {codename: 0, f"{codename}-updates": 1, f"{codename}-security": 2}
    found: dict[tuple[str, str], list[str]] = {}
    keyrings: dict[tuple[str, str], str] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        parse = _entries_from_deb822 if path.suffix == ".sources" else _entries_from_one_line
        for uri, suite, listed, keyring in parse(text):
            if suite not in rank or not _is_archive_uri(uri, distro):
                continue
            comps = found.setdefault((uri.rstrip("/"), suite), [])
            comps += [c for c in listed if c not in comps]
            if keyring:
                keyrings.setdefault((uri.rstrip("/"), suite), keyring)
    if not found and distro == "ubuntu":
        return ubuntu_archive_sources(codename, components or ("main",))
    if not found:
        where = ", ".join(str(f) for f in files) or "(no files)"
        template = _NO_SOURCE_MESSAGES.get(distro)
        if template is None:
            raise LockError(f"envnix cannot read {distro} apt sources; pass --apt-mirror URL")
        message, hint = template
        raise LockError(message.format(codename=codename, where=where), hint=hint)
    ordered = sorted(found.items(), key=lambda kv: rank[kv[0][1]])  # stable: file order kept
    default = default_keyring(distro)
    out = []
    for (uri, suite), comps in ordered:
        keyring = _keyring_of(keyrings.get((uri, suite), ""), distro) or default
        out.append(AptSource(
            uri, suite, tuple(components) if components else tuple(comps) or ("main",),
            keyring=keyring, keyring_setting="Signed-By in the machine's apt sources",
            anchor=anchor_of(distro, keyring)))
    return out


def ubuntu_archive_sources(codename: str, components: Sequence[str],
                           snapshot: str | None = None) -> list[AptSource]:
    """Ubuntu's own archive for *codename* (its snapshot service at *snapshot*), as apt in an
    Ubuntu image would read it: what an Ubuntu release locks from when neither the user nor
    this machine's apt sources name a mirror."""
    sources = sources_for_mirror(UBUNTU_SNAPSHOTS if snapshot else UBUNTU_ARCHIVE, codename,
                                 distro="ubuntu", components=components, snapshot=snapshot)
    setting = f"{options.UBUNTU_MIRROR.name} (unset: Ubuntu's archive)"
    return [dataclasses.replace(s, setting=setting) for s in sources]


def sources_for_mirror(
    mirror: str,
    codename: str,
    security_mirror: str | None = None,
    *,
    distro: str = "debian",
    components: Sequence[str] = ("main",),
    snapshot: str | None = None,
) -> list[AptSource]:
    """Sources for an explicit ``--apt-mirror``: the main, -updates and -security suites.

    Debian's security archive is a separate tree, so its -security suite comes only from
    *security_mirror* (only the user knows where it is mirrored); Ubuntu's archive carries
    the -security pocket itself, so *security_mirror* only overrides it. *snapshot*
    (``YYYYMMDDTHHMMSSZ``) is appended to both URLs, which are then snapshot-service bases.
    """
    main_suites = ["", "-updates"]
    if distro != "debian" and not security_mirror:
        main_suites.append("-security")
    out = []
    for url, suites in ((mirror, main_suites), (security_mirror, ["-security"])):
        if url is None:
            continue
        if urllib.parse.urlsplit(url).scheme not in URL_SCHEMES:
            raise UsageError(f"apt mirror must be an http(s):// or file:// URL, got {url!r}")
        if snapshot is not None:
            url = at_snapshot(url, snapshot)
        keyring = options.apt_keyring() or default_keyring(distro)
        out += [AptSource(url.rstrip("/"), codename + s, tuple(components), keyring=keyring,
                          anchor=anchor_of(distro, keyring))
                for s in suites]
    return out

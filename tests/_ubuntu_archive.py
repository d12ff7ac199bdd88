"""A real archive in Ubuntu's layout, built from real .debs and served over loopback HTTP.

Ubuntu's archives are not reachable from CI machines, and a fake would only test our idea of
the format. So this module takes a small closure of genuine Debian bookworm packages from this
machine's own Debian mirror (resolved with envnix.lock.apt itself), and lays them out as an
Ubuntu mirror does::

    dists/jammy/{InRelease,Release}                 Origin: Ubuntu, Components, SHA256 list
    dists/jammy/{main,universe}/binary-amd64/       Packages{,.gz,.xz}, Release, by-hash/SHA256/
    dists/jammy-updates/...                         main + universe
    dists/jammy-security/...                        main only (its Release lists no universe)
    pool/{main,universe}/<prefix>/<source>/<file>.deb

Contents:

* ``jammy main``: the closure of :data:`MAIN_ROOTS` and of the release's Essential set,
  stanzas copied whole from Debian's index
  with ``Filename`` (and the hashes) pointing into this pool;
* ``jammy universe``: :data:`UNIVERSE_ONLY` (figlet), in no other component, with Ubuntu's
  ``Section: universe/...`` spelling;
* ``jammy-updates main`` and ``jammy-security main``: :data:`UPDATED` (libexpat1) with a higher
  version, a real .deb repacked with ``ar`` whose control file carries that version, so "the
  newest version wins across suites" is checked on bytes dpkg would accept;
* ``jammy-updates universe``: an empty index (a pocket with nothing updated yet).

InRelease files are clearsigned with the session's test key (tests/_apt_signing.py), as
the fetcher verifies them.
Index files, Release files and the repacked .deb are deterministic; the downloaded .debs are
cached by sha256 (``$XDG_CACHE_HOME/envnix/fixture-debs``), so a second build is offline
except for the Debian index check.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import lzma
import re
import sys
import tarfile
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from _apt_signing import clearsign, public_keyring
from _conda_channel import ChannelServer, serve

from envnix.lock.apt.fetch import default_cache_dir, fetch_index, fetch_release
from envnix.lock.apt.index import DebIndex
from envnix.lock.apt.resolver import resolve
from envnix.lock.apt.sources import machine_apt_sources
from envnix.lock.apt.version import version_compare

CODENAME = "jammy"
VERSION = "22.04"
SNAPSHOT = "20260101T000000Z"
"""The snapshot-style URL the archive is also served at: ``/ubuntu/<SNAPSHOT>``."""
DATE = "Thu, 01 Jan 2026 00:00:00 UTC"
MTIME = 1_767_225_600  # DATE, for the repacked .deb's members

MAIN_ROOTS = ("base-files", "libc6", "dash", "ca-certificates", "libexpat1", "zlib1g")
UNIVERSE_ONLY = "figlet"
UPDATED = "libexpat1"
UPDATE_SUFFIX = "ubuntu0.22.04.1"
"""Appended to the Debian version of :data:`UPDATED`: sorts after it, as Ubuntu's do."""

SUITES: dict[str, tuple[str, ...]] = {
    CODENAME: ("main", "universe"),
    f"{CODENAME}-updates": ("main", "universe"),
    f"{CODENAME}-security": ("main",),
}


@dataclass(frozen=True)
class ArchiveDeb:
    """One .deb in the pool and the index stanza that names it."""

    name: str
    version: str
    suite: str
    component: str
    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class UbuntuArchive:
    """What :func:`build_archive` wrote."""

    root: Path
    debs: tuple[ArchiveDeb, ...]

    def get(self, name: str, suite: str = CODENAME) -> ArchiveDeb:
        for deb in self.debs:
            if deb.name == name and deb.suite == suite:
                return deb
        raise KeyError((name, suite))

    def names(self, suite: str = CODENAME, component: str | None = None) -> set[str]:
        return {d.name for d in self.debs
                if d.suite == suite and component in (None, d.component)}


# --------------------------------------------------------------------------------------------
# stanzas
# --------------------------------------------------------------------------------------------


def _stanza_fields(stanza: str) -> list[tuple[str, str]]:
    """(field, value) pairs in order; continuation lines stay in the value with their "\\n "."""
    fields: list[tuple[str, str]] = []
    for line in stanza.strip("\n").split("\n"):
        if line[:1] in (" ", "\t") and fields:
            key, value = fields[-1]
            fields[-1] = (key, value + "\n" + line)
        else:
            key, _, value = line.partition(":")
            fields.append((key, value.strip()))
    return fields


def rewrite_stanza(stanza: str, changes: Mapping[str, str], drop: Sequence[str] = ()) -> str:
    """*stanza* with fields replaced (kept in place; new ones appended) and *drop* removed."""
    out, done = [], set()
    for key, value in _stanza_fields(stanza):
        if key in drop:
            continue
        if key in changes:
            value, done = changes[key], done | {key}
        out.append(f"{key}: {value}")
    out += [f"{k}: {v}" for k, v in changes.items() if k not in done]
    return "\n".join(out) + "\n"


def _field(stanza: str, key: str) -> str:
    m = re.search(rf"^{re.escape(key)}:[ \t]*(.*)$", stanza, re.M)
    return m.group(1).strip() if m else ""


def pool_path(component: str, stanza: str, basename: str) -> str:
    """Ubuntu's (and Debian's) pool layout: ``pool/<comp>/<prefix>/<source>/<file>``."""
    source = (_field(stanza, "Source") or _field(stanza, "Package")).split()[0]
    prefix = source[:4] if source.startswith("lib") else source[0]
    return f"pool/{component}/{prefix}/{source}/{basename}"


# --------------------------------------------------------------------------------------------
# .deb repacking (ar + control.tar)
# --------------------------------------------------------------------------------------------


def read_ar(data: bytes) -> list[tuple[str, bytes]]:
    """Members of a common-format ar archive (what a .deb is), in order."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    members, pos = [], 8
    while pos < len(data):
        header = data[pos:pos + 60]
        if len(header) < 60 or header[58:60] != b"`\n":
            raise ValueError(f"bad ar member header at {pos}")
        name = header[:16].decode().rstrip().rstrip("/")
        size = int(header[48:58])
        members.append((name, data[pos + 60:pos + 60 + size]))
        pos += 60 + size + (size & 1)
    return members


def write_ar(members: Sequence[tuple[str, bytes]], mtime: int = MTIME) -> bytes:
    """A common-format ar archive as dpkg-deb writes it (mode 100644, uid/gid 0)."""
    out = [b"!<arch>\n"]
    for name, data in members:
        header = (f"{name:<16}{mtime:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n").encode()
        assert len(header) == 60, header
        out += [header, data, b"\n" if len(data) & 1 else b""]
    return b"".join(out)


KEYRING_PACKAGE = "ubuntu-keyring"
KEYRING_VERSION = "2023.11.28.1"


def keyring_deb(keyring: bytes) -> bytes:
    """An ``ubuntu-keyring`` .deb as Ubuntu ships it, carrying *keyring* (the test archive's
    public key) at ``usr/share/keyrings/ubuntu-archive-keyring.gpg``: where envnix takes
    Ubuntu's keys from when the machine has no Ubuntu keyring."""
    def tar(files: Mapping[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), MTIME, 0o644
                tf.addfile(info, io.BytesIO(data))
        return lzma.compress(buf.getvalue())

    control = (f"Package: {KEYRING_PACKAGE}\nVersion: {KEYRING_VERSION}\nArchitecture: all\n"
               "Maintainer: envnix tests <tests@envnix.invalid>\nSection: misc\n"
               "Priority: optional\nDescription: GnuPG keys of the Ubuntu archive\n")
    return write_ar([("debian-binary", b"2.0\n"),
                     ("control.tar.xz", tar({"./control": control.encode()})),
                     ("data.tar.xz", tar({
                         "./usr/share/keyrings/ubuntu-archive-keyring.gpg": keyring}))])


def _decompress_member(name: str, data: bytes) -> bytes:
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".tar"):
        return data
    raise ValueError(f"unsupported .deb member compression: {name}")


def repack_with_version(deb: bytes, version: str) -> bytes:
    """The same package with ``Version: <version>`` in its control file (data untouched)."""
    members = read_ar(deb)
    if [n for n, _ in members][:1] != ["debian-binary"]:
        raise ValueError("not a .deb: first member is not debian-binary")
    out = []
    for name, data in members:
        if name.startswith("control.tar"):
            buf = io.BytesIO()
            with tarfile.open(fileobj=io.BytesIO(_decompress_member(name, data))) as src, \
                    tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as dst:
                for info in src.getmembers():
                    member = src.extractfile(info) if info.isfile() else None
                    content = member.read() if member is not None else None
                    if info.name.lstrip("./") == "control" and content is not None:
                        text = re.sub(r"^Version: .*$", f"Version: {version}",
                                      content.decode(), count=1, flags=re.M)
                        content = text.encode()
                        info.size = len(content)
                    info.mtime = MTIME
                    dst.addfile(info, io.BytesIO(content) if content is not None else None)
            name, data = "control.tar.xz", lzma.compress(buf.getvalue())
        out.append((name, data))
    return write_ar(out)


# --------------------------------------------------------------------------------------------
# index and Release files
# --------------------------------------------------------------------------------------------


def _index_files(text: str) -> dict[str, bytes]:
    raw = text.encode()
    return {"Packages": raw, "Packages.gz": gzip.compress(raw, 9, mtime=0),
            "Packages.xz": lzma.compress(raw)}


def write_suite(root: Path, suite: str, stanzas: Mapping[str, Sequence[str]], *,
                components: Sequence[str] | None = None) -> None:
    """Write ``dists/<suite>``: per component the Packages files (plain, .gz, .xz, also under
    by-hash/SHA256/) and a component Release, then the suite's Release and InRelease listing
    every file with its SHA256 (and MD5Sum, as Ubuntu's do). ``Components:`` names
    *components* (default: the keys of *stanzas*)."""
    dist = root / "dists" / suite
    sums: list[tuple[str, bytes]] = []
    for component, texts in stanzas.items():
        binary = dist / component / "binary-amd64"
        (binary / "by-hash" / "SHA256").mkdir(parents=True, exist_ok=True)
        files = _index_files("\n".join(t.rstrip("\n") + "\n" for t in texts))
        files["Release"] = (f"Archive: {suite}\nVersion: {VERSION}\nComponent: {component}\n"
                            "Origin: Ubuntu\nLabel: Ubuntu\nArchitecture: amd64\n").encode()
        for name, data in files.items():
            (binary / name).write_bytes(data)
            if name != "Release":
                (binary / "by-hash" / "SHA256" / hashlib.sha256(data).hexdigest()
                 ).write_bytes(data)
            sums.append((f"{component}/binary-amd64/{name}", data))
    listed = " ".join(components if components is not None else stanzas)
    lines = [
        "Origin: Ubuntu", "Label: Ubuntu", f"Suite: {suite}", f"Version: {VERSION}",
        f"Codename: {CODENAME}", f"Date: {DATE}", "Architectures: amd64",
        f"Components: {listed}",
        f"Description: Ubuntu {CODENAME.capitalize()} {VERSION} (envnix test fixture)",
        "Acquire-By-Hash: yes", "MD5Sum:",
        *(f" {hashlib.md5(d).hexdigest()} {len(d):>16} {p}" for p, d in sorted(sums)),
        "SHA256:",
        *(f" {hashlib.sha256(d).hexdigest()} {len(d):>16} {p}" for p, d in sorted(sums)),
    ]
    release = "\n".join(lines) + "\n"
    (dist / "Release").write_text(release)
    (dist / "InRelease").write_text(clearsign(release))


# --------------------------------------------------------------------------------------------
# building the archive
# --------------------------------------------------------------------------------------------


def _debian_stanzas(texts: Sequence[str],
                    wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The whole stanza text of each wanted (name, version) from Debian Packages texts."""
    found: dict[tuple[str, str], str] = {}
    for text in texts:
        for stanza in text.split("\n\n"):
            key = (_field(stanza, "Package"), _field(stanza, "Version"))
            if key in wanted and key not in found:
                found[key] = stanza.strip("\n") + "\n"
    return found


def _download(url: str, sha256: str, size: int, cache: Path) -> bytes:
    cached = cache / f"{sha256}.deb"
    with contextlib.suppress(OSError):
        data = cached.read_bytes()
        if len(data) == size and hashlib.sha256(data).hexdigest() == sha256:
            return data
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"{url} does not match the Debian index (sha256 {sha256[:12]}...)")
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return data


def build_archive(root: Path, roots: Sequence[str] = (),
                  cache: Path | None = None) -> UbuntuArchive:
    """Write the archive at ``root`` (see the module doc) from this machine's Debian mirror.

    *roots* are extra packages for ``jammy main`` (with their closure), e.g. what a test's
    image asks for beyond :data:`MAIN_ROOTS` (a dev image's sudo and shell).
    """
    main_roots = [r for r in dict.fromkeys([*MAIN_ROOTS, *roots]) if r != UNIVERSE_ONLY]
    sources = machine_apt_sources("bookworm")
    index = DebIndex("bookworm")
    texts = []
    for source in sources:
        release = fetch_release(source)
        for component in source.components:
            _, text = fetch_index(source, component, release=release)
            index.add_packages_text(text, source.uri, source.suite)
            texts.append(text)
    # The release's Essential set is in main, as on Ubuntu: every image locks it.
    main = resolve(index, main_roots, essential=True)
    with_universe = resolve(index, [*main_roots, UNIVERSE_ONLY], essential=True)
    main_names = {p.name for p in main}
    universe = [p for p in with_universe if p.name not in main_names]
    assert [p.name for p in universe] == [UNIVERSE_ONLY], universe
    stanzas = _debian_stanzas(texts, {(p.name, p.version) for p in with_universe})
    cache = cache or default_cache_dir().parent / "fixture-debs"

    debs: list[ArchiveDeb] = []
    suite_stanzas: dict[str, dict[str, list[str]]] = {
        suite: {c: [] for c in comps} for suite, comps in SUITES.items()}

    def publish(data: bytes, stanza: str, component: str, suites: Sequence[str],
                basename: str, changes: Mapping[str, str] | None = None) -> None:
        filename = pool_path(component, stanza, basename)
        target = root / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        sha256 = hashlib.sha256(data).hexdigest()
        new = rewrite_stanza(stanza, {
            **(changes or {}), "Filename": filename, "Size": str(len(data)),
            "MD5sum": hashlib.md5(data).hexdigest(), "SHA256": sha256,
        }, drop=("SHA1", "SHA512"))
        for suite in suites:
            suite_stanzas[suite][component].append(new)
            debs.append(ArchiveDeb(_field(new, "Package"), _field(new, "Version"), suite,
                                   component, filename, sha256, len(data)))

    for pkg in with_universe:
        data = _download(pkg.url, pkg.sha256, pkg.size, cache)
        stanza = stanzas[(pkg.name, pkg.version)]
        basename = pkg.filename.rsplit("/", 1)[1]
        if pkg.name == UNIVERSE_ONLY:
            section = _field(stanza, "Section") or "misc"
            publish(data, stanza, "universe", [CODENAME], basename,
                    {"Section": f"universe/{section}"})
        else:
            publish(data, stanza, "main", [CODENAME], basename)
        if pkg.name == UPDATED:
            version = pkg.version + UPDATE_SUFFIX
            assert version_compare(version, pkg.version) > 0
            repacked = repack_with_version(data, version)
            publish(repacked, stanza, "main",
                    [f"{CODENAME}-updates", f"{CODENAME}-security"],
                    f"{pkg.name}_{version.split(':')[-1]}_{pkg.arch}.deb",
                    {"Version": version})

    keyring = keyring_deb(public_keyring())
    publish(keyring, (f"Package: {KEYRING_PACKAGE}\nVersion: {KEYRING_VERSION}\n"
                      "Architecture: all\nSection: misc\nPriority: optional\n"
                      "Description: GnuPG keys of the Ubuntu archive\n"),
            "main", [CODENAME], f"{KEYRING_PACKAGE}_{KEYRING_VERSION}_all.deb")

    for suite, comps in suite_stanzas.items():
        write_suite(root, suite, {c: sorted(s, key=lambda t: _field(t, "Package"))
                                  for c, s in comps.items()})
    return UbuntuArchive(root, tuple(debs))


@contextlib.contextmanager
def serve_archive(root: Path) -> Iterator[ChannelServer]:
    """Serve the archive at ``/ubuntu`` and, as a snapshot service would, at
    ``/ubuntu/<SNAPSHOT>``; ``server.url("ubuntu")`` is the mirror URL."""
    with serve(root, prefixes=("ubuntu", f"ubuntu/{SNAPSHOT}")) as server:
        yield server


if __name__ == "__main__":  # python tests/_ubuntu_archive.py DIR: build and describe it
    archive = build_archive(Path(sys.argv[1]))
    for d in archive.debs:
        print(f"{d.suite:16} {d.component:9} {d.name:20} {d.version:32} {d.size:>9}")

"""Archive keys envnix trusts by fingerprint, for archives whose keyring the machine lacks.

Why: a Debian machine has no Ubuntu keyring (Debian does not package it), and NVIDIA's CUDA
repository keys come from NVIDIA's own site. Rather than ask every user to find and install
them, envnix pins the archives' signing-key fingerprints here and fetches the key material
from the archive itself: the Ubuntu keys from the ``ubuntu-keyring`` .deb in the release's own
main index, NVIDIA's from the key file next to the repository's InRelease. Nothing fetched is
trusted as such: an InRelease checks out only when gpgv reports a good signature whose
primary key has one of the pinned fingerprints (:func:`check_signers`), so a hostile mirror
that serves other keys gets nowhere. The fetched keyring is cached (``envnix/keys``) only to
save the download.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from envnix.core import http
from envnix.core.errors import FetchError, LockError
from envnix.core.fileio import atomic_write, cache_dir
from envnix.lock.apt.debfile import deb_file
from envnix.lock.apt.index import deb822_paragraphs
from envnix.lock.apt.relations import ARCH
from envnix.spec.apt import AptSource

MAX_KEYRING = 1 << 20
"""Bytes of key material read at most: the real keyrings are a few kB."""


@dataclass(frozen=True)
class KeyAnchor:
    """Whose keys, the fingerprints that make a signature good, and where the keys are."""

    name: str                       # "Ubuntu's archive", for messages
    fingerprints: frozenset[str]    # primary-key fingerprints (v4, upper-case hex)
    fetch: Callable[[AptSource], bytes]  # the key material, from the source's archive


def _ubuntu_keyring(source: AptSource) -> bytes:
    """``usr/share/keyrings/ubuntu-archive-keyring.gpg`` from the ``ubuntu-keyring`` .deb the
    release's main index lists (unverified: the fingerprints are the anchor)."""
    codename = source.suite.split("-", 1)[0]
    base = source.uri.rstrip("/")
    index_url = f"{base}/dists/{codename}/main/binary-{ARCH}/Packages.gz"
    try:
        text = gzip.decompress(_get(index_url)).decode("utf-8", "replace")
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise LockError(f"cannot read {index_url} for Ubuntu's keyring: {e}") from e
    stanza = next((p for p in deb822_paragraphs(text) if p.get("package") == "ubuntu-keyring"),
                  None)
    if stanza is None or "filename" not in stanza:
        raise LockError(f"{index_url} lists no ubuntu-keyring package to take Ubuntu's "
                        "archive keys from")
    deb = _get(f"{base}/{stanza['filename']}")
    if stanza.get("sha256") and hashlib.sha256(deb).hexdigest() != stanza["sha256"]:
        raise LockError(f"{base}/{stanza['filename']}: sha256 differs from its index")
    keyring = deb_file(deb, "usr/share/keyrings/ubuntu-archive-keyring.gpg", MAX_KEYRING)
    if keyring is None:
        raise LockError(f"{base}/{stanza['filename']} has no "
                        "usr/share/keyrings/ubuntu-archive-keyring.gpg")
    return keyring


NVIDIA_KEY_FILE = "3bf863cc.pub"
"""NVIDIA's CUDA repository key (since 2022), published next to each repository's InRelease."""


def _nvidia_key(source: AptSource) -> bytes:
    return _get(f"{source.files_url}/{NVIDIA_KEY_FILE}")


ANCHORS: dict[str, KeyAnchor] = {
    "ubuntu": KeyAnchor("Ubuntu's archive", frozenset({
        "F6ECB3762474EDA9D21B7022871920D1991BC93C",  # Archive Automatic Signing Key (2018)
        "790BC7277767219C42C86F933B4FE6ACC0B21F32",  # Archive Automatic Signing Key (2012)
    }), _ubuntu_keyring),
    "nvidia": KeyAnchor("NVIDIA's CUDA repository", frozenset({
        "EB693B3035CD5710E231E123A4B469963BF863CC",  # cudatools <cudatools@nvidia.com>
    }), _nvidia_key),
}


def _get(url: str) -> bytes:
    try:
        return http.get(url)
    except http.RequestError as e:  # its message names the URL and why
        raise FetchError(f"{e} (an apt archive's signing key)") from e


def anchored_keyring(source: AptSource, refresh: bool = False) -> Path:
    """A keyring file holding *source*'s anchor's keys: the cached one, else (or with
    *refresh*) fetched now."""
    anchor = ANCHORS[source.anchor]
    path = cache_dir("keys") / f"{source.anchor}-{_digest(source.uri)}.gpg"
    if refresh or not path.is_file():
        _store(path, anchor.fetch(source))
    return path


def _store(path: Path, key: bytes) -> None:
    """Write *key* to the keys cache (its directory made on first use)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, key)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def good_signers(status: str) -> set[str]:
    """The primary-key fingerprints of the good signatures in gpgv's ``--status-fd`` output
    (VALIDSIG's last field; the signing subkey's when it names no primary)."""
    found = set()
    for line in status.splitlines():
        if line.startswith("[GNUPG:] VALIDSIG "):
            fields = line.split()
            found.add((fields[11] if len(fields) > 11 else fields[2]).upper())
    return found


def check_signers(source: AptSource, url: str, status: str) -> None:
    """LockError unless a good signature on *url* comes from one of the anchor's keys."""
    anchor = ANCHORS[source.anchor]
    signers = good_signers(status)
    if not signers & anchor.fingerprints:
        raise LockError(f"{url}: not signed by {anchor.name}'s keys (good signatures from "
                        f"{', '.join(sorted(signers)) or 'no key'}; envnix trusts "
                        f"{', '.join(sorted(anchor.fingerprints))})",
                        hint=f"set {source.keyring_setting} to the keyring this mirror signs "
                             "with, if it re-signs the archive")


def fetched_keyring(urls: tuple[str, ...]) -> str:
    """The keys run() steps install (``curl URL | apt-key add -``), fetched now as those steps
    would, one file each under ``envnix/keys``: an os.pathsep-separated keyring list."""
    paths = []
    for url in urls:
        path = cache_dir("keys") / f"run-{_digest(url)}.key"
        data = _get(url)
        if len(data) > MAX_KEYRING:
            raise LockError(f"{url}: {len(data)} bytes is no archive key (over {MAX_KEYRING})")
        _store(path, data)
        paths.append(str(path))
    return os.pathsep.join(paths)

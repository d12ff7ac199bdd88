"""Apt sources as data: where an image's .debs come from, as the spec names them (an
--apt-mirror, NVIDIA's flat CUDA repository) and the lock records them.

The type lives in the spec stage because spec/cuda_apt.py adds a source to a request before
anything is locked; lock/apt/sources.py reads the machine's apt configuration into these
records, lock/apt/fetch.py reads the indexes they point at.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from envnix.core import options
from envnix.core.errors import UsageError

KEYRING_ENV = options.APT_KEYRING.name
"""The keyring(s) an --apt-mirror's InRelease must be signed with (default: the distribution's
archive keyring, as Debian and Ubuntu install it)."""

SNAPSHOT_PATTERN = r"\d{8}T\d{6}Z"
"""An archive snapshot time (``20260101T000000Z``), in UTC."""
_SNAPSHOT_TAIL_RE = re.compile(rf"/({SNAPSHOT_PATTERN})$")
URL_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class AptSource:
    """One archive suite to read: ``<uri>/dists/<suite>/<component>/binary-amd64/``.

    A *flat* repository (``deb URI /`` in sources.list: a suite ending in ``/`` and no
    components, as NVIDIA's CUDA repositories are laid out) keeps InRelease and Packages in
    the directory ``<uri>/<suite>`` itself, and its ``Filename:`` fields are relative to it.
    ``setting`` names what the user set to get this source, for error messages.
    """

    uri: str
    suite: str
    components: tuple[str, ...] = ("main",)
    setting: str = dataclasses.field(default="--apt-mirror", compare=False)
    # The public keyring(s) its InRelease must be signed with (os.pathsep-separated files),
    # and what the user sets to change them, for error messages. Not part of the lock: the
    # same archive is the same archive whatever file its keys were read from.
    keyring: str = dataclasses.field(default="", compare=False)
    keyring_setting: str = dataclasses.field(default=KEYRING_ENV, compare=False)
    # Whose pinned key fingerprints the signature must come from ("ubuntu", "nvidia": see
    # envnix.lock.apt.anchors), when the keyring is the vendor's default: the keys are then
    # fetched from the archive if the machine lacks that keyring file. "" checks the keyring.
    anchor: str = dataclasses.field(default="", compare=False)

    @property
    def flat(self) -> bool:
        return self.suite.endswith("/")

    @property
    def dist_url(self) -> str:
        """The directory holding the suite's (In)Release."""
        if not self.flat:
            return f"{self.uri.rstrip('/')}/dists/{self.suite}"
        return self.files_url

    @property
    def files_url(self) -> str:
        """What the index's ``Filename:`` paths are relative to."""
        if not self.flat:
            return self.uri.rstrip("/")
        rel = self.suite.strip("/").removeprefix("./").strip("/")
        return self.uri.rstrip("/") + (f"/{rel}" if rel and rel != "." else "")

    @property
    def snapshot(self) -> str | None:
        """The archive's snapshot time when *uri* is a snapshot URL (``.../<YYYYMMDDTHHMMSSZ>``);
        the lock records it, since the same URL then always serves the same indexes."""
        return snapshot_of(self.uri)

    def to_lock_dict(self) -> dict[str, Any]:
        """The lock's ``apt.sources`` entry; ``snapshot`` only when there is one and ``flat``
        only for flat repositories, so locks made from plain mirrors keep their bytes."""
        entry: dict[str, Any] = {"uri": self.uri, "suite": self.suite,
                                 "components": list(self.components)}
        if self.snapshot is not None:
            entry["snapshot"] = self.snapshot
        if self.flat:
            entry["flat"] = True
        return entry


def flat_source(url: str, setting: str, keyring: str = "",
                keyring_setting: str = KEYRING_ENV) -> AptSource:
    """A flat repository at *url* (``deb <url> /``); *setting* is where the user gave it, and
    *keyring* the keys its InRelease is signed with (set by *keyring_setting*)."""
    if urllib.parse.urlsplit(url).scheme not in URL_SCHEMES:
        raise UsageError(f"{setting}: an apt repository must be an http(s):// or file:// URL, "
                         f"got {url!r}")
    return AptSource(url.rstrip("/"), "/", (), setting, keyring, keyring_setting)


def snapshot_of(uri: str) -> str | None:
    """The ``YYYYMMDDTHHMMSSZ`` time a snapshot URL ends with, or None for a plain mirror."""
    m = _SNAPSHOT_TAIL_RE.search(urllib.parse.urlsplit(uri).path.rstrip("/"))
    return m.group(1) if m else None


CODENAME_PLACEHOLDER = "@CODENAME@"
"""Where a run() step's source line had ``$(lsb_release -cs)``: the image's codename."""


@dataclass(frozen=True)
class RunAptRepo:
    """An apt source a run() step adds (``echo 'deb URL SUITE main' | tee
    /etc/apt/sources.list.d/x.list``), with the URLs of the keys the file's steps install
    (``curl URL | apt-key add -``). Why: envd runs such steps with the network open, then
    installs packages from the source; envnix reads the source's indexes at lock time, like
    the release's, so those packages are pinned by URL + sha256 too."""

    line: str
    keys: tuple[str, ...] = ()
    where: str = ""  # the run() call's file:line, for lock errors

    def source(self, codename: str, keyring: str) -> AptSource:
        """The source the line names for an image of *codename*, checked with *keyring*;
        UsageError for a line apt would not read or that names no http(s) archive."""
        words = self.line.replace(CODENAME_PLACEHOLDER, codename).split()
        if words[:1] == ["deb"] and len(words) > 1 and words[1].startswith("["):
            end = next((i for i, w in enumerate(words) if w.endswith("]")), None)
            words = ["deb", *words[end + 1:]] if end is not None else words
        if len(words) < 3 or "$" in " ".join(words):
            raise UsageError(f"{self.where}: run() adds the apt source {self.line!r}, which "
                             "is not a `deb URL SUITE [COMPONENT...]` line envnix can read",
                             hint="write the source with its release spelled out")
        uri, suite, components = words[1], words[2], tuple(words[3:])
        if urllib.parse.urlsplit(uri).scheme not in ("http", "https"):
            raise UsageError(f"{self.where}: run() adds the apt source {uri}, which is not an "
                             "http(s) URL")
        setting = f"the apt source run() adds at {self.where}" if self.where else "run()"
        if suite.endswith("/"):
            return dataclasses.replace(flat_source(uri, setting, keyring, setting),
                                       suite=suite)
        return AptSource(uri.rstrip("/"), suite, components or ("main",), setting, keyring,
                         setting)

"""Lock Debian packages by hash without apt: read apt sources, fetch Packages indexes, resolve.

The result of a lock is a sorted list of :class:`DebPackage` pins (URL, sha256, size and the
control fields a dpkg status entry needs) plus :class:`IndexSnapshot` records naming the exact
Packages index every pin came from. The Nix build later only fetches the pinned .debs.

Scope and deliberate limits (background: the team's locking notes, §6 Debian):

* single architecture (``amd64`` plus ``all``); ``:any``/``:native`` qualifiers are ignored;
* Pre-Depends + Depends only (no Recommends), breadth-first, no backtracking: every choice is
  the first alternative with a candidate, newest version first, so the result is deterministic
  and easy to explain;
* with ``essential=True`` (the default profile of images on a distribution base) every package
  the index marks ``Essential: yes`` is a root too, after the caller's roots, as dpkg and apt
  assume they are always installed and never declare them; ``Priority: required`` alone is
  not added (mmdebstrap's ``essential`` variant draws the same line);
* names the caller says the host provides at run time (the GPU driver's ``libcuda1``, which
  NVIDIA's container toolkit mounts) satisfy any dependency on them and are never installed;
* a root may name a version glob (``libcudnn8=8.*+cuda12.*``): the newest matching version;
* Conflicts/Breaks are checked among the selected packages after resolution and reported as an
  error (no attempt to find another solution);
* every InRelease (or Release + Release.gpg) is verified with ``gpgv`` against the source's
  keyring before anything in it is trusted (see :func:`verify_release`): the sha256 chain
  InRelease -> Packages -> .deb is only as good as that first link.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import difflib
import fnmatch
import functools
import gzip
import hashlib
import http.client
import lzma
import os
import re
import shutil
import string
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envnix.errors import (
    FetchError,
    LockError,
    PackageNotFoundError,
    ToolMissingError,
    UsageError,
)
from envnix.fileio import atomic_write

ARCH = "amd64"
"""The only target architecture for now; ``Architecture: all`` packages are accepted too."""

HTTP_TIMEOUT = 30.0
"""Seconds before a mirror that accepted the connection but stopped answering is given up."""

Progress = Callable[[str], None]

# --------------------------------------------------------------------------------------------
# Debian version comparison (Debian policy §5.6.12, same algorithm as dpkg's verrevcmp)
# --------------------------------------------------------------------------------------------

_LETTERS = frozenset(string.ascii_letters)
_FRAGMENT_RE = re.compile(r"([^0-9]*)([0-9]*)")
_EMPTY_PAIR: tuple[tuple[int, ...], int] = ((0,), 0)


def _char_weight(c: str) -> int:
    """dpkg's order(): '~' sorts before the end of a part, letters before other characters."""
    if c == "~":
        return -1
    if c in _LETTERS:
        return ord(c)
    return ord(c) + 256


def _fragment_key(s: str) -> tuple[tuple[tuple[int, ...], int], ...]:
    """Turn an upstream version or revision into a tuple that sorts like dpkg compares.

    The string is cut into (non-digit run, digit run) pairs. A non-digit run becomes its char
    weights plus a terminating 0 (the weight of "end of string"), so ``~`` (-1) sorts before the
    end and letters after it. A trailing sentinel pair stands for the exhausted string, which
    dpkg treats as an endless run of ("", 0) pairs.
    """
    pairs: list[tuple[tuple[int, ...], int]] = []
    for m in _FRAGMENT_RE.finditer(s):
        text, digits = m.group(1), m.group(2)
        if not text and not digits:
            continue
        pairs.append(((*map(_char_weight, text), 0), int(digits) if digits else 0))
    # ("", 0) can only be the first pair; it is equal to an empty string, so drop it.
    while pairs and pairs[-1] == _EMPTY_PAIR:
        pairs.pop()
    pairs.append(_EMPTY_PAIR)
    return tuple(pairs)


@functools.cache
def version_key(version: str) -> tuple[Any, ...]:
    """A sort key for a Debian version: ``sorted(vs, key=version_key)`` orders like dpkg."""
    epoch = 0
    rest = version.strip()
    head, sep, tail = rest.partition(":")
    if sep and head.isdigit():
        epoch, rest = int(head), tail
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return (epoch, _fragment_key(upstream), _fragment_key(revision))


def version_compare(a: str, b: str) -> int:
    """Return -1, 0 or 1 as Debian version *a* is older than, equal to or newer than *b*."""
    ka, kb = version_key(a), version_key(b)
    return (ka > kb) - (ka < kb)


# --------------------------------------------------------------------------------------------
# Relations (Depends / Pre-Depends / Provides / Conflicts / Breaks)
# --------------------------------------------------------------------------------------------

_OPS: dict[str, Callable[[int], bool]] = {
    "<<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    "=": lambda c: c == 0,
    ">=": lambda c: c >= 0,
    ">>": lambda c: c > 0,
}
_LEGACY_OPS = {"<": "<=", ">": ">="}  # obsolete forms; policy says they mean <= and >=

_RELATION_RE = re.compile(
    r"""^\s*
    (?P<name>[A-Za-z0-9][A-Za-z0-9+.\-_]*)
    (?::[A-Za-z0-9\-]+)?                                   # :any / :native / :amd64 (ignored)
    \s*(?:\(\s*(?P<op><<|<=|>=|>>|=|<|>)\s*(?P<ver>[^\s()<>=]+)\s*\))?
    \s*(?:\[(?P<arches>[^\]]*)\])?
    \s*(?:<[^>]*>\s*)*                                     # build profiles (dropped)
    $""",
    re.X,
)


@dataclass(frozen=True, slots=True)
class Relation:
    """One alternative of a relation field: a name with an optional version constraint."""

    name: str
    op: str | None = None
    version: str | None = None

    def satisfied_by(self, version: str) -> bool:
        """True if *version* meets the constraint (always true when there is none)."""
        if self.op is None or self.version is None:
            return True
        return _OPS[self.op](version_compare(version, self.version))

    def __str__(self) -> str:
        if self.op is None:
            return self.name
        return f"{self.name} ({self.op} {self.version})"


def _arch_term_matches(term: str, arch: str) -> bool:
    """Whether an architecture name or wildcard in ``[...]`` covers *arch* on Linux."""
    return term in ("any", arch, "linux-any", f"any-{arch}", f"linux-{arch}")


def _arch_allowed(arches: str, arch: str) -> bool:
    """Evaluate a ``[a b]`` / ``[!a !b]`` restriction list for *arch*."""
    terms = arches.split()
    if not terms:
        return True
    if terms[0].startswith("!"):
        return not any(_arch_term_matches(t.lstrip("!"), arch) for t in terms)
    return any(_arch_term_matches(t, arch) for t in terms)


def parse_relations(text: str, arch: str = ARCH) -> list[tuple[Relation, ...]]:
    """Parse a relation field into OR-groups of :class:`Relation`, for one architecture.

    Alternatives restricted to other architectures are removed (and a group left empty is
    dropped), ``:any``-style qualifiers and ``<profile>`` restrictions are ignored, and the
    legacy ``<``/``>`` operators are read as ``<=``/``>=``.
    """
    groups: list[tuple[Relation, ...]] = []
    for group_text in text.split(","):
        if not group_text.strip():
            continue
        alternatives: list[Relation] = []
        for alt in group_text.split("|"):
            m = _RELATION_RE.match(alt)
            if m is None:
                raise LockError(f"cannot parse package relation {alt.strip()!r} in {text!r}")
            if m.group("arches") is not None and not _arch_allowed(m.group("arches"), arch):
                continue
            op = m.group("op")
            if op is not None:
                op = _LEGACY_OPS.get(op, op)
            alternatives.append(Relation(m.group("name"), op, m.group("ver")))
        if alternatives:
            groups.append(tuple(alternatives))
    return groups


def _format_group(group: Sequence[Relation]) -> str:
    return " | ".join(str(r) for r in group)


# --------------------------------------------------------------------------------------------
# Packages index parsing
# --------------------------------------------------------------------------------------------

# Fields kept from each stanza: what resolution needs plus what a dpkg status entry needs.
_KEPT_FIELDS = (
    "Package", "Version", "Architecture", "Provides", "Depends", "Pre-Depends", "Priority",
    "Essential", "Filename", "Size", "SHA256", "Multi-Arch", "Source", "Installed-Size",
    "Description", "Section", "Maintainer", "Breaks", "Conflicts", "Replaces", "Recommends",
    "Suggests",
)
# One regex pass per stanza (0.37 s for bookworm main) is 2.5x faster than a Python loop over
# its lines; a lazy ``(.*?)[ \t]*$`` to trim trailing blanks would triple that, so values that
# matter are stripped where used. Only the first line of Description matches (continuation
# lines start with a space); no other kept field is folded in archive-generated Packages files.
_FIELD_RE = re.compile(r"^(" + "|".join(map(re.escape, _KEPT_FIELDS)) + r"):[ \t]*(.*)", re.M)

# dpkg's field order in /var/lib/dpkg/status (dpkg adds Status: after Package itself).
_CONTROL_FIELDS = (
    "Package", "Essential", "Priority", "Section", "Installed-Size", "Maintainer", "Architecture",
    "Multi-Arch", "Source", "Version", "Replaces", "Provides", "Depends", "Pre-Depends",
    "Recommends", "Suggests", "Breaks", "Conflicts", "Description",
)

_PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}


@dataclass(slots=True, eq=False)
class _Entry:
    """One binary package stanza from one index (identity matters, so no __eq__)."""

    name: str
    version: str
    fields: dict[str, str]
    origin: int  # position in DebIndex.origins
    provides: tuple[Relation, ...]

    @property
    def priority_rank(self) -> int:
        return _PRIORITY_RANK.get(self.fields.get("Priority", ""), len(_PRIORITY_RANK))


class DebIndex:
    """The amd64/all stanzas of one or more Packages files, by name and by Provides.

    All versions are kept (a versioned relation may need an older one); lookups return them
    newest first, and for equal versions the index added first (the main suite) wins.
    """

    def __init__(self, label: str = "", arch: str = ARCH) -> None:
        self.label = label
        self.arch = arch
        self.origins: list[tuple[str, str]] = []  # (mirror uri, suite) per added index
        self._by_name: dict[str, list[_Entry]] = {}
        self._providers: dict[str, list[tuple[_Entry, str | None]]] = {}
        self._dirty = False

    @classmethod
    def from_packages_text(
        cls, text: str, uri: str, suite: str, label: str | None = None
    ) -> DebIndex:
        """Build an index from one Packages file's text (handy for tests and tools)."""
        index = cls(label if label is not None else suite)
        index.add_packages_text(text, uri, suite)
        return index

    def add_packages_text(self, text: str, uri: str, suite: str) -> int:
        """Add every stanza for this architecture; return how many were added."""
        origin = len(self.origins)
        self.origins.append((uri.rstrip("/"), suite))
        accepted_arches = (self.arch, "all")
        added = 0
        for stanza in text.split("\n\n"):
            fields = dict(_FIELD_RE.findall(stanza))
            name = fields.get("Package", "").rstrip()
            version = fields.get("Version", "").rstrip()
            arch = fields.get("Architecture", "").rstrip()
            if not name or not version or arch not in accepted_arches:
                continue
            same_name = self._by_name.get(name)
            if same_name is not None and any(e.version == version for e in same_name):
                continue  # the same version from a later suite: keep the first
            provides_text = fields.get("Provides")
            provides: tuple[Relation, ...] = ()
            if provides_text:
                # One malformed stanza among 63k must not break every lock: it just provides
                # nothing (it is only an error if the resolver ever walks its Depends).
                with contextlib.suppress(LockError):
                    provides = tuple(g[0] for g in parse_relations(provides_text, self.arch))
            entry = _Entry(name, version, fields, origin, provides)
            if same_name is None:
                self._by_name[name] = [entry]
            else:
                same_name.append(entry)
            for rel in provides:
                self._providers.setdefault(rel.name, []).append(
                    (entry, rel.version if rel.op == "=" else None)
                )
            added += 1
        self._dirty = True
        return added

    def _sort(self) -> None:
        """Order versions newest first and providers by (Priority, name, newest version)."""
        if not self._dirty:
            return
        for entries in self._by_name.values():
            if len(entries) > 1:
                entries.sort(key=lambda e: version_key(e.version), reverse=True)
        for provs in self._providers.values():
            provs.sort(key=lambda p: version_key(p[0].version), reverse=True)
            provs.sort(key=lambda p: (p[0].priority_rank, p[0].name))
        self._dirty = False

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name or name in self._providers

    def names(self) -> list[str]:
        """All real package names, sorted."""
        return sorted(self._by_name)

    def versions(self, name: str) -> list[str]:
        """All versions of a real package, newest first (empty if unknown)."""
        self._sort()
        return [e.version for e in self._by_name.get(name, ())]

    def entries(self, name: str) -> list[_Entry]:
        """The resolver's view: stanzas of a real package, newest first (do not mutate)."""
        self._sort()
        return self._by_name.get(name, [])

    def providers(self, name: str) -> list[tuple[_Entry, str | None]]:
        """(stanza, provided version or None) for a virtual name, in tie-break order."""
        self._sort()
        return self._providers.get(name, [])

    def suggest(self, name: str, n: int = 5) -> list[str]:
        """Close package names for a typo, in well under a second on the full archive.

        difflib over all ~63k names takes seconds, so only names sharing the first two
        characters or of nearly the same length are compared.
        """
        key = name.lower()
        pool = [
            c for c in (*self._by_name, *self._providers)
            if c[:2] == key[:2] or abs(len(c) - len(key)) <= 1
        ]
        return difflib.get_close_matches(key, sorted(set(pool)), n=n, cutoff=0.6)


def _control_text(fields: Mapping[str, str]) -> str:
    """The stanza a dpkg status entry needs, in dpkg's field order (Description: first line)."""
    return "".join(f"{k}: {fields[k]}\n" for k in _CONTROL_FIELDS if fields.get(k))


# --------------------------------------------------------------------------------------------
# Pins
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DebPackage:
    """One resolved .deb, pinned by URL + sha256 + size, with its dpkg control fields."""

    name: str
    version: str
    arch: str
    filename: str
    url: str
    sha256: str
    size: int
    priority: str
    essential: bool
    source_suite: str
    control: str

    def to_lock_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with sorted keys, so the lock file is byte-stable."""
        return dict(sorted(
            {
                "name": self.name, "version": self.version, "arch": self.arch,
                "filename": self.filename, "url": self.url, "sha256": self.sha256,
                "size": self.size, "priority": self.priority, "essential": self.essential,
                "source_suite": self.source_suite, "control": self.control,
            }.items()
        ))

    @classmethod
    def from_lock_dict(cls, d: Mapping[str, Any]) -> DebPackage:
        """Inverse of :meth:`to_lock_dict`; a malformed entry is a :class:`LockError`."""
        try:
            return cls(
                name=str(d["name"]), version=str(d["version"]), arch=str(d["arch"]),
                filename=str(d["filename"]), url=str(d["url"]), sha256=str(d["sha256"]),
                size=int(d["size"]), priority=str(d["priority"]),
                essential=bool(d["essential"]), source_suite=str(d["source_suite"]),
                control=str(d["control"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise LockError(f"malformed apt package entry in lock: {e!r} in {dict(d)!r}") from e


@dataclass(frozen=True)
class IndexSnapshot:
    """Which Packages index a lock was resolved against (the by-hash URL pins its content)."""

    uri: str
    suite: str
    component: str
    url: str
    sha256: str
    size: int

    def to_lock_dict(self) -> dict[str, Any]:
        return dict(sorted(
            {
                "uri": self.uri, "suite": self.suite, "component": self.component,
                "url": self.url, "sha256": self.sha256, "size": self.size,
            }.items()
        ))

    @classmethod
    def from_lock_dict(cls, d: Mapping[str, Any]) -> IndexSnapshot:
        try:
            return cls(
                uri=str(d["uri"]), suite=str(d["suite"]), component=str(d["component"]),
                url=str(d["url"]), sha256=str(d["sha256"]), size=int(d["size"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise LockError(f"malformed apt index entry in lock: {e!r} in {dict(d)!r}") from e


# --------------------------------------------------------------------------------------------
# Resolver
# --------------------------------------------------------------------------------------------


class _Resolver:
    """Breadth-first closure over Pre-Depends + Depends; see :func:`resolve`."""

    def __init__(self, index: DebIndex, host_provided: Collection[str] = ()) -> None:
        self.index = index
        self.host_provided = frozenset(host_provided)
        self.selected: dict[str, _Entry] = {}
        self.parent: dict[str, str | None] = {}
        self.provided: dict[str, list[tuple[_Entry, str | None]]] = {}
        self.queue: deque[_Entry] = deque()

    def select(self, entry: _Entry, parent: str | None) -> None:
        self.selected[entry.name] = entry
        self.parent[entry.name] = parent
        for rel in entry.provides:
            self.provided.setdefault(rel.name, []).append(
                (entry, rel.version if rel.op == "=" else None)
            )
        self.queue.append(entry)

    def chain(self, name: str) -> list[str]:
        out: list[str] = []
        cur: str | None = name
        while cur is not None:
            out.append(cur)
            cur = self.parent.get(cur)
        return out[::-1]

    def satisfied(self, rel: Relation) -> bool:
        """Already met by a selected package, by its own name or through Provides, or by
        something the host provides at run time."""
        if rel.name in self.host_provided:
            return True
        entry = self.selected.get(rel.name)
        if entry is not None and rel.satisfied_by(entry.version):
            return True
        for _, provided_version in self.provided.get(rel.name, ()):
            if rel.op is None:
                return True
            if provided_version is not None and rel.satisfied_by(provided_version):
                return True
        return False

    def candidates(self, rel: Relation) -> list[_Entry]:
        """Real packages newest first, then providers (a versioned relation needs a versioned
        Provides that satisfies it) by Priority then name. Names already selected are out:
        only one version of a package can be installed."""
        out = [
            e for e in self.index.entries(rel.name)
            if e.name not in self.selected and rel.satisfied_by(e.version)
        ]
        for entry, provided_version in self.index.providers(rel.name):
            if entry.name in self.selected or entry in out:
                continue
            if rel.op is not None and (
                provided_version is None or not rel.satisfied_by(provided_version)
            ):
                continue
            out.append(entry)
        return out

    def why_not(self, rel: Relation) -> str:
        """Explain, for an error message, why *rel* has no candidate."""
        chosen = self.selected.get(rel.name)
        if chosen is not None:
            via = " -> ".join(self.chain(rel.name))
            return f"{rel.name} {chosen.version} is already selected (via {via})"
        versions = self.index.versions(rel.name)
        if versions:
            shown = ", ".join(versions[:5]) + (", ..." if len(versions) > 5 else "")
            return f"the index has only {rel.name} {shown}"
        providers = sorted({e.name for e, _ in self.index.providers(rel.name)})
        if providers:
            return (f"{rel.name} is virtual and no provider fits "
                    f"(providers: {', '.join(providers[:5])})")
        return f"{rel.name} is not in the index"

    def add_root(self, spec: str) -> None:
        name, eq, want = spec.strip().partition("=")
        name, want = name.strip(), want.strip()
        if not name or (eq and not want):
            raise PackageNotFoundError(
                f"invalid apt package spec {spec!r}; use NAME or NAME=VERSION"
            )
        if "*" in want:
            self._add_glob_root(name, want)
            return
        rel = Relation(name, "=", want) if want else Relation(name)
        chosen = self.selected.get(name)
        if chosen is not None:
            if not rel.satisfied_by(chosen.version):
                raise LockError(
                    f"apt package {name} is requested as both {chosen.version} and {want}"
                )
            return
        if name not in self.index:
            where = f"{self.index.label} ({self.index.arch})"
            hint = self.index.suggest(name)
            msg = f"apt package {name!r} not found in {where}"
            if hint:
                msg += f"; did you mean: {', '.join(hint)}?"
            raise PackageNotFoundError(msg)
        if self.satisfied(rel):
            return  # a virtual root already provided by an earlier root
        found = self.candidates(rel)
        if not found:
            available = ", ".join(self.index.versions(name)) or "none (virtual package)"
            raise PackageNotFoundError(
                f"apt package {spec.strip()!r} not found in {self.index.label} "
                f"({self.index.arch}); available versions: {available}"
            )
        self.select(found[0], None)

    def _add_glob_root(self, name: str, pattern: str) -> None:
        """``name=8.*+cuda12.*``: the newest version matching the glob; for callers that know
        a version's shape but not the index (NVIDIA's ``+cudaX.Y`` builds)."""
        chosen = self.selected.get(name)
        if chosen is not None:
            if not fnmatch.fnmatchcase(chosen.version, pattern):
                raise LockError(f"apt package {name} is requested as both {chosen.version} "
                                f"and {pattern}")
            return
        found = [e for e in self.index.entries(name) if fnmatch.fnmatchcase(e.version, pattern)]
        if not found:
            available = ", ".join(self.index.versions(name)) or "none"
            raise PackageNotFoundError(
                f"apt package {name}={pattern} not found in {self.index.label} "
                f"({self.index.arch}); available versions: {available}")
        self.select(found[0], None)

    def relations(self, entry: _Entry, field: str) -> list[tuple[Relation, ...]]:
        """Parsed relation field of *entry*, with the package named if it is malformed."""
        text = entry.fields.get(field)
        if not text:
            return []
        try:
            return parse_relations(text, self.index.arch)
        except LockError as e:
            raise LockError(f"{field} of {entry.name} {entry.version}: {e}") from e

    def run(self) -> None:
        while self.queue:
            entry = self.queue.popleft()
            for field in ("Pre-Depends", "Depends"):
                for group in self.relations(entry, field):
                    if any(self.satisfied(r) for r in group):
                        continue
                    for rel in group:
                        found = self.candidates(rel)
                        if found:
                            self.select(found[0], entry.name)
                            break
                    else:
                        reasons = "; ".join(self.why_not(r) for r in group)
                        via = " -> ".join(self.chain(entry.name))
                        raise LockError(
                            f"unsatisfiable apt dependency: {entry.name} {entry.version} "
                            f"{field.lower()} on {_format_group(group)}, but {reasons} "
                            f"(via {via})"
                        )

    def check_conflicts(self) -> None:
        """Report Conflicts/Breaks between selected packages (a package may conflict with a
        virtual name it provides itself, the usual Provides+Conflicts+Replaces idiom)."""
        for name in sorted(self.selected):
            entry = self.selected[name]
            for field in ("Conflicts", "Breaks"):
                for group in self.relations(entry, field):
                    for rel in group:
                        hit = self.selected.get(rel.name)
                        if hit is not None and hit is not entry and rel.satisfied_by(hit.version):
                            self._conflict(entry, field, rel, hit, hit.version)
                        for provider, pv in self.provided.get(rel.name, ()):
                            if provider is entry:
                                continue
                            if rel.op is None or (pv is not None and rel.satisfied_by(pv)):
                                self._conflict(entry, field, rel, provider, pv)

    def _conflict(
        self, entry: _Entry, field: str, rel: Relation, other: _Entry, version: str | None
    ) -> None:
        what = other.name if other.name == rel.name else f"{other.name} (provides {rel.name})"
        raise LockError(
            f"selected apt packages conflict: {entry.name} {entry.version} "
            f"{field.lower()} {rel}, and {what} {version or other.version} was selected "
            f"(via {' -> '.join(self.chain(other.name))})"
        )


def _to_package(index: DebIndex, entry: _Entry) -> DebPackage:
    fields = entry.fields
    uri, suite = index.origins[entry.origin]
    filename, sha256, size = (fields.get(k, "").strip() for k in ("Filename", "SHA256", "Size"))
    if not filename or not sha256 or not size or not size.isdigit():
        raise LockError(
            f"index entry {entry.name} {entry.version} ({suite}) lacks Filename/SHA256/Size; "
            "cannot pin it"
        )
    return DebPackage(
        name=entry.name,
        version=entry.version,
        arch=fields.get("Architecture", index.arch),
        filename=filename,
        url=f"{uri}/{filename.removeprefix('./')}",
        sha256=sha256.lower(),
        size=int(size),
        priority=fields.get("Priority", ""),
        essential=fields.get("Essential", "").lower() == "yes",
        source_suite=suite,
        control=_control_text(fields),
    )


def essential_names(index: DebIndex) -> list[str]:
    """The release's Essential set: names whose newest version says ``Essential: yes``."""
    return [name for name in index.names()
            if index.entries(name)[0].fields.get("Essential", "").strip().lower() == "yes"]


def resolve(index: DebIndex, roots: Sequence[str],
            host_provided: Collection[str] = (), *, essential: bool = False
            ) -> list[DebPackage]:
    """Resolve *roots* (``name``, ``name=version`` or ``name=glob``) to a dependency closure,
    sorted by name.

    Roots are selected first, in the given order; then Pre-Depends and Depends are walked
    breadth-first. An OR-group already met by a selected package (by name with a fitting version,
    or through a possibly versioned Provides) is skipped; otherwise its first alternative that
    has a candidate is taken (see ``_Resolver.candidates``). Unsatisfiable dependencies raise
    :class:`LockError` naming the dependency chain; unknown roots raise
    :class:`PackageNotFoundError` with close names. Conflicts/Breaks among the result are an
    error too. With *essential*, the release's Essential packages (:func:`essential_names`)
    are roots after *roots*, so a version the caller pinned wins. A relation on a
    *host_provided* name (real or virtual) is met without installing anything.
    """
    r = _Resolver(index, host_provided)
    for spec in roots:
        r.add_root(spec)
    if essential:
        for name in essential_names(index):
            if name not in r.selected:
                r.add_root(name)
    r.run()
    r.check_conflicts()
    return [_to_package(index, r.selected[n]) for n in sorted(r.selected)]


def auto_installed(packages: Sequence[Mapping[str, Any]], roots: Sequence[str]) -> list[str]:
    """The locked packages apt would mark ``Auto-Installed`` (its ``extended_states``), as
    after a bootstrap: what the Essential set and apt pull in is the base, the caller's roots
    are asked for by name, everything else came in as their dependency. *packages* are the
    lock's apt packages (``name``, ``essential``, ``control``); sorted names."""
    by_name = {p["name"]: p for p in packages}
    provided: dict[str, str] = {}
    for name in sorted(by_name):
        fields = _deb822_paragraphs(by_name[name].get("control", ""))
        for group in parse_relations(fields[0].get("provides", "") if fields else ""):
            provided.setdefault(group[0].name, name)

    def depends(name: str) -> list[str]:
        fields = _deb822_paragraphs(by_name[name].get("control", ""))
        text = ", ".join(fields[0].get(k, "") for k in ("pre-depends", "depends")) \
            if fields else ""
        found = []
        for group in parse_relations(text):
            pick = next((r.name if r.name in by_name else provided[r.name] for r in group
                         if r.name in by_name or r.name in provided), None)
            if pick is not None:
                found.append(pick)
        return found

    base: set[str] = set()
    todo = [n for n, p in by_name.items() if p.get("essential")] + ["apt"]
    while todo:
        name = todo.pop()
        if name in by_name and name not in base:
            base.add(name)
            todo += depends(name)
    return sorted(set(by_name) - base - set(roots))


# --------------------------------------------------------------------------------------------
# apt sources
# --------------------------------------------------------------------------------------------


KEYRING_ENV = "ENVNIX_APT_KEYRING"
"""The keyring(s) an --apt-mirror's InRelease must be signed with (default: the distribution's
archive keyring, as Debian and Ubuntu install it)."""
UNVERIFIED_ENV = "ENVNIX_APT_UNVERIFIED"
"""Set to 1 to lock from indexes whose signature cannot be checked (apt's [trusted=yes])."""
DEFAULT_KEYRINGS = {
    "debian": "/usr/share/keyrings/debian-archive-keyring.gpg",
    "ubuntu": "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
}


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
    if urllib.parse.urlsplit(url).scheme not in _URL_SCHEMES:
        raise UsageError(f"{setting}: an apt repository must be an http(s):// or file:// URL, "
                         f"got {url!r}")
    return AptSource(url.rstrip("/"), "/", (), setting, keyring, keyring_setting)




SNAPSHOT_FORMAT = "%Y%m%dT%H%M%SZ"
"""The archive snapshot services' time stamps (``20260101T000000Z``), in UTC."""

_SNAPSHOT = r"\d{8}T\d{6}Z"
_SNAPSHOT_TAIL_RE = re.compile(rf"/({_SNAPSHOT})$")
_URL_SCHEMES = ("http", "https", "file")

# What an official archive's URI path ends with, per distribution (optionally a snapshot of it):
# the machine's apt sources also list third-party repositories, which must not leak into images.
_ARCHIVE_PATH_RES: dict[str, re.Pattern[str]] = {
    "debian": re.compile(rf"/debian(-security)?(/{_SNAPSHOT})?$"),
    # Ubuntu mirrors and snapshots end in /ubuntu (the -security pocket lives there too);
    # /ubuntu-ports is other architectures.
    "ubuntu": re.compile(rf"/ubuntu(/{_SNAPSHOT})?$"),
}
# Personal package archives end in /ubuntu and reuse the release codename as their suite, so
# the path alone cannot tell them apart; their hosts are named ppa.* / private-ppa.*.
_PPA_HOST_LABELS = ("ppa", "private-ppa")

_NO_SOURCE_MESSAGES = {
    "debian": "no Debian {codename} apt source found in {where}; pass --apt-mirror URL "
              "(the base URL of a Debian mirror, ending in /debian)",
    "ubuntu": "no Ubuntu mirror for {codename}: pass --apt-mirror URL (an Ubuntu archive or "
              "snapshot, e.g. <scheme>://<your mirror>/ubuntu)",
}


def snapshot_of(uri: str) -> str | None:
    """The ``YYYYMMDDTHHMMSSZ`` time a snapshot URL ends with, or None for a plain mirror."""
    m = _SNAPSHOT_TAIL_RE.search(urllib.parse.urlsplit(uri).path.rstrip("/"))
    return m.group(1) if m else None


def check_snapshot(snapshot: str) -> str:
    """*snapshot* if it is a valid ``YYYYMMDDTHHMMSSZ`` time, else a one-line UsageError."""
    try:
        ok = re.fullmatch(_SNAPSHOT, snapshot) is not None and bool(
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
    if parts.scheme not in _URL_SCHEMES:
        return False
    if (parts.hostname or "").split(".", 1)[0] in _PPA_HOST_LABELS:
        return False
    pattern = _ARCHIVE_PATH_RES.get(distro)
    return pattern is not None and bool(pattern.search(parts.path.rstrip("/")))


def _deb822_paragraphs(text: str) -> list[dict[str, str]]:
    """Paragraphs of a deb822 file, keys lower-cased; comment lines may sit inside one."""
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key: str | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                current[key] += " " + line.strip()
        else:
            k, sep, v = line.partition(":")
            if sep:
                key = k.strip().lower()
                current[key] = v.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def _signed_by(value: str) -> str:
    """A Signed-By value as a keyring list: file paths (an inline key block is left to the
    distribution's default keyring)."""
    paths = [p for p in re.split(r"[\s,]+", value) if p.startswith("/")]
    return os.pathsep.join(paths) if "BEGIN PGP" not in value else ""


def _entries_from_deb822(text: str) -> Iterable[tuple[str, str, tuple[str, ...], str]]:
    for p in _deb822_paragraphs(text):
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
    if not found:
        where = ", ".join(str(f) for f in files) or "(no files)"
        template = _NO_SOURCE_MESSAGES.get(distro)
        if template is None:
            raise LockError(f"envnix cannot read {distro} apt sources; pass --apt-mirror URL")
        raise LockError(template.format(codename=codename, where=where))
    ordered = sorted(found.items(), key=lambda kv: rank[kv[0][1]])  # stable: file order kept
    default = DEFAULT_KEYRINGS.get(distro, "")
    return [
        AptSource(uri, suite, tuple(components) if components else tuple(comps) or ("main",),
                  keyring=keyrings.get((uri, suite), default),
                  keyring_setting="Signed-By in the machine's apt sources")
        for (uri, suite), comps in ordered
    ]


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
        if urllib.parse.urlsplit(url).scheme not in _URL_SCHEMES:
            raise UsageError(f"apt mirror must be an http(s):// or file:// URL, got {url!r}")
        if snapshot is not None:
            url = at_snapshot(url, snapshot)
        keyring = os.environ.get(KEYRING_ENV) or DEFAULT_KEYRINGS.get(distro, "")
        out += [AptSource(url.rstrip("/"), codename + s, tuple(components), keyring=keyring)
                for s in suites]
    return out


# --------------------------------------------------------------------------------------------
# Fetching indexes
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/envnix/apt``, default ``~/.cache/envnix/apt``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "envnix" / "apt"


def _human_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _reason(err: object) -> str:
    if isinstance(err, TimeoutError):
        return f"timed out after {HTTP_TIMEOUT:g} s"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err) or type(err).__name__
    return " ".join(text.split())


def _http_get(url: str, *, missing_ok: bool = False,
              setting: str = "--apt-mirror") -> bytes | None:
    """GET *url* (proxies and CAs from the environment, as urllib does by default).

    Returns None for "not found" when *missing_ok*; any other failure is a one-line FetchError
    that says which *setting* to check.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "envnix"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return response.read()
    except urllib.error.HTTPError as e:
        if missing_ok and e.code in (404, 410):
            return None
        raise FetchError(f"cannot fetch {url}: HTTP {e.code} {_reason(e.reason)}") from e
    except urllib.error.URLError as e:
        if missing_ok and isinstance(e.reason, FileNotFoundError):
            return None
        raise FetchError(f"cannot reach {url}: {_reason(e.reason)}; check {setting}") from e
    except (OSError, http.client.HTTPException) as e:
        raise FetchError(f"cannot reach {url}: {_reason(e)}; check {setting}") from e


def _strip_clearsign(text: str) -> str:
    """The signed body of a clearsigned InRelease (signature NOT checked), or *text* as is."""
    if not text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        return text
    start = text.find("\n\n")
    end = text.find("\n-----BEGIN PGP SIGNATURE-----")
    if start < 0 or end < start:
        raise LockError("malformed InRelease: cannot find the signed message body")
    lines = text[start + 2:end].split("\n")
    return "\n".join(line[2:] if line.startswith("- ") else line for line in lines)


@dataclass(frozen=True)
class Release:
    """The parts of a Release file envnix uses."""

    fields: dict[str, str]
    sha256: dict[str, tuple[str, int]]  # path below dists/<suite>/ -> (sha256, size)

    @property
    def by_hash(self) -> bool:
        return self.fields.get("Acquire-By-Hash", "").lower() == "yes"


def parse_release(text: str) -> Release:
    """Parse an InRelease or Release file's fields and SHA256 checksum list."""
    fields: dict[str, str] = {}
    sums: dict[str, tuple[str, int]] = {}
    current: str | None = None
    for line in _strip_clearsign(text).splitlines():
        if line[:1] in (" ", "\t"):
            if current == "SHA256":
                parts = line.split()
                if len(parts) == 3 and parts[1].isdigit():
                    sums[parts[2]] = (parts[0].lower(), int(parts[1]))
            continue
        key, sep, value = line.partition(":")
        if sep:
            current = key.strip()
            fields[current] = value.strip()
    return Release(fields, sums)


def _verified(data: bytes, sha256: str, size: int) -> bool:
    return len(data) == size and hashlib.sha256(data).hexdigest() == sha256


def _decompress(data: bytes, ext: str, url: str) -> str:
    try:
        if ext == ".xz":
            raw = lzma.decompress(data)
        elif ext == ".gz":
            raw = gzip.decompress(data)
        else:
            raw = data
    except (lzma.LZMAError, OSError, EOFError, zlib.error) as e:
        raise FetchError(f"corrupt index {url}: {_reason(e)}") from e
    return raw.decode("utf-8", errors="replace")


def fetch_release(source: AptSource) -> Release:
    """Fetch, verify and parse a suite's InRelease (or Release + Release.gpg): what is current,
    and its hashes.

    A mirror without the suite (e.g. a Debian mirror given for an Ubuntu release) is one
    LockError line naming the missing file (a setting to fix, not a network failure); a
    signature that does not check out is one LockError line, and nothing of that index is
    used.
    """
    base = source.dist_url
    raw = _http_get(f"{base}/InRelease", missing_ok=True, setting=source.setting)
    if raw is not None:
        return parse_release(verify_release(source, f"{base}/InRelease", raw))
    raw = _http_get(f"{base}/Release", missing_ok=True, setting=source.setting)
    if raw is None:
        what = ("a flat apt repository (InRelease next to Packages)" if source.flat
                else f"the {source.suite} suite")
        # The mirror answered, without this suite: a setting to fix, not a retry (so not 8).
        raise LockError(f"cannot fetch {base}/Release (nor InRelease): not found; does "
                        f"{source.uri} carry {what}? check {source.setting}")
    signature = _http_get(f"{base}/Release.gpg", missing_ok=True, setting=source.setting)
    return parse_release(verify_release(source, f"{base}/Release", raw, signature))


def verify_release(source: AptSource, url: str, raw: bytes,
                   detached: bytes | None = None) -> str:
    """The text of a Release file that ``gpgv`` found signed by the source's keyring.

    A clearsigned InRelease yields the body gpgv says was signed (never text outside the
    signature); a Release comes with its detached ``Release.gpg``. ENVNIX_APT_UNVERIFIED=1
    skips the check (apt's ``[trusted=yes]``) for archives without keys to check against.
    """
    if os.environ.get(UNVERIFIED_ENV) == "1":
        return raw.decode("utf-8", errors="replace")
    hint = (f"set {source.keyring_setting} to the archive's public keyring, or "
            f"{UNVERIFIED_ENV}=1 to lock from it unverified")
    keyrings = [k for k in source.keyring.split(os.pathsep) if k]
    if not keyrings:
        raise LockError(f"cannot verify {url}: no keyring is known for {source.uri}", hint=hint)
    for keyring in keyrings:
        if not Path(keyring).is_file():
            raise LockError(f"cannot verify {url}: keyring {keyring} does not exist", hint=hint)
    clearsigned = b"-----BEGIN PGP SIGNED MESSAGE-----" in raw
    if detached is None and not clearsigned:
        raise LockError(f"{url} is not signed (no Release.gpg either)", hint=hint)
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise ToolMissingError("gpgv is not installed; it checks the archive's signatures",
                               hint="apt-get install gpgv")
    with tempfile.TemporaryDirectory(prefix="envnix-gpgv-") as tmp:
        work = Path(tmp)
        args = [gpgv, "--homedir", str(work)]
        for i, keyring in enumerate(keyrings):
            args += ["--keyring", str(_binary_keyring(Path(keyring), work / f"keyring{i}.gpg"))]
        (work / "signed").write_bytes(raw)
        if detached is None:
            args += ["--output", str(work / "body"), str(work / "signed")]
        else:
            (work / "signature").write_bytes(detached)
            args += [str(work / "signature"), str(work / "signed")]
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            lines = [line.removeprefix("gpgv: ") for line in proc.stderr.splitlines()
                     if line.strip()]
            why = next((line for line in lines if "BAD signature" in line or "No public key"
                        in line or "Can't check" in line), lines[-1] if lines else "no reason")
            raise LockError(f"{url}: signature check failed against "
                            f"{', '.join(keyrings)}: {why}", hint=hint)
        body = (work / "body").read_bytes() if detached is None else raw
    return body.decode("utf-8", errors="replace")


_ARMOR_RE = re.compile(rb"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY "
                       rb"BLOCK-----", re.S)


def _binary_keyring(path: Path, scratch: Path) -> Path:
    """*path* as gpgv reads keyrings: an ASCII-armored key file (``.asc``, as vendors publish
    them) is decoded into *scratch*; a binary one is used as it is."""
    data = path.read_bytes()
    blocks = _ARMOR_RE.findall(data)
    if not blocks:
        return path
    binary = b""
    for block in blocks:
        body = block.split(b"\n\n", 1)[-1] if b"\n\n" in block else block
        lines = [line.strip() for line in body.splitlines()
                 if line.strip() and not line.startswith(b"=")]
        binary += base64.b64decode(b"".join(lines))
    scratch.write_bytes(binary)
    return scratch


def release_has(release: Release, component: str) -> bool:
    """Whether *release* lists a Packages index of *component* for our architecture."""
    stem = f"{component}/binary-{ARCH}/Packages"
    return any(stem + ext in release.sha256 for ext in (".xz", ".gz"))


def release_lacks(release: Release, component: str) -> bool:
    """True when the Release says the suite has no *component* at all (its ``Components:``
    field leaves it out), as Ubuntu's and Debian's archives do for pockets that are partial;
    without that field an unlisted index is an error, not an absence. Debian's security
    archive spells its components ``updates/main``."""
    listed = release.fields.get("Components")
    return listed is not None and component not in {c.rsplit("/", 1)[-1]
                                                     for c in listed.split()}


def fetch_index(
    source: AptSource,
    component: str,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    release: Release | None = None,
) -> tuple[IndexSnapshot, str]:
    """Fetch one ``<component>/binary-amd64/Packages`` index; return its snapshot and text.

    The (In)Release file is always fetched (it says what is current) unless the caller has
    just done so (*release*); the Packages.xz it names is taken from the cache when a verified
    copy is there, else downloaded by its by-hash URL (immutable, so the recorded URL keeps
    meaning the same bytes) with a fallback to the plain path, and checked against the Release
    sha256 and size.

    The Release it reads was verified by :func:`fetch_release`.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    base = source.dist_url
    if release is None:
        release = fetch_release(source)

    # A flat repository has one index, next to its InRelease (NVIDIA's: Packages{,.gz}).
    directory = "" if source.flat else f"{component}/binary-{ARCH}/"
    stem = f"{directory}Packages"
    exts = (".xz", ".gz", "") if source.flat else (".xz", ".gz")
    ext = next((e for e in exts if stem + e in release.sha256), None)
    if ext is None:
        if source.flat:
            raise LockError(f"{base}/InRelease lists no Packages index; is {source.uri} a flat "
                            f"apt repository? check {source.setting}")
        raise LockError(f"{base}/InRelease lists no {stem}.xz; is {component} a component "
                        f"of {source.suite} on this mirror?")
    sha256, size = release.sha256[stem + ext]
    plain_url = f"{base}/{stem}{ext}"
    by_hash_url = f"{base}/{directory}by-hash/SHA256/{sha256}"
    url = by_hash_url if release.by_hash else plain_url
    label = (f"{source.uri} index ({_human_size(size)})" if source.flat
             else f"{source.suite} {component} index ({_human_size(size)})")

    cached = cache / f"{sha256}{ext}"
    data: bytes | None = None
    with contextlib.suppress(OSError):
        data = cached.read_bytes()
    if data is not None and _verified(data, sha256, size):
        if progress:
            progress(f"apt: using cached {label}")
    else:
        if progress:
            progress(f"apt: fetching {label}")
        data = (_http_get(url, missing_ok=True, setting=source.setting) if release.by_hash
                else None)
        if data is None:
            url = plain_url
            data = _http_get(url, setting=source.setting)
        assert data is not None
        if not _verified(data, sha256, size):
            raise FetchError(
                f"index {url} does not match its Release entry (sha256 {sha256[:12]}..., "
                f"{size} bytes); the mirror may be syncing, retry later"
            )
        with contextlib.suppress(OSError):  # the cache only saves time: a read-only
            cached.parent.mkdir(parents=True, exist_ok=True)  # home must not fail the lock
            atomic_write(cached, data)
    text = _decompress(data, ext, url)
    snapshot = IndexSnapshot(source.uri.rstrip("/"), source.suite, component, url, sha256, size)
    return snapshot, text


def load_index(
    sources: Sequence[AptSource],
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> tuple[list[IndexSnapshot], DebIndex]:
    """Fetch every component of every source and merge them into one :class:`DebIndex`.

    A component that a suite's Release says it does not have is skipped (Ubuntu's and
    Debian's -updates/-security pockets need not carry every component); one that no suite
    has at all is an error, since its packages could never be found. A flat repository has
    one index and no components.
    """
    if not sources:
        raise LockError("no apt sources given; pass --apt-mirror URL")
    index = DebIndex(label=sources[0].suite)
    snapshots: list[IndexSnapshot] = []
    seen: dict[str, bool] = {}
    for source in sources:
        release = fetch_release(source)
        if source.flat:
            snapshot, text = fetch_index(source, "", cache_dir, progress, release)
            index.add_packages_text(text, source.files_url, source.suite)
            snapshots.append(snapshot)
            continue
        for component in source.components:
            seen.setdefault(component, False)
            if not release_has(release, component) and release_lacks(release, component):
                if progress:
                    progress(f"apt: {source.suite} has no {component} component; skipped")
                continue
            snapshot, text = fetch_index(source, component, cache_dir, progress, release)
            index.add_packages_text(text, source.uri, source.suite)
            snapshots.append(snapshot)
            seen[component] = True
    missing = [c for c, found in seen.items() if not found]
    if missing:
        uris = ", ".join(dict.fromkeys(s.uri for s in sources if not s.flat))
        suites = ", ".join(s.suite for s in sources if not s.flat)
        raise LockError(f"no suite ({suites}) on {uris} has the {' '.join(missing)} "
                        "component; point --apt-mirror at an archive that carries it")
    return snapshots, index


def lock_apt(
    sources: Sequence[AptSource],
    roots: Sequence[str],
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    *,
    host_provided: Collection[str] = (),
    check: Callable[[DebIndex], None] | None = None,
    essential: bool = False,
) -> tuple[list[IndexSnapshot], list[DebPackage]]:
    """Fetch the indexes of *sources* and resolve *roots*: everything ``envnix lock`` needs.

    *host_provided*: see :func:`resolve`. *check* sees the merged index before resolving, so
    a caller can say what the sources lack in its own terms (which CUDA releases they have)
    rather than as a missing package name. *essential*: see :func:`resolve`.
    """
    started = time.monotonic()
    snapshots, index = load_index(sources, cache_dir, progress)
    if check is not None:
        check(index)
    packages = resolve(index, roots, host_provided, essential=essential)
    if progress:
        total = sum(p.size for p in packages)
        progress(f"apt: resolved {len(packages)} packages ({_human_size(total)}) "
                 f"in {time.monotonic() - started:.1f} s")
    return snapshots, packages

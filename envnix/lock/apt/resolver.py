"""Choose the packages an image installs from a :class:`DebIndex`: breadth-first, no
backtracking, so every choice is deterministic and explainable (see :func:`resolve`)."""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from envnix.core.errors import LockError, PackageNotFoundError
from envnix.lock.apt.index import (
    DebIndex,
    DebPackage,
    Entry,
    deb822_paragraphs,
    essential_names,
    to_package,
)
from envnix.lock.apt.relations import Relation, format_group, parse_relations

# Every envnix image is merged-/usr by construction (the skeleton layer links bin, sbin and
# lib into usr). Debian declares that with the tiny ``usr-is-merged``, as debootstrap and
# mmdebstrap do; the first alternative of ``usrmerge | usr-is-merged`` (init-system-helpers)
# would instead convert a split system at install time and pull in perl, ~45 MB unpacked.
LAYOUT_FACTS = ("usr-is-merged",)


def _layout_first(group: tuple[Relation, ...]) -> tuple[Relation, ...]:
    """``group`` with the alternatives that state a fact of envnix's image layout first."""
    return tuple(sorted(group, key=lambda rel: rel.name not in LAYOUT_FACTS))


class _PreferenceClash(Exception):
    """A kept pin (``preferred``) stands in the way of a dependency: resolve again without it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _Resolver:
    """Breadth-first closure over Pre-Depends + Depends; see :func:`resolve`."""

    def __init__(self, index: DebIndex, host_provided: Collection[str] = (),
                 preferred: Mapping[str, str] | None = None,
                 installed: Sequence[Entry] = ()) -> None:
        self.index = index
        self.host_provided = frozenset(host_provided)
        self.preferred = dict(preferred or {})
        self.selected: dict[str, Entry] = {}
        self.parent: dict[str, str | None] = {}
        self.provided: dict[str, list[tuple[Entry, str | None]]] = {}
        self.queue: deque[Entry] = deque()
        for entry in installed:  # met already: their own dependencies are the base's affair
            self.select(entry, None)
        self.installed = {e.name: e for e in installed}
        self.queue.clear()

    def select(self, entry: Entry, parent: str | None) -> None:
        replaced = self.selected.get(entry.name)
        if replaced is not None:  # an upgrade of an installed package: its Provides go
            for rel in replaced.provides:
                self.provided[rel.name] = [p for p in self.provided[rel.name]
                                           if p[0] is not replaced]
        self.selected[entry.name] = entry
        self.parent[entry.name] = parent
        for rel in entry.provides:
            self.provided.setdefault(rel.name, []).append(
                (entry, rel.version if rel.op == "=" else None)
            )
        self.queue.append(entry)

    def replaceable(self, name: str) -> bool:
        """Free to take from the index: not selected yet, or only installed (an upgrade)."""
        entry = self.selected.get(name)
        return entry is None or entry is self.installed.get(name)

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

    def candidates(self, rel: Relation) -> list[Entry]:
        """Real packages newest first, then providers (a versioned relation needs a versioned
        Provides that satisfies it) by Priority then name. Names already selected are out:
        only one version of a package can be installed."""
        out = [
            e for e in self.index.entries(rel.name)
            if self.replaceable(e.name) and rel.satisfied_by(e.version)
        ]
        for entry, provided_version in self.index.providers(rel.name):
            if not self.replaceable(entry.name) or entry in out:
                continue
            if rel.op is not None and (
                provided_version is None or not rel.satisfied_by(provided_version)
            ):
                continue
            out.append(entry)
        return self.prefer(out)

    def prefer(self, entries: list[Entry]) -> list[Entry]:
        """``entries`` with each name's preferred (kept) version first among that name's
        versions; the order between names stays."""
        if not self.preferred:
            return entries
        groups: dict[str, list[Entry]] = {}
        for e in entries:
            groups.setdefault(e.name, []).append(e)
        return [e for name, group in groups.items()
                for e in sorted(group, key=lambda e: e.version != self.preferred.get(name))]

    def kept(self, name: str) -> bool:
        """True when ``name`` was selected at its preferred version."""
        entry = self.selected.get(name)
        return entry is not None and entry.version == self.preferred.get(name)

    def clash(self, rel: Relation) -> None:
        """Raise _PreferenceClash when a kept pin of ``rel.name`` is what fails ``rel`` and
        the index has a version that would meet it."""
        if self.kept(rel.name) and any(rel.satisfied_by(e.version)
                                       for e in self.index.entries(rel.name)):
            raise _PreferenceClash(rel.name)

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
        if chosen is not None and not (chosen is self.installed.get(name)
                                       and not rel.satisfied_by(chosen.version)):
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
        found = self.prefer([e for e in self.index.entries(name)
                             if fnmatch.fnmatchcase(e.version, pattern)])
        if not found:
            available = ", ".join(self.index.versions(name)) or "none"
            raise PackageNotFoundError(
                f"apt package {name}={pattern} not found in {self.index.label} "
                f"({self.index.arch}); available versions: {available}")
        self.select(found[0], None)

    def relations(self, entry: Entry, field: str) -> list[tuple[Relation, ...]]:
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
                    for rel in _layout_first(group):
                        found = self.candidates(rel)
                        if found:
                            self.select(found[0], entry.name)
                            break
                    else:
                        for rel in group:
                            self.clash(rel)
                        reasons = "; ".join(self.why_not(r) for r in group)
                        via = " -> ".join(self.chain(entry.name))
                        raise LockError(
                            f"unsatisfiable apt dependency: {entry.name} {entry.version} "
                            f"{field.lower()} on {format_group(group)}, but {reasons} "
                            f"(via {via})"
                        )

    def check_conflicts(self) -> None:
        """Report Conflicts/Breaks between selected packages (a package may conflict with a
        virtual name it provides itself, the usual Provides+Conflicts+Replaces idiom)."""
        base = set(map(id, self.installed.values()))  # the base's own clashes are its own
        for name in sorted(self.selected):
            entry = self.selected[name]
            for field in ("Conflicts", "Breaks"):
                for group in self.relations(entry, field):
                    for rel in group:
                        hit = self.selected.get(rel.name)
                        if (hit is not None and hit is not entry and rel.satisfied_by(hit.version)
                                and not {id(hit), id(entry)} <= base):
                            self._conflict(entry, field, rel, hit, hit.version)
                        for provider, pv in self.provided.get(rel.name, ()):
                            if provider is entry or {id(provider), id(entry)} <= base:
                                continue
                            if rel.op is None or (pv is not None and rel.satisfied_by(pv)):
                                self._conflict(entry, field, rel, provider, pv)

    def _conflict(
        self, entry: Entry, field: str, rel: Relation, other: Entry, version: str | None
    ) -> None:
        for name in (other.name, entry.name):
            if self.kept(name):
                raise _PreferenceClash(name)
        what = other.name if other.name == rel.name else f"{other.name} (provides {rel.name})"
        raise LockError(
            f"selected apt packages conflict: {entry.name} {entry.version} "
            f"{field.lower()} {rel}, and {what} {version or other.version} was selected "
            f"(via {' -> '.join(self.chain(other.name))})"
        )


def resolve(index: DebIndex, roots: Sequence[str],
            host_provided: Collection[str] = (), *, essential: bool = False,
            preferred: Mapping[str, str] | None = None,
            installed: Sequence[Entry] = ()) -> list[DebPackage]:
    """Resolve *roots* (``name``, ``name=version`` or ``name=glob``) to a dependency closure,
    sorted by name.

    Roots are selected first, in the given order; then Pre-Depends and Depends are walked
    breadth-first. An OR-group already met by a selected package (by name with a fitting version,
    or through a possibly versioned Provides) is skipped; otherwise its first alternative that
    has a candidate is taken (see ``_Resolver.candidates``), an alternative that states a fact
    of the image layout (:data:`LAYOUT_FACTS`) before the others. Unsatisfiable dependencies raise
    :class:`LockError` naming the dependency chain; unknown roots raise
    :class:`PackageNotFoundError` with close names. Conflicts/Breaks among the result are an
    error too. With *essential*, the release's Essential packages (:func:`essential_names`)
    are roots after *roots*, so a version the caller pinned wins. A relation on a
    *host_provided* name (real or virtual) is met without installing anything.

    *preferred* (name -> version: the pins of the lock being redone) is taken before the
    newest version wherever it meets the relation, so a re-lock moves only what changed. A kept
    pin that fails a dependency or conflicts is dropped and the resolution starts again, until
    nothing clashes: what an upgraded package needs moves with it.

    *installed* (a base image's dpkg status, :func:`installed_entries`) are there already:
    they meet relations as selected packages do and are not returned, unless a relation or
    a root needs another version, which is then taken from the index (apt's upgrade).
    """
    preferred = dict(preferred or {})
    while True:
        r = _Resolver(index, host_provided, preferred, installed)
        try:
            for spec in roots:
                r.add_root(spec)
            if essential:
                for name in essential_names(index):
                    if name not in r.selected:
                        r.add_root(name)
            r.run()
            r.check_conflicts()
        except _PreferenceClash as clash:
            del preferred[clash.name]
            continue
        return [to_package(index, r.selected[n]) for n in sorted(r.selected)
                if r.selected[n] is not r.installed.get(n)]


def auto_installed(packages: Sequence[Mapping[str, Any]], roots: Sequence[str]) -> list[str]:
    """The locked packages apt would mark ``Auto-Installed`` (its ``extended_states``), as
    after a bootstrap: what the Essential set and apt pull in is the base, the caller's roots
    are asked for by name, everything else came in as their dependency. *packages* are the
    lock's apt packages (``name``, ``essential``, ``control``); sorted names."""
    by_name = {p["name"]: p for p in packages}
    provided: dict[str, str] = {}
    for name in sorted(by_name):
        fields = deb822_paragraphs(by_name[name].get("control", ""))
        for group in parse_relations(fields[0].get("provides", "") if fields else ""):
            provided.setdefault(group[0].name, name)

    def depends(name: str) -> list[str]:
        fields = deb822_paragraphs(by_name[name].get("control", ""))
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

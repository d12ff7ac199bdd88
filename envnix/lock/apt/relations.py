"""Debian relation fields (Depends, Provides, Conflicts...): parsed once here into
:class:`Relation` groups that the index and the resolver both match versions against."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from envnix.core.errors import LockError
from envnix.lock.apt.version import version_compare

ARCH = "amd64"
"""The default target architecture (``--platform`` picks another); ``Architecture: all``
packages are accepted too."""


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


def format_group(group: Sequence[Relation]) -> str:
    return " | ".join(str(r) for r in group)

"""What changed between two locks: packages added, removed and changed, per installer.

Why here: a lock is the whole truth about an image's inputs, so comparing two of them tells a
reviewer what a re-lock moved without building either image. An artifact whose version stayed
but whose sha256 moved (a rebuilt wheel, a re-uploaded conda package) counts as changed too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envnix.core import schema as S
from envnix.lock.model import Lock

__all__ = ["LockDiff", "SectionDiff", "diff_locks"]

SECTIONS = ("apt", "pip", "conda")


@dataclass(frozen=True)
class SectionDiff:
    """One installer's packages: (name, version) added and removed, (name, old, new) changed."""

    added: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    changed: list[tuple[str, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {"added": [{"name": n, "version": v} for n, v in self.added],
                "removed": [{"name": n, "version": v} for n, v in self.removed],
                "changed": [{"name": n, "from": a, "to": b} for n, a, b in self.changed]}


@dataclass(frozen=True)
class LockDiff:
    sections: dict[str, SectionDiff]
    base: tuple[str | None, str | None] | None  # (old, new) base image, when it changed

    def __bool__(self) -> bool:
        return self.base is not None or any(self.sections.values())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "lock", "differ": bool(self),
                **{name: d.to_dict() for name, d in self.sections.items()},
                "base": None if self.base is None
                else {"from": self.base[0], "to": self.base[1]}}

    def lines(self) -> list[str]:
        """For people: one summary line per installer that changed, then one per package."""
        out = []
        if self.base is not None:
            out.append(f"base: {self.base[0] or '(none)'} -> {self.base[1] or '(none)'}")
        for name, d in self.sections.items():
            if not d:
                continue
            out.append(f"{name}: {len(d.added)} added, {len(d.removed)} removed, "
                       f"{len(d.changed)} changed")
            rows = [(n, f"+ {n} {v}") for n, v in d.added]
            rows += [(n, f"- {n} {v}") for n, v in d.removed]
            rows += [(n, f"~ {n} {a} -> {b}") for n, a, b in d.changed]
            out += [f"  {text}" for _, text in sorted(rows)]
        return out or ["no differences"]


def _version(section: str, entry: dict[str, Any]) -> str:
    if section == "conda":
        return f"{entry['version']}-{entry['build']}"
    return str(entry["version"])


def _entries(lock: Lock, section: str) -> dict[str, dict[str, Any]]:
    if section == "apt":
        return {p["name"]: p for p in lock.apt_packages}
    if section == "pip":
        return {S.pep503(w["name"]): w for w in [*lock.pip_wheels, *lock.sdists]}
    return {p["name"]: p for p in lock.conda_packages}


def _section(old: Lock, new: Lock, section: str) -> SectionDiff:
    before, after = _entries(old, section), _entries(new, section)
    result = SectionDiff()
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        if a is None and b is not None:
            result.added.append((name, _version(section, b)))
        elif b is None and a is not None:
            result.removed.append((name, _version(section, a)))
        elif a is not None and b is not None and a["sha256"] != b["sha256"]:
            va, vb = _version(section, a), _version(section, b)
            if va == vb:  # same version, other bytes: say so rather than "1.0 -> 1.0"
                va, vb = f"{va} (sha256 {a['sha256'][:12]})", f"{vb} (sha256 {b['sha256'][:12]})"
            result.changed.append((name, va, vb))
    return result


def _base(lock: Lock) -> str | None:
    return f"{lock.base['ref'].split('@')[0]}@{lock.base['digest']}" if lock.base else None


def diff_locks(old: Lock, new: Lock) -> LockDiff:
    """``old`` -> ``new``: what a reviewer of a re-lock wants to see."""
    base = (_base(old), _base(new))
    return LockDiff({s: _section(old, new, s) for s in SECTIONS},
                    None if base[0] == base[1] else base)

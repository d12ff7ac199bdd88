"""envnix.lock: every artifact of an image with URL, sha256 and size, plus the inputs it answers.

The file is JSON with sorted keys and two-space indents: deterministic bytes for the same inputs,
readable in a diff, and loadable by Nix itself (``builtins.fromJSON``). It records the *requests*
it was made from, so ``envnix lock --check`` can say exactly what changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envnix import __version__
from envnix.errors import LockError
from envnix.fileio import atomic_write

LOCK_NAME = "envnix.lock"
LOCK_VERSION = 1


@dataclass
class Lock:
    """In-memory form of envnix.lock. Package entries are plain dicts (see to_lock_dict)."""

    inputs: dict[str, Any]
    apt_sources: list[dict[str, Any]] = field(default_factory=list)
    apt_indexes: list[dict[str, Any]] = field(default_factory=list)
    apt_packages: list[dict[str, Any]] = field(default_factory=list)
    pip_wheels: list[dict[str, Any]] = field(default_factory=list)
    conda_channels: list[dict[str, Any]] = field(default_factory=list)
    conda_packages: list[dict[str, Any]] = field(default_factory=list)
    # base(image=...): the pinned base image (envnix.lock.image.resolve_base); None otherwise.
    base: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "lock-version": LOCK_VERSION,
            "created-by": f"envnix {__version__}",
            "inputs": self.inputs,
            "apt": {
                "sources": self.apt_sources,
                "indexes": self.apt_indexes,
                "packages": sorted(self.apt_packages, key=lambda p: p["name"]),
            },
            "pip": {"wheels": sorted(self.pip_wheels, key=lambda w: w["name"])},
            "conda": {
                "channels": self.conda_channels,
                "packages": sorted(self.conda_packages, key=lambda p: p["name"]),
            },
        }
        if self.base is not None:  # only then: locks of other images keep their bytes
            data["base"] = self.base
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.dumps().encode()).hexdigest()

    @classmethod
    def loads(cls, text: str, origin: str = LOCK_NAME) -> Lock:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LockError(f"{origin}: not valid JSON (line {exc.lineno}): {exc.msg}",
                            hint="delete it and run envnix lock") from None
        if data.get("lock-version") != LOCK_VERSION:
            raise LockError(f"{origin}: lock-version {data.get('lock-version')!r} is not "
                            f"{LOCK_VERSION}", hint="run envnix lock to rewrite it")
        return cls(
            inputs=data["inputs"],
            apt_sources=data["apt"]["sources"],
            apt_indexes=data["apt"]["indexes"],
            apt_packages=data["apt"]["packages"],
            pip_wheels=data["pip"]["wheels"],
            conda_channels=data.get("conda", {}).get("channels", []),
            conda_packages=data.get("conda", {}).get("packages", []),
            base=data.get("base"),
        )

    def artifacts(self) -> list[dict[str, Any]]:
        return [*self.apt_packages, *self.conda_packages, *self.pip_wheels]


def read_lock(path: Path) -> Lock | None:
    if not path.exists():
        return None
    return Lock.loads(path.read_text(encoding="utf-8"), origin=str(path))


def write_lock(path: Path, lock: Lock) -> bool:
    """Write atomically (temp file + rename): a crash never leaves half a lock. True if changed."""
    text = lock.dumps()
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    atomic_write(path, text)
    return True


def stale_reason(lock: Lock, inputs: dict[str, Any]) -> str | None:
    """One line saying how ``inputs`` differ from what the lock was made for, or None."""
    old = lock.inputs
    for section in sorted(set(old) | set(inputs)):
        before, after = old.get(section), inputs.get(section)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            for key in sorted(set(before) | set(after)):
                if before.get(key) != after.get(key):
                    return f"{section} {key} changed: " + _describe_change(before.get(key),
                                                                          after.get(key))
        return f"{section} changed"
    return None


def _describe_change(before: Any, after: Any) -> str:
    if isinstance(before, list) and isinstance(after, list):
        added = [x for x in after if x not in before]
        removed = [x for x in before if x not in after]
        parts = []
        if added:
            parts.append("added " + ", ".join(map(str, added)))
        if removed:
            parts.append("removed " + ", ".join(map(str, removed)))
        return "; ".join(parts) or "reordered"
    return f"{before!r} -> {after!r}"

"""Lock: resolve an ImageSpec's apt and pip requests into pinned artifacts (envnix.lock).

Only this stage touches package indexes. Its output, the lock, is sufficient to rebuild the
image with no resolver and no index access.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envnix.errors import LockError
from envnix.lock import debian, pip
from envnix.lock.lockfile import LOCK_NAME, Lock, read_lock, stale_reason, write_lock
from envnix.spec import ImageSpec

__all__ = ["LOCK_NAME", "Lock", "apt_sources", "lock_inputs", "make_lock", "read_lock",
           "stale_reason", "write_lock"]

Progress = Callable[[str], None]


def lock_inputs(spec: ImageSpec, context: Path) -> dict[str, Any]:
    """What the lock answers: the requests, not the machine. A change here makes it stale."""
    python = spec.python
    return {
        "apt": {"release": spec.os.codename, "architecture": "amd64",
                "packages": spec.apt_roots()},
        "pip": {
            "python": python.version if python else None,
            "platform": pip.manylinux_platform(spec.os.glibc),
            "requirements": pip.requirements_text(spec.pip, context).splitlines(),
            "index": spec.pip.index_url,
            "extra-index": spec.pip.extra_index_urls,
        },
    }


def apt_sources(codename: str, mirror: str | None = None,
                security_mirror: str | None = None) -> list[debian.AptSource]:
    """Where Debian indexes come from: --apt-mirror / ENVNIX_APT_MIRROR, else the machine's."""
    mirror = mirror or os.environ.get("ENVNIX_APT_MIRROR")
    security_mirror = security_mirror or os.environ.get("ENVNIX_APT_SECURITY_MIRROR")
    if mirror:
        return debian.sources_for_mirror(mirror, codename, security_mirror=security_mirror)
    return debian.machine_apt_sources(codename)


def make_lock(spec: ImageSpec, context: Path, sources: list[debian.AptSource],
              progress: Progress | None = None) -> Lock:
    """Resolve everything the spec asks for. Network access happens here and only here."""
    if spec.python is None:
        raise LockError("the image has no Python; nothing to lock pip packages for")
    indexes, packages = debian.lock_apt(sources, spec.apt_roots(), progress=progress)
    wheels = pip.lock_pip(spec.pip, context, spec.python.version, spec.os.glibc, progress)
    return Lock(
        inputs=lock_inputs(spec, context),
        apt_sources=[{"uri": s.uri, "suite": s.suite, "components": list(s.components)}
                     for s in sources],
        apt_indexes=[i.to_lock_dict() for i in indexes],
        apt_packages=[p.to_lock_dict() for p in packages],
        pip_wheels=[w.to_lock_dict() for w in wheels],
    )

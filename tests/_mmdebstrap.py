"""The conventional root a yardstick test compares an image with: mmdebstrap of the same
packages from this machine's Debian mirror.

mmdebstrap runs with its ``merged-usr`` hooks, which set /usr up as debootstrap (and so
Debian's official images) does: directory symlinks, then ``usr-is-merged`` installed before the
Essential set. Without them apt meets init-system-helpers' ``usrmerge | usr-is-merged`` and
takes the first, which pulls perl: a yardstick holding perl that neither Debian's images nor
envnix's (whose resolver takes usr-is-merged) have.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from envnix.lock.apt.sources import machine_apt_sources

MERGED_USR_HOOKS = "/usr/share/mmdebstrap/hooks/merged-usr"


def mmdebstrap(packages: list[str], dest: Path, release: str = "bookworm",
               dpkgopts: Sequence[str] = ()) -> Path:
    """``mmdebstrap --variant=apt`` of ``packages`` into ``dest``; returns ``dest``.
    ``dpkgopts``: dpkg.cfg lines for the packages' installation (a slim image's
    ``path-exclude=...``)."""
    lines = [f"deb {s.uri} {s.suite} {' '.join(s.components)}"
             for s in machine_apt_sources(release)]
    subprocess.run(["mmdebstrap", "--variant=apt", f"--hook-dir={MERGED_USR_HOOKS}",
                    *(f"--dpkgopt={o}" for o in dpkgopts),
                    "--include=" + ",".join(packages), release, str(dest), *lines],
                   check=True, capture_output=True)
    return dest

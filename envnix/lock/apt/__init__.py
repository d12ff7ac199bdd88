"""Lock Debian packages by hash without apt: read apt sources, fetch Packages indexes, resolve.

The result of a lock is a sorted list of :class:`DebPackage` pins (URL, sha256, size and the
control fields a dpkg status entry needs) plus :class:`IndexSnapshot` records naming the exact
Packages index every pin came from. The Nix build later only fetches the pinned .debs.

Scope and deliberate limits (background: the team's locking notes, §6 Debian):

* one architecture per lock (``amd64`` or ``arm64``, plus ``all``); ``:any``/``:native``
  qualifiers are ignored;
* Pre-Depends + Depends only (no Recommends), breadth-first, no backtracking: every choice is
  the first alternative with a candidate, newest version first, so the result is deterministic
  and easy to explain;
* with ``essential=True`` (the default profile of images on a distribution base) every package
  the index marks ``Essential: yes`` is a root too, after the caller's roots, as dpkg and apt
  assume they are always installed and never declare them; ``Priority: required`` alone is
  not added (mmdebstrap's ``essential`` variant draws the same line);
* names the caller says the host provides at run time (the GPU driver's ``libcuda1``, which
  NVIDIA's container toolkit mounts) satisfy any dependency on them and are never installed;
* *preferred* versions (the pins of the lock being redone) win over newer ones wherever they
  still meet the relation and the index still has them, so a re-lock moves only what changed;
* a root may name a version glob (``libcudnn8=8.*+cuda12.*``): the newest matching version;
* Conflicts/Breaks are checked among the selected packages after resolution and reported as an
  error (no attempt to find another solution);
* every InRelease (or Release + Release.gpg) is verified with ``gpgv`` against the source's
  keyring before anything in it is trusted (see :func:`verify_release`): the sha256 chain
  InRelease -> Packages -> .deb is only as good as that first link.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence

from envnix.lock.apt.fetch import Progress, human_size, load_index
from envnix.lock.apt.index import DebIndex, DebPackage, Entry, IndexSnapshot
from envnix.lock.apt.relations import ARCH
from envnix.lock.apt.resolver import resolve
from envnix.spec.apt import AptSource


def lock_apt(
    sources: Sequence[AptSource],
    roots: Sequence[str],
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    *,
    host_provided: Collection[str] = (),
    check: Callable[[DebIndex], None] | None = None,
    essential: bool = False,
    arch: str = ARCH,
    preferred: Mapping[str, str] | None = None,
    installed: Sequence[Entry] = (),
) -> tuple[list[IndexSnapshot], list[DebPackage]]:
    """Fetch the indexes of *sources* and resolve *roots*: everything ``envnix lock`` needs.

    *host_provided*: see :func:`resolve`. *check* sees the merged index before resolving, so
    a caller can say what the sources lack in its own terms (which CUDA releases they have)
    rather than as a missing package name. *essential*, *preferred*: see :func:`resolve`;
    a preferred version the index no longer has (Debian drops superseded .debs) is said in
    one line. *arch*: the Debian architecture whose ``binary-<arch>`` indexes are read.
    *installed*: a base image's packages (see :func:`resolve`).
    """
    started = time.monotonic()
    snapshots, index = load_index(sources, cache_dir, progress, arch)
    if check is not None:
        check(index)
    packages = resolve(index, roots, host_provided, essential=essential, preferred=preferred,
                       installed=installed)
    if progress and preferred:
        moved = [(p, preferred[p.name]) for p in packages
                 if p.name in preferred and p.version != preferred[p.name]]
        gone = [f"{p.name} {old} (took {p.version})" for p, old in moved
                if old not in index.versions(p.name)]
        if gone:
            progress(f"apt: the index no longer has {', '.join(gone)}")
    if progress:
        total = sum(p.size for p in packages)
        progress(f"apt: resolved {len(packages)} packages ({human_size(total)}) "
                 f"in {time.monotonic() - started:.1f} s")
    return snapshots, packages

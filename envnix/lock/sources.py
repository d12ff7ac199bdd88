"""Source builds: what the image build needs to turn each locked sdist into a wheel.

An sdist's ``pyproject.toml`` ``[build-system]`` (read from the archive, never run) names its
PEP 517 backend and build requirements; without one, PEP 517's default applies (setuptools'
legacy backend). The requirements are locked as wheels for the image's Python, and a C
toolchain (gcc, g++, make, libc6-dev, and Debian's Python headers when the image's Python is
Debian's) as .debs from the image's own apt sources, so that compiled extensions link
against the image's libc and Python. None of it goes into the image: it is the root the
build runs in (builders/build_sdist.py).
"""

from __future__ import annotations

import re
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from envnix.core import http
from envnix.core.errors import LockError
from envnix.core.progress import Progress
from envnix.frontend.include import COMMIT_RE, Fetcher
from envnix.lock import pip
from envnix.lock.apt import lock_apt
from envnix.spec import ImageSpec, PipRequest, has_control_character
from envnix.spec.platform import Platform

BUILD_DEBS = ("gcc", "g++", "make", "libc6-dev")
"""The C toolchain every source build gets (build-essential minus dpkg-dev and its perl)."""
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"
LEGACY_REQUIRES = ("setuptools>=40.8.0", "wheel")
_BACKEND = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_.]*)?")
_REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[A-Za-z0-9._,\s-]*\])?\s*"
                         r"([<>=!~;(]|$)")
_PYPROJECT_MAX = 1 << 20
_SDIST_MAX = 512 << 20


@dataclass(frozen=True)
class BuildSystem:
    """An sdist's PEP 517 build system, as its pyproject.toml declares it."""

    requires: tuple[str, ...]
    backend: str
    backend_path: tuple[str, ...]


def read_build_system(archive: Path, label: str) -> BuildSystem:
    """``[build-system]`` of the sdist at ``archive``: only ``<top>/pyproject.toml`` is read,
    without unpacking anything. ``label`` names the sdist in errors."""
    return build_system_of(_pyproject_text(archive, label), label)


def build_system_of(text: str | None, label: str) -> BuildSystem:
    """The build system a pyproject.toml text declares (None: the file is absent)."""
    if text is None:
        return BuildSystem(LEGACY_REQUIRES, LEGACY_BACKEND, ())
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"pip: {label}: pyproject.toml is not TOML: {exc}") from None
    table = data.get("build-system")
    if not isinstance(table, dict):
        return BuildSystem(LEGACY_REQUIRES, LEGACY_BACKEND, ())
    requires = table.get("requires", list(LEGACY_REQUIRES))
    backend = table.get("build-backend", LEGACY_BACKEND)
    paths = table.get("backend-path", [])
    # Each becomes a line of the requirements.in uv reads: a line that is not a named
    # requirement ("-r /etc/passwd", "-e .", "x @ file:///etc") would make uv read or build
    # something of this machine's.
    if not isinstance(requires, list) or not all(
            isinstance(r, str) and _REQUIREMENT.match(r.strip()) and not has_control_character(r)
            for r in requires):
        raise LockError(f"pip: {label}: build-system.requires is not a list of requirements")
    if not isinstance(backend, str) or not _BACKEND.fullmatch(backend):
        raise LockError(f"pip: {label}: build-backend {backend!r} is not a module:object name")
    if not isinstance(paths, list) or not all(_relative_dir(p) for p in paths):
        raise LockError(f"pip: {label}: backend-path must list directories inside the sdist")
    return BuildSystem(tuple(r.strip() for r in requires), backend, tuple(paths))


def _relative_dir(path: object) -> bool:
    if not isinstance(path, str) or not path or has_control_character(path):
        return False
    parts = PurePosixPath(path).parts
    return not path.startswith("/") and ".." not in parts and "\\" not in path


def _pyproject_text(archive: Path, label: str) -> str | None:
    """The sdist's top-level pyproject.toml, or None when it has none."""
    wanted = re.compile(r"[^/]+/pyproject\.toml")
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if wanted.fullmatch(info.filename) and not info.is_dir():
                        if info.file_size > _PYPROJECT_MAX:
                            raise LockError(f"pip: {label}: pyproject.toml is over 1 MiB")
                        return zf.read(info).decode("utf-8")
            return None
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:
                if wanted.fullmatch(member.name) and member.isreg():
                    if member.size > _PYPROJECT_MAX:
                        raise LockError(f"pip: {label}: pyproject.toml is over 1 MiB")
                    f = tf.extractfile(member)
                    return f.read().decode("utf-8") if f else None
        return None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise LockError(f"pip: {label} is not a readable sdist archive: {exc}") from None
    except UnicodeDecodeError:
        raise LockError(f"pip: {label}: pyproject.toml is not UTF-8") from None


def _git_entry(source: pip.GitSource, fetcher: Fetcher) -> tuple[dict[str, Any], BuildSystem]:
    """A git reference's lock entry and build system, read from its commit's pyproject.toml
    with envnix's hardened git (frontend/include.py), never from a checkout."""
    shown = f"pip: {source.name} @ git+{source.url}"
    if not COMMIT_RE.fullmatch(source.commit):
        raise LockError(f"{shown}: uv named {source.commit!r}, not a commit id")
    raw = fetcher.file_at(source.url, source.commit, "pyproject.toml", shown)
    try:
        text = raw.decode("utf-8") if raw is not None else None
    except UnicodeDecodeError:
        raise LockError(f"{shown}: pyproject.toml is not UTF-8") from None
    system = build_system_of(text, f"{source.name} at {source.commit[:12]}")
    return ({**asdict(source), "requires": list(system.requires), "backend": system.backend,
             "backend_path": list(system.backend_path)}, system)


def lock_source_builds(
    sdists: Sequence[pip.Sdist], spec: ImageSpec, request: PipRequest, context: Path,
    apt_sources: Sequence[Any], image_debs: Mapping[str, str], platform: Platform,
    progress: Progress | None = None, git: Sequence[pip.GitSource] = (),
) -> dict[str, Any] | None:
    """The lock's ``source_builds`` section for ``sdists`` and ``git`` references; None when
    there are none.

    ``image_debs`` (name -> version) are the image's own packages: the build root has them,
    so only the others are recorded, at the versions the same indexes resolve to."""
    if not sdists and not git:
        return None
    sdists = list(sdists)
    python = spec.python
    if python is None:  # lock_pip needs a Python before it finds an sdist
        raise LockError("pip: sdists need a Python in the image")
    if spec.base_image:
        names = [s.name for s in [*sdists, *git]]
        raise LockError(
            f"pip: {', '.join(names)} {'has' if len(names) == 1 else 'have'} no wheel for the "
            "target, and sources are built only on envnix's own base",
            hint="pin versions with wheels for the image's Python, or drop base(image=...)")
    entries = []
    requires: dict[str, None] = {}
    with tempfile.TemporaryDirectory(prefix="envnix-sdist-") as tmp:
        for sdist in sdists:
            if sdist.size > _SDIST_MAX:
                raise LockError(f"pip: {sdist.filename} is {sdist.size >> 20} MiB, over the "
                                f"{_SDIST_MAX >> 20} MiB envnix reads to find its build system")
            path = Path(tmp) / re.sub(r"[^A-Za-z0-9._+-]", "_", sdist.filename)
            http.download(sdist.url, sdist.sha256, path)
            system = read_build_system(path, sdist.filename)
            requires.update(dict.fromkeys(system.requires))
            entries.append({**asdict(sdist), "requires": list(system.requires),
                            "backend": system.backend, "backend_path": list(system.backend_path)})
            if progress:
                progress(f"pip: {sdist.name} {sdist.version} builds with {system.backend} "
                         f"({', '.join(system.requires) or 'no requirements'})")
    git_entries = []
    fetcher = Fetcher()
    for source in git:
        entry, system = _git_entry(source, fetcher)
        requires.update(dict.fromkeys(system.requires))
        git_entries.append(entry)
        if progress:
            progress(f"pip: {source.name} {source.version} at commit {source.commit[:12]} "
                     f"builds with {system.backend}")
    build_request = replace(request, packages=list(requires), requirements_files=[])
    try:
        wheels = pip.lock_pip(build_request, context, python.version, spec.os.glibc, progress,
                              platform=platform)
        if not all(isinstance(w, pip.Wheel) for w in wheels):
            raise LockError("a build requirement is a git reference; build requirements are "
                            "taken as wheels only")
    except LockError as exc:
        raise LockError(f"pip: the build requirements of "
                        f"{', '.join(s.name for s in [*sdists, *git])}: {exc.message}",
                        hint=exc.hint) from None
    roots = [*spec.apt_roots(), *BUILD_DEBS]
    if python.provider == "system":
        roots.append(f"python{python.version}-dev")
    _indexes, packages = lock_apt(apt_sources, roots, progress=progress,
                                  arch=platform.deb_arch, preferred=dict(image_debs))
    debs = [p.to_lock_dict() for p in packages if p.name not in image_debs]
    if progress:
        progress(f"pip: source builds get {len(wheels)} build wheel(s) and {len(debs)} build "
                 f".deb(s); none of them goes into the image")
    section: dict[str, Any] = {"sdists": sorted(entries, key=lambda e: e["name"])}
    if git_entries:  # only then: locks without git references keep their bytes
        section["git"] = sorted(git_entries, key=lambda e: e["name"])
    return {**section,
            "wheels": sorted((w.to_lock_dict() for w in wheels), key=lambda w: w["name"]),
            "debs": sorted(debs, key=lambda d: d["name"])}

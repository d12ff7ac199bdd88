"""The build context's own projects that a requirements file installs (``-e .``, ``./pkg``),
and the wheels install.python_packages(local_wheels=[...]) names.

Why: envd runs ``pip install -r requirements.txt`` with the context mounted, so its own e2e
fixture writes ``-e .`` next to a setup.py. Nothing there can be locked from an index: the
project is the context's. So it is copied into the image like io.copy (at the workdir, where
``envd up`` mounts the context, so an editable install follows the live sources in a dev
container) and installed by the image's own pip inside the hermetic build, offline, as
env.yaml's local pip paths are; pip and the project's build backend are pinned with the other
wheels (``--no-build-isolation``: nothing is fetched then), and the lock leaves those lines
out (envnix.spec.pipargs.local_project says which they are).

A local wheel goes the same way (envd runs ``pip install <wheel>`` with the context mounted):
copied to the workdir and installed offline without its dependencies, which are read from its
METADATA and pinned with the image's other pip packages, so pip never needs an index.
"""

from __future__ import annotations

import email.parser
import re
import shlex
import tomllib
import zipfile
from pathlib import Path

from envnix.core.errors import SpecError
from envnix.spec import CopySpec, PythonSpec, RunSpec
from envnix.spec.pipargs import local_project


def local_projects(context: Path, requirements: str) -> list[tuple[str, bool]]:
    """The context's projects *requirements* (context-relative) installs, as
    (context-relative directory, editable)."""
    root = context.resolve()
    found: list[tuple[str, bool]] = []
    text = (root / requirements).read_text(encoding="utf-8", errors="replace")
    for number, raw in enumerate(text.splitlines(), 1):
        local = local_project(re.sub(r"(^|\s+)#.*$", "", raw))
        if local is None:
            continue
        path = ((root / requirements).parent / local[0]).resolve()
        where = f"{requirements}:{number}"
        if not path.is_relative_to(root):
            raise SpecError(f"{where}: local project {local[0]!r} is outside the build context",
                            hint="move it under the directory that holds build.envd")
        if not path.is_dir() or not any((path / f).is_file()
                                        for f in ("pyproject.toml", "setup.py")):
            raise SpecError(f"{where}: local project {local[0]!r} is not a directory with a "
                            "pyproject.toml or setup.py",
                            hint="pip installs a project from its directory; a wheel or an "
                                 "archive path is not supported")
        entry = (path.relative_to(root).as_posix(), local[1])
        if entry not in found:
            found.append(entry)
    return found


def install_local_projects(context: Path, projects: list[tuple[str, bool]], requirements: str,
                           workdir: str, python: PythonSpec
                           ) -> tuple[list[CopySpec], list[str], RunSpec, str]:
    """What installing *projects* takes: their copies, the pip packages to pin (pip and the
    build backends), the run() step that installs them, and the warning that says so."""
    copies: list[CopySpec] = []
    arguments: list[str] = []
    backends: list[str] = []
    for rel, editable in projects:
        target = workdir if rel == "." else f"{workdir}/{rel}"
        copies.append(CopySpec(rel, target))
        arguments += (["-e"] if editable else []) + [target]
        backends += [b for b in build_requirements(context.resolve() / rel) if b not in backends]
    run = offline_pip_install(python.interpreter, arguments)
    note = (f"{requirements}: the build context's {', '.join(r for r, _ in projects)} "
            f"installed by pip inside the build, offline, with {', '.join(backends)} pinned")
    return copies, ["pip", *backends], run, note


def offline_pip_install(interpreter: str, arguments: list[str]) -> RunSpec:
    """The run() step that installs the copied projects with the image's own pip, offline:
    no dependencies, no index, no isolated build environment (its backend is pinned)."""
    return RunSpec([shlex.join([
        interpreter, "-m", "pip", "install", "--no-deps", "--no-index",
        "--no-build-isolation", "--no-compile", "--no-cache-dir",
        "--disable-pip-version-check", *arguments])])


_WHEEL_NAME = re.compile(r"(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.!+]+)"
                         r"(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl")
_EXTRA_MARKER = re.compile(r"""\bextra\s*==""")


def local_wheel(context: Path, rel: str) -> list[str]:
    """The requirements (Requires-Dist, extras' left out) of the context's wheel *rel*, read
    from its METADATA; one line when it is not a wheel envnix can read."""
    where = f"install.python_packages(local_wheels=[{rel!r}])"
    match = _WHEEL_NAME.fullmatch(Path(rel).name)
    if not match:
        raise SpecError(f"{where}: {Path(rel).name!r} is not a wheel's file name",
                        hint="name a .whl built for the image (name-version-tags.whl); pip "
                             "installs an sdist or a directory from requirements= instead")
    try:
        with zipfile.ZipFile(context.resolve() / rel) as archive:
            metadata = [n for n in archive.namelist() if n.count("/") == 1
                        and n.endswith(".dist-info/METADATA")]
            if len(metadata) != 1:
                raise SpecError(f"{where}: the wheel has {len(metadata)} .dist-info/METADATA "
                                "files, not one")
            info = archive.getinfo(metadata[0])
            if info.file_size > 8 << 20:
                raise SpecError(f"{where}: its METADATA is over 8 MB")
            text = archive.read(info).decode("utf-8", "replace")
    except (zipfile.BadZipFile, OSError) as err:
        raise SpecError(f"{where}: not a readable wheel ({err})") from None
    headers = email.parser.HeaderParser().parsestr(text)
    return [r.strip() for r in headers.get_all("Requires-Dist") or []
            if not _EXTRA_MARKER.search(r.partition(";")[2])]


def install_local_wheels(wheels: list[str], workdir: str, python: PythonSpec
                         ) -> tuple[list[CopySpec], list[str], RunSpec, str]:
    """What installing the context's *wheels* takes: their copies under the workdir, pip to
    pin, the offline run() step, and the warning that says so."""
    targets = [f"{workdir}/{rel}" for rel in wheels]
    note = (f"install.python_packages: local wheel(s) {', '.join(wheels)} installed by pip "
            "inside the build, offline; their dependencies pinned with the other packages")
    return ([CopySpec(rel, target) for rel, target in zip(wheels, targets, strict=True)],
            ["pip"], offline_pip_install(python.interpreter, targets), note)


def build_requirements(project: Path) -> list[str]:
    """What building *project* needs (PEP 518): its pyproject.toml's [build-system] requires,
    else setuptools and wheel, as pip assumes for a setup.py project."""
    try:
        data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        data = {}
    requires = data.get("build-system", {}).get("requires")
    if isinstance(requires, list) and requires and all(isinstance(r, str) for r in requires):
        return [r.strip() for r in requires]
    return ["setuptools", "wheel"]

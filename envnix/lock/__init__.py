"""Lock: resolve an ImageSpec's apt and pip requests into pinned artifacts (envnix.lock).

Only this stage touches package indexes. Its output, the lock, is sufficient to rebuild the
image with no resolver and no index access.

A re-lock is minimal: the pins of the lock being redone (:class:`Pins`) are handed to each
resolver as preferences, so only what the spec changed, what ``--upgrade-package`` names and
what those need move; ``--upgrade`` hands none.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envnix.core import options
from envnix.core import schema as S
from envnix.core.errors import LockError, StaleLockError, UsageError
from envnix.core.progress import Progress, step
from envnix.frontend.envyaml import (
    ChannelLocation,
    Condarc,
    effective_channels,
    parse_condarc,
    resolve_channels,
)
from envnix.lock import pip
from envnix.lock.apt import lock_apt
from envnix.lock.apt.anchors import fetched_keyring
from envnix.lock.apt.index import DebPackage, IndexSnapshot, installed_entries
from envnix.lock.apt.sources import (
    machine_apt_sources,
    sources_for_mirror,
    ubuntu_archive_sources,
)
from envnix.lock.basesystem import base_python, read_base_system
from envnix.lock.conda import default_channel_alias, lock_conda
from envnix.lock.cuda import lock_cuda_pip
from envnix.lock.diff import diff_locks
from envnix.lock.downloads import SECTION, kept_downloads, lock_downloads
from envnix.lock.downloads import lock_inputs as download_inputs
from envnix.lock.image import resolve_base
from envnix.lock.model import (
    LOCK_NAME,
    CorruptLockError,
    Lock,
    read_lock,
    stale_reason,
    write_lock,
)
from envnix.lock.sources import lock_source_builds
from envnix.lock.toolchain_pin import shipped_pin_data
from envnix.lock.tools import apt_check, lock_tools, tool_inputs
from envnix.spec import (
    CUSTOM_IMAGE_RELEASE,
    ImageSpec,
    OsRelease,
    PipRequest,
    with_base_python,
)
from envnix.spec.apt import AptSource
from envnix.spec.cuda import implied_by_wheels
from envnix.spec.cuda_provider import IndexCheck
from envnix.spec.cuda_provider import provider as provider_named
from envnix.spec.envyaml import EnvFile
from envnix.spec.platform import AMD64, Platform, by_arch

__all__ = [
    "LOCK_NAME",
    "CondaPlan",
    "CorruptLockError",
    "Describe",
    "Lock",
    "Pins",
    "apt_sources",
    "check_lock",
    "conda_plan",
    "ensure_lock",
    "image_change",
    "kept_pins",
    "lock_file",
    "lock_inputs",
    "lock_platforms",
    "make_lock",
    "pip_request",
    "read_lock",
    "relock",
    "stale_reason",
    "write_lock",
]


@dataclass(frozen=True)
class CondaPlan:
    """The conda side of a spec, with env.yaml and the .condarc read: what the solver gets."""

    specs: tuple[str, ...]
    channel_names: tuple[str, ...]
    channels: tuple[ChannelLocation, ...]
    condarc: Condarc | None
    env_file: EnvFile | None


ENVD_DEFAULT_CHANNELS = ("conda-forge",)
"""What envd's conda reads when a file names no channel: its ``/opt/conda/.condarc`` sets
``default_channels`` and ``channels`` to conda-forge (envd-reference.md, install.conda)."""


def _with_settings(condarc: Condarc | None) -> Condarc:
    """The file's .condarc with what it leaves unsaid filled in as envd's conda would:
    default_channels from ENVNIX_CONDA_DEFAULT_CHANNELS, else envd's (conda-forge), and the
    channel_alias from ENVNIX_CONDA_CHANNEL_ALIAS (conda's own is the fallback that
    :func:`conda_plan` gives the resolver). As in conda, a .condarc without ``channels``
    means ``[defaults]``."""
    defaults = options.conda_default_channels() or ENVD_DEFAULT_CHANNELS
    alias = options.conda_channel_alias()
    rc = condarc or Condarc(origin=f"envd's defaults ({options.CONDA_DEFAULT_CHANNELS.name}, "
                                   f"{options.CONDA_CHANNEL_ALIAS.name})")
    default_channels = rc.default_channels or defaults
    return dataclasses.replace(
        rc, default_channels=default_channels, channel_alias=rc.channel_alias or alias,
        channels=rc.channels or ("defaults",))


def envd_conda_channels() -> tuple[ChannelLocation, ...]:
    """The channels envd's conda reads when a file names none (conda-forge, or the
    settings'): where install.pixi's pixi comes from, as envd's users' conda would find it."""
    condarc = _with_settings(None)
    return resolve_channels(effective_channels((), condarc), condarc,
                            fallback_alias=default_channel_alias())


def conda_plan(spec: ImageSpec) -> CondaPlan | None:
    """env.yaml (as the frontend read it) and config.conda_channel for a conda-provided
    Python; None otherwise."""
    if spec.python is None or spec.python.provider != "conda":
        return None
    env = spec.conda.env
    condarc = _with_settings(parse_condarc(spec.conda.condarc,
                                           f"{spec.manifest}: config.conda_channel")
                             if spec.conda.condarc else None)
    names = effective_channels(env.channels if env else (), condarc,
                               nodefaults=env.nodefaults if env else False,
                               first=spec.conda.channels)
    cuda = (spec.cuda.requirements if spec.cuda
            and provider_named(spec.cuda.provider).installer == "conda" else ())
    specs = (f"python {spec.python.version}.*", *spec.conda.packages,
             *(env.dependencies if env else ()), *cuda)
    if not names and not any("::" in s for s in specs):
        raise LockError("no conda channel is left for this image's conda packages (env.yaml "
                        "says nodefaults and names none)",
                        hint="name one in install.conda_packages(channel=[...]), env.yaml "
                             "channels:, or config.conda_channel")
    channels = resolve_channels(names, condarc, specs, fallback_alias=default_channel_alias())
    for location in channels:
        for url in (location.canonical, *location.urls):
            if m := _CHANNEL_TOKEN.match(url):
                raise LockError(
                    f"conda channel {m[1]}: its URL carries an access token (/t/...), which "
                    "envnix.lock and Nix's .drv files (world-readable) would record",
                    hint="serve the channel with a login instead and put it in ~/.netrc "
                         f"(machine {m[1]} login USER password TOKEN): envnix and Nix read it")
    return CondaPlan(specs, names, channels, condarc, env)


# anaconda.org-style private channels: https://HOST/t/<token>/<channel>
_CHANNEL_TOKEN = re.compile(r"[a-z][a-z0-9+.-]*://([^/]+)(?:/[^/]+)*?/t/[^/]+/", re.I)


def pip_request(spec: ImageSpec, plan: CondaPlan | None) -> PipRequest:
    """build.envd's pip request plus env.yaml's pip: section (installed into the conda env),
    plus install.cuda's NVIDIA wheels (for system and conda Pythons alike)."""
    request = _pip_request(spec, plan)
    if spec.cuda is None or provider_named(spec.cuda.provider).installer != "pip":
        return request
    return dataclasses.replace(request, packages=[*request.packages, *spec.cuda.requirements])


def _pip_request(spec: ImageSpec, plan: CondaPlan | None) -> PipRequest:
    env = plan.env_file if plan else None
    if env is None:
        return spec.pip
    # Local paths are not in the request: the spec copies them in and pip installs them in
    # the build (frontend._env_yaml_extras); pip itself must then be in the env.
    return dataclasses.replace(
        spec.pip,
        packages=[*spec.pip.packages, *env.pip],
        index_url=env.pip_index_url or spec.pip.index_url,
        extra_index_urls=[*spec.pip.extra_index_urls, *env.pip_extra_index_urls],
        trusted_hosts=sorted({*spec.pip.trusted_hosts, *env.pip_trusted_hosts}),
    )


def lock_inputs(spec: ImageSpec, context: Path, plan: CondaPlan | None = None,
                platform: Platform = AMD64) -> dict[str, Any]:
    """What the lock answers: the requests, not the machine. A change here makes it stale.

    ``plan`` is the spec's conda_plan when the caller already read env.yaml and the condarc.
    ``platform`` is the one these inputs are for (its names go into the apt, pip, base and
    conda inputs, as amd64 locks always recorded them).
    """
    python = spec.python
    if plan is None:
        plan = conda_plan(spec)
    request = pip_request(spec, plan)
    inputs: dict[str, Any] = {
        "apt": {"release": spec.os.codename, "architecture": platform.deb_arch,
                "packages": spec.apt_roots(), "profile": spec.apt_profile},
        "pip": {
            "python": (python.version or python.provider) if python else None,
            "platform": pip.manylinux_platform(spec.os.glibc, platform),
            "requirements": pip.requirements_text(request, context).splitlines(),
            "index": request.index_url,
            "extra-index": request.extra_index_urls,
        },
    }
    if spec.downloads:  # only then: locks of other images keep their bytes
        inputs[SECTION] = download_inputs(spec.downloads)
    if spec.apt_repos:  # likewise
        inputs["apt"]["repos"] = [{"line": r.line, "keys": list(r.keys)}
                                  for r in spec.apt_repos]
    if spec.base_image:  # the ref as written: another tag or digest makes the lock stale
        inputs["base"] = {"ref": spec.base_image, "architecture": platform.deb_arch}
    tools = tool_inputs(spec)
    if tools:  # only then: locks of images without tools keep their bytes
        inputs["tools"] = tools
    if plan is not None:
        inputs["conda"] = {
            "specs": list(plan.specs),
            "channels": [c.canonical for c in plan.channels],
            "mirrors": [list(c.urls) for c in plan.channels],
            **({"cuda": spec.cuda.major_minor} if spec.cuda else {}),
            "glibc": spec.os.glibc,
            "platform": platform.conda_subdir,
        }
    return inputs


@dataclass(frozen=True)
class Pins:
    """The pins of an existing envnix.lock a re-lock prefers while they satisfy the spec."""

    apt: dict[str, str] = field(default_factory=dict)
    """name -> version; only when the lock was made for the same release and architecture."""
    pip: tuple[pip.Pinned, ...] = ()
    conda: tuple[dict[str, Any], ...] = ()
    base: dict[str, Any] | None = None
    """The base image's pin, while base(image=...) names the same reference."""
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    """name -> tool artifact, while the tool is asked for as when it was locked."""
    http: dict[str, dict[str, Any]] = field(default_factory=dict)
    """io.http's pins by URL: kept while a call names the URL (and agrees with its checksum)."""

    def __len__(self) -> int:
        return (len(self.apt) + len(self.pip) + len(self.conda) + (self.base is not None)
                + len(self.tools) + len(self.http))


def kept_pins(lock: Lock | None, inputs: dict[str, Any], *, upgrade: bool = False,
              upgrade_packages: Sequence[str] = ()) -> Pins:
    """What a re-lock of ``lock`` for ``inputs`` keeps: every pin, none (``upgrade``), or all
    but those named by ``upgrade_packages`` (any installer's name; pip's compared as PEP 503)."""
    if lock is None or upgrade:
        return Pins()
    names = set(upgrade_packages)
    wheels: list[pip.Pinned] = [pip.Wheel.from_lock_dict(w) for w in lock.pip_wheels]
    wheels += [pip.Sdist.from_lock_dict(s) for s in lock.sdists]
    wheels += [pip.GitSource.from_lock_dict(g) for g in lock.git_sources]
    pinned = ({p["name"] for p in lock.apt_packages} | {p["name"] for p in lock.conda_packages}
              | {S.pep503(w.name) for w in wheels} | {t["name"] for t in lock.tools})
    unknown = sorted(n for n in names if n not in pinned and S.pep503(n) not in pinned)
    if unknown:
        raise UsageError(f"--upgrade-package {', '.join(unknown)}: {LOCK_NAME} pins no "
                         "package of that name", hint="name a package the lock lists "
                                                     "(envnix sbom or the file itself)")
    pip_names = {S.pep503(n) for n in names}
    apt = lock.inputs.get("apt", {})
    same_release = (apt.get("release"), apt.get("architecture")) == (
        inputs["apt"]["release"], inputs["apt"]["architecture"])
    return Pins(
        apt={p["name"]: p["version"] for p in lock.apt_packages
             if p["name"] not in names} if same_release else {},
        pip=tuple(w for w in wheels if S.pep503(w.name) not in pip_names),
        conda=tuple(p for p in lock.conda_packages  # conda names compare in lower case
                    if p["name"] not in {n.lower() for n in names}),
        base=lock.base if lock.base and lock.base["ref"] == inputs.get("base", {}).get("ref")
        else None,
        tools={t["name"]: t for t in lock.tools if t["name"] not in names
               and lock.inputs.get("tools", {}).get(t["name"])
               == inputs.get("tools", {}).get(t["name"])},
        http=kept_downloads(lock.http_files),
    )


def apt_sources(release: OsRelease, mirror: str | None = None,
                security_mirror: str | None = None,
                snapshot: str | None = None) -> list[AptSource]:
    """Where the release's apt indexes come from, with its components (Ubuntu: main + universe).

    --apt-mirror / ENVNIX_APT_MIRROR (plus ENVNIX_APT_SECURITY_MIRROR), or for an Ubuntu
    release ENVNIX_UBUNTU_MIRROR, taken at ENVNIX_APT_SNAPSHOT when that is set (the mirror is
    then a snapshot service's base URL); else the machine's apt sources for that release, and
    for Ubuntu, where the machine names none, Ubuntu's archive (its snapshot service at
    ENVNIX_APT_SNAPSHOT).
    """
    if release.distro == CUSTOM_IMAGE_RELEASE.distro:
        return []  # base(image=...): the base brings its OS, nothing to resolve from
    mirror = mirror or options.apt_mirror() or (
        options.ubuntu_mirror() if release.distro == "ubuntu" else None)
    security_mirror = security_mirror or options.apt_security_mirror()
    snapshot = snapshot or options.apt_snapshot()
    if mirror:
        return sources_for_mirror(
            mirror, release.codename, security_mirror=security_mirror, distro=release.distro,
            components=release.components, snapshot=snapshot)
    if snapshot and release.distro == "ubuntu":
        return ubuntu_archive_sources(release.codename, release.components, snapshot)
    if snapshot:
        raise UsageError(f"ENVNIX_APT_SNAPSHOT={snapshot} needs a snapshot service to apply "
                         "to: pass --apt-mirror URL (its base URL, without the time)")
    # Debian keeps the components the machine lists (as its locks always have); for Ubuntu
    # the image's release decides (main + universe), whatever the host enabled.
    components = None if release.distro == "debian" else release.components
    return machine_apt_sources(release.codename, distro=release.distro,
                                      components=components)


def make_lock(spec: ImageSpec, context: Path, sources: list[AptSource],
              progress: Progress | None = None, pins: Pins | None = None,
              platforms: Sequence[Platform] = (AMD64,),
              platform_pins: Mapping[str, Pins] | None = None,
              apt_mirror: str | None = None) -> Lock:
    """Resolve everything the spec asks for, for each platform (the first one's sections at
    the top, the others' under ``platforms``), preferring ``pins`` (the first platform's) and
    ``platform_pins`` (by platform name: the lock being redone) where they still fit.
    ``apt_mirror``: --apt-mirror, for apt packages on a base(image=...) (whose release is
    known only once its layers are read). Network access happens here and only here."""
    first, *others = platforms
    platform_pins = platform_pins or {}
    lock = _make_lock(spec, context, sources, progress,
                      pins or platform_pins.get(first.name) or Pins(), first, apt_mirror)
    for platform in others:
        if progress:
            progress(f"lock: resolving for {platform.name}")
        lock.platforms[platform.name] = dataclasses.replace(
            _make_lock(spec, context, sources, progress,
                       platform_pins.get(platform.name) or Pins(), platform, apt_mirror),
            toolchain=None)
    return lock


def _make_lock(spec: ImageSpec, context: Path, sources: list[AptSource],
               progress: Progress | None, pins: Pins, platform: Platform,
               apt_mirror: str | None = None) -> Lock:
    plan = conda_plan(spec)
    # io.http first: a checksum that does not match fails before anything is resolved.
    http_files = lock_downloads(spec.downloads, pins.http, progress)
    base: dict[str, Any] | None = None
    indexes: list[IndexSnapshot] = []
    packages: list[DebPackage] = []
    if spec.cuda and platform != AMD64:
        raise UsageError(f"install.cuda builds for linux/amd64 only, not {platform.name}")
    if spec.base_image:
        if pins.base is not None:  # what was read from its layers is read again
            base = {k: v for k, v in pins.base.items() if k not in ("system", "python")}
        else:
            base = resolve_base(spec.base_image, arch=platform.deb_arch)
            if progress:
                progress(f"base: {spec.base_image} pinned at {base['digest']} "
                         f"({len(base['manifest']['layers'])} layers)")
        if spec.apt_roots():
            sources, indexes, packages = _lock_apt_on_base(spec, base, pins, platform,
                                                           apt_mirror, progress)
        if spec.python is not None and spec.python.provider == "base":
            found = base
            base["python"] = base_python(base, lambda: read_base_system(found))
            if progress:
                progress(f"base: pip packages go to its Python {base['python']['version']} "
                         f"({with_base_python(spec, base).python.interpreter})")
    else:
        # --cuda-provider apt: NVIDIA's repository or Debian's non-free join the sources (and
        # the lock's record of them); the driver's packages are the host's, never installed.
        host_provided: tuple[str, ...] = ()
        checks: list[IndexCheck | None] = [apt_check(spec)]  # install.go, ...: in its terms
        if spec.apt_repos:  # run()'s apt sources, after the release's
            keyring = fetched_keyring(spec.apt_repos[0].keys)
            sources = [*sources, *(repo.source(spec.os.codename, keyring)
                                   for repo in spec.apt_repos)]
        if spec.cuda:
            cuda = provider_named(spec.cuda.provider)
            sources = cuda.apt_sources(spec.cuda, sources, spec.os)
            host_provided = cuda.host_provided(spec.cuda)
            checks.append(cuda.index_check(spec.cuda, sources, progress))
        indexes, packages = lock_apt(
            sources, spec.apt_roots(), progress=progress, host_provided=host_provided,
            essential=spec.apt_profile == "essential", check=_all(checks),
            preferred=pins.apt, arch=platform.deb_arch)
    conda_packages: list[dict[str, Any]] = []
    if plan is not None:
        # install.cuda sets the target's __cuda: conda packages built for CUDA then solve
        # for the driver the image asks for (NVIDIA_REQUIRE_CUDA), not the build host's.
        conda_packages = lock_conda(plan.specs, plan.channels, glibc=spec.os.glibc,
                                    cuda=spec.cuda.major_minor if spec.cuda else None,
                                    progress=progress, preferred=pins.conda,
                                    platform=platform.conda_subdir)
    request = pip_request(spec, plan)
    python = with_base_python(spec, base).python  # the base's own, once known
    if python is None:
        if request.packages or request.requirements_files:
            raise LockError("pip packages need a Python: add base(language=...) or "
                            "install.python()")
        wheels = []
    elif spec.cuda is None or provider_named(spec.cuda.provider).installer != "pip":
        wheels = pip.lock_pip(request, context, python.version, spec.os.glibc, progress,
                              preferred=pins.pip, platform=platform, sources=True)
    else:
        wheels = lock_cuda_pip(request, context, spec.cuda, python.version,
                               spec.os.glibc, progress, preferred=pins.pip)
    sdists = [w for w in wheels if isinstance(w, pip.Sdist)]
    git = [w for w in wheels if isinstance(w, pip.GitSource)]
    wheels = [w for w in wheels if isinstance(w, pip.Wheel)]
    source_builds = lock_source_builds(sdists, spec, request, context, sources,
                                       {p.name: p.version for p in packages}, platform, progress,
                                       git=git)
    if spec.cuda is None and progress:
        implied = implied_by_wheels((w.name, w.version) for w in wheels)
        if implied:
            progress(f"cuda: CUDA {implied[0]} comes with the pip packages ({implied[2]}); "
                     "the image gets NVIDIA's env and GPU labels for it")
    if plan and plan.env_file and plan.env_file.pip_local:
        _check_pip_installed(plan.env_file, conda_packages, wheels)
    return Lock(
        inputs=lock_inputs(spec, context, plan, platform),
        apt_sources=[s.to_lock_dict() for s in sources],
        apt_indexes=[i.to_lock_dict() for i in indexes],
        apt_packages=[p.to_lock_dict() for p in packages],
        pip_wheels=[w.to_lock_dict() for w in wheels],
        conda_channels=[{"name": c.name, "url": c.canonical, "mirrors": list(c.urls)}
                        for c in plan.channels] if plan else [],
        conda_packages=conda_packages,
        base=base,
        toolchain=shipped_pin_data(),
        tools=lock_tools(spec, context, progress, platform, preferred=pins.tools,
                         conda_channels=envd_conda_channels),
        http_files=http_files,
        source_builds=source_builds,
    )


def _lock_apt_on_base(spec: ImageSpec, base: dict[str, Any], pins: Pins, platform: Platform,
                      apt_mirror: str | None, progress: Progress | None
                      ) -> tuple[list[AptSource], list[IndexSnapshot], list[DebPackage]]:
    """apt packages on base(image=...): what the base lacks, from its own release's archive,
    as apt-get in the base would install them. Records the base's release and the sha256 of
    its dpkg status in ``base["system"]``, which the build checks."""
    system = read_base_system(base)
    release = system.release(spec.base_image or base["ref"])
    base["system"] = system.to_lock_dict()
    sources = apt_sources(release, apt_mirror)
    installed = installed_entries(system.status, platform.deb_arch)
    if progress:
        progress(f"base: {release.distro} {release.codename} with {len(installed)} "
                 "packages installed; apt adds what it lacks")
    indexes, packages = lock_apt(sources, spec.apt_roots(), progress=progress,
                                 preferred=pins.apt, arch=platform.deb_arch,
                                 installed=installed)
    return sources, indexes, packages


def _all(checks: Sequence[IndexCheck | None]) -> IndexCheck | None:
    """One index check running each of ``checks`` that is not None, in order."""
    present = [c for c in checks if c is not None]
    if len(present) < 2:
        return present[0] if present else None

    def check(index: Any) -> None:
        for each in present:
            each(index)
    return check


def _check_pip_installed(env: EnvFile, conda_packages: list[dict[str, Any]],
                         wheels: list[pip.Wheel]) -> None:
    """env.yaml's local pip paths are installed by the env's own pip at build time: say so
    now rather than after the other layers were built."""
    if any(p["name"] == "pip" for p in conda_packages) or any(w.name == "pip" for w in wheels):
        return
    local, _ = env.pip_local[0]
    raise LockError(f"{env.source.name}: local pip path {local} is installed with the env's "
                    "pip, and the env has none",
                    hint="add pip to dependencies (and the project's build backend, e.g. "
                         "setuptools, since the build runs offline)")


def lock_file(context: Path, spec: ImageSpec) -> Path:
    """Where a spec's envnix.lock lives: beside its manifest."""
    return (context / spec.manifest).parent / LOCK_NAME


Describe = Callable[[Lock], dict[str, Any]]
"""The image section for a lock of this spec (envnix.render.image_section, bound by the
caller: it is a later stage's)."""


def image_change(lock: Lock, section: dict[str, Any]) -> str | None:
    """How the lock's image section differs from ``section``, in a few words; None if not."""
    if lock.image is None:
        return "it has no image section (made before lib.buildImage)"
    changed = sorted(k for k in set(lock.image) | set(section)
                     if lock.image.get(k) != section.get(k))
    return "the image's " + ", ".join(changed) + " changed" if changed else None


def _described(lock: Lock, describe: Describe) -> Lock:
    """The lock with every platform's image section made by ``describe``."""
    return dataclasses.replace(
        lock, image=describe(lock),
        platforms={n: dataclasses.replace(sub, image=describe(lock.for_platform(n)),
                                          toolchain=None)
                   for n, sub in lock.platforms.items()})


def _image_change(lock: Lock, describe: Describe) -> str | None:
    """image_change for every platform the lock holds (the first that differs)."""
    for name in lock.platform_names:
        sub = lock.for_platform(name)
        change = image_change(sub, describe(sub))
        if change is not None:
            return change + (f" ({name})" if lock.platforms else "")
    return None


def lock_platforms(context: Path, spec: ImageSpec,
                   requested: Sequence[Platform] | None) -> tuple[Platform, ...]:
    """The platforms to lock and build: --platform's, else the existing lock's (so a lock made
    with --platform linux/arm64 keeps building for it), else the host's."""
    if requested:
        return tuple(requested)
    try:
        existing = read_lock(lock_file(context, spec))
    except CorruptLockError:
        existing = None
    if existing is None:
        return (AMD64,)
    return tuple(by_arch(n.split("/", 1)[1]) for n in existing.platform_names)


def platforms_stale_reason(lock: Lock, spec: ImageSpec, context: Path,
                           platforms: Sequence[Platform]) -> str | None:
    """stale_reason for each platform, plus a change of the platform list itself."""
    names = tuple(p.name for p in platforms)
    if lock.platform_names != names:
        return (f"platforms changed: {', '.join(lock.platform_names)} -> "
                f"{', '.join(names)}")
    plan = conda_plan(spec)
    for platform in platforms:
        reason = stale_reason(lock.for_platform(platform.name),
                              lock_inputs(spec, context, plan, platform))
        if reason:
            return reason + (f" ({platform.name})" if len(platforms) > 1 else "")
    return None


def check_lock(context: Path, spec: ImageSpec, describe: Describe,
               platforms: Sequence[Platform] | None = None) -> None:
    """StaleLockError unless the spec's envnix.lock exists and answers its inputs, image
    section included (``envnix lock --check``; ``nix flake check`` sees the same)."""
    path = lock_file(context, spec)
    existing = read_lock(path)
    if existing is None:
        raise StaleLockError(f"{path.name} does not exist", hint="run envnix lock")
    platforms = lock_platforms(context, spec, platforms)
    reason = platforms_stale_reason(existing, spec, context, platforms) or _image_change(
        existing, describe)
    if reason:
        raise StaleLockError(f"{path.name} is stale: {reason}", hint="run envnix lock")


def relock(context: Path, spec: ImageSpec, apt_mirror: str | None, describe: Describe,
           progress: Progress, platforms: Sequence[Platform] | None = None, *,
           upgrade: bool = False, upgrade_packages: Sequence[str] = ()) -> tuple[Lock, bool]:
    """``envnix lock``: resolve again, keeping the existing lock's pins that still fit
    (none with ``upgrade``; all but ``upgrade_packages`` otherwise), and write the lock with
    its image section; True when the file changed (a damaged file is kept as envnix.lock.bak).
    """
    path = lock_file(context, spec)
    try:
        existing = read_lock(path)
    except CorruptLockError:
        existing = None  # write_lock keeps it as envnix.lock.bak and says so
    platforms = lock_platforms(context, spec, platforms)
    pins = _kept_pins(existing, spec, context, platforms, upgrade=upgrade,
                      upgrade_packages=upgrade_packages)
    with step(progress, "lock: resolving"):
        lock = _resolve(spec, context, apt_mirror, progress, existing, pins, platforms)
    lock = _described(lock, describe)
    return lock, write_lock(path, lock)


def _kept_pins(existing: Lock | None, spec: ImageSpec, context: Path,
               platforms: Sequence[Platform], **upgrade: Any) -> dict[str, Pins]:
    """kept_pins for each platform, from the existing lock's sections for it (if any)."""
    plan = conda_plan(spec)
    return {p.name: kept_pins(existing.for_platform(p.name)
                              if existing and p.name in existing.platform_names else None,
                              lock_inputs(spec, context, plan, p), **upgrade)
            for p in platforms}


def _resolve(spec: ImageSpec, context: Path, apt_mirror: str | None, progress: Progress,
             existing: Lock | None, pins: dict[str, Pins],
             platforms: Sequence[Platform] = (AMD64,)) -> Lock:
    """make_lock with ``pins`` (by platform), then what moved since ``existing`` in a few
    lines."""
    kept = sum(len(p) for p in pins.values())
    if kept:
        progress(f"lock: preferring the {kept} pins of {LOCK_NAME} where they still fit "
                 "(envnix lock --upgrade moves them all)")
    lock = make_lock(spec, context, apt_sources(spec.os, apt_mirror), progress,
                     platforms=platforms, platform_pins=pins, apt_mirror=apt_mirror)
    if existing is not None:
        for line in diff_locks(existing, lock).lines():
            progress(f"lock: {line.strip()}" if line != "no differences"
                     else "lock: no pin moved")
    return lock


def ensure_lock(context: Path, spec: ImageSpec, apt_mirror: str | None, locked: bool,
                progress: Progress, describe: Describe,
                platforms: Sequence[Platform] | None = None) -> Lock:
    """envnix.lock when it still answers the inputs; otherwise a new lock, written (unless
    ``locked``: then a stale or damaged lock is an error), as ``envnix build`` needs.

    A lock whose pins still hold but whose image section is out of date (build.envd changed
    an environment variable, or the lock predates the section) gets a new section only:
    nothing is resolved again. With ``locked`` that is an error too, except for a version 1
    lock, which builds with the section computed now and is left as it is.
    """
    path = lock_file(context, spec)
    platforms = lock_platforms(context, spec, platforms)
    try:
        existing = read_lock(path)
    except CorruptLockError as exc:
        if locked:
            raise
        # Like a stale lock: re-lock; write_lock keeps the damaged file as envnix.lock.bak.
        progress(f"lock: {path.name} is unusable "
                 f"({exc.message.split(': ', 1)[-1]}); re-locking")
        existing = None
    if existing is not None:
        reason = platforms_stale_reason(existing, spec, context, platforms)
        if reason is None:
            change = _image_change(existing, describe)
            if change is None:
                progress(f"lock: {path.name} is up to date "
                         f"({len(existing.artifacts())} artifacts)")
                return existing
            described = _described(existing, describe)
            if locked and existing.image is None:
                progress(f"lock: {path.name} has no image section; building with one made "
                         "now (run envnix lock to record it)")
                return described
            if locked:
                raise StaleLockError(f"{path.name} is stale: {change}",
                                     hint="run envnix lock, or drop --locked")
            write_lock(path, described)
            progress(f"lock: {path.name}: {change}; updated it (no package re-resolved)")
            return described
        if locked:
            raise StaleLockError(f"{path.name} is stale: {reason}",
                                 hint="run envnix lock, or drop --locked")
        progress(f"lock: {path.name} is stale ({reason}); re-locking")
    pins = _kept_pins(existing, spec, context, platforms)
    with step(progress, "lock: resolving"):
        lock = _resolve(spec, context, apt_mirror, progress, existing, pins, platforms)
    lock = _described(lock, describe)
    write_lock(path, lock)
    progress(f"lock: wrote {path} ({len(lock.artifacts())} artifacts)")
    return lock

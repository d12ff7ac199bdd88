"""envnix.lock: every artifact of an image with URL, sha256 and size, plus the inputs it answers.

The file is JSON with sorted keys and two-space indents: deterministic bytes for the same inputs,
readable in a diff, and loadable by Nix itself (``builtins.fromJSON``). It records the *requests*
it was made from, so ``envnix lock --check`` can say exactly what changed.

A lock is read back only through :meth:`Lock.loads`, which checks every field (see
envnix.core.schema): a lock may come from a stranger's repository, and one that lists an
artifact twice, a ``file://`` URL or a short sha256 is refused with the file and the field.
envnix also never writes a lock it would refuse to read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envnix import __version__
from envnix.core import schema as S
from envnix.core.errors import LockError, StaleLockError
from envnix.core.fileio import atomic_write
from envnix.core.progress import REPORTER, Progress
from envnix.lock.toolchain_pin import parse_pin

LOCK_NAME = "envnix.lock"
LOCK_VERSION = 2
"""2 added the image section (what lib.buildImage builds from); a version 1 lock is still read
(it has none: ``envnix lock`` adds it without re-resolving anything)."""
READ_VERSIONS = (1, 2)
IMAGE_FORMAT = 1
"""The image section's ``format``: bump it when a field changes meaning (templates/image.nix
checks it too)."""
BACKUP_SUFFIX = ".bak"
LOCK_HINT = f"run envnix lock to re-lock (it keeps this file as {LOCK_NAME}{BACKUP_SUFFIX})"


class CorruptLockError(StaleLockError):
    """envnix.lock cannot be used as it is: not JSON, another lock-version, or a field without
    its shape. ``envnix lock`` replaces it (keeping the old file); --locked and --check stop.
    A stale lock's exit code: the fix is the same, run envnix lock."""


_OPTIONAL_STR = S.nullable(S.text)
_OPTIONAL_ARGS = S.nullable(S.array(S.any_text))
_APT_SOURCE = S.obj({"uri": S.url, "suite": S.text, "components": S.array(S.token)},
                    {"snapshot": S.token, "flat": S.boolean})
_APT_INDEX = S.obj({"uri": S.url, "suite": S.text, "url": S.url,
                    "component": S.string(r"[^\s]{0,200}", "a component (none: flat)"),
                    "sha256": S.sha256, "size": S.size})
_APT_PACKAGE = S.obj({
    "name": S.string(r"[a-z0-9][a-z0-9+.-]{0,199}", "a Debian package name", max_len=200),
    "version": S.version, "arch": S.token, "filename": S.rel_path, "url": S.url,
    "sha256": S.sha256, "size": S.size, "priority": S.text, "essential": S.boolean,
    "source_suite": S.text, "control": S.any_text,
})
_COMMIT = S.string(r"[0-9a-f]{40}|[0-9a-f]{64}", "a commit id (40 or 64 hex digits)")
_WHEEL_NAME = S.string(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?",
                       "a pip project name", max_len=200)
_WHEEL = S.obj({
    "name": _WHEEL_NAME,
    "version": S.version, "url": S.url, "sha256": S.sha256, "size": S.size,
    "filename": S.string(r"[A-Za-z0-9_][A-Za-z0-9_.+~%!-]{0,250}\.whl", "a wheel file name",
                         max_len=255),
})
# A source build's PEP 517 build system, as its pyproject.toml declares it.
_BUILD_SYSTEM = {
    "requires": S.array(S.string(r"[^\x00-\x1f\x7f]{1,400}", "a build requirement",
                                 max_len=400)),
    "backend": S.string(r"[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_.]*)?",
                        "a PEP 517 build-backend", max_len=200),
    "backend_path": S.array(S.rel_path),
}
_SDIST = S.obj({
    "name": _WHEEL_NAME, "version": S.version, "url": S.url, "sha256": S.sha256, "size": S.size,
    "filename": S.string(r"[A-Za-z0-9_][A-Za-z0-9_.+~%!-]{0,240}\.(tar\.gz|tar\.bz2|tar\.xz|zip)",
                         "an sdist file name", max_len=255),
    **_BUILD_SYSTEM,
})
# name @ git+https://...: the commit its ref named when locked, built like an sdist.
_GIT_SOURCE = S.obj({
    "name": _WHEEL_NAME, "version": S.version, "url": S.url,
    "commit": _COMMIT,
    **_BUILD_SYSTEM,
})
# install.uv, install.nodejs, install.codex, install.julia, install.pixi, VS Code extensions:
# one archive each (a wheel, an npm tarball, a release archive, a conda package, a .vsix), the
# members that go into the image and where (image paths without their "/"), and the links the
# tool needs (target relative to the link).
_TOOL = S.obj({
    "name": S.name, "version": S.version,
    "source": S.one_of("pypi", "npm", "release", "conda", "openvsx"),
    "filename": S.file_name,
    "url": S.url, "sha256": S.sha256, "size": S.size,
    "paths": S.array(S.tuple_of(S.rel_path, S.rel_path)),
    "links": S.array(S.tuple_of(S.rel_path, S.string(r"[A-Za-z0-9_.+~%=/-]{1,1024}",
                                                     "a link target", max_len=1024))),
})
_CONDA_CHANNEL = S.obj({"name": S.text, "url": S.url, "mirrors": S.array(S.url)})
_CONDA_PACKAGE = S.obj({
    "kind": S.one_of("conda"), "name": S.name, "version": S.version, "build": S.token,
    "build_number": S.size, "subdir": S.string(r"[a-z0-9_-]{1,40}", "a conda subdir"),
    "fn": S.file_name, "url": S.url, "mirrors": S.array(S.url), "channel": S.url,
    "sha256": S.sha256, "md5": S.nullable(S.md5), "size": S.size,
    "depends": S.strings, "constrains": S.strings,
    "noarch": S.one_of(None, "python", "generic"), "license": S.nullable(S.any_text),
    "timestamp": S.nullable(S.size),
})
_BASE = S.obj({
    "ref": S.text, "digest": S.digest,
    "manifest": S.obj({"mediaType": S.text, "layers": S.array(S.obj(
        {"digest": S.digest, "size": S.size, "mediaType": S.text}))}),
    "config": S.obj({"digest": S.digest, "diff_ids": S.array(S.digest)},
                    {"Env": _OPTIONAL_ARGS, "WorkingDir": _OPTIONAL_STR,
                     "User": _OPTIONAL_STR, "Entrypoint": _OPTIONAL_ARGS,
                     "Cmd": _OPTIONAL_ARGS}),
    "blob_urls": S.array(S.url),
}, {
    # apt packages on the base (envnix.lock.basesystem): the release they come from and the
    # sha256 of the base's dpkg status they were resolved against, which the build checks.
    "system": S.obj({"distro": S.token, "codename": S.token, "version_id": S.text,
                     "dpkg_status": S.sha256}),
    # pip packages without install.python(): the base's own Python they are installed for
    "python": S.obj({"provider": S.string(r"local|system", "local or system"),
                     "version": S.string(r"3\.[0-9]{1,2}", "a Python version like 3.11")}),
})


# The image section: the layer plan, the OCI config template, the config files, io.copy and
# the hashes of the files the frontend read. templates/image.nix reads it at evaluation time
# and checks what it must on its own (paths inside the context); the builders check theirs.
_PLAN_BASE_LAYER = S.obj({"url": S.url, "sha256": S.sha256, "digest": S.digest,
                          "size": S.size, "diffId": S.digest, "storeName": S.store_name})
_PLAN_APT_SOURCE = S.obj({"uri": S.url, "suite": S.token, "components": S.array(S.token)},
                         {"snapshot": S.token})
_PLAN = S.obj({
    "mtime": S.size, "workdir": S.text, "condaPrefix": S.text,
    "python": S.mapping(S.token, S.text),
    "layers": S.array(S.obj({"name": S.store_name, "trees": S.strings})),
    "nixpkgsCuda": S.nullable(S.obj({}, other_keys=True)),
    "baseLayers": S.array(_PLAN_BASE_LAYER),
    "users": S.array(S.tuple_of(S.text, S.integer(), S.integer(), S.text, S.text)),
    "runs": S.array(S.obj({"commands": S.array(S.any_text)}, {"mountHost": S.boolean})),
    "runEnv": S.mapping(S.text, S.any_text),
    "aptSources": S.array(_PLAN_APT_SOURCE), "triggers": S.array(S.token),
    "aptAuto": S.array(S.token),
}, {"baseStatus": S.sha256})
_ID = S.integer(maximum=(1 << 31) - 1)
# A path below a root (an image path without its "/", a file of the build context): never
# absolute, no ".." component; spaces and non-ASCII letters are fine.
_BELOW = S.string(r"(?!/)(?!(?:.*/)?\.\.(?:/|$))[^\x00-\x1f\x7f]{1,1024}",
                  "a relative path without '..'", max_len=1024)
# io.http's file name: it lands in /home/envd/extra_source itself, never elsewhere.
_HTTP_NAME = S.string(r"(?!.*\.\.)[^/\\\x00-\x1f\x7f]{1,255}", "a file name without '/' or '..'",
                      max_len=255)
_IMAGE = S.obj({
    "format": S.anything,  # checked first, for its own message
    "name": S.text,
    "defaultTag": S.text,
    "plan": _PLAN,
    "config": S.obj({"architecture": S.token, "os": S.token, "created": S.text,
                     "config": S.mapping(S.text, S.anything)}),
    "files": S.mapping(_BELOW, S.tuple_of(S.any_text, S.integer(maximum=0o7777), _ID, _ID)),
    "mounts": S.array(_BELOW),
    "copies": S.array(S.obj({
        "source": S.string(r"\.|(?!/)(?!(?:.*/)?\.\.(?:/|$))[^\x00-\x1f\x7f]{1,1024}",
                           "'.' or a relative path without '..'", max_len=1024),
        "target": S.string(r"/[^\x00-\x1f\x7f]{0,1023}", "an absolute image path",
                           max_len=1024)})),
    "copyOwner": S.tuple_of(_ID, _ID),
    "ignore": S.array(S.obj({"regex": S.text, "negate": S.boolean})),
    "sources": S.mapping(_BELOW, S.sha256),
}, {
    # include(git=URL)'s repositories (envnix.frontend.include), in call order
    "includes": S.array(S.obj({
        "url": S.string(r"(?i:https?|git)://[!-.0-?A-~]{1,255}(?:/[!-~]*)?",
                        "an http(s) or git:// URL without credentials", max_len=2048),
        "commit": _COMMIT,
        "sha256": S.sha256}), unique=lambda i: i.get("url"), unique_field="url"),
    # a slim base (debian:12-slim): the layers leave out what its dpkg filters do
    "slim": S.boolean,
})


def _name(entry: Any) -> Any:
    return entry.get("name")


# One platform's artifacts (the top level holds the first platform's; ``platforms`` the
# others', for --platform linux/amd64,linux/arm64): a lock without ``platforms`` is for the
# one platform its inputs name (``inputs.apt.architecture``; every lock before arm64: amd64).
_SECTIONS_REQUIRED = {
    "inputs": S.mapping(S.text, S.anything),
    "apt": S.obj({
        "sources": S.array(_APT_SOURCE),
        "indexes": S.array(_APT_INDEX, unique=lambda i: i.get("url"), unique_field="url"),
        "packages": S.array(_APT_PACKAGE, unique=_name, unique_field="name"),
    }),
    "pip": S.obj({"wheels": S.array(_WHEEL, unique=lambda w: S.pep503(w.get("name")),
                                    unique_field="name")}),
}
_SECTIONS_OPTIONAL = {
    "conda": S.obj({
        "channels": S.array(_CONDA_CHANNEL, unique=lambda c: c.get("url"),
                            unique_field="url"),
        "packages": S.array(_CONDA_PACKAGE, unique=_name, unique_field="name"),
    }),
    "base": _BASE,
    "image": _IMAGE,
    "tools": S.array(_TOOL, unique=_name, unique_field="name"),
    # pip packages built from source (envnix.lock.sources): each sdist with its PEP 517 build
    # system, and the build root's extra wheels and .debs (none of which is in the image).
    "source_builds": S.obj({
        "sdists": S.array(_SDIST, unique=lambda s: S.pep503(s.get("name")), unique_field="name"),
        "wheels": S.array(_WHEEL, unique=lambda w: S.pep503(w.get("name")), unique_field="name"),
        "debs": S.array(_APT_PACKAGE, unique=_name, unique_field="name"),
    }, {
        "git": S.array(_GIT_SOURCE, unique=lambda s: S.pep503(s.get("name")),
                       unique_field="name"),
    }),
    # io.http: each call's file (envnix.lock.downloads), placed in /home/envd/extra_source.
    "http": S.obj({"files": S.array(S.obj({"url": S.url, "sha256": S.sha256, "size": S.size,
                                           "filename": _HTTP_NAME}))}),
}
_PLATFORM_NAME = S.string(r"linux/[a-z0-9]{1,20}", "a platform such as linux/arm64")
_LOCK = S.obj(
    {"lock-version": S.anything,  # checked first, for its own message
     "created-by": S.text, **_SECTIONS_REQUIRED},
    {
        **_SECTIONS_OPTIONAL,
        # The pinned toolchain the image is built with (envnix/toolchain): checked in full by
        # envnix.lock.toolchain_pin.parse_pin when the lock is read.
        "toolchain": S.mapping(S.text, S.anything),
        "platforms": S.mapping(_PLATFORM_NAME, S.obj(_SECTIONS_REQUIRED, _SECTIONS_OPTIONAL)),
    },
)


def _check_across(data: dict[str, Any]) -> None:
    """What one field's check cannot see: an artifact URL listed twice in any section (Nix
    would fetch it once and the two entries would silently become one), and a base image
    whose layers, diff_ids and blob URLs do not line up."""
    for name, sub in data.get("platforms", {}).items():
        try:
            _check_across(sub)
        except S.Invalid as exc:
            raise S.Invalid(f"platforms[{json.dumps(name)}].{exc.where}", exc.what) from None
    seen: dict[str, str] = {}
    sections = (("apt.packages", data["apt"]["packages"]),
                ("conda.packages", data.get("conda", {}).get("packages", [])),
                ("pip.wheels", data["pip"]["wheels"]), ("tools", data.get("tools", [])),
                ("source_builds.sdists", data.get("source_builds", {}).get("sdists", [])))
    for where, entries in sections:
        for i, entry in enumerate(entries):
            here = f"{where}[{i}].url"
            if entry["url"] in seen:
                raise S.Invalid(here, f"{entry['url']!r} appears twice (also {seen[entry['url']]})")
            seen[entry["url"]] = here
    base = data.get("base")
    if base is not None:
        layers = len(base["manifest"]["layers"])
        for where, items in (("base.config.diff_ids", base["config"]["diff_ids"]),
                             ("base.blob_urls", base["blob_urls"])):
            if len(items) != layers:
                raise S.Invalid(where, f"{len(items)} entries for {layers} layers")


def check_lock_data(data: Any, origin: str) -> None:
    """Raise CorruptLockError unless ``data`` (parsed JSON) is a lock this envnix reads."""
    if not isinstance(data, dict):
        raise CorruptLockError(f"{origin}: expected a JSON object, got {S.kind(data)}",
                               hint=LOCK_HINT)
    if "lock-version" not in data:
        raise CorruptLockError(f"{origin}: lock-version: missing; not an envnix lock?",
                               hint=LOCK_HINT)
    found = data["lock-version"]
    if found not in READ_VERSIONS or type(found) is not int:
        raise CorruptLockError(f"{origin}: lock-version {S.show(found)} is not {LOCK_VERSION}: "
                               "made by another envnix version", hint=LOCK_HINT)
    platforms = data.get("platforms")
    subs = platforms.items() if isinstance(platforms, dict) else ()
    for where, sub in (("image", data), *((f"platforms.{n}.image", s) for n, s in subs)):
        image = sub.get("image") if isinstance(sub, dict) else None
        if isinstance(image, dict):
            S.check_version(image, "format", IMAGE_FORMAT, f"{origin}: {where}",
                            CorruptLockError, LOCK_HINT, made="made", missing="")
    S.validate(data, _LOCK, origin, CorruptLockError, LOCK_HINT)
    try:
        _check_across(data)
    except S.Invalid as exc:
        raise CorruptLockError(f"{origin}: {exc}", hint=LOCK_HINT) from None


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
    # io.http's files: {url, sha256, size, filename} per call, in call order.
    http_files: list[dict[str, Any]] = field(default_factory=list)
    # The toolchain pin (envnix/toolchain) this lock builds with; None in locks made before
    # envnix recorded it (they build with the pin shipped in envnix).
    toolchain: dict[str, Any] | None = None
    # What lib.buildImage needs beyond the artifacts (envnix.render.image_section); None in
    # version 1 locks.
    image: dict[str, Any] | None = None
    # install.uv, install.nodejs, ...: pinned archives and what of them goes where (lock/tools).
    tools: list[dict[str, Any]] = field(default_factory=list)
    # pip packages without a wheel for the target: their sdists and the build root's wheels
    # and .debs (envnix.lock.sources); None when every package has a wheel.
    source_builds: dict[str, Any] | None = None
    # The other platforms' locks (--platform linux/amd64,linux/arm64), by name; each has no
    # toolchain of its own (the builders run on the host's).
    platforms: dict[str, Lock] = field(default_factory=dict)

    @property
    def platform(self) -> str:
        """The platform the top-level sections are for, as its inputs name it."""
        return "linux/" + str(self.inputs.get("apt", {}).get("architecture", "amd64"))

    @property
    def platform_names(self) -> tuple[str, ...]:
        """Every platform this lock holds, the top level's first."""
        return (self.platform, *self.platforms)

    def for_platform(self, name: str) -> Lock:
        """The lock of one platform it holds (with this lock's toolchain)."""
        if name == self.platform:
            return self
        sub = self.platforms.get(name)
        if sub is None:
            raise LockError(f"the lock holds {', '.join(self.platform_names)}, not {name}",
                            hint=f"run envnix lock --platform {name}")
        return replace(sub, toolchain=self.toolchain)

    def _sections(self) -> dict[str, Any]:
        data: dict[str, Any] = {
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
        if self.image is not None:
            data["image"] = self.image
        if self.tools:  # only then, as base
            data["tools"] = sorted(self.tools, key=lambda t: t["name"])
        if self.http_files:  # only then: locks of other images keep their bytes
            data["http"] = {"files": self.http_files}
        if self.source_builds is not None:  # only then, as http
            data["source_builds"] = self.source_builds
        return data

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"lock-version": LOCK_VERSION,
                                "created-by": f"envnix {__version__}", **self._sections()}
        if self.toolchain is not None:
            data["toolchain"] = self.toolchain
        if self.platforms:  # only then: single-platform locks keep their bytes
            data["platforms"] = {n: sub._sections() for n, sub in self.platforms.items()}
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.dumps().encode()).hexdigest()

    @classmethod
    def loads(cls, text: str | bytes, origin: str = LOCK_NAME) -> Lock:
        """Parse and check a lock; anything wrong is one CorruptLockError naming the field."""
        raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        data = S.parse_json(raw, origin, CorruptLockError, LOCK_HINT)
        check_lock_data(data, origin)
        if "toolchain" in data:
            parse_pin(data["toolchain"], f"{origin}: toolchain", CorruptLockError, LOCK_HINT)
        lock = cls._from_sections(data)
        lock.toolchain = data.get("toolchain")
        lock.platforms = {n: cls._from_sections(sub)
                          for n, sub in data.get("platforms", {}).items()}
        if lock.platform in lock.platforms:
            raise CorruptLockError(f"{origin}: platforms.{lock.platform}: the top level's "
                                   "platform listed again", hint=LOCK_HINT)
        return lock

    @classmethod
    def _from_sections(cls, data: dict[str, Any]) -> Lock:
        return cls(
            inputs=data["inputs"],
            apt_sources=data["apt"]["sources"],
            apt_indexes=data["apt"]["indexes"],
            apt_packages=data["apt"]["packages"],
            pip_wheels=data["pip"]["wheels"],
            conda_channels=data.get("conda", {}).get("channels", []),
            conda_packages=data.get("conda", {}).get("packages", []),
            base=data.get("base"),
            image=data.get("image"),
            tools=data.get("tools", []),
            http_files=data.get("http", {}).get("files", []),
            source_builds=data.get("source_builds"),
        )

    @property
    def git_sources(self) -> list[dict[str, Any]]:
        """The pip packages pinned as git commits (built like sdists)."""
        return (self.source_builds or {}).get("git", [])

    @property
    def sdists(self) -> list[dict[str, Any]]:
        """The pip packages pinned as sdists (built into wheels by the image build)."""
        return (self.source_builds or {}).get("sdists", [])

    def artifacts(self) -> list[dict[str, Any]]:
        return [*self.apt_packages, *self.conda_packages, *self.pip_wheels, *self.tools]


def read_lock(path: Path) -> Lock | None:
    """The lock at ``path``, checked; None when there is none."""
    if not os.path.lexists(path):
        return None
    return Lock.loads(_lock_bytes(path), origin=str(path))


def _lock_bytes(path: Path) -> bytes:
    """Only a regular file beside build.envd is read: a symlink leading elsewhere (a
    stranger's repository could point it at any host file) is refused like a corrupt lock."""
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(path.parent.resolve()):
            raise CorruptLockError(f"{path}: a symlink to {target}, outside its directory",
                                   hint=LOCK_HINT)
    return S.read_bytes(path, str(path), CorruptLockError, LOCK_HINT)


def write_lock(path: Path, lock: Lock, notice: Progress | None = None) -> bool:
    """Write atomically (temp file + rename): a crash never leaves half a lock. True if changed.

    The new lock is checked first: envnix never writes a lock it would refuse to read. An
    existing file that is not a valid lock (corrupt, foreign, another version) is kept as
    envnix.lock.bak, and ``notice`` (default: stderr) gets one line saying so.
    """
    raw = lock.dumps().encode("utf-8")
    try:
        check_lock_data(json.loads(raw), f"the new {path.name}")
    except CorruptLockError as exc:
        raise LockError(exc.message, hint="envnix.lock records only http(s) URLs, so that it "
                        "rebuilds on any machine: serve a local mirror or channel over http"
                        if "http(s) URL" in exc.message else None) from None
    if os.path.lexists(path):
        try:
            old = _lock_bytes(path)
            if old == raw and not path.is_symlink():
                return False
            Lock.loads(old, origin=str(path))
        except CorruptLockError as exc:
            _keep_corrupt(path, exc, notice or REPORTER)
    atomic_write(path, raw)
    return True


def _keep_corrupt(path: Path, error: CorruptLockError, notice: Progress) -> None:
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    try:
        os.replace(path, backup)
    except OSError as exc:
        raise LockError(f"{path}: cannot move the unusable lock aside to {backup.name}: "
                        f"{exc.strerror}", hint=f"remove {path} and run envnix lock") from None
    reason = error.message.split(": ", 1)[-1]
    notice(f"lock: {path.name} was unusable ({reason}); kept it as {backup.name}")


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

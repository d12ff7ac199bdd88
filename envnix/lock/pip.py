"""Lock pip requirements for the *image's* Python and platform with uv.

uv resolves for a target that is not the host (``--python-version``, ``--python-platform``),
binary-only, and its PEP 751 pylock.toml output names exactly one wheel per package with URL,
size and sha256 — which is what the lock needs. Nothing is downloaded except metadata.

Indexes that serve plain PEP 503 HTML (many private indexes and mirrors) give no file sizes,
and may give no ``#sha256=`` either; uv then writes wheels without them. The lock asks the
server: the size from a HEAD request (Content-Length), and when that says nothing or the
sha256 is missing too, the wheel is downloaded once and hashed (:func:`_complete`).

A re-lock hands uv the old lock's wheels as the pylock.toml it writes to: uv takes the pins of
an existing output file as preferences, keeping each one that still meets the requirements
and resolving the rest (:func:`_preferences_text`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import difflib
import gzip
import json
import os
import re
import shlex
import sys
import tempfile
import time
import tomllib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Self

from envnix.core import credentials, http, process
from envnix.core import schema as S
from envnix.core.errors import (
    FetchError,
    LockError,
    PackageNotFoundError,
    SpecError,
    ToolMissingError,
)
from envnix.core.fileio import atomic_write
from envnix.core.progress import Progress
from envnix.frontend.envyaml import read_context_text, resolve_in_context
from envnix.spec import PipRequest, has_control_character
from envnix.spec.pipargs import (
    PipWords,
    check_name,
    has_pip_words,
    local_project,
    parse_pip_words,
)
from envnix.spec.platform import AMD64, Platform

DEFAULT_INDEX = "https://pypi.org/simple"
_NAMES_CACHE_SECONDS = 7 * 24 * 3600
_PARALLEL = 8
"""Requests in flight at once when asking an index for sizes or hashes."""


@dataclass(frozen=True)
class PinnedFile:
    """One pinned file of a package, as the lock records it."""

    name: str
    version: str
    filename: str
    url: str
    sha256: str
    size: int

    def to_lock_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_lock_dict(cls, data: Mapping[str, Any]) -> Self:
        """The pin of a lock entry (an sdist's entry also holds its build system)."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Wheel(PinnedFile):
    """A pinned wheel: installed as it is."""


@dataclass(frozen=True)
class Sdist(PinnedFile):
    """A package with no wheel for the target, pinned as its source archive: the image build
    turns it into a wheel inside Nix (lock/sources.py adds how)."""


@dataclass(frozen=True)
class GitSource:
    """A ``name @ git+https://...`` requirement, pinned to the commit its ref named at lock
    time; built from that commit's tree like an sdist (lock/sources.py)."""

    name: str
    version: str
    url: str
    commit: str

    @classmethod
    def from_lock_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


Pinned = Wheel | Sdist | GitSource


@dataclass(frozen=True)
class _Found:
    """A wheel as pylock.toml names it; ``sha256``/``size`` are None when the index gave none."""

    name: str
    version: str
    url: str
    sha256: str | None
    size: int | None
    sdist: bool = False
    commit: str | None = None  # a git reference's: url is the repository


def manylinux_platform(glibc: str, platform: Platform = AMD64) -> str:
    """uv's platform name for a glibc target, e.g. 2.36 -> x86_64-manylinux_2_36."""
    return platform.manylinux(glibc)


def _uv_binary() -> str:
    try:
        from uv import find_uv_bin
    except ImportError as exc:  # pragma: no cover - uv is a declared dependency
        raise ToolMissingError("uv is not installed: pip install uv") from exc
    return find_uv_bin()


def requirements_text(request: PipRequest, context: Path) -> str:
    """What the lock answers for pip (its fingerprint): the requirement lines, then the pip
    options the entries and files gave, one per line (none: the text of before them)."""
    lines, options = _gather(request, context)
    lines += [f"--extra-index-url {url}" for url in options.indexes]
    lines += [f"--find-links {url}" for url in options.find_links]
    lines += [f"--trusted-host {host}" for host in options.trusted_hosts]
    lines += ["--pre"] if options.pre else []
    return "\n".join(lines) + ("\n" if lines else "")


def _gather(request: PipRequest, context: Path) -> tuple[list[str], PipWords]:
    """The requirements.in that uv resolves (names, then the requirements files' contents)
    and the pip options written among them (entries' and files' alike).

    Files are inlined (not referenced with -r) so the lock fingerprint covers their contents.
    They must lie inside the build context (the frontend checked; this is the reader). A
    file's line is read as pip would (shell words); what cannot be locked is refused with
    the file:line:col of the line.
    """
    for entry in request.packages:
        # uv reads requirements.in line by line: a "\r" or "\n" inside one entry would start
        # a line of its own, such as "-r /etc/hostname" (a host file read outside the context).
        if has_control_character(entry):
            raise SpecError(f"pip package {entry!r} contains a control character",
                            hint="one requirement per list entry, as pip would read it")
    lines = list(request.packages)
    options = PipWords(indexes=list(request.package_indexes),
                       find_links=list(request.find_links), pre=request.prerelease)
    for rel in request.requirements_files:
        try:
            text = read_context_text(resolve_in_context(rel, context))
        except ValueError as exc:
            raise SpecError(f"requirements file {rel}: {exc}",
                            hint="envnix reads only files inside the build context") from None
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            bare = re.sub(r"(^|\s+)#.*$", "", line)  # without its comment
            if local_project(bare):
                continue  # a project of the build context: installed in the image by pip
            if not has_pip_words(line):
                lines.append(line)
                continue
            words = _file_line(bare, rel, number, raw)
            lines += words.requirements
            for have, new in ((options.indexes, words.indexes),
                              (options.find_links, words.find_links),
                              (options.trusted_hosts, words.trusted_hosts)):
                have.extend(v for v in new if v not in have)
            options.pre = options.pre or words.pre
    return lines, options


def _file_line(line: str, rel: str, number: int, raw: str) -> PipWords:
    col = len(raw) - len(raw.lstrip()) + 1
    try:
        words = parse_pip_words(line, "")
        for requirement in words.requirements:
            check_name(requirement, "")
    except SpecError as exc:
        raise SpecError(exc.message, file=rel, line=number, col=col, hint=exc.hint) from None
    return words


def lock_pip(
    request: PipRequest,
    context: Path,
    python_version: str,
    glibc: str,
    progress: Progress | None = None,
    constraints: Sequence[str] = (),
    platform: Platform = AMD64,
    preferred: Sequence[Pinned] = (),
    sources: bool = False,
) -> list[Pinned]:
    """Resolve the request to wheels for CPython ``python_version`` on manylinux ``glibc``
    (for ``platform``'s machine: x86_64 or aarch64 wheels).

    ``constraints`` (pip constraint lines) bound the versions of packages that something
    requires without requiring them themselves: install.cuda's release pins. ``preferred``
    (the pins of the lock being redone) are kept where they still fit. With ``sources``, a
    package that has no wheel for the target is pinned as its sdist (an :class:`Sdist`), which
    the image build compiles; only packages uv names as wheel-less are, one by one, so a
    package with wheels never moves to its source.
    """
    lines, options = _gather(request, context)
    if not lines:
        return []
    lines = _keep_git_commits(lines, [p for p in preferred if isinstance(p, GitSource)])
    reqs = "\n".join(lines) + "\n"
    index = request.index_url or DEFAULT_INDEX
    if progress:
        progress(f"pip: resolving {len(reqs.splitlines())} requirement(s) for "
                 f"python{python_version} {manylinux_platform(glibc, platform)} with uv")
    started = time.monotonic()
    from_source: list[str] = []
    with tempfile.TemporaryDirectory(prefix="envnix-uv-") as tmp:
        req_in = Path(tmp) / "requirements.in"
        req_in.write_text(reqs, encoding="utf-8")
        out = Path(tmp) / "pylock.toml"
        cmd = [
            _uv_binary(), "pip", "compile", str(req_in),
            "--python-version", python_version,
            "--python-platform", manylinux_platform(glibc, platform),
            "--only-binary", ":all:",
            "--format", "pylock.toml", "-o", str(out),
            "--no-header", "--no-config", "--quiet",
        ]
        if constraints:
            constraints_txt = Path(tmp) / "constraints.txt"
            constraints_txt.write_text("\n".join(constraints) + "\n", encoding="utf-8")
            cmd += ["--constraint", str(constraints_txt)]
        if request.index_url:
            cmd += ["--index-url", request.index_url]
        # uv takes a package from the first index that has it, and the extra indexes come
        # before the default one: an entry's own index (torch --index-url .../cpu) wins for
        # what it serves, as pip with that index alone would install it.
        for extra in dict.fromkeys([*options.indexes, *request.extra_index_urls]):
            cmd += ["--extra-index-url", extra]
        for page in options.find_links:
            cmd += ["--find-links", page]
        if options.pre:
            cmd += ["--prerelease", "allow"]
        for host in dict.fromkeys([*request.trusted_hosts, *options.trusted_hosts]):
            cmd += ["--allow-insecure-host", host]
        # uv may read a project's metadata (git references, sdists) but never run its code
        # here: its interpreter is the guarded one (see guarded_interpreter). git sees none
        # of the user's configuration and fetches over http(s) only; "file" stays git's
        # default "user" (uv's own clone of its cache, never a submodule's file:// URL).
        cmd += ["--python", str(guarded_interpreter(Path(tmp))), "--no-build-isolation"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "GIT_"))}
        env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
                   GIT_TERMINAL_PROMPT="0", **_git_config(
                       ("protocol.allow", "never"), ("protocol.http.allow", "always"),
                       ("protocol.https.allow", "always"), ("protocol.file.allow", "user"),
                       ("credential.helper", ""), ("core.hooksPath", os.devnull)))
        preferences = _preferences_text(preferred) if preferred else None
        while True:
            if preferences is not None:  # each try starts from the old lock's pins
                out.write_text(preferences, encoding="utf-8")
            sourced = [a for name in from_source for a in ("--no-binary", name)]
            proc = process.run(cmd + sourced, error=LockError, env=env)
            if proc.returncode == 0:
                break
            wheel_less = re.findall(r"Wheels are required for `([^`]+)` because building from "
                                    r"source is disabled", _plain(proc.stderr))
            new = [n for n in wheel_less if n not in from_source]
            if not sources or not new or len(from_source) >= _MAX_SOURCE_BUILDS:
                raise _uv_error(proc.stderr, index)
            if progress:
                progress(f"pip: {', '.join(new)} {'has' if len(new) == 1 else 'have'} no wheel "
                         "for the target; taking the sdist, built inside the image build")
            from_source += new
        found = _parse_pylock(out.read_text(encoding="utf-8"))
    wheels = _complete(found, {*request.trusted_hosts, *options.trusted_hosts}, progress)
    if progress:
        total = sum(w.size for w in wheels if isinstance(w, PinnedFile))
        progress(f"pip: locked {len(wheels)} package(s), {total / 1e6:.1f} MB, "
                 f"in {time.monotonic() - started:.1f}s")
    return wheels


def _keep_git_commits(lines: list[str], pinned: Sequence[GitSource]) -> list[str]:
    """Requirement lines with each git reference the lock pins (same project, same
    repository) asking for the pinned commit: uv takes no preference for a git ref, and a
    branch moves, so a re-lock would otherwise follow it."""
    by_url = {g.url: g for g in pinned}
    kept = []
    for line in lines:
        match = re.fullmatch(r"\s*(?:([A-Za-z0-9][A-Za-z0-9._-]*)\s*@\s*)?git\+(\S+?)"
                             r"(@[^@/]+)?\s*", line)
        pin = by_url.get(match[2]) if match else None
        if match and pin and (not match[1] or S.pep503(match[1]) == S.pep503(pin.name)):
            line = f"{match[1] + ' @ ' if match[1] else ''}git+{pin.url}@{pin.commit}"
        kept.append(line)
    return kept


_MAX_SOURCE_BUILDS = 64
"""Packages one lock may take from source: each retry of uv names one more."""
_REFUSED = "envnix-refused-build"


def guarded_interpreter(directory: Path) -> Path:
    """An interpreter for uv that answers uv's interpreter query and runs nothing else.

    uv needs an interpreter even to resolve for another target, and with sdists allowed it
    would run a package's build backend (setup.py: any code) on this machine to learn its
    dependencies. Given ``--no-build-isolation`` it runs builds with the interpreter it was
    given, whose path the query reports: ``bin/python`` here, a shell script that execs
    envnix's own Python for the exact query command and refuses every other (a build), so
    only sdists with static metadata (PEP 621 pyproject.toml, PKG-INFO 2.2) resolve.
    """
    real = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    venv = directory / "guarded-python"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    atomic_write(venv / "pyvenv.cfg",
                 f"home = {os.path.dirname(real)}\ninclude-system-site-packages = false\n"
                 f"version = {'.'.join(map(str, sys.version_info[:3]))}\n".encode())
    guard = venv / "guard.py"
    atomic_write(guard, _GUARD.replace("@REAL@", repr(real)).replace("@REFUSED@", _REFUSED))
    python = venv / "bin" / "python"
    atomic_write(python, (f"#!/bin/sh\nexec {shlex.quote(real)} -I -S "
                          f"{shlex.quote(str(guard))} \"$0\" \"$@\"\n").encode(), mode=0o755)
    return python


_GUARD = r'''import os, re, sys
QUERY = re.compile(r'import sys; sys\.path = \[__import__\("os"\)\.fsdecode\('
                   r'b"[A-Za-z0-9/._-]+"\)\] \+ sys\.path; '
                   r'from python\.get_interpreter_info import main; main\(\)')
argv0, args = sys.argv[1], sys.argv[2:]
if len(args) == 4 and args[:3] == ["-I", "-B", "-c"] and QUERY.fullmatch(args[3]):
    os.execv(@REAL@, [argv0, *args])
sys.stderr.write("@REFUSED@\n")
sys.exit(97)
'''


def _git_config(*pairs: tuple[str, str]) -> dict[str, str]:
    """git configuration as environment variables (GIT_CONFIG_COUNT/KEY_n/VALUE_n)."""
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    return env


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _preferences_text(pins: Sequence[Pinned]) -> str:
    """A PEP 751 pylock.toml of ``pins``, as uv reads an existing output file's pins.

    JSON strings are TOML basic strings (same quotes and escapes), so json.dumps quotes them.
    """
    lines = ['lock-version = "1.0"', 'created-by = "envnix"']
    for w in sorted(pins, key=lambda w: w.name):
        lines += ["", "[[packages]]", f"name = {json.dumps(w.name)}",
                  f"version = {json.dumps(w.version)}"]
        if isinstance(w, GitSource):
            lines.append(f'vcs = {{ type = "git", url = {json.dumps(w.url)}, '
                         f"commit-id = {json.dumps(w.commit)} }}")
            continue
        where = (f"{{ url = {json.dumps(w.url)}, size = {w.size}, "
                 f"hashes = {{ sha256 = {json.dumps(w.sha256)} }} }}")
        lines.append(f"sdist = {where}" if isinstance(w, Sdist) else f"wheels = [{where}]")
    return "\n".join(lines) + "\n"


def _parse_pylock(text: str) -> list[_Found]:
    data = tomllib.loads(text)
    found = []
    for pkg in data.get("packages", []):
        files = pkg.get("wheels") or []
        archive = pkg.get("archive") or {}
        if not files and str(archive.get("url", "")).endswith(".whl"):
            files = [archive]  # a direct URL (name @ https://...whl): pinned by its sha256
        vcs = pkg.get("vcs")
        if vcs and vcs.get("type") == "git" and vcs.get("commit-id"):
            found.append(_Found(name=pkg["name"], version=str(pkg.get("version", "0")),
                                url=str(vcs["url"]), sha256=None, size=None,
                                commit=str(vcs["commit-id"])))
            continue
        sdist = pkg.get("sdist") if not files else None
        if not files and not sdist:
            raise LockError(f"pip: {pkg['name']} {pkg.get('version')} has no wheel for the "
                            "target platform and no sdist")
        chosen = sdist or max(files, key=lambda f: _wheel_preference(f["url"].rsplit("/", 1)[-1]))
        sha256 = (chosen.get("hashes") or {}).get("sha256")
        size = chosen.get("size")
        found.append(_Found(
            name=pkg["name"], version=str(pkg["version"]), url=chosen["url"],
            sha256=str(sha256).lower() if sha256 else None,
            size=int(size) if size is not None else None, sdist=bool(sdist),
        ))
    return sorted(found, key=lambda f: f.name)


def _complete(found: list[_Found], trusted_hosts: set[str],
              progress: Progress | None = None) -> list[Pinned]:
    """Wheels with sha256 and size, asking the index for what its pages did not say.

    A PEP 503 HTML page gives no sizes: one HEAD per wheel (in parallel) reads them. A wheel
    without a sha256, or whose server sends no Content-Length, is downloaded and hashed; a
    download that contradicts the sha256 the page gave is an error, not a silent re-pin.
    """
    found, git = [f for f in found if f.commit is None], [f for f in found if f.commit]
    missing = [f for f in found if f.sha256 is None or f.size is None]
    done = {f.url: f for f in found if f not in missing}
    if missing:
        started = time.monotonic()
        workers = min(_PARALLEL, len(missing))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            jobs = [pool.submit(_ask_index, f, trusted_hosts) for f in missing]
            for job in jobs:
                completed = job.result()
                done[completed.url] = completed
        if progress:
            hashed = sum(1 for f in missing if f.sha256 is None)
            progress(f"pip: the index gave no size for {len(missing)} wheel(s)"
                     + (f" and no sha256 for {hashed}" if hashed else "")
                     + f"; asked the server in {time.monotonic() - started:.1f}s")
    wheels: list[Pinned] = [GitSource(f.name, f.version, f.url, str(f.commit)) for f in git]
    for f in found:
        full = done[f.url]
        assert full.sha256 is not None and full.size is not None
        pinned = Sdist if f.sdist else Wheel
        wheels.append(pinned(name=f.name, version=f.version,
                             filename=urllib.parse.unquote(f.url.rsplit("/", 1)[-1]),
                             url=f.url, sha256=full.sha256, size=full.size))
    return wheels


def _ask_index(found: _Found, trusted_hosts: set[str]) -> _Found:
    """``found`` with its size (HEAD) and, when needed, sha256 (download and hash)."""
    url = found.url
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise LockError(f"pip: {found.name} {found.version} comes from {url}, not an http(s) "
                        "URL", hint="serve the index over http(s): envnix.lock records only "
                                    "URLs any machine can fetch")
    insecure = (urllib.parse.urlsplit(url).hostname or "") in trusted_hosts
    size = http.content_length(url, insecure=insecure) if found.sha256 else None
    if size is not None:
        return replace(found, size=size)
    try:
        sha256, size = http.hash_url(url, insecure=insecure)
    except http.Unauthorized as err:
        raise _login_refused(url, str(err.code)) from None
    except http.NotFound:
        raise FetchError(f"pip: {url} is listed by the index but not found (HTTP 404)",
                         hint="the index is inconsistent; try again or ask its maintainers"
                         ) from None
    except http.RequestError as err:
        raise FetchError(f"pip: cannot download {url} to hash it: {http.reason(err)}"
                         ) from None
    if found.sha256 is not None and sha256 != found.sha256:
        raise LockError(f"pip: {url} has sha256 {sha256}, but the index says {found.sha256}",
                        hint="the index or a proxy serves other bytes than it lists; "
                             "check it before locking")
    return replace(found, sha256=sha256, size=size)


_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def _wheel_preference(filename: str) -> tuple[int, tuple[int, int], str]:
    """Rank wheels uv found compatible: exact CPython ABI first, then the newest manylinux."""
    parts = filename[: -len(".whl")].split("-")
    abi, platforms = parts[-2], parts[-1].split(".")
    abi_rank = 2 if abi.startswith("cp") and abi != "abi3" else (1 if abi == "abi3" else 0)
    glibc = (0, 0)
    for tag in platforms:
        legacy = _LEGACY_MANYLINUX.get(re.sub(r"_(x86_64|aarch64)$", "", tag))
        m = re.match(r"manylinux_(\d+)_(\d+)_", tag)
        version = legacy or ((int(m[1]), int(m[2])) if m else (0, 0))
        glibc = max(glibc, version)
    return (abi_rank, glibc, filename)


def _uv_error(stderr: str, index: str) -> LockError:
    """Turn uv's resolver report into one line; unknown names get did-you-mean suggestions."""
    text = _plain(stderr)
    denied = re.search(r"index URL \((\S+)\) could not be queried due to a lack of valid "
                       r"authentication credentials \((\d+)", text)
    if denied:
        return _login_refused(denied[1], denied[2])
    refused = re.search(r"Failed to build `([^`=]+)==([^`]+)`", text)
    if refused and _REFUSED in text:
        return LockError(f"pip: {refused[1]} {refused[2]} has no wheel for the target, and its "
                         "sdist's dependencies are computed by its build script; envnix runs no "
                         "package code at lock time",
                         hint=f"pin a version of {refused[1]} that has a wheel for the target, "
                              "or one whose sdist declares its dependencies statically "
                              "(pyproject.toml [project] without dynamic dependencies)")
    missing = re.search(r"Because (\S+) was not found in the package registry", text)
    if missing:
        name = missing[1]
        return PackageNotFoundError(f"pip package {name!r} not found on {index}"
                                    + _suggest_pypi(name, index))
    if re.search(r"(error sending request|dns error|Connection refused|failed to fetch)", text,
                 re.I):
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), text.strip())
        return FetchError(f"pip: cannot reach the index {index}: {first}")
    versions = re.search(r"Because (?:only )?(.+?) (?:is|are) available and you require (.+?),",
                         text)
    if versions:
        return LockError(f"pip: you require {versions[2]}, but only {versions[1]} is available "
                         "as a wheel for the target")
    decorations = " \u00d7\u2570\u2500\u25b6\u2502"  # uv's report art: x, corners, arrows
    lines = [ln.strip(decorations) for ln in text.splitlines() if ln.strip()]
    summary = " ".join(lines[:3]) if lines else "uv failed"
    return LockError(f"pip: resolution failed: {summary}")


def _login_refused(url: str, code: str) -> FetchError:
    """One line naming the index's host: the netrc login it refused, or that it has none."""
    host = urllib.parse.urlsplit(url).hostname or url
    netrc = credentials.netrc_path()
    if netrc is not None and credentials.netrc_login(host) is not None:
        return FetchError(f"pip: the index {host} refused the login for it in {netrc} "
                          f"(HTTP {code})", hint="the password or token may be wrong or "
                          "expired: update that netrc entry")
    return FetchError(f"pip: the index {host} needs a login (HTTP {code}) and no netrc has one",
                      hint=f"add 'machine {host} login USER password SECRET' to ~/.netrc "
                           "(or the file NETRC names)")


def _suggest_pypi(name: str, index: str) -> str:
    """Closest project names from the index's full listing (fetched once, cached for a week)."""
    try:
        names = _index_names(index)
    except (http.RequestError, OSError, ValueError):
        return ""
    normalized = re.sub(r"[-_.]+", "-", name).lower()
    pool = [n for n in names if abs(len(n) - len(normalized)) <= 3 and n[:1] == normalized[:1]]
    close = difflib.get_close_matches(normalized, pool, n=3, cutoff=0.75)
    return f"; did you mean: {', '.join(close)}?" if close else ""


def _index_names(index: str) -> list[str]:
    cache_root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "envnix"
    key = re.sub(r"[^A-Za-z0-9]+", "_", index).strip("_")
    cache = cache_root / f"index-names-{key}.json.gz"
    if cache.exists() and time.time() - cache.stat().st_mtime < _NAMES_CACHE_SECONDS:
        with contextlib.suppress(OSError, ValueError, EOFError):
            cached = json.loads(gzip.decompress(cache.read_bytes()))
            if isinstance(cached, list) and all(isinstance(n, str) for n in cached):
                return cached
        # a damaged cache entry: fetch the listing again
    body = http.get(index.rstrip("/") + "/",
                    {"Accept": "application/vnd.pypi.simple.v1+json"}).decode("utf-8", "replace")
    if body.lstrip().startswith("{"):
        names = sorted(p["name"] for p in json.loads(body).get("projects", []))
    else:  # PEP 503 HTML: some indexes and proxies ignore the JSON Accept header
        names = sorted(m.lower() for m in re.findall(r">([^<>]+)</a>", body))
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cache, gzip.compress(json.dumps(names).encode(), mtime=0))
    return names

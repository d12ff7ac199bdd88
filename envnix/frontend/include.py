"""envd's ``include(git=URL)``, pinned: a remote repository's .envd files at one commit.

envd clones the repository's HEAD into its cache at every build (or pulls it), so the same
build.envd means whatever the repository holds that day. envnix resolves HEAD to a commit once
(``git ls-remote``), fetches that commit shallowly into a cache it owns
(``$XDG_CACHE_HOME/envnix/include``, never the build context), and the lock records URL,
commit and the sha256 of the .envd files read; later evaluations use the recorded commit and
refuse one whose files hash otherwise.

git runs with nothing of the user's: no system or global config (so no credential helper,
``insteadOf`` or hooks a URL could reach), no terminal prompt, no ``HOME``, and only the
http, https and git protocols (never ``file://`` or ``ext::``). envnix reads the files from
git's object database (``ls-tree`` + ``cat-file``), never from a checkout, so no filter,
attribute or symlink of the repository takes part. The files are evaluated by the same
sandboxed evaluator, under the same bounds, as build.envd itself (envnix.frontend.evaluate).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envnix.core import fileio
from envnix.core.errors import EnvnixError, FetchError, FrontendError, SpecError, StaleLockError
from envnix.core.process import Completed, run
from envnix.frontend.bounds import MAX_SOURCE_BYTES

SCHEMES = ("http", "https", "git")
MAX_URL = 2048
MAX_INCLUDES = 16
"""Repositories one evaluation may include: each is a separate fetch and evaluation round."""
MAX_FILES = 256
"""The most .envd files read from one repository (envdlib has about ten)."""
MAX_TOTAL_BYTES = 8 << 20
"""The most .envd text read from one repository, all files together."""
LS_REMOTE_SECONDS = 60.0
FETCH_SECONDS = 300.0

COMMIT_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object names

# Passed to every git command: the protocols a URL may use, no hooks, no helpers, no
# background maintenance, objects checked as they arrive.
_GIT_CONFIG = (
    "protocol.allow=never", "protocol.http.allow=always", "protocol.https.allow=always",
    "protocol.git.allow=always", "credential.helper=", "core.askPass=",
    "core.hooksPath=/dev/null", "core.fsmonitor=false", "transfer.fsckObjects=true",
    "fetch.recurseSubmodules=false", "gc.auto=0", "maintenance.auto=false",
    "http.followRedirects=initial", "advice.detachedHead=false",
)
# What git may see of envnix's environment: where programs are, proxies and CA certificates.
_PASS_ENV = ("PATH", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
             "ALL_PROXY", "no_proxy", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR",
             "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "TZ")


def check_url(url: str) -> str:
    """The URL as include() may use it, or SpecError saying why not (envd passes any string
    to ``git clone``, where ``ext::`` runs a program and a path reads the host)."""
    if not url:
        raise SpecError("include(git=''): the URL is empty",
                        hint='name a repository: include(git="https://git.example/org/lib")')
    if len(url) > MAX_URL:
        raise SpecError(f"include(git=...): the URL is longer than {MAX_URL} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in url) or not url.isascii():
        raise SpecError(f"include(git={url!r}): the URL contains spaces, control or non-ASCII "
                        "characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        raise SpecError(f"include(git={url!r}): the URL is malformed") from None
    if parts.scheme.lower() not in SCHEMES:
        raise SpecError(f"include(git={url!r}): only http, https and git URLs are fetched, "
                        f"not {parts.scheme + '://' if parts.scheme else 'a path or'} "
                        "references", hint="name the repository by its https:// URL")
    if "@" in parts.netloc:
        raise SpecError(f"include(git={url!r}): the URL carries credentials, which envnix.lock "
                        "would record", hint="include a public repository; vendor a private "
                        "one's .envd files and load() them")
    if not parts.hostname or not port_ok:
        raise SpecError(f"include(git={url!r}): the URL names no valid host[:port]")
    if parts.query or parts.fragment:
        raise SpecError(f"include(git={url!r}): a repository URL has no ?query or #fragment",
                        hint="envd includes the repository's HEAD; envnix.lock pins its commit")
    return url


@dataclass(frozen=True)
class IncludedRepo:
    """One repository at one commit: its .envd files (path -> text) in envd's walk order."""

    url: str
    commit: str
    files: tuple[tuple[str, str], ...]

    @property
    def sha256(self) -> str:
        return content_sha256(self.files)

    def pin(self) -> dict[str, str]:
        """The lock's record of it (image section ``includes``)."""
        return {"url": self.url, "commit": self.commit, "sha256": self.sha256}


def content_sha256(files: tuple[tuple[str, str], ...]) -> str:
    """sha256 over every file's path and content: one line ``<sha256 of text>  <path>`` per
    file, in order, as ``sha256sum`` prints them."""
    lines = "".join(f"{hashlib.sha256(text.encode()).hexdigest()}  {path}\n"
                    for path, text in files)
    return hashlib.sha256(lines.encode()).hexdigest()


class IncludeNeeded(FrontendError):
    """Raised from inside an evaluation for a repository not fetched yet: the caller fetches
    it outside the sandboxed child and evaluates again (envnix.frontend.load_spec)."""

    def __init__(self, url: str, *, file: str | None = None, line: int | None = None,
                 col: int | None = None) -> None:
        super().__init__(f"include(git={url!r}) is not fetched yet", file=file, line=line,
                         col=col)
        self.url = url


def walk_order(path: str) -> tuple[str, ...]:
    """envd walks the clone with Go's filepath.WalkDir: lexical order, directory by directory."""
    return tuple(path.split("/"))


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/envnix/include``, default ``~/.cache/envnix/include``."""
    return fileio.cache_dir("include")


def cache_dir(url: str, root: Path | None = None) -> Path:
    """The cache's bare repository for ``url`` (one per URL, whatever it is named)."""
    return (root or cache_root()) / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}.git"


def pins_from_lock(image: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """The include pins an envnix.lock's image section records, by URL."""
    return {p["url"]: p for p in (image or {}).get("includes", [])}


class Fetcher:
    """Brings repositories into the cache and reads their .envd files; each error names the
    include() call (``where``: file:line:col)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()

    def repo(self, url: str, pin: Mapping[str, str] | None, where: str = "",
             locked: bool = False) -> IncludedRepo:
        """``url`` at the pinned commit (checked against the pinned sha256), else at HEAD."""
        at = f"{where}: " if where else ""
        shown = f"include(git={url!r})"
        if pin is None and locked:
            raise StaleLockError(f"{at}{shown} is not pinned in envnix.lock",
                                 hint="run envnix lock, or drop --locked")
        gitdir = self._gitdir(url)
        commit = pin["commit"] if pin else self._head(gitdir, url, at + shown)
        if not self._has_commit(gitdir, commit):
            self._fetch(gitdir, url, commit, at + shown, pinned=pin is not None)
        repo = IncludedRepo(url, commit, self._read(gitdir, commit, at + shown))
        if pin is not None and repo.sha256 != pin["sha256"]:
            raise StaleLockError(
                f"{at}{shown}: commit {commit[:12]}'s .envd files have sha256 {repo.sha256}, "
                f"but envnix.lock recorded {pin['sha256']}",
                hint="the lock was edited or the repository rewritten: check it, then run "
                     "envnix lock --upgrade to pin the repository's HEAD again")
        return repo

    def file_at(self, url: str, commit: str, path: str, shown: str,
                max_bytes: int = 1 << 20) -> bytes | None:
        """One file of ``url`` at ``commit`` (fetched into the cache when missing), or None
        when the commit's tree has no such regular file: for a pip git reference's
        pyproject.toml (lock/sources.py)."""
        gitdir = self._gitdir(url)
        if not self._has_commit(gitdir, commit):
            self._fetch(gitdir, url, commit, shown, pinned=True)
        listed = self._git(["ls-tree", "-l", "--full-tree", commit, "--", path],
                           gitdir=gitdir, error=FrontendError)
        meta, _, name = listed.text.partition("\t")  # "<mode> <type> <oid> <size>\t<path>"
        fields = meta.split()
        if listed.returncode != 0 or name.rstrip("\n") != path or len(fields) != 4 \
                or fields[1] != "blob":
            return None
        if int(fields[3]) > max_bytes:
            raise FrontendError(f"{shown}: {path} is larger than {max_bytes} bytes")
        blob = self._git(["cat-file", "blob", fields[2]], gitdir=gitdir, error=FrontendError)
        if blob.returncode != 0:
            raise FrontendError(f"{shown}: cannot read {path}: {blob.last_error_line()}")
        return blob.stdout

    # -- git ---------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.update({
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": "http:https:git",
            "GIT_PROTOCOL_FROM_USER": "0", "HOME": str(self.root),
            "XDG_CONFIG_HOME": str(self.root / "no-config"), "LC_ALL": "C",
            "GIT_ASKPASS": "", "SSH_ASKPASS": "",
        })
        return env

    def _git(self, args: list[str], *, gitdir: Path | None = None,
             timeout: float = 60.0, input: bytes | None = None,
             error: type[EnvnixError] = FetchError) -> Completed:
        argv = ["git"]
        for item in _GIT_CONFIG:
            argv += ["-c", item]
        if gitdir is not None:
            argv += ["--git-dir", str(gitdir)]
        return run([*argv, *args], error=error, timeout=timeout, env=self._env(), input=input)

    def _gitdir(self, url: str) -> Path:
        """The cache's bare repository for ``url``, made whole (init in a temporary directory,
        then renamed) so an interrupted first fetch never leaves a half-made one."""
        gitdir = cache_dir(url, self.root)
        key = gitdir.stem
        if gitdir.is_dir():
            return gitdir
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{key}.", suffix=".tmp"))
        except OSError as exc:
            raise FrontendError(f"cannot create the include cache {self.root}: "
                                f"{exc.strerror or exc}",
                                hint="point XDG_CACHE_HOME at a writable directory") from None
        try:
            done = self._git(["init", "--bare", "-q", str(tmp)], error=FrontendError)
            if done.returncode != 0:
                raise FrontendError(f"git init of the include cache failed: "
                                    f"{done.last_error_line()}")
            os.replace(tmp, gitdir)
        except OSError:  # another envnix made it first
            shutil.rmtree(tmp, ignore_errors=True)
            if not gitdir.is_dir():
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return gitdir

    def _head(self, gitdir: Path, url: str, shown: str) -> str:
        done = self._git(["ls-remote", "--", url, "HEAD"], gitdir=gitdir,
                         timeout=LS_REMOTE_SECONDS)
        if done.returncode != 0:
            raise FetchError(f"{shown}: cannot reach the repository: "
                             f"{_git_reason(done)}",
                             hint="check the URL and the network (a private repository is "
                                  "not supported: envnix gives git no credentials)")
        for line in done.text.splitlines():
            oid, _, ref = line.partition("\t")
            if ref == "HEAD" and COMMIT_RE.fullmatch(oid):
                return oid
        raise FrontendError(f"{shown}: the repository has no HEAD commit (is it empty?)")

    def _has_commit(self, gitdir: Path, commit: str) -> bool:
        done = self._git(["cat-file", "-e", f"{commit}^{{commit}}"],
                         gitdir=gitdir, error=FrontendError)
        return done.returncode == 0

    def _fetch(self, gitdir: Path, url: str, commit: str, shown: str, *, pinned: bool) -> None:
        """The one commit, shallow; a server that refuses a commit by name gets asked for all
        of its branches (whole history) instead."""
        ref = f"refs/envnix/{commit}"
        done = self._git(["fetch", "-q", "--no-tags", "--no-write-fetch-head", "--depth", "1",
                          "--", url, f"+{commit}:{ref}"], gitdir=gitdir,
                         timeout=FETCH_SECONDS)
        if done.returncode != 0 and not self._has_commit(gitdir, commit):
            full = self._git(["fetch", "-q", "--no-tags", "--no-write-fetch-head", "--", url,
                              "+refs/heads/*:refs/envnix/heads/*"], gitdir=gitdir,
                             timeout=FETCH_SECONDS)
            if full.returncode != 0:
                raise FetchError(f"{shown}: cannot fetch commit {commit[:12]}: "
                                 f"{_git_reason(full)}",
                                 hint="check the URL and the network")
        if not self._has_commit(gitdir, commit):
            raise FrontendError(
                f"{shown}: the repository no longer has commit {commit[:12]}"
                + (" that envnix.lock pins" if pinned else ""),
                hint="envnix lock --upgrade pins its HEAD again" if pinned else None)
        self._git(["update-ref", ref, commit], gitdir=gitdir,
                  error=FrontendError)

    def _read(self, gitdir: Path, commit: str, shown: str) -> tuple[tuple[str, str], ...]:
        """Every ``*.envd`` blob of the commit's tree (not .git), in envd's walk order."""
        done = self._git(["ls-tree", "-r", "-z", "--full-tree", commit],
                         gitdir=gitdir, error=FrontendError)
        if done.returncode != 0:
            raise FrontendError(f"{shown}: cannot list commit {commit[:12]}: "
                                f"{done.last_error_line()}")
        entries: list[tuple[str, str]] = []
        for record in done.stdout.split(b"\0"):
            if not record:
                continue
            meta, _, raw_path = record.partition(b"\t")
            mode, kind, oid = meta.decode("ascii", "replace").split(" ")
            path = raw_path.decode("utf-8", "surrogateescape")
            if kind != "blob" or not path.endswith(".envd"):
                continue
            if mode == "120000":
                raise FrontendError(f"{shown}: {path} is a symbolic link; envnix reads .envd "
                                    "files of the repository only")
            entries.append((path, oid))
        if len(entries) > MAX_FILES:
            raise FrontendError(f"{shown}: {len(entries)} .envd files, more than the "
                                f"{MAX_FILES} envnix reads from one repository")
        entries.sort(key=lambda e: walk_order(e[0]))
        files: list[tuple[str, str]] = []
        total = 0
        for path, oid in entries:
            blob = self._git(["cat-file", "blob", oid], gitdir=gitdir,
                             error=FrontendError)
            if blob.returncode != 0:
                raise FrontendError(f"{shown}: cannot read {path}: {blob.last_error_line()}")
            if len(blob.stdout) > MAX_SOURCE_BYTES:
                raise FrontendError(f"{shown}: {path} is larger than "
                                    f"{MAX_SOURCE_BYTES >> 20} MiB")
            total += len(blob.stdout)
            if total > MAX_TOTAL_BYTES:
                raise FrontendError(f"{shown}: its .envd files add up to more than "
                                    f"{MAX_TOTAL_BYTES >> 20} MiB")
            try:
                text = blob.stdout.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FrontendError(f"{shown}: {path} is not UTF-8 text ({exc.reason})") from None
            if "\0" in path or any(ord(c) < 32 for c in path):
                raise FrontendError(f"{shown}: a .envd file name contains a control character")
            files.append((path, text))
        return tuple(files)


def _git_reason(done: Completed) -> str:
    """git's own last line, without its ``fatal:`` prefix, for a one-line error."""
    return re.sub(r"^(fatal|error): ", "", done.last_error_line())

"""Drive Nix: run nix-build on a rendered directory, show progress, translate its failures.

Nix's own errors are long and name store paths; users need one line that names the artifact
and says what to do. Everything Nix prints is still passed through with ``--verbose``.

The user's Nix settings (nix.conf: substituters, keys, builders, max-jobs) are theirs: envnix
adds only the sandbox, bounds for settings left at Nix's default, and what the user asked for
on envnix's command line (``NixConfig``); docs/nix-config.md says which and why.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from envnix.core import credentials, http, process
from envnix.core.errors import (
    BuildError,
    EnvnixError,
    FetchError,
    HashMismatchError,
    NetworkError,
    PublishError,
    ToolMissingError,
    UsageError,
    os_reason,
)
from envnix.core.nixlog import JsonLog
from envnix.core.progress import REPORTER, Progress, Reporter, status, transfer
from envnix.core.progress import step as progress_step
from envnix.lock.model import LOCK_NAME
from envnix.nix.seed import (
    WILL_BUILD,
    invalid_paths,
    is_chroot_store,
    prefetch,
    seed_chroot_store,
    seed_private_layers,
    store_run,
)
from envnix.render import nix_options
from envnix.toolchain import ensure

# Nix 2.8 keeps `nix show-config` and `nix copy` behind the new CLI's feature flag.
NIX_COMMAND = ("--extra-experimental-features", "nix-command")
NIX = ("nix", *NIX_COMMAND)
_BUILDING = re.compile(r"^building '/nix/store/[0-9a-z]{32}-(.+?)\.drv'(?: on '([^']+)')?")
# Nix (require-sigs) skips a cache's path nobody it trusts signed, warns, and builds it.
_UNSIGNED = re.compile(r"^warning: the substitute for '[^']+' from '([^']+)' is not signed by "
                       r"any of the keys in 'trusted-public-keys'")
_HASH_MISMATCH = re.compile(
    r"hash mismatch in fixed-output derivation '/nix/store/[0-9a-z]{32}-(.+?)\.drv':"
    r"\s*specified:\s*(\S+)\s*got:\s*(\S+)", re.S)
# Group 1 tells a fatal "error: " from Nix's "warning: [error: ]" before a retry or a skip.
_DOWNLOAD = re.compile(r"^(.*?)unable to download '([^']+)': (.+?)(?:; retrying in \d+ ms)?$",
                       re.M)
# What Nix fetches from a binary cache (not a locked artifact): its info, .narinfo and nar/ files.
_CACHE_FILE = re.compile(r"(.*?)/(?:nix-cache-info|[0-9a-z]{32}\.narinfo|nar/[^/]+)$")
_BUILDER_LINE = re.compile(r"envnix-builder: .+")
_FAILED = re.compile(r"builder for '/nix/store/[0-9a-z]{32}-(.+?)\.drv' failed")
# Nix 2.8's build hook on a remote builder it cannot use (it then leaves that builder out), and
# what Nix says when max-jobs = 0 leaves no machine at all: "remote machines may not have all
# required system features" even when the only one was unreachable.
_CANNOT_BUILD_ON = re.compile(r"cannot build on '([^']+)': (?:error: )?(.+)$", re.M)
_NO_BUILD_SLOT = "unable to start any build"


# Settings envnix sets only where the user's config leaves Nix's default: a cache that does not
# answer must not hold a build for Nix's defaults (no connect timeout, 300 s per stalled
# transfer, and a failed substituter fails the build), and independent derivations (fetches,
# layers) build in parallel. Any other value in the user's config is theirs; one equal to Nix's
# default counts as unset (``nix show-config`` cannot tell the two apart).
DEFAULTS = {
    "connect-timeout": "5",
    "stalled-download-timeout": "30",
    "fallback": "true",
    "max-jobs": "auto",
}
# Settings a user cannot hand over with --nix-option: the sandbox decides what builders see.
_SANDBOX_SETTINGS = ("sandbox", "sandbox-paths", "extra-sandbox-paths", "build-use-sandbox")
# How long envnix waits for every http(s) substituter to answer, all at once, before a build.
PROBE_SECONDS = 3.0


@dataclass(frozen=True)
class NixConfig:
    """What the user asked of Nix on envnix's command line; None and () leave nix.conf to
    decide."""

    substituters: str | None = None
    substitute: bool = True
    builders: str | None = None
    max_jobs: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name, _ in self.options:
            if name in _SANDBOX_SETTINGS:
                raise UsageError(f"--nix-option {name}: envnix always builds in Nix's sandbox "
                                 "and sets it itself",
                                 hint="see docs/nix-config.md; --toolchain host is the "
                                      "(non-reproducible) way to see host paths")
        if self.max_jobs is not None and not re.fullmatch(r"auto|[0-9]+", self.max_jobs):
            raise UsageError(f"--max-jobs {self.max_jobs!r}: expected a number or auto")


@dataclass(frozen=True)
class NixResult:
    out_path: Path
    seconds: float
    built: int


def require_nix(program: str = "nix-build") -> str:
    path = shutil.which(program)
    if not path:
        raise ToolMissingError(
            f"{program} not found on PATH: envnix needs Nix to build images",
            hint="install it (Debian/Ubuntu: apt-get install nix-bin) and run envnix again",
        )
    return path


def nix_build(
    directory: Path,
    attr: str,
    toolchain: str,
    out_link: Path | None = None,
    store: str | None = None,
    progress: Progress | None = None,
    verbose: bool = False,
    config: NixConfig | None = None,
    args: Sequence[str] = (),
) -> NixResult:
    """Build ``attr`` of ``directory/default.nix``; return the output path. ``args`` are
    more of default.nix's arguments (``--argstr NAME VALUE`` / ``--arg NAME EXPR``)."""
    cmd = [require_nix(), str(directory / "default.nix"), "-A", attr,
           *build_options(toolchain, config or NixConfig(), progress)]
    cmd += ["--argstr", "toolchain", toolchain, *args]
    if store:
        cmd += ["--store", store]
    if store and is_chroot_store(store):
        seed_chroot_store(directory / LOCK_NAME, store, progress)
        if toolchain == "pinned":  # the same path Nix would make, without a fetch there
            ensure(store=store, progress=progress)
    else:
        seed_private_layers(directory / LOCK_NAME, store, progress)
        prefetch(directory / LOCK_NAME, store, [*cmd, "--no-out-link", "--dry-run"], progress)
    if out_link:
        cmd += ["--out-link", str(out_link)]
    else:
        cmd += ["--no-out-link"]
    started = time.monotonic()
    total, done = 0, 0
    unsigned: dict[str, int] = {}

    def on_line(line: str) -> None:
        nonlocal total, done
        if verbose:
            REPORTER.verbose(line)
        if m := _UNSIGNED.match(line):
            unsigned[m[1]] = unsigned.get(m[1], 0) + 1
        elif m := WILL_BUILD.match(line):
            total = int(m[1])
            if progress:
                progress(f"nix: {total} derivation(s) to build")
        elif m := _BUILDING.match(line):
            done += 1
            if progress and not verbose:
                progress(f"nix: [{done}/{total or '?'}] {m[1]}" + (f" on {m[2]}" if m[2] else ""))
            status(progress, f"nix: {done - 1}/{total or '?'} derivations built, building {m[1]}")
        elif (m := _CANNOT_BUILD_ON.search(line)) and progress and not verbose:
            progress(f"nix: remote builder {m[1]} cannot be used ({_reason(m[2])}): "
                     "left out of this build")

    # A live line gets Nix's JSON log, for the bytes of its downloads; the lines read back
    # from it are the plain ones, so everything below reads them alike.
    json_log = None
    if isinstance(progress, Reporter) and progress.live and not verbose:
        json_log = JsonLog(
            lambda url, got, size: transfer(progress, f"nix: downloading {url.rsplit('/', 1)[-1]}",
                                            got, size),
            lambda built, wanted: status(progress, f"nix: {built}/{wanted} derivations built"))
        cmd += ["--log-format", "internal-json"]

    def read(line: str) -> None:
        for text in json_log.feed(line) if json_log else [line]:
            on_line(text)

    with progress_step(progress, "nix: evaluating"):
        proc = process.run(cmd, error=BuildError, on_line=read)
    for url, count in unsigned.items():
        if progress:
            progress(f"nix: {count} path(s) in {url} are not signed by a key in "
                     "trusted-public-keys: Nix did not use them")
    if proc.returncode != 0:
        raise _translate_failure(json_log.text if json_log else proc.stderr)
    stdout = proc.text
    out = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    return NixResult(Path(out), time.monotonic() - started, done)


def build_options(toolchain: str, config: NixConfig,
                  progress: Progress | None = None) -> list[str]:
    """nix-build's options: the sandbox, DEFAULTS the user's config leaves at Nix's default,
    the command line's ``config``, and the substituters minus those that do not answer now."""
    opts = nix_options(toolchain)
    settings = user_settings()
    asked = {name for name, _ in config.options}
    asked |= {n for n, v in (("builders", config.builders), ("max-jobs", config.max_jobs),
                             ("substituters", config.substituters)) if v is not None}
    for name, value in DEFAULTS.items():
        if name not in asked and _left_default(settings, name):
            opts += ["--option", name, value]
    netrc = credentials.netrc_path()
    if netrc is not None and "netrc-file" not in asked and _left_default(settings, "netrc-file"):
        # The login for a private index: Nix reads it when it fetches (builtin:fetchurl gets
        # its contents in memory), so no secret is written into a .drv or the store.
        opts += ["--option", "netrc-file", str(netrc)]
    if config.builders is not None:
        opts += ["--option", "builders", config.builders]
    if config.max_jobs is not None:
        opts += ["--option", "max-jobs", config.max_jobs]
    for name, value in config.options:
        opts += ["--option", name, value]
    if not config.substitute:
        return [*opts, "--option", "substitute", "false"]
    wanted = (config.substituters.split() if config.substituters is not None
              else _as_list(settings.get("substituters", {}).get("value")))
    dead = unreachable(wanted)
    for url, reason in dead.items():
        if progress:
            progress(f"nix: substituter {url} does not answer ({reason}): "
                     "this build goes without it")
    if dead or config.substituters is not None:
        opts += ["--option", "substituters", " ".join(u for u in wanted if u not in dead)]
    return opts


def user_settings() -> dict[str, dict[str, object]]:
    """The user's effective Nix settings (``nix show-config --json``: nix.conf, NIX_CONFIG,
    NIX_USER_CONF_FILES, ...), each with its ``value`` and ``defaultValue``; {} when no
    ``nix`` can say (envnix then treats every setting as left at Nix's default)."""
    nix = shutil.which("nix")
    if not nix:
        return {}
    proc = process.run([nix, *NIX_COMMAND, "show-config", "--json"], error=BuildError,
                       timeout=60)
    if proc.returncode != 0:
        raise BuildError(f"nix show-config failed: {proc.last_error_line()}",
                         hint="check your nix.conf (NIX_CONF_DIR, NIX_USER_CONF_FILES)")
    try:
        settings = json.loads(proc.text)
    except ValueError:
        return {}
    return settings if isinstance(settings, dict) else {}


def _left_default(settings: dict[str, dict[str, object]], name: str) -> bool:
    setting = settings.get(name)
    return not isinstance(setting, dict) or setting.get("value") == setting.get("defaultValue")


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value] if isinstance(value, list) else []


def unreachable(urls: list[str], seconds: float = PROBE_SECONDS) -> dict[str, str]:
    """The http(s) caches among ``urls`` that do not answer ``nix-cache-info`` within
    ``seconds`` (all probed at once), with why. Only a refused, unresolvable, silent or
    timed-out server counts: any HTTP answer (even an error) or a TLS problem is left to Nix,
    which then says what is wrong. Other stores (file://, s3://, ssh://) are Nix's to reach."""
    probed = [u for u in dict.fromkeys(urls) if u.startswith(("http://", "https://"))]
    dead = {u: f"no answer within {seconds:g} s" for u in probed}
    guard = threading.Lock()

    def probe(url: str) -> None:
        reason = None
        try:
            with http.open_url(url.rstrip("/") + "/nix-cache-info", timeout=seconds,
                               retries=0) as response:
                response.body.read(1 << 16)
        except (http.HttpError, ValueError):
            pass  # it answers: whatever it said is Nix's to judge
        except http.Unreachable as exc:
            reason = http.no_answer(exc)
        with guard:
            if reason:
                dead[url] = reason
            else:
                dead.pop(url, None)

    threads = [threading.Thread(target=probe, args=(u,), daemon=True) for u in probed]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds + 1
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with guard:
        return dict(dead)


# What --toolchain host makes Nix say through a daemon that drops an untrusted user's
# extra-sandbox-paths (scripts/nix-daemon.conf grants none: no host path).
_HOST_PYTHON_MISSING = "executing '/usr/bin/python3': No such file or directory"


def _translate_failure(log: str) -> BuildError | FetchError:
    if m := _HASH_MISMATCH.search(log):
        return HashMismatchError(
            f"hash mismatch for {m[1]}: envnix.lock pins {m[2]} but the download is {m[3]}",
            hint="the artifact changed upstream or the mirror is serving different bytes; "
                 "check the source, then run envnix lock to re-pin",
        )
    downloads = list(_DOWNLOAD.finditer(log))
    for m in downloads:
        # Nix 2.8 fails the build (or aborts) when a cache stops answering mid-build; one it
        # only warned about (then skipped) is not why a build failed.
        if (cache := _CACHE_FILE.fullmatch(m[2])) and m[1].strip() == "error:":
            return FetchError(f"binary cache {cache[1]} stopped answering: {m[3].strip()}",
                              hint="build without it: --substituters 'URLS' (the others) or "
                                   "--no-substitute; see docs/nix-config.md")
    if m := next((m for m in downloads if not _CACHE_FILE.fullmatch(m[2])), None):
        if code := re.search(r"HTTP error (401|403)", m[3]):
            host = urllib.parse.urlsplit(m[2]).hostname or m[2]
            netrc = credentials.netrc_path()
            return FetchError(f"cannot download {m[2]}: {host} "
                              + (f"refused the login for it in {netrc}" if netrc
                                 else "needs a login") + f" (HTTP {code[1]})",
                              hint=f"put a current 'machine {host} login USER password SECRET' "
                                   "line in ~/.netrc (or the file NETRC names): envnix hands "
                                   "it to Nix as netrc-file")
        return FetchError(f"cannot download {m[2]}: {m[3].strip()}",
                          hint="check the network or the mirror in envnix.lock")
    if "daemon-socket" in log and "Permission denied" in log:
        return BuildError("cannot reach the nix-daemon: permission denied on its socket",
                          hint="join group nix-users (scripts/setup adds whoever ran it), "
                               "then log in again")
    if _HOST_PYTHON_MISSING in log:
        return BuildError("--toolchain host: the host's /usr/bin/python3 is not visible in the "
                          "nix-daemon's sandbox",
                          hint="build with the default --toolchain pinned, which needs no host "
                               "path; the host toolchain (not reproducible) needs root, a "
                               "trusted user, or extra-sandbox-paths = /usr /lib /lib64 in the "
                               "daemon's nix.conf")
    if _NO_BUILD_SLOT in log:
        return _no_machine(log)
    builder_lines = _BUILDER_LINE.findall(log)
    failed = _FAILED.search(log)
    where = f" while building {failed[1]}" if failed else ""
    if builder_lines:
        return BuildError(builder_lines[-1].removeprefix("envnix-builder: ") + where)
    errors = [ln.strip() for ln in log.splitlines() if ln.strip().startswith("error:")]
    return BuildError((errors[0] if errors else "nix-build failed") + where,
                      hint="run again with --verbose to see Nix's full log")


# ------------------------------------------------------------------------------ binary caches

_COPYING = re.compile(r"^copying path '/nix/store/[0-9a-z]{32}-([^']+)' to ")
_NO_STORE = re.compile(r"don't know how to open Nix store|unsupported URI|"
                       r"is not a valid store|unknown store")
# Characters a key path cannot carry inside a store URL's query (Nix splits on them).
_URL_UNSAFE = re.compile(r"[&?#%=\s]")


@dataclass(frozen=True)
class SigningKey:
    """A Nix binary-cache secret key (``nix-store --generate-binary-cache-key``)."""

    file: Path
    name: str
    public: str  # NAME:BASE64, what consumers put in trusted-public-keys


@dataclass(frozen=True)
class CachePush:
    url: str                   # the cache, without the secret key
    paths: int                 # store paths handed to nix copy (their closure goes too)
    copied: int                # paths the cache did not have yet
    key: SigningKey | None     # None: nothing signed them
    seconds: float


def cache_url(cache: str) -> str:
    """A store URL for ``cache``; a bare directory means a ``file://`` binary cache there (to
    Nix a bare path is a chroot *store*, which no substituter can serve)."""
    if "://" in cache:
        return cache
    if not cache:
        raise UsageError("no cache given", hint="e.g. file:///var/cache/envnix or "
                                                "https://cache.example.com")
    return f"file://{Path(cache).absolute()}"


def read_signing_key(path: Path, what: str = "--sign-key") -> SigningKey:
    """``path`` as a secret key, checked here: Nix's own complaint about a bad key comes only
    after it has copied paths, and names no file."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = os_reason(exc) if isinstance(exc, OSError) else "not text"
        raise UsageError(f"{what} {path}: cannot read it ({reason})",
                         hint="generate a key pair: nix-store --generate-binary-cache-key "
                              "NAME SECRET-FILE PUBLIC-FILE") from None
    name, _, data = text.partition(":")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raw = b""
    if name and len(raw) == 32:
        raise UsageError(f"{what} {path} is a public key",
                         hint="pass the secret key file (the second file "
                              "nix-store --generate-binary-cache-key wrote)")
    if not name or len(raw) != 64:
        raise UsageError(f"{what} {path} is not a Nix secret key (NAME:BASE64 of 64 bytes)",
                         hint="generate one: nix-store --generate-binary-cache-key NAME "
                              "SECRET-FILE PUBLIC-FILE")
    if _URL_UNSAFE.search(str(path.absolute())):
        raise UsageError(f"{what} {path}: Nix cannot take this path in a store URL",
                         hint="move the key to a path without spaces or & ? # % =")
    # An ed25519 secret key is its 32-byte seed followed by the public key.
    return SigningKey(path.absolute(), name, f"{name}:{base64.b64encode(raw[32:]).decode()}")


def _with_param(url: str, name: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


def _signing_key(url: str, sign_key: Path | None) -> tuple[str, SigningKey | None]:
    """The URL nix copy writes to (with ``secret-key``) and the key that signs: ``sign_key``,
    else one already in the URL, else the first of nix.conf's ``secret-key-files``."""
    query = url.partition("?")[2]
    params = urllib.parse.parse_qsl(query, keep_blank_values=True)
    given = [v for k, v in params if k == "secret-key"]
    if given and sign_key:
        raise UsageError("--sign-key and the cache URL's secret-key contradict each other")
    if given:
        return url, read_signing_key(Path(given[-1]), "secret-key")
    if sign_key is None:
        files = _as_list(user_settings().get("secret-key-files", {}).get("value"))
        if not files:
            return url, None
        key = read_signing_key(Path(files[0]), "nix.conf's secret-key-files:")
    else:
        key = read_signing_key(sign_key)
    return _with_param(url, "secret-key", str(key.file)), key


def cache_paths(out_path: Path, store: str | None = None) -> list[str]:
    """What ``envnix cache push`` copies: the image output and the output of every derivation
    it was built from that is still in the store (toolchain, unpacked trees, layers), so a
    consumer that changes one package rebuilds only that. The locked downloads
    (``builtin:fetchurl``) stay out: each comes from its URL, checked by its sha256."""
    store_args = ["--store", store] if store else []
    deriver = store_run(["nix-store", *store_args, "--query", "--deriver", str(out_path)]).strip()
    wanted = [str(out_path)]
    if deriver.startswith("/") and not invalid_paths([deriver], store):
        drvs = json.loads(store_run([*NIX, "show-derivation", *store_args, "--recursive", deriver]))
        for drv in drvs.values():
            if drv.get("builder") != "builtin:fetchurl":
                wanted += [o["path"] for o in drv.get("outputs", {}).values() if "path" in o]
    wanted = list(dict.fromkeys(wanted))
    missing = set(invalid_paths(wanted, store))
    return [p for p in wanted if p not in missing]


def cache_push(out_path: Path, cache: str, sign_key: Path | None = None,
               store: str | None = None, progress: Progress | None = None,
               verbose: bool = False) -> CachePush:
    """Copy the image output ``out_path`` and what it was built from (``cache_paths``) to the
    binary cache ``cache`` with ``nix copy``, signed when a key is given or configured."""
    url = cache_url(cache)
    target, key = _signing_key(url, sign_key)
    if "compression" not in dict(urllib.parse.parse_qsl(url.partition("?")[2])):
        # Layers are gzip already and trees are large: zstd packs both in a fraction of the
        # time of Nix's default xz (Nix 2.8 reads it: tests/integration/test_binary_cache.py).
        target = _with_param(target, "compression", "zstd")
    plain = url.split("?", 1)[0]
    if dead := unreachable([plain]):
        raise NetworkError(f"binary cache {plain} does not answer ({dead[plain]})",
                           hint="check the URL and that the server is up")
    source = str(Path(store).absolute()) if store and is_chroot_store(store) else store
    paths = cache_paths(out_path, source)
    if progress:
        progress(f"cache: copying {len(paths)} store path(s) and their closure to {url}, "
                 + (f"signed by {key.name}" if key else "unsigned"))
    cmd = [*NIX, "copy", "--to", target, *(["--from", source] if source else []), *paths]
    started = time.monotonic()
    copied = 0

    def on_line(line: str) -> None:
        nonlocal copied
        if verbose:
            REPORTER.verbose(line)
        if m := _COPYING.match(line):
            copied += 1
            if progress and not verbose:
                progress(f"cache: [{copied}] {m[1]}")

    proc = process.run(cmd, error=PublishError, on_line=on_line)
    if proc.returncode != 0:
        raise _cache_failure(proc, cache, target, url)
    return CachePush(url, len(paths), copied, key, time.monotonic() - started)


def _cache_failure(proc: process.Completed, cache: str, target: str, url: str) -> EnvnixError:
    """One line for a failed ``nix copy``. Nix names the store as ``target``, which carries the
    key's path and envnix's parameters: the line says the ``url`` the user gave instead."""
    errors = [ln.strip().removeprefix("error: ").replace(target, url)
              for ln in proc.stderr.splitlines() if ln.strip().startswith("error:")]
    reason = errors[0] if errors else proc.last_error_line()
    if _NO_STORE.search(proc.stderr):
        return UsageError(f"{cache} is not a binary cache Nix can write to: {reason}",
                          hint="give file:///DIR (or a directory), http(s)://HOST/PATH or "
                               "s3://BUCKET")
    downloads = list(_DOWNLOAD.finditer(proc.stderr))
    if downloads and downloads[-1][1].strip() == "error:":
        return NetworkError(f"binary cache {cache}: {downloads[-1][3].strip()}",
                            hint="check the URL and that the server is up")
    return PublishError(f"pushing to binary cache {cache} failed: {reason}",
                        hint="run again with --verbose to see Nix's log")


# ----------------------------------------------------------------------------- remote builders

def _reason(text: str) -> str:
    """The last clause of a Nix/ssh error: ssh's own words (``...: Connection refused``)."""
    return text.strip().rstrip(".")


def _no_machine(log: str) -> BuildError:
    """max-jobs = 0 (nothing builds here) and no remote builder took the build."""
    if m := _CANNOT_BUILD_ON.search(log):
        return BuildError(f"cannot build on the remote builder {m[1]}: {_reason(m[2])}",
                          hint="max-jobs = 0 builds nothing on this machine; check that "
                               f"ssh reaches {m[1]} as Nix runs it (the key in the builders "
                               "line, NIX_SSHOPTS, known_hosts), or build here: --builders '' "
                               "--max-jobs auto; see docs/nix-config.md")
    return BuildError("max-jobs = 0 builds nothing on this machine and no remote builder "
                      "can take this build",
                      hint="name one in nix.conf's builders or with --builders SPEC (its "
                           "system x86_64-linux), or build here: --max-jobs auto")

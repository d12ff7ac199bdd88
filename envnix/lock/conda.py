"""Lock conda packages for the *image* with py-rattler: repodata from channels/mirrors, a solve
against virtual packages that describe the target, and one pinned archive per package.

Why this shape (background: the team's locking notes §1-3):

* envnix fetches ``repodata.json`` itself rather than through rattler's gateway, so it decides
  the mirror order, names the channel and every mirror tried when all fail, and caches
  atomically under ``$XDG_CACHE_HOME/envnix/conda``. rattler then solves from those files
  (``SparseRepoData`` labelled with the *canonical* channel URL), so every record URL is
  canonical whichever mirror served it; the mirrors go into the lock next to it.
* Virtual packages are declared, never detected: ``__glibc`` comes from the base OS release,
  ``__cuda`` only when the image asks for CUDA. The build host's driver and libc are irrelevant.
* Specs are parsed leniently (``MatchSpec(s, strict=False)``), which accepts what
  ``conda env export`` writes (``numpy=1.24.4=py38h...``, ``python=3.8.*``).
* A package whose repodata has no sha256 (old channels) is downloaded once and hashed: Nix's
  fetchurl needs a sha256, and the md5/size from repodata are checked on the way.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar

from envnix.core import http, options
from envnix.core.errors import FetchError, LockError, PackageNotFoundError
from envnix.core.fileio import atomic_write, atomic_writer, cache_dir
from envnix.core.progress import Progress
from envnix.spec.cuda import satisfiable_summary
from envnix.spec.envyaml import conda_spec_channel

if TYPE_CHECKING:
    from rattler import GenericVirtualPackage, RepoDataRecord

DEFAULT_LINUX_KERNEL = "4.18"
"""``__linux`` for the target. An image runs on whatever kernel its host has; 4.18 (the oldest
kernel of mainstream enterprise distributions still supported) is the floor envnix promises,
the same default pixi uses for its system requirements."""

LOCK_KEYS = ("build", "build_number", "channel", "constrains", "depends", "fn", "kind",
             "license", "md5", "mirrors", "name", "noarch", "sha256", "size", "subdir",
             "timestamp", "url", "version")
"""The keys of every conda lock entry, in the order they are written."""

_ARCH = {"linux-64": "x86_64", "linux-aarch64": "aarch64", "linux-ppc64le": "ppc64le"}
_USER_AGENT = "envnix (conda repodata)"
_T = TypeVar("_T")


class ChannelLike(Protocol):
    """What the lock needs of a channel (``envnix.frontend.envyaml.ChannelLocation``)."""

    @property
    def name(self) -> str: ...

    @property
    def canonical(self) -> str: ...

    @property
    def urls(self) -> tuple[str, ...]: ...


def default_channel_alias() -> str:
    """conda's own channel_alias, as py-rattler knows it (the URL a bare name such as
    ``conda-forge`` lives under when nothing else says): envnix takes it from rattler, as it
    takes PyPI from uv's defaults, rather than naming a conda host itself."""
    from rattler import Channel, ChannelConfig

    probe = "envnix-probe"
    return Channel(probe, ChannelConfig()).base_url.rstrip("/").removesuffix("/" + probe)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/envnix/conda``, default ``~/.cache/envnix/conda``."""
    return cache_dir("conda")


# --------------------------------------------------------------------------------------------
# HTTP and the cache
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepodataFile:
    """One subdir's repodata.json, cached on disk, and the mirror it came from."""

    channel: str
    subdir: str
    path: Path | None
    """None when the channel has no such subdir (every mirror answered 404)."""
    fetched_from: str | None


def _cache_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:24]


def fetch_repodata(channel: ChannelLike, subdir: str, cache_dir: Path,
                   progress: Progress | None = None) -> RepodataFile:
    """repodata.json of one subdir, trying each mirror in order (``.zst`` first, as conda does).

    A mirror that is down or answers an error is skipped, and so is one that answers 404 (it
    may be a partial mirror); if none has the subdir but one said 404, the channel has no
    packages for it (an error for ``noarch``, which every channel has). Revalidation uses the
    cached ETag/Last-Modified, so an unchanged index is not downloaded again. If no mirror
    answers, FetchError names the channel and what each mirror said.
    """
    tried: list[str] = []
    missing = 0
    refused: http.Unauthorized | None = None
    for base in channel.urls:
        base = base.rstrip("/")
        for name in ("repodata.json.zst", "repodata.json"):
            url = f"{base}/{subdir}/{name}"
            try:
                path = _fetch_cached(url, cache_dir)
            except http.NotFound:
                continue
            except http.HttpError as err:
                if isinstance(err, http.Unauthorized):
                    refused = refused or err
                if name.endswith(".zst"):
                    continue  # some mirrors refuse what they do not have with 403/500
                tried.append(f"{base} ({http.reason(err)})")
                break
            except (OSError, http.Unreachable) as err:
                tried.append(f"{base} ({http.reason(err)})")
                break
            if progress:
                progress(f"conda: repodata {channel.canonical} {subdir} from {base}")
            return RepodataFile(channel.canonical, subdir, path, base)
        else:
            missing += 1
            tried.append(f"{base} (no {subdir}/repodata.json)")
    if missing and subdir != "noarch":
        # A mirror answered that the channel has no packages for this platform (noarch-only
        # channels are common); only noarch/repodata.json is required of every channel.
        return RepodataFile(channel.canonical, subdir, None, None)
    if refused is not None and len(tried) == len(channel.urls):
        raise FetchError(f"conda channel {channel.canonical}: {refused.message}",
                         hint=f"put a current 'machine {refused.host} login USER password "
                              "SECRET' line in ~/.netrc (or the file NETRC names)")
    what = ("is not a conda channel (no noarch/repodata.json)" if missing == len(channel.urls)
            else "is unreachable")
    label = channel.canonical if channel.name in ("", channel.canonical) else (
        f"{channel.name!r} ({channel.canonical})")
    raise FetchError(f"conda channel {label} {what}: tried {', '.join(tried)}",
                     hint="check the mirror URLs in config.conda_channel / env.yaml channels, or "
                          f"point {options.CONDA_CHANNEL_ALIAS.name} at a mirror")


def _fetch_cached(url: str, cache_dir: Path) -> Path:
    """Download ``url`` into the cache (decompressing .zst), revalidating a cached copy.

    The file is streamed to a temporary name next to its final one and renamed into place,
    so a concurrent or interrupted lock never sees half a repodata.json.
    """
    import zstandard  # like rattler and asyncio: loaded only when a conda image is locked

    key = _cache_key(url)
    data_path = cache_dir / "repodata" / f"{key}.json"
    meta_path = cache_dir / "repodata" / f"{key}.meta.json"
    headers: dict[str, str] = {}
    if data_path.is_file() and meta_path.is_file():
        meta: Any = {}
        with contextlib.suppress(OSError, ValueError):
            meta = json.loads(meta_path.read_bytes())
        if not isinstance(meta, dict):  # a damaged cache entry: fetch again
            meta = {}
        if meta.get("url") == url and meta.get("size") == data_path.stat().st_size:
            if meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("last_modified"):
                headers["If-Modified-Since"] = meta["last_modified"]
    data_path.parent.mkdir(parents=True, exist_ok=True)
    with http.open_url(url, headers, user_agent=_USER_AGENT) as resp:
        if resp.status == 304 and headers:
            return data_path
        with atomic_writer(data_path) as out:
            source: BinaryIO = resp.body
            if url.endswith(".zst"):
                source = zstandard.ZstdDecompressor().stream_reader(
                    resp.body, read_across_frames=True)
            try:
                first = source.read(http.CHUNK)
                if not first.lstrip()[:1] == b"{":
                    raise OSError(f"{url.rsplit('/', 1)[-1]} is not a JSON object")
                size = len(first)
                out.write(first)
                while chunk := source.read(http.CHUNK):
                    out.write(chunk)
                    size += len(chunk)
            except zstandard.ZstdError as err:
                raise OSError(f"corrupt {url.rsplit('/', 1)[-1]}: {err}") from None
    atomic_write(meta_path, json.dumps({
        "url": url, "etag": resp.etag, "last_modified": resp.last_modified, "size": size,
    }, sort_keys=True).encode())
    return data_path


# --------------------------------------------------------------------------------------------
# solving
# --------------------------------------------------------------------------------------------


def target_virtual_packages(glibc: str, cuda: str | None = None, platform: str = "linux-64",
                            linux: str = DEFAULT_LINUX_KERNEL) -> list[GenericVirtualPackage]:
    """The virtual packages of the target image; none of them is read from this machine."""
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    def vp(name: str, version: str, build: str = "0") -> GenericVirtualPackage:
        return GenericVirtualPackage(PackageName(name), Version(version), BuildString(build))

    out = [vp("__unix", "0"), vp("__linux", linux), vp("__glibc", glibc)]
    if platform in _ARCH:
        out.append(vp("__archspec", "1", _ARCH[platform]))
    if cuda:
        out.append(vp("__cuda", cuda))
    return out


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """asyncio.run, also from a thread when the caller already runs an event loop."""
    import asyncio  # ~5 ms: loaded only when a conda image is solved

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _channel_for_spec(channel: str, channels: Sequence[ChannelLike]) -> ChannelLike | None:
    wanted = channel.rstrip("/")
    for loc in channels:
        if wanted in (loc.name.rstrip("/"), loc.canonical.rstrip("/")) or wanted in (
                u.rstrip("/") for u in loc.urls):
            return loc
    return None


def _match_specs(specs: Sequence[str], channels: Sequence[ChannelLike]) -> list[Any]:
    """Lenient MatchSpecs, with ``chan::`` rewritten to the channel's canonical URL."""
    from rattler import MatchSpec

    out = []
    for spec in specs:
        channel, subdir, rest = conda_spec_channel(spec)
        text = rest
        if channel is not None:
            loc = _channel_for_spec(channel, channels)
            if loc is None:
                raise LockError(f"conda spec {spec!r} names channel {channel!r}, which is not "
                                "among the channels to search",
                                hint="add it to env.yaml channels: or install.conda_packages"
                                     "(channel=[...])")
            text = f"{loc.canonical}{'/' + subdir if subdir else ''}::{rest}"
        try:
            out.append(MatchSpec(text, strict=False))
        except Exception as exc:  # rattler's InvalidMatchSpecError
            raise LockError(f"invalid conda match spec {spec!r}: {exc}") from None
    return out


# CUDA's conda packages and what is built for a CUDA release: a failed solve whose explanation
# names one of them, in an image that asks for CUDA, is reported as a CUDA problem.
_CUDA_NAME_RE = re.compile(r"__cuda|\bcuda[\w.-]*|\bcudatoolkit|\blibcu(?:blas|fft|rand|solver|"
                           r"sparse|file)\w*|\bcudnn|\bnccl|pytorch-cuda")
# The packages whose versions are the CUDA releases a channel has: cudatoolkit (CUDA <= 11,
# monolithic) and cuda-version (the release pin every CUDA >= 12 component depends on).
CUDA_RELEASE_PACKAGES = ("cudatoolkit", "cuda-version")


def cuda_releases(versions_of: Callable[[str], list[str]]) -> str:
    """The CUDA releases the channels can give, e.g. '11.3, 11.8 (cudatoolkit), 12.0-12.4
    (cuda-version)', read from the versions of the release packages in their repodata."""
    parts = []
    for name in CUDA_RELEASE_PACKAGES:
        minors = {f"{m[1]}.{m[2]}" for v in versions_of(name)
                  if (m := re.match(r"(\d+)\.(\d+)", v))}
        if minors:
            parts.append(f"{satisfiable_summary(minors)} ({name})")
    return ", ".join(parts) or ("none (the channels have no " + " or ".join(
        CUDA_RELEASE_PACKAGES) + " package)")


def _solver_error(message: str, platform: str, glibc: str, cuda: str | None,
                  versions_of: Callable[[str], list[str]]) -> LockError:
    """The solver's explanation, first line as the summary and its tree below it.

    ``versions_of(name)`` lists what the channels have, to tell a misspelt package from a
    version that does not exist, and which CUDA releases they have when the image's is not
    among them.
    """
    text = re.sub(r"^Cannot solve the request because of:\s*", "", message.strip())
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    summary = lines[0] if lines else "no solution"
    target = f"{platform}, __glibc {glibc}, " + (f"__cuda {cuda}" if cuda else "no __cuda")
    hint = None
    if re.search(r"__glibc [^,\n]*, for which no candidates were found", text):
        hint = (f"the image's glibc is {glibc} (from base(os=...)); a package needs a newer "
                "one: pin an older build or use a newer base OS")
    elif re.search(r"__cuda [^,\n]*, for which no candidates were found", text):
        hint = ("a package needs a newer CUDA driver than the image's" if cuda else
                "a package needs CUDA (__cuda): request a CUDA image, or pin a CPU build")
    if cuda and _CUDA_NAME_RE.search(text):
        # The CUDA release asked for (install.cuda or env.yaml) is part of the conflict: say
        # which releases the channels do have, then the solver's own explanation, whole.
        return LockError(
            f"conda: CUDA {cuda} cannot be satisfied ({target}); versions that can be "
            f"satisfied there: {cuda_releases(versions_of)}\n"
            + "\n".join("    " + ln for ln in lines),
            hint=hint or "ask for one of those releases (install.cuda(version=...) or the "
                         "CUDA package in env.yaml), or add a channel that has CUDA " + cuda)
    missing = re.fullmatch(r"No candidates were found for (\S+)( .*)?\.", summary)
    if missing and len(lines) == 1:
        name, spec = missing[1], (missing[1] + (missing[2] or "")).strip()
        versions = versions_of(name)
        if not versions:
            return PackageNotFoundError(
                f"conda package {name!r} is not in any of the channels ({target})",
                hint="check the name and the channels; conda names often differ from PyPI's")
        return LockError(f"conda: no {name} package matches {spec!r} ({target}); the "
                         f"channels have {name} {', '.join(versions)}")
    body = "\n".join("    " + ln for ln in lines[1:])
    return LockError(f"conda: cannot satisfy the request ({target}): {summary}"
                     + (f"\n{body}" if body else ""), hint=hint)


def solve_conda(specs: Sequence[str], channels: Sequence[ChannelLike],
                repodata: Sequence[RepodataFile], *, glibc: str, cuda: str | None = None,
                platform: str = "linux-64", preferred: Sequence[dict[str, Any]] = (),
                progress: Progress | None = None) -> list[RepoDataRecord]:
    """Run rattler's solver on cached repodata; channel order is priority (strict, as conda).

    ``preferred`` (lock entries of the lock being redone) become the solver's locked packages:
    a preference it keeps while the specs allow, never a hard pin.
    """
    from rattler import Channel, ChannelPriority, SparseRepoData, solve_with_sparse_repodata

    sources = [SparseRepoData(Channel(r.channel), r.subdir, str(r.path))
               for r in repodata if r.path is not None]
    match_specs = _match_specs(specs, channels)
    vps = target_virtual_packages(glibc, cuda, platform)
    locked = _locked_records(preferred, sources, progress)
    try:
        return _run(solve_with_sparse_repodata(
            match_specs, sources, locked_packages=locked, virtual_packages=vps,
            channel_priority=ChannelPriority.Strict, strategy="highest"))
    except Exception as exc:
        if type(exc).__name__ != "SolverError":
            raise
        raise _solver_error(str(exc), platform, glibc, cuda,
                            lambda name: _versions(name, sources)) from None


def _locked_records(preferred: Sequence[dict[str, Any]], sources: Sequence[Any],
                    progress: Progress | None) -> list[RepoDataRecord]:
    """The repodata records of ``preferred`` (matched by URL), and one line naming those the
    channels no longer list."""
    from rattler import PackageName

    if not preferred:
        return []
    wanted = {e["url"]: e for e in preferred}
    found: dict[str, RepoDataRecord] = {}
    for name in sorted({e["name"] for e in preferred}):
        for src in sources:
            for record in src.load_records(PackageName(name)):
                if str(record.url) in wanted:
                    found.setdefault(str(record.url), record)
    gone = [f"{e['name']} {e['version']}-{e['build']}" for url, e in wanted.items()
            if url not in found]
    if gone and progress:
        progress(f"conda: the channels no longer have {', '.join(sorted(gone))}")
    return [found[url] for url in sorted(found)]


def _versions(name: str, sources: Sequence[Any]) -> list[str]:
    """Every version of ``name`` in the repodata, oldest first."""
    from rattler import PackageName

    try:
        package = PackageName(name)
    except Exception:  # not a valid conda name: certainly not in the channels
        return []
    found = {str(r.version): r.version for src in sources for r in src.load_records(package)}
    return [v for v, _ in sorted(found.items(), key=lambda kv: kv[1])]


# --------------------------------------------------------------------------------------------
# lock entries
# --------------------------------------------------------------------------------------------


def _noarch(record: RepoDataRecord) -> str | None:
    kind = record.noarch
    if kind.python:
        return "python"
    if kind.generic:
        return "generic"
    return None


def _mirrors(url: str, loc: ChannelLike) -> list[str]:
    canonical = loc.canonical.rstrip("/")
    if not url.startswith(canonical + "/"):
        return []
    tail = url[len(canonical):]
    return [u.rstrip("/") + tail for u in loc.urls if u.rstrip("/") != canonical]


def _hash_download(urls: Sequence[str], md5: str | None, size: int | None, cache_dir: Path,
                   fn: str, progress: Progress | None) -> tuple[str, int]:
    """sha256 and size of a package whose repodata has no sha256: download it once.

    The result is cached by URL + md5, so relocking does not download it again; without an md5
    there is nothing to tie a cached hash to the file, so it is not cached.
    """
    key_file = None
    if md5:
        key_file = cache_dir / "hashes" / f"{_cache_key(urls[-1] + '#' + md5)}.json"
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(key_file.read_bytes())
            if (isinstance(cached, dict) and isinstance(cached.get("sha256"), str)
                    and re.fullmatch(r"[0-9a-f]{64}", cached["sha256"])
                    and type(cached.get("size")) is int and cached["size"] >= 0):
                return cached["sha256"], cached["size"]
    errors = []
    for url in urls:
        if progress:
            progress(f"conda: {fn} has no sha256 in repodata; hashing it from {url}")
        sha, md5sum, got = hashlib.sha256(), hashlib.md5(), 0
        try:
            with http.open_url(url, user_agent=_USER_AGENT) as resp:
                while chunk := resp.body.read(http.CHUNK):
                    sha.update(chunk)
                    md5sum.update(chunk)
                    got += len(chunk)
        except http.NotFound:
            errors.append(f"{url} (not found)")
            continue
        except http.RequestError as err:
            errors.append(f"{url} ({http.reason(err)})")
            continue
        if md5 and md5sum.hexdigest() != md5:
            errors.append(f"{url} (md5 differs from repodata)")
            continue
        if size is not None and got != size:
            errors.append(f"{url} (size {got} differs from repodata's {size})")
            continue
        sha256 = sha.hexdigest()
        if key_file is not None:
            with contextlib.suppress(OSError):
                key_file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(key_file, json.dumps({"sha256": sha256, "size": got}).encode())
        return sha256, got
    raise FetchError(f"conda: {fn} has no sha256 in repodata and could not be downloaded to "
                     f"hash it: tried {', '.join(errors)}")


def lock_entry(record: RepoDataRecord, loc: ChannelLike, cache_dir: Path,
               progress: Progress | None = None, served_by: str | None = None) -> dict[str, Any]:
    """The envnix.lock entry of one solved package: plain JSON, keys sorted.

    ``served_by`` is the mirror whose repodata listed it: tried first if it must be hashed.
    """
    url = str(record.url)
    mirrors = _mirrors(url, loc)
    md5 = record.md5.hex() if record.md5 else None
    sha256 = record.sha256.hex() if record.sha256 else None
    size = record.size
    if sha256 is None or size is None:
        first = [m for m in mirrors if served_by and m.startswith(served_by.rstrip("/") + "/")]
        candidates = [*first, *(m for m in mirrors if m not in first), url]
        sha256, size = _hash_download(candidates, md5, size, cache_dir, str(record.file_name),
                                      progress)
    timestamp = record.timestamp
    entry = {
        "kind": "conda",
        "name": record.name.normalized,
        "version": str(record.version),
        "build": str(record.build),
        "build_number": int(record.build_number),
        "subdir": str(record.subdir),
        "fn": str(record.file_name),
        "url": str(url),
        "mirrors": mirrors,
        "channel": loc.canonical.rstrip("/"),
        "sha256": sha256,
        "md5": md5,
        "size": int(size),
        "depends": [str(d) for d in record.depends],
        "constrains": [str(c) for c in record.constrains],
        "noarch": _noarch(record),
        "license": str(record.license) if record.license is not None else None,
        "timestamp": round(timestamp.timestamp() * 1000) if timestamp else None,
    }
    return {k: entry[k] for k in sorted(entry)}


def lock_conda(
    specs: Sequence[str],
    channels: Sequence[ChannelLike],
    *,
    glibc: str,
    cuda: str | None = None,
    platform: str = "linux-64",
    progress: Progress | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    preferred: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Resolve conda ``specs`` for ``platform`` with the given target glibc/CUDA.

    ``channels`` are in priority order (a package comes from the first channel that has its
    name). ``preferred``: the entries of the lock being redone, kept where the specs allow.
    Returns one lock entry per package, sorted by name.
    """
    if not specs:
        return []
    if not channels:
        raise LockError("conda packages are requested but no channel is configured",
                        hint="list channels in env.yaml or install.conda_packages(channel=...)")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        (cache / "repodata").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LockError(f"cannot create the conda cache {cache}: {err.strerror or err}",
                        hint="point XDG_CACHE_HOME at a writable directory") from None
    started = time.monotonic()
    jobs = [(loc, subdir) for loc in channels for subdir in (platform, "noarch")]
    # Indexes download in parallel; results (and the first error) are taken in priority order.
    with concurrent.futures.ThreadPoolExecutor(min(8, len(jobs))) as pool:
        futures = [pool.submit(fetch_repodata, loc, subdir, cache, progress)
                   for loc, subdir in jobs]
        repodata = [f.result() for f in futures]
    if progress:
        extra = f", __cuda {cuda}" if cuda else ""
        progress(f"conda: solving {len(specs)} spec(s) for {platform} (__glibc {glibc}{extra})")
    records = solve_conda(specs, channels, repodata, glibc=glibc, cuda=cuda, platform=platform,
                          preferred=preferred, progress=progress)
    by_canonical = {loc.canonical.rstrip("/"): loc for loc in channels}
    served = {(r.channel.rstrip("/"), r.subdir): r.fetched_from for r in repodata}
    entries = []
    for record in records:
        loc = by_canonical.get(record.channel.rstrip("/")) if record.channel else None
        if loc is None:  # pragma: no cover - rattler labels records with our Channel
            raise LockError(f"conda: {record.file_name} came from an unknown channel "
                            f"{record.channel!r}")
        served_by = served.get((loc.canonical.rstrip("/"), str(record.subdir)))
        entries.append(lock_entry(record, loc, cache, progress, served_by))
    entries.sort(key=lambda e: (e["name"], e["subdir"], e["fn"]))
    if progress and cuda:
        # What the CUDA release came as, like the pypi provider's "cuda: ..." line.
        got = [e for e in entries if _CUDA_NAME_RE.fullmatch(e["name"])]
        size = sum(e["size"] for e in got) / 1e6
        progress(f"cuda: CUDA {cuda} (conda, __cuda {cuda}): "
                 + (", ".join(f"{e['name']} {e['version']}" for e in got) or "no CUDA packages")
                 + f"; {size:.1f} MB of CUDA packages")
    if progress:
        total = sum(e["size"] for e in entries)
        progress(f"conda: locked {len(entries)} package(s), {total / 1e6:.1f} MB, "
                 f"in {time.monotonic() - started:.1f}s")
    return entries

"""io.http downloads pinned in envnix.lock: URL, sha256 and size of each file.

envd trusts the URL at every build (and its checksum, when the file gives one); envnix hashes
the file once, at lock time, so Nix can fetch it as a fixed-output derivation and the image
never changes under a URL. A re-lock keeps a pin while the call's URL (and checksum) stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envnix.core import http
from envnix.core.errors import FetchError, LockError
from envnix.core.nixexpr import url_problem
from envnix.core.progress import REPORTER, Progress
from envnix.spec import HttpSpec

SECTION = "http"  # the lock's section name (only in locks of images that download files)


def lock_inputs(downloads: list[HttpSpec]) -> list[dict[str, Any]]:
    """What the lock answers for io.http: each call as written (its place is not an input)."""
    return [{"url": d.url, "sha256": d.sha256, "filename": d.filename} for d in downloads]


def lock_downloads(downloads: list[HttpSpec], kept: Mapping[str, dict[str, Any]],
                   progress: Progress | None = None) -> list[dict[str, Any]]:
    """One entry {url, sha256, size, filename} per call, in call order: a kept pin of the same
    URL (that agrees with the checksum the file gives) stays; the rest are hashed now, each
    URL once."""
    out: list[dict[str, Any]] = []
    pins: dict[str, dict[str, Any]] = {}
    for d in downloads:
        pin = pins.get(d.url) or kept.get(d.url)
        if pin is None or (d.sha256 is not None and pin["sha256"] != d.sha256):
            pin = _hash(d)  # verified against the checksum the file gives, if any
            if d.sha256 is None:  # a warning: never silenced, unlike progress
                REPORTER.warning(f"{_at(d)}io.http({d.url!r}) gives no checksum: envnix.lock "
                                 f"pins the sha256 downloaded now, sha256:{pin['sha256']}")
            elif progress:
                progress(f"io.http: {d.url} matches its checksum ({pin['size']} bytes)")
        pins[d.url] = pin
        out.append({"url": d.url, "sha256": pin["sha256"], "size": pin["size"],
                    "filename": d.filename})
    return out


def kept_downloads(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """An existing lock's pins by URL: what a re-lock keeps while a call names that URL."""
    return {e["url"]: {"sha256": e["sha256"], "size": e["size"]} for e in entries}


def _hash(d: HttpSpec) -> dict[str, Any]:
    problem = url_problem(d.url)
    if problem:
        raise LockError(f"{_at(d)}io.http: refusing to download {d.url!r}: {problem}")
    try:
        sha256, size = http.hash_url(d.url)
    except http.RequestError as err:
        raise FetchError(f"{_at(d)}io.http: cannot download {d.url}: {http.reason(err)}",
                         hint="check the URL and the network; the lock pins the file's "
                              "sha256, so it must be reachable once") from None
    if d.sha256 is not None and sha256 != d.sha256:
        raise _mismatch(d, sha256)
    return {"sha256": sha256, "size": size}


def _mismatch(d: HttpSpec, got: str) -> LockError:
    return LockError(f"{_at(d)}io.http: {d.url} has sha256:{got}, but the checksum is "
                     f"sha256:{d.sha256}",
                     hint="the file changed or the checksum is wrong: check the source, then "
                          "correct checksum= (or remove it to pin what the URL serves)")


def _at(d: HttpSpec) -> str:
    return f"{d.where}: " if d.where else ""

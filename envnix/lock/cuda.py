"""Lock install.cuda: NVIDIA's version pins for the CUDA release, then the pip request under them.

NVIDIA publishes, per CUDA release, a ``cuda-toolkit`` metapackage whose ``all`` extra pins the
version of every component wheel (cudart, cuBLAS, nvrtc, cuSPARSE, nvJitLink, ...). envnix
reads those pins from the index and passes them to uv as *constraints*: whatever pulls a
component — install.cuda itself, cuDNN (nvrtc), torch (cuSPARSE, nvJitLink, ...) — gets the
version of the same release, and a package built for another release is a lock error instead
of a silently mixed CUDA. With ``version="X.Y"`` the newest update of X.Y is tried first, then
older updates of X.Y (a pip package may pin one of them); ``X.Y.Z`` names the update.
"""

from __future__ import annotations

import dataclasses
import email.parser
import hashlib
import io
import re
import urllib.parse
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from envnix.core import http
from envnix.core.errors import FetchError, LockError, PackageNotFoundError, os_reason
from envnix.core.progress import Progress
from envnix.lock import pip
from envnix.lock.simpleindex import page_url, project_files
from envnix.spec import CudaSpec, PipRequest
from envnix.spec.cuda import matches, release_key, satisfiable_summary

TOOLKIT = "cuda-toolkit"
_MAX_METAPACKAGE_BYTES = 1 << 20  # the metapackage wheels are ~2 kB: anything big is wrong
_TIMEOUT = 60


@dataclass(frozen=True)
class ToolkitRelease:
    """One cuda-toolkit wheel on the index: the release it pins and where it is."""

    version: str
    url: str
    sha256: str | None


def lock_cuda_pip(request: PipRequest, context: Path, cuda: CudaSpec, python_version: str,
                  glibc: str, progress: Progress | None = None,
                  preferred: Sequence[pip.Wheel] = ()) -> list[pip.Wheel]:
    """pip.lock_pip for a request that carries ``cuda.requirements``, under the release pins
    (``preferred``: the wheels to keep where they fit, as pip.lock_pip)."""
    index, releases = toolkit_releases(request)
    candidates = sorted((r for r in releases if matches(r.version, cuda.version)),
                        key=lambda r: release_key(r.version), reverse=True)
    if not candidates:
        raise LockError(
            f"CUDA {cuda.version} has no {TOOLKIT} release on {index}; versions that can be "
            f"satisfied there: {satisfiable_summary(r.version for r in releases)}",
            hint="install.cuda(version=...) with one of those")
    toolkit_line = cuda.requirements[0]
    tried: list[str] = []
    first: LockError | None = None
    for release in candidates:
        pins = toolkit_pins(release, request.trusted_hosts)
        if progress:
            progress(f"cuda: CUDA {cuda.version} -> {TOOLKIT} {release.version} "
                     f"({len(pins)} component pins) from {index}")
        exact = re.sub(r"==.*$", f"=={release.version}", toolkit_line)
        attempt = dataclasses.replace(
            request, packages=[exact if p == toolkit_line else p for p in request.packages])
        try:
            wheels = pip.lock_pip(attempt, context, python_version, glibc, progress,
                                  constraints=pins, preferred=preferred)
        except (FetchError, PackageNotFoundError):
            raise
        except LockError as exc:
            tried.append(release.version)
            first = first or exc
            continue
        if progress:
            progress(size_line(cuda, wheels))
        return wheels
    assert first is not None
    raise LockError(
        f"CUDA {cuda.version}: {first.message}",
        hint=f"the pip packages need CUDA component versions other than NVIDIA's for "
             f"{TOOLKIT} {', '.join(tried)}: ask install.cuda for the CUDA release they were "
             "built for (torch: the cuXYZ of its wheels), or pin them to a build for "
             f"CUDA {cuda.major_minor}")


def size_line(cuda: CudaSpec, wheels: Sequence[pip.Wheel]) -> str:
    """One progress line: each NVIDIA wheel the lock holds with its download size."""
    nvidia = [w for w in wheels if w.name.startswith("nvidia-")]
    total = sum(w.size for w in nvidia)
    parts = ", ".join(f"{w.name} {w.version} ({w.size / 1e6:.1f} MB)" for w in nvidia)
    return (f"cuda: {cuda.variant} ({cuda.provider}): {parts or 'no NVIDIA wheels'}; "
            f"{total / 1e6:.1f} MB of CUDA wheels")


def toolkit_releases(request: PipRequest) -> tuple[str, list[ToolkitRelease]]:
    """The cuda-toolkit releases on the first of the request's indexes that has any."""
    indexes = [request.index_url or pip.DEFAULT_INDEX, *request.extra_index_urls]
    for index in indexes:
        releases = _project_releases(index, request.trusted_hosts)
        if releases:
            return index, releases
    raise PackageNotFoundError(
        f"{TOOLKIT} (NVIDIA's per-release CUDA pins) is not on {', '.join(indexes)}",
        hint="install.cuda needs an index that serves NVIDIA's PyPI wheels, e.g. a PyPI mirror")


def toolkit_pins(release: ToolkitRelease, trusted_hosts: Sequence[str] = ()) -> list[str]:
    """The ``all`` extra of a cuda-toolkit wheel as constraint lines ('name==1.2.3.*')."""
    data = _get(release.url, trusted_hosts, limit=_MAX_METAPACKAGE_BYTES)
    if release.sha256 and hashlib.sha256(data).hexdigest() != release.sha256:
        # Not a network failure: the bytes are not what the index promised (retrying gives
        # the same bytes), so the stage's code.
        raise LockError(f"{TOOLKIT} {release.version}: {release.url} does not match the "
                        "index's sha256")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as whl:
            name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
            metadata = whl.read(name).decode("utf-8")
    except (zipfile.BadZipFile, StopIteration) as exc:
        raise LockError(f"{TOOLKIT} {release.version}: {release.url} is not a wheel with "
                        "METADATA") from exc
    return parse_pins(metadata)


_ALL_EXTRA = re.compile(r"""\bextra\s*==\s*["']all["']""")


def parse_pins(metadata: str) -> list[str]:
    """Requires-Dist lines of the ``all`` extra, markers dropped, sorted."""
    message = email.parser.Parser().parsestr(metadata, headersonly=True)
    pins = set()
    for line in message.get_all("Requires-Dist") or []:
        requirement, _, marker = line.partition(";")
        if _ALL_EXTRA.search(marker):
            pins.add(re.sub(r"\s+", "", requirement))
    return sorted(pins)


def _project_releases(index: str, trusted_hosts: Sequence[str]) -> list[ToolkitRelease]:
    """cuda-toolkit wheels from a PEP 691 (JSON) or PEP 503 (HTML) simple index page."""
    url = page_url(index, TOOLKIT)
    try:
        files = project_files(url, trusted_hosts, timeout=_TIMEOUT)
    except http.HttpError as exc:
        if exc.code == 404:
            return []
        if exc.code is None:
            raise FetchError(f"cuda: cannot reach the index {url}: {os_reason(exc.cause)}"
                             ) from exc
        raise FetchError(f"cuda: cannot read {url}: HTTP {exc.code}") from exc
    except http.RequestError as exc:
        raise FetchError(f"cuda: cannot reach the index {url}: {os_reason(exc.cause)}") from exc
    except ValueError as exc:
        raise FetchError(f"cuda: {exc}") from None
    releases = []
    for f in files:
        m = re.fullmatch(r"cuda_toolkit-([0-9][0-9.]*)-[^-]+-[^-]+-[^-]+\.whl", f.filename)
        if not f.yanked and m and re.fullmatch(r"\d+(\.\d+)+", m[1]):
            releases.append(ToolkitRelease(m[1], f.url, f.sha256))
    return releases


def _insecure(url: str, trusted_hosts: Sequence[str]) -> bool:
    """config.pip_index(trust=True) hosts are reached without certificate checks, as uv does."""
    return urllib.parse.urlsplit(url).hostname in trusted_hosts


def _get(url: str, trusted_hosts: Sequence[str], limit: int) -> bytes:
    try:
        with http.open_url(url, timeout=_TIMEOUT, insecure=_insecure(url, trusted_hosts)) as resp:
            data = resp.body.read(limit + 1)
    except http.RequestError as exc:
        raise FetchError(f"cuda: cannot download {url}: {os_reason(exc.cause)}") from exc
    if len(data) > limit:
        raise LockError(f"cuda: {url} is larger than {limit} bytes; not a {TOOLKIT} wheel")
    return data

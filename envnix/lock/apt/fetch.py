"""Fetch and trust indexes: InRelease/Release verified with ``gpgv`` before anything in it is
used, then the Packages indexes it names by sha256, cached on disk."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import lzma
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from envnix.core import http, options, process
from envnix.core.errors import FetchError, LockError, ToolMissingError
from envnix.core.fileio import atomic_write, cache_dir
from envnix.core.progress import Progress
from envnix.lock.apt.anchors import anchored_keyring, check_signers
from envnix.lock.apt.index import DebIndex, IndexSnapshot
from envnix.lock.apt.relations import ARCH
from envnix.spec.apt import AptSource


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/envnix/apt``, default ``~/.cache/envnix/apt``."""
    return cache_dir("apt")


def human_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _reason(err: object) -> str:
    if isinstance(err, TimeoutError):
        return f"timed out after {http.TIMEOUT:g} s"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err) or type(err).__name__
    return " ".join(text.split())


def _http_get(url: str, *, missing_ok: bool = False,
              setting: str = "--apt-mirror") -> bytes | None:
    """GET *url* (a local ``file:`` mirror too).

    Returns None for "not found" when *missing_ok*; any other failure is a one-line FetchError
    that says which *setting* to check.
    """
    try:
        return http.get(url)
    except http.RequestError as e:
        if missing_ok and isinstance(e, http.NotFound):
            return None
        if isinstance(e, http.HttpError) and e.code is not None:
            raise FetchError(f"cannot fetch {url}: HTTP {e.code} {_reason(e.reason)}") from e
        # no answer, or a file: mirror without the file
        raise FetchError(f"cannot reach {url}: {_reason(e.why)}; check {setting}") from e


def _strip_clearsign(text: str) -> str:
    """The signed body of a clearsigned InRelease (signature NOT checked), or *text* as is."""
    if not text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        return text
    start = text.find("\n\n")
    end = text.find("\n-----BEGIN PGP SIGNATURE-----")
    if start < 0 or end < start:
        raise LockError("malformed InRelease: cannot find the signed message body")
    lines = text[start + 2:end].split("\n")
    return "\n".join(line[2:] if line.startswith("- ") else line for line in lines)


@dataclass(frozen=True)
class Release:
    """The parts of a Release file envnix uses."""

    fields: dict[str, str]
    sha256: dict[str, tuple[str, int]]  # path below dists/<suite>/ -> (sha256, size)

    @property
    def by_hash(self) -> bool:
        return self.fields.get("Acquire-By-Hash", "").lower() == "yes"


def parse_release(text: str) -> Release:
    """Parse an InRelease or Release file's fields and SHA256 checksum list."""
    fields: dict[str, str] = {}
    sums: dict[str, tuple[str, int]] = {}
    current: str | None = None
    for line in _strip_clearsign(text).splitlines():
        if line[:1] in (" ", "\t"):
            if current == "SHA256":
                parts = line.split()
                if len(parts) == 3 and parts[1].isdigit():
                    sums[parts[2]] = (parts[0].lower(), int(parts[1]))
            continue
        key, sep, value = line.partition(":")
        if sep:
            current = key.strip()
            fields[current] = value.strip()
    return Release(fields, sums)


def _verified(data: bytes, sha256: str, size: int) -> bool:
    return len(data) == size and hashlib.sha256(data).hexdigest() == sha256


def _decompress(data: bytes, ext: str, url: str) -> str:
    try:
        if ext == ".xz":
            raw = lzma.decompress(data)
        elif ext == ".gz":
            raw = gzip.decompress(data)
        else:
            raw = data
    except (lzma.LZMAError, OSError, EOFError, zlib.error) as e:
        raise FetchError(f"corrupt index {url}: {_reason(e)}") from e
    return raw.decode("utf-8", errors="replace")


def fetch_release(source: AptSource) -> Release:
    """Fetch, verify and parse a suite's InRelease (or Release + Release.gpg): what is current,
    and its hashes.

    A mirror without the suite (e.g. a Debian mirror given for an Ubuntu release) is one
    LockError line naming the missing file (a setting to fix, not a network failure); a
    signature that does not check out is one LockError line, and nothing of that index is
    used.
    """
    base = source.dist_url
    raw = _http_get(f"{base}/InRelease", missing_ok=True, setting=source.setting)
    if raw is not None:
        return parse_release(verify_release(source, f"{base}/InRelease", raw))
    raw = _http_get(f"{base}/Release", missing_ok=True, setting=source.setting)
    if raw is None:
        what = ("a flat apt repository (InRelease next to Packages)" if source.flat
                else f"the {source.suite} suite")
        # The mirror answered, without this suite: a setting to fix, not a retry (so not 8).
        raise LockError(f"cannot fetch {base}/Release (nor InRelease): not found; does "
                        f"{source.uri} carry {what}? check {source.setting}")
    signature = _http_get(f"{base}/Release.gpg", missing_ok=True, setting=source.setting)
    return parse_release(verify_release(source, f"{base}/Release", raw, signature))


def verify_release(source: AptSource, url: str, raw: bytes,
                   detached: bytes | None = None) -> str:
    """The text of a Release file that ``gpgv`` found signed by the source's keyring.

    A clearsigned InRelease yields the body gpgv says was signed (never text outside the
    signature); a Release comes with its detached ``Release.gpg``. ENVNIX_APT_UNVERIFIED=1
    skips the check (apt's ``[trusted=yes]``) for archives without keys to check against.
    """
    if options.apt_unverified():
        return raw.decode("utf-8", errors="replace")
    hint = (f"set {source.keyring_setting} to the archive's public keyring, or "
            f"{options.APT_UNVERIFIED.name}=1 to lock from it unverified")
    keyrings = [k for k in source.keyring.split(os.pathsep) if k]
    fetched = bool(source.anchor) and not (keyrings and all(Path(k).is_file()
                                                           for k in keyrings))
    if fetched:
        keyrings = [str(anchored_keyring(source))]  # the vendor's keys, from its archive
    if not keyrings:
        raise LockError(f"cannot verify {url}: no keyring is known for {source.uri}", hint=hint)
    for keyring in keyrings:
        if not Path(keyring).is_file():
            raise LockError(f"cannot verify {url}: keyring {keyring} does not exist", hint=hint)
    clearsigned = b"-----BEGIN PGP SIGNED MESSAGE-----" in raw
    if detached is None and not clearsigned:
        raise LockError(f"{url} is not signed (no Release.gpg either)", hint=hint)
    try:
        return _gpgv(source, url, raw, detached, keyrings, hint)
    except LockError:
        if not fetched:
            raise
        # keys cached before the vendor rotated them: fetch them again, once
        keyrings = [str(anchored_keyring(source, refresh=True))]
        return _gpgv(source, url, raw, detached, keyrings, hint)


def _gpgv(source: AptSource, url: str, raw: bytes, detached: bytes | None,
          keyrings: list[str], hint: str) -> str:
    """gpgv's verdict on *raw* (clearsigned, or with *detached*) against *keyrings*: the signed
    text, or a one-line LockError; with the source's anchor, the signer must be pinned."""
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise ToolMissingError("gpgv is not installed; it checks the archive's signatures",
                               hint="apt-get install gpgv")
    with tempfile.TemporaryDirectory(prefix="envnix-gpgv-") as tmp:
        work = Path(tmp)
        args = [gpgv, "--homedir", str(work), "--status-fd", "1"]
        for i, keyring in enumerate(keyrings):
            args += ["--keyring", str(_binary_keyring(Path(keyring), work / f"keyring{i}.gpg"))]
        (work / "signed").write_bytes(raw)
        if detached is None:
            args += ["--output", str(work / "body"), str(work / "signed")]
        else:
            (work / "signature").write_bytes(detached)
            args += [str(work / "signature"), str(work / "signed")]
        proc = process.run(args, error=LockError)
        if proc.returncode != 0:
            lines = [line.removeprefix("gpgv: ") for line in proc.stderr.splitlines()
                     if line.strip()]
            why = next((line for line in lines if "BAD signature" in line or "No public key"
                        in line or "Can't check" in line), lines[-1] if lines else "no reason")
            raise LockError(f"{url}: signature check failed against "
                            f"{', '.join(keyrings)}: {why}", hint=hint)
        if source.anchor:
            check_signers(source, url, proc.stdout.decode("utf-8", "replace"))
        body = (work / "body").read_bytes() if detached is None else raw
    return body.decode("utf-8", errors="replace")


_ARMOR_RE = re.compile(rb"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY "
                       rb"BLOCK-----", re.S)


def _binary_keyring(path: Path, scratch: Path) -> Path:
    """*path* as gpgv reads keyrings: an ASCII-armored key file (``.asc``, as vendors publish
    them) is decoded into *scratch*; a binary one is used as it is."""
    data = path.read_bytes()
    blocks = _ARMOR_RE.findall(data)
    if not blocks:
        return path
    binary = b""
    for block in blocks:
        body = block.split(b"\n\n", 1)[-1] if b"\n\n" in block else block
        lines = [line.strip() for line in body.splitlines()
                 if line.strip() and not line.startswith(b"=")]
        binary += base64.b64decode(b"".join(lines))
    scratch.write_bytes(binary)
    return scratch


def release_has(release: Release, component: str, arch: str = ARCH) -> bool:
    """Whether *release* lists a Packages index of *component* for architecture *arch*."""
    stem = f"{component}/binary-{arch}/Packages"
    return any(stem + ext in release.sha256 for ext in (".xz", ".gz"))


def release_lacks(release: Release, component: str) -> bool:
    """True when the Release says the suite has no *component* at all (its ``Components:``
    field leaves it out), as Ubuntu's and Debian's archives do for pockets that are partial;
    without that field an unlisted index is an error, not an absence. Debian's security
    archive spells its components ``updates/main``."""
    listed = release.fields.get("Components")
    return listed is not None and component not in {c.rsplit("/", 1)[-1]
                                                     for c in listed.split()}


def fetch_index(
    source: AptSource,
    component: str,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    release: Release | None = None,
    arch: str = ARCH,
) -> tuple[IndexSnapshot, str]:
    """Fetch one ``<component>/binary-<arch>/Packages`` index; return its snapshot and text.

    The (In)Release file is always fetched (it says what is current) unless the caller has
    just done so (*release*); the Packages.xz it names is taken from the cache when a verified
    copy is there, else downloaded by its by-hash URL (immutable, so the recorded URL keeps
    meaning the same bytes) with a fallback to the plain path, and checked against the Release
    sha256 and size.

    The Release it reads was verified by :func:`fetch_release`.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    base = source.dist_url
    if release is None:
        release = fetch_release(source)

    # A flat repository has one index, next to its InRelease (NVIDIA's: Packages{,.gz}).
    directory = "" if source.flat else f"{component}/binary-{arch}/"
    stem = f"{directory}Packages"
    exts = (".xz", ".gz", "") if source.flat else (".xz", ".gz")
    ext = next((e for e in exts if stem + e in release.sha256), None)
    if ext is None:
        if source.flat:
            raise LockError(f"{base}/InRelease lists no Packages index; is {source.uri} a flat "
                            f"apt repository? check {source.setting}")
        raise LockError(f"{base}/InRelease lists no {stem}.xz; is {component} a component "
                        f"of {source.suite} on this mirror?")
    sha256, size = release.sha256[stem + ext]
    plain_url = f"{base}/{stem}{ext}"
    by_hash_url = f"{base}/{directory}by-hash/SHA256/{sha256}"
    url = by_hash_url if release.by_hash else plain_url
    label = (f"{source.uri} index ({human_size(size)})" if source.flat
             else f"{source.suite} {component} index ({human_size(size)})")

    cached = cache / f"{sha256}{ext}"
    data: bytes | None = None
    with contextlib.suppress(OSError):
        data = cached.read_bytes()
    if data is not None and _verified(data, sha256, size):
        if progress:
            progress(f"apt: using cached {label}")
    else:
        if progress:
            progress(f"apt: fetching {label}")
        data = (_http_get(url, missing_ok=True, setting=source.setting) if release.by_hash
                else None)
        if data is None:
            url = plain_url
            data = _http_get(url, setting=source.setting)
        assert data is not None
        if not _verified(data, sha256, size):
            raise FetchError(
                f"index {url} does not match its Release entry (sha256 {sha256[:12]}..., "
                f"{size} bytes); the mirror may be syncing, retry later"
            )
        with contextlib.suppress(OSError):  # the cache only saves time: a read-only
            cached.parent.mkdir(parents=True, exist_ok=True)  # home must not fail the lock
            atomic_write(cached, data)
    text = _decompress(data, ext, url)
    snapshot = IndexSnapshot(source.uri.rstrip("/"), source.suite, component, url, sha256, size)
    return snapshot, text


def load_index(
    sources: Sequence[AptSource],
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    arch: str = ARCH,
) -> tuple[list[IndexSnapshot], DebIndex]:
    """Fetch every component of every source and merge them into one :class:`DebIndex`.

    A component that a suite's Release says it does not have is skipped (Ubuntu's and
    Debian's -updates/-security pockets need not carry every component); one that no suite
    has at all is an error, since its packages could never be found. A flat repository has
    one index and no components.
    """
    if not sources:
        raise LockError("no apt sources given; pass --apt-mirror URL")
    index = DebIndex(label=sources[0].suite, arch=arch)
    snapshots: list[IndexSnapshot] = []
    seen: dict[str, bool] = {}
    for source in sources:
        release = fetch_release(source)
        if source.flat:
            snapshot, text = fetch_index(source, "", cache_dir, progress, release)
            index.add_packages_text(text, source.files_url, source.suite)
            snapshots.append(snapshot)
            continue
        for component in source.components:
            seen.setdefault(component, False)
            if (not release_has(release, component, arch)
                    and release_lacks(release, component)):
                if progress:
                    progress(f"apt: {source.suite} has no {component} component; skipped")
                continue
            snapshot, text = fetch_index(source, component, cache_dir, progress, release, arch)
            index.add_packages_text(text, source.uri, source.suite)
            snapshots.append(snapshot)
            seen[component] = True
    missing = [c for c, found in seen.items() if not found]
    if missing:
        uris = ", ".join(dict.fromkeys(s.uri for s in sources if not s.flat))
        suites = ", ".join(s.suite for s in sources if not s.flat)
        raise LockError(f"no suite ({suites}) on {uris} has the {' '.join(missing)} "
                        "component; point --apt-mirror at an archive that carries it")
    return snapshots, index

"""Put a rendered lock's pinned artifacts into a Nix store before nix-build runs.

Why envnix downloads them and not Nix: each artifact is a ``builtin:fetchurl`` derivation, so
Nix fetches at most max-jobs of them at a time (two on a two-core machine), in the same slots
as the builds. Here every missing artifact the build needs is downloaded at once, a few
connections at a time as the network allows, checked against its sha256 and added as the very
store path Nix's fetch would make, which Nix then finds valid. Nothing else changes: the
derivations, and so the image, are the same; a build with a binary cache that has the image
downloads nothing (only what nix-build would fetch is fetched).
"""

from __future__ import annotations

import atexit
import hashlib
import queue
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path

from envnix.core import credentials, http, process
from envnix.core.errors import BuildError, EnvnixError
from envnix.core.progress import Progress
from envnix.lock.model import CorruptLockError, read_lock
from envnix.render import lock_artifacts

# Downloads at once: enough to fill a link that one connection cannot (a mirror's per-stream
# rate), few enough to be polite to it. Not max-jobs: downloads use no CPU.
DOWNLOAD_JOBS = 8
# One nix-store --add-fixed per batch, not per artifact: each call opens the store's database
# (60 .debs: 6.1 s one by one, 0.8 s in one call); bytes bound the temporary copies on disk.
SEED_BATCH_FILES = 200
SEED_BATCH_BYTES = 1 << 30
WORKER_GRACE = 2.0

_NIX_BASE32 = "0123456789abcdfghijklmnpqrsvwxyz"
_BLOB_URL = re.compile(r"https?://([^/]+)/v2/.+/blobs/sha256:[0-9a-f]{64}")
# nix-build's header of the derivations it will build (its count), then one path a line
WILL_BUILD = re.compile(r"^these (\d+) derivations? will be built:")
_LISTED_PATH = re.compile(r"^\s+/\S+/[0-9a-z]{32}-(\S+)$")


def by_path(artifacts: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """The artifacts keyed by the store path Nix's fetch of each makes."""
    return {fixed_output_path(a["sha256"], a["storeName"]): a for a in artifacts}


def is_chroot_store(store: str) -> bool:
    """A local directory given as --store (not a daemon or remote store URL)."""
    return "://" not in store and store not in ("auto", "daemon", "local")


def seed_chroot_store(lock_path: Path, store: str,
                      progress: Progress | None = None) -> None:
    """Put every pinned artifact into the chroot store ``store`` before nix-build runs.

    Why all of them: Nix 2.8's ``builtin:fetchurl`` inside a chroot store (``--store DIR``)
    writes to the *host's* /nix/store path of its output, and a failed fetch leaves a 0-byte
    file there that later host builds can take for the artifact. Adding each artifact up
    front (from the host store when it has it, else downloaded here) means no fetch runs
    inside the chroot store at all.
    """
    wanted = by_path(seedable(lock_path))
    missing = invalid_paths(list(wanted), store)
    if missing:
        add_artifacts(store, {p: wanted[p] for p in missing}, progress,
                      on_host=set(missing) - set(invalid_paths(missing, None)))


def prefetch(lock_path: Path, store: str | None, dry_run: Sequence[str],
             progress: Progress | None = None) -> None:
    """Download, in parallel, the artifacts of the lock that ``store`` (None: the host's)
    lacks and that nix-build would fetch; ``dry_run`` is the nix-build command with
    ``--dry-run``, which says so (a binary cache may hold the image, and then nothing is
    fetched). An evaluation error is left to the build itself to report."""
    wanted = by_path(seedable(lock_path))
    missing = invalid_paths(list(wanted), store)
    if not missing:
        return
    proc = process.run(list(dry_run), error=BuildError)
    if proc.returncode != 0:
        return
    names = set(_to_build(proc.stderr.splitlines()))
    fetch = {p: wanted[p] for p in missing if wanted[p]["storeName"] + ".drv" in names}
    if fetch:
        add_artifacts(store, fetch, progress, fatal=False)


def _to_build(lines: list[str]) -> Iterator[str]:
    """The names (``<name>.drv``) of the derivations nix-build --dry-run would build."""
    listing = False
    for line in lines:
        if WILL_BUILD.match(line):
            listing = True
        elif listing and (m := _LISTED_PATH.match(line)):
            yield m[1]
        else:
            listing = False


def add_artifacts(store: str | None, artifacts: dict[str, dict[str, str]],
                  progress: Progress | None, on_host: frozenset[str] | set[str] = frozenset(),
                  fatal: bool = True) -> None:
    """Add ``artifacts`` (:func:`by_path`) to ``store``: copied from the host's store (paths
    in ``on_host``) or downloaded, ``DOWNLOAD_JOBS`` at a time, then added in batches as they
    arrive. With ``fatal`` False a failed download is left to Nix's own fetch (which honours
    its proxy settings and reports in its terms); the others are still added."""
    fetched = [a for path, a in artifacts.items() if path not in on_host]
    if progress:
        size = sum(int(a.get("size") or 0) for a in fetched)
        copied = f", {len(artifacts) - len(fetched)} from this machine's store" if on_host else ""
        progress(f"nix: seeding {store or 'the store'} with {len(artifacts)} artifact(s): "
                 f"{len(fetched)} to download ({size / 1e6:.1f} MB, "
                 f"{min(DOWNLOAD_JOBS, len(fetched) or 1)} at a time){copied}")
    todo: queue.SimpleQueue[tuple[str, dict[str, str]]] = queue.SimpleQueue()
    done: queue.SimpleQueue[tuple[str, Path] | BaseException | None] = queue.SimpleQueue()
    for entry in artifacts.items():
        todo.put(entry)
    stop = threading.Event()
    failed: list[str] = []
    tmp = tempfile.mkdtemp(prefix="envnix-seed-")
    workers: list[threading.Thread] = []
    try:

        def place(path: str, artifact: dict[str, str],
                  reuse: http.Connections) -> tuple[str, Path] | None:
            file = Path(tmp) / artifact["storeName"]
            if path in on_host and Path(path).is_file():
                shutil.copyfile(path, file)
                return path, file
            try:
                http.download(artifact["url"], artifact["sha256"], file, progress=progress,
                              headers=_registry_headers(artifact["url"]), reuse=reuse)
            except EnvnixError as exc:
                if fatal:
                    raise
                failed.append(exc.message)
                return None
            return path, file

        def worker() -> None:
            reuse = http.Connections()  # one mirror's files over one connection per thread
            try:
                while not stop.is_set():
                    try:
                        path, artifact = todo.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        done.put(place(path, artifact, reuse))
                    except BaseException as exc:  # handed to the main thread to report
                        done.put(exc)
            finally:
                reuse.close()

        # Daemon threads: Ctrl-C or a failure returns at once; a download still waiting on
        # a silent server does not hold the process.
        for _ in range(min(DOWNLOAD_JOBS, len(artifacts))):
            workers.append(threading.Thread(target=worker, daemon=True, name="envnix-seed"))
            workers[-1].start()
        batch: list[tuple[str, Path]] = []
        held = 0
        for i in range(len(artifacts)):
            while True:  # with a timeout, so that Ctrl-C is seen at once
                try:
                    placed = done.get(timeout=0.5)
                    break
                except queue.Empty:
                    continue
            if isinstance(placed, BaseException):
                raise placed
            if placed:
                batch.append(placed)
                held += placed[1].stat().st_size
            if batch and (held >= SEED_BATCH_BYTES or len(batch) >= SEED_BATCH_FILES
                          or i == len(artifacts) - 1):
                _add_fixed(store, batch)
                batch, held = [], 0
    finally:
        stop.set()  # the first failure is the one reported; the queued ones do not start
        _remove_when_idle(tmp, workers)
    if failed and progress:
        progress(f"nix: {len(failed)} artifact(s) not downloaded here ({failed[0]}): "
                 "Nix fetches them itself")


def _remove_when_idle(tmp: str, workers: list[threading.Thread]) -> None:
    """Remove the download directory once the workers have stopped writing into it: a copy
    or a download in flight ends within ``WORKER_GRACE`` seconds, or (a server that never
    answers) the directory goes when the process exits."""
    deadline = time.monotonic() + WORKER_GRACE
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    if any(w.is_alive() for w in workers):
        atexit.register(shutil.rmtree, tmp, True)
    shutil.rmtree(tmp, ignore_errors=True)


def _add_fixed(store: str | None, batch: list[tuple[str, Path]]) -> None:
    """Add each file to ``store`` (None: the host's) as the fixed output path Nix expects."""
    added = store_run(["nix-store", *(["--store", store] if store else []), "--add-fixed",
                       "sha256", *(str(file) for _, file in batch)]).split()
    for (path, file), got in zip(batch, added + [""] * len(batch), strict=False):
        if got != path:
            raise BuildError(f"adding {file.name} to the store gave {got or 'nothing'}, "
                             f"expected {path}")
        file.unlink()


def _registry_headers(url: str) -> dict[str, str]:
    """The ``Authorization`` a registry blob URL needs with the login the user stored, if
    any (http.registry_headers); {} for other URLs."""
    m = _BLOB_URL.fullmatch(url)
    return http.registry_headers(url, credentials.registry_login(m[1])) if m else {}


def seed_private_layers(lock_path: Path, store: str | None,
                        progress: Progress | None = None) -> None:
    """Download the base layers the store lacks whose registry wants a token or a login,
    into ``store``: with the login the user stored for it (auth.json, docker's config.json, a
    credential helper), or with the anonymous token a public repository on a registry with a
    token service gives anyone.

    Why not Nix: builtin:fetchurl knows a netrc but not a registry's token flow, and a login
    handed to it in the derivation would be written into the world-readable .drv. The path
    added is the one Nix's fetch would make, so Nix then finds it built. Layers anyone may
    download are left to Nix: they are one base's, so one anonymous HEAD tells which.
    """
    layers = by_path([a for a in seedable(lock_path, base_only=True)
                      if _BLOB_URL.fullmatch(a["url"])])
    missing = invalid_paths(list(layers), store)
    first = layers[missing[0]]["url"] if missing else ""
    login = credentials.registry_login(urllib.parse.urlsplit(first).netloc) if first else None
    if not first or not http.registry_headers(first, login):
        return
    if progress:
        how = "the registry login" if login else "an anonymous registry token"
        progress(f"nix: fetching {len(missing)} base layer(s) with {how}")
    with tempfile.TemporaryDirectory(prefix="envnix-seed-") as tmp:
        for path in missing:
            layer = layers[path]
            file = Path(tmp) / layer["storeName"]
            # Asked again for each layer: a token may expire while big layers download.
            http.download(layer["url"], layer["sha256"], file, progress=progress,
                          headers=http.registry_headers(layer["url"], login))
            _add_fixed(store, [(path, file)])


def fixed_output_path(sha256: str, name: str, store_dir: str = "/nix/store") -> str:
    """The store path of a flat sha256 fixed-output (``builtin:fetchurl``'s), as Nix computes
    it (``nix-store --print-fixed-path sha256 HASH NAME``), without a process per artifact:
    a --store build checks every locked artifact, also when nothing is missing."""
    inner = hashlib.sha256(f"fixed:out:sha256:{sha256}:".encode()).hexdigest()
    digest = hashlib.sha256(f"output:out:sha256:{inner}:{store_dir}:{name}".encode()).digest()
    folded = bytearray(20)
    for i, byte in enumerate(digest):  # Nix's compressHash: XOR-fold to 160 bits
        folded[i % 20] ^= byte
    bits = int.from_bytes(folded, "little")
    # Nix's base32: 5-bit groups, most significant group first, over the little-endian number.
    text = "".join(_NIX_BASE32[(bits >> (5 * i)) & 31] for i in range(31, -1, -1))
    return f"{store_dir}/{text}-{name}"


def seedable(lock_path: Path, base_only: bool = False) -> list[dict[str, str]]:
    """The rendered lock's artifacts and base layers, checked as Nix would fetch them: http(s)
    only, no credentials, a sha256 and a store name that is also a safe file name. Seeding
    runs outside any sandbox, so this holds on its own, whatever wrote the file: the lock is
    read back checked, and lock_artifacts applies check_artifact to every entry."""
    try:
        lock = read_lock(lock_path)
    except CorruptLockError as exc:
        raise BuildError(exc.message, hint="it is generated: run envnix render (or envnix "
                         "build) again") from None
    if lock is None or lock.image is None:
        raise BuildError(f"{lock_path}: missing, or without an image section",
                         hint="run envnix render (or envnix build) again")
    if base_only:
        return list(lock.image["plan"]["baseLayers"])
    return [*lock_artifacts(lock).values(), *lock.image["plan"]["baseLayers"]]


def store_run(cmd: list[str]) -> str:
    """A nix-store / nix command's standard output; its last error line when it fails."""
    proc = process.run(cmd, error=BuildError)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:3])} failed: {proc.last_error_line()}")
    return proc.text


def invalid_paths(paths: list[str], store: str | None) -> list[str]:
    """The ``paths`` that are not valid in ``store`` (None: the host's store)."""
    if not paths:
        return []
    cmd = ["nix-store", *(["--store", store] if store else []), "--check-validity",
           "--print-invalid", *paths]
    return store_run(cmd).split()

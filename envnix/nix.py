"""Drive Nix: run nix-build on a rendered directory, show progress, translate its failures.

Nix's own errors are long and name store paths; users need one line that names the artifact
and says what to do. Everything Nix prints is still passed through with ``--verbose``.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from envnix import process
from envnix.errors import (
    BuildError,
    FetchError,
    HashMismatchError,
    LockError,
    ToolMissingError,
    os_reason,
)
from envnix.lock.schema import read_plan
from envnix.nixexpr import url_problem
from envnix.render import nix_options

_BUILDING = re.compile(r"^building '/nix/store/[0-9a-z]{32}-(.+?)\.drv'")
_WILL_BUILD = re.compile(r"^these (\d+) derivations? will be built:")
_HASH_MISMATCH = re.compile(
    r"hash mismatch in fixed-output derivation '/nix/store/[0-9a-z]{32}-(.+?)\.drv':"
    r"\s*specified:\s*(\S+)\s*got:\s*(\S+)", re.S)
_DOWNLOAD = re.compile(r"unable to download '([^']+)': (.+)")
_BUILDER_LINE = re.compile(r"envnix-builder: .+")
_FAILED = re.compile(r"builder for '/nix/store/[0-9a-z]{32}-(.+?)\.drv' failed")


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
    progress: Callable[[str], None] | None = None,
    verbose: bool = False,
) -> NixResult:
    """Build ``attr`` of ``directory/default.nix``; return the output path."""
    cmd = [require_nix(), str(directory / "default.nix"), "-A", attr, *nix_options(toolchain)]
    cmd += ["--argstr", "toolchain", toolchain]
    if store:
        cmd += ["--store", store]
        if _is_chroot_store(store):
            seed_chroot_store(directory / "plan.json", store, progress)
            if toolchain == "pinned":  # the same path Nix would make, without a fetch there
                from envnix.toolchain import ensure

                ensure(store=store, progress=progress)
    if out_link:
        cmd += ["--out-link", str(out_link)]
    else:
        cmd += ["--no-out-link"]
    started = time.monotonic()
    total, done = 0, 0

    def on_line(line: str) -> None:
        nonlocal total, done
        if verbose:
            sys.stderr.write(line)
        if m := _WILL_BUILD.match(line):
            total = int(m[1])
            if progress:
                progress(f"nix: {total} derivation(s) to build")
        elif m := _BUILDING.match(line):
            done += 1
            if progress and not verbose:
                progress(f"nix: [{done}/{total or '?'}] {m[1]}")

    proc = process.run(cmd, error=BuildError, on_line=on_line)
    if proc.returncode != 0:
        raise _translate_failure(proc.stderr)
    stdout = proc.text
    out = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    return NixResult(Path(out), time.monotonic() - started, done)


def _is_chroot_store(store: str) -> bool:
    """A local directory given as --store (not a daemon or remote store URL)."""
    return "://" not in store and store not in ("auto", "daemon", "local")


def seed_chroot_store(plan_path: Path, store: str,
                      progress: Callable[[str], None] | None = None) -> None:
    """Put every pinned artifact into the chroot store ``store`` before nix-build runs.

    Why: Nix 2.8's ``builtin:fetchurl`` inside a chroot store (``--store DIR``) writes to the
    *host's* /nix/store path of its output, and a failed fetch leaves a 0-byte file there that
    later host builds can take for the artifact. Adding each artifact up front (from the host
    store when it has it, else downloaded here and checked against its sha256) means no fetch
    runs inside the chroot store at all. The store paths are the same fixed-output paths.
    """
    wanted = {fixed_output_path(a["sha256"], a["storeName"]): a for a in _seedable(plan_path)}
    missing = _invalid(list(wanted), store)
    if not missing:
        return
    on_host = set(missing) - set(_invalid(missing, None))
    if progress:
        progress(f"nix: seeding {store} with {len(missing)} artifact(s) "
                 f"({len(on_host)} from this machine's store)")
    with tempfile.TemporaryDirectory(prefix="envnix-seed-") as tmp:
        for path in missing:
            artifact = wanted[path]
            file = Path(tmp) / artifact["storeName"]
            if path in on_host and Path(path).is_file():
                shutil.copyfile(path, file)
            else:
                _download(artifact["url"], artifact["sha256"], file)
            added = _run(["nix-store", "--store", store, "--add-fixed", "sha256", str(file)])
            if added.strip() != path:
                raise BuildError(f"seeding {store}: {artifact['storeName']} became "
                                 f"{added.strip()}, expected {path}")
            file.unlink()


_NIX_BASE32 = "0123456789abcdfghijklmnpqrsvwxyz"


def fixed_output_path(sha256: str, name: str, store_dir: str = "/nix/store") -> str:
    """The store path of a flat sha256 fixed-output (``builtin:fetchurl``'s), as Nix computes
    it (``nix-store --print-fixed-path sha256 HASH NAME``), without a process per artifact:
    a --store build checks every locked artifact, also when nothing is missing."""
    import hashlib

    inner = hashlib.sha256(f"fixed:out:sha256:{sha256}:".encode()).hexdigest()
    digest = hashlib.sha256(f"output:out:sha256:{inner}:{store_dir}:{name}".encode()).digest()
    folded = bytearray(20)
    for i, byte in enumerate(digest):  # Nix's compressHash: XOR-fold to 160 bits
        folded[i % 20] ^= byte
    bits = int.from_bytes(folded, "little")
    # Nix's base32: 5-bit groups, most significant group first, over the little-endian number.
    text = "".join(_NIX_BASE32[(bits >> (5 * i)) & 31] for i in range(31, -1, -1))
    return f"{store_dir}/{text}-{name}"


def _seedable(plan_path: Path) -> list[dict[str, str]]:
    """plan.json's artifacts, checked as Nix would fetch them: http(s) only, no credentials,
    a sha256 and a store name that is also a safe file name. Seeding runs outside any
    sandbox, so this holds on its own, whatever wrote plan.json: read_plan applies the same
    rules as render's check_artifact (url_problem, SHA256_HEX, STORE_NAME) to every entry."""
    plan = read_plan(plan_path)
    return [*plan["artifacts"].values(), *plan["baseLayers"]]


def _run(cmd: list[str]) -> str:
    proc = process.run(cmd, error=BuildError)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:3])} failed: {proc.last_error_line()}")
    return proc.text


def _invalid(paths: list[str], store: str | None) -> list[str]:
    """The ``paths`` that are not valid in ``store`` (None: the host's store)."""
    if not paths:
        return []
    cmd = ["nix-store", *(["--store", store] if store else []), "--check-validity",
           "--print-invalid", *paths]
    return _run(cmd).split()


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to URLs envnix would fetch itself (http(s), no credentials)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        problem = url_problem(newurl)
        if problem:
            raise urllib.error.URLError(f"redirected to a URL envnix does not fetch ({problem})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download(url: str, sha256: str, dest: Path) -> None:
    """``url`` to ``dest``, or a one-line FetchError/HashMismatchError."""
    import hashlib

    problem = url_problem(url)  # the caller checked; this function must not rely on it
    if problem:
        raise LockError(f"refusing to download {url[:200]!r}: {problem}")
    opener = urllib.request.build_opener(_HttpOnlyRedirects())
    digest = hashlib.sha256()
    try:
        with opener.open(url, timeout=120) as response, dest.open("wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"cannot download {url}: HTTP {exc.code} {exc.reason}",
                         hint="check the mirror in envnix.lock, or re-lock") from None
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"cannot download {url}: {os_reason(exc)}",
                         hint="check the network or the mirror in envnix.lock") from None
    if digest.hexdigest() != sha256:
        raise HashMismatchError(
            f"hash mismatch for {dest.name}: envnix.lock pins sha256:{sha256} but the download "
            f"is sha256:{digest.hexdigest()}",
            hint="the artifact changed upstream or the mirror is serving different bytes; "
                 "check the source, then run envnix lock to re-pin")


# What a daemon that dropped an untrusted user's extra-sandbox-paths makes Nix say.
_HOST_PYTHON_MISSING = "executing '/usr/bin/python3': No such file or directory"


def _translate_failure(log: str) -> BuildError | FetchError:
    if m := _HASH_MISMATCH.search(log):
        return HashMismatchError(
            f"hash mismatch for {m[1]}: envnix.lock pins {m[2]} but the download is {m[3]}",
            hint="the artifact changed upstream or the mirror is serving different bytes; "
                 "check the source, then run envnix lock to re-pin",
        )
    if m := _DOWNLOAD.search(log):
        return FetchError(f"cannot download {m[1]}: {m[2].strip()}",
                          hint="check the network or the mirror in envnix.lock")
    if "daemon-socket" in log and "Permission denied" in log:
        return BuildError("cannot reach the nix-daemon: permission denied on its socket",
                          hint="join group nix-users (scripts/setup adds whoever ran it), "
                               "then log in again")
    if _HOST_PYTHON_MISSING in log:
        return BuildError(f"the builders' {_HOST_PYTHON_MISSING.split()[1]} is not visible in "
                          "the nix-daemon's sandbox",
                          hint="the daemon ignores extra-sandbox-paths from users it does not "
                               "trust: run ./scripts/setup, which gives the daemon that setting")
    builder_lines = _BUILDER_LINE.findall(log)
    failed = _FAILED.search(log)
    where = f" while building {failed[1]}" if failed else ""
    if builder_lines:
        return BuildError(builder_lines[-1].removeprefix("envnix-builder: ") + where)
    errors = [ln.strip() for ln in log.splitlines() if ln.strip().startswith("error:")]
    return BuildError((errors[0] if errors else "nix-build failed") + where,
                      hint="run again with --verbose to see Nix's full log")

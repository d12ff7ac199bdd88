"""Push a built image to a registry with skopeo, and prove the registry holds the built bytes.

Why skopeo from the OCI layout: the layout's layers are already gzipped by envnix's own
deterministic writer, so ``skopeo copy --preserve-digests oci:... docker://...`` sends the
bytes Nix built, unchanged, and skips blobs the registry already has (a HEAD per blob). The
push is then *proved*: skopeo's ``--digestfile`` and a read-back of the manifest from the
registry (``skopeo inspect --raw``, hashed here) must both equal the manifest digest the build
wrote to ``digests.json``. A manifest digest covers the config and every layer digest, and a
registry verifies each blob's digest on upload, so equal manifest digests mean equal bytes.

Credentials never reach argv, logs or errors: ``--creds`` is written to a private auth file
(mode 0600, in a 0700 temporary directory, deleted afterwards) that skopeo reads, and every
line skopeo prints is scrubbed of the secret before it is parsed or shown.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from envnix.core import http, options, process
from envnix.core.errors import PublishError, UsageError
from envnix.core.progress import REPORTER, Progress, human_bytes, step, transfer
from envnix.core.reference import InvalidReference, Reference
from envnix.oci.layout import BuiltImage, require_tool

# --------------------------------------------------------------------------------------------
# Destinations and registry options
# --------------------------------------------------------------------------------------------

def is_registry_ref(text: str) -> bool:
    """True for ``[docker://]host[:port]/name[:tag]``; False for ``name:tag`` or a path."""
    try:
        ref = Reference.parse_docker(text)
    except InvalidReference:
        return False
    return ref.domain is not None and ref.digest is None


def parse_destination(text: str, default_tag: str) -> Reference:
    """``[docker://]host[:port]/repo[:tag]`` -> a Reference that names its registry and a tag
    (the build's when none is given): where ``envnix push`` sends an image."""
    try:
        ref = Reference.parse_docker(text)
    except InvalidReference as exc:
        raise UsageError(f"{text} is not a valid image reference: {exc}",
                         hint="names are lowercase: host[:port]/path/name[:tag]") from None
    if ref.digest:
        raise UsageError(f"{text}: push to a tag, not a digest (the digest is printed after "
                         "the push)")
    if ref.domain is None:
        raise UsageError(
            f"{text} does not name a registry: expected host[:port]/name[:tag]",
            hint="envnix never guesses a default registry; e.g. registry.example.com/team/app:1")
    try:
        ref = ref if ref.tag else ref.with_tag(default_tag)
    except InvalidReference as exc:
        raise UsageError(f"{text}: {exc}") from None
    return ref


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach and authenticate to the registry (skopeo's names for each)."""

    creds: str | None = None          # USER:PASSWORD
    authfile: Path | None = None      # an auth.json / docker config.json
    cert_dir: Path | None = None      # DIR/ca.crt (+ client *.cert/*.key)
    tls_verify: bool = True

    def __post_init__(self) -> None:
        if self.creds is not None and self.authfile is not None:
            raise UsageError("give --creds (or ENVNIX_REGISTRY_CREDS) or --authfile, not both")
        if self.creds is not None:
            user, sep, _ = self.creds.partition(":")
            if not user or not sep:
                raise UsageError("--creds must be USER:PASSWORD")
        if self.authfile is not None and not self.authfile.is_file():
            raise UsageError(f"--authfile {self.authfile} does not exist")
        if self.cert_dir is not None and not self.cert_dir.is_dir():
            raise UsageError(f"--cert-dir {self.cert_dir} is not a directory")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, *,
                 insecure: bool = False) -> RegistryOptions:
        """The options ``envnix build --output ...,push=true`` uses (no push flags there)."""
        return cls(creds=options.registry_creds(environ),
                   cert_dir=options.registry_cert_dir(environ),
                   tls_verify=options.registry_tls_verify(environ) and not insecure)

    def secrets(self) -> list[str]:
        """Every form of the secret that could show up in text (longest first)."""
        if not self.creds:
            return []
        password = self.creds.partition(":")[2]
        forms = {self.creds, base64.b64encode(self.creds.encode()).decode()}
        if password:
            forms.add(password)
        return sorted((f for f in forms if f), key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret in ``text`` (credentials must never be printed)."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class SignOptions:
    """How ``envnix push`` signs what it pushes (skopeo's flags, passed through unchanged).

    Why skopeo's own: its signatures are what podman, CRI-O and ``skopeo copy`` check against
    a policy.json (``signedBy``, ``sigstoreSigned``), and ``--registries.d`` is where that
    same machinery looks for the lookaside store. A passphrase stays in its file: only the
    path reaches skopeo's argv, and its text is scrubbed from every line skopeo prints.
    """

    sign_by: str | None = None             # GPG fingerprint (simple signing)
    sigstore_key: Path | None = None       # a sigstore private key file
    passphrase_file: Path | None = None    # for either key
    registries_d: Path | None = None       # registries.d: where signatures go (lookaside)

    def __post_init__(self) -> None:
        if self.sign_by is not None and (not self.sign_by.strip() or
                                         self.sign_by.startswith("-")):
            raise UsageError(f"--sign-by {self.sign_by!r} is not a key fingerprint")
        if self.sign_by is not None and self.sigstore_key is not None:
            raise UsageError("give --sign-by or --sign-by-sigstore-private-key, not both")
        if self.passphrase_file is not None and not self.signing:
            raise UsageError("--sign-passphrase-file needs --sign-by or "
                             "--sign-by-sigstore-private-key")
        for flag, path in (("--sign-by-sigstore-private-key", self.sigstore_key),
                           ("--sign-passphrase-file", self.passphrase_file)):
            if path is not None and not path.is_file():
                raise UsageError(f"{flag} {path} is not a file")
        if self.registries_d is not None and not self.registries_d.is_dir():
            raise UsageError(f"--registries.d {self.registries_d} is not a directory")

    @property
    def signing(self) -> bool:
        return self.sign_by is not None or self.sigstore_key is not None

    def global_args(self) -> list[str]:
        return [f"--registries.d={self.registries_d.absolute()}"] if self.registries_d else []

    def copy_args(self) -> list[str]:
        args = []
        if self.sign_by is not None:
            args.append(f"--sign-by={self.sign_by}")
        if self.sigstore_key is not None:
            args.append(f"--sign-by-sigstore-private-key={self.sigstore_key.absolute()}")
        if self.passphrase_file is not None:
            args.append(f"--sign-passphrase-file={self.passphrase_file.absolute()}")
        return args

    def secrets(self) -> list[str]:
        """The passphrase's text, as skopeo reads it (its first line), to scrub from output."""
        if self.passphrase_file is None:
            return []
        try:
            text = self.passphrase_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [x for x in {text.strip(), text.split("\n", 1)[0]} if len(x) >= 4]


@contextmanager
def private_authfile(opts: RegistryOptions, hosts: Sequence[str]) -> Iterator[Path | None]:
    """An auth.json holding ``--creds`` for ``hosts`` (0600 in a 0700 dir), removed on exit.

    Why a file: ``skopeo --dest-creds u:p`` would put the password in argv, which every user
    on the machine can read in /proc. Without ``--creds`` this yields ``--authfile`` (or None,
    letting skopeo find REGISTRY_AUTH_FILE or the user's podman/docker logins itself).
    """
    if not opts.creds:
        yield opts.authfile
        return
    token = base64.b64encode(opts.creds.encode()).decode()
    tmp = tempfile.mkdtemp(prefix="envnix-auth-")  # mkdtemp makes it 0700
    path = Path(tmp) / "auth.json"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"auths": {h: {"auth": token} for h in sorted(set(hosts))}}, f)
        yield path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# skopeo
# --------------------------------------------------------------------------------------------


def policy_args() -> list[str]:
    """skopeo refuses to run without a policy.json; the source is our own build, so when the
    machine has no policy at all, skip the (source-side) policy check instead of failing."""
    home = Path(os.environ.get("HOME", "/nonexistent"))
    for candidate in (home / ".config/containers/policy.json",
                      Path("/etc/containers/policy.json")):
        if candidate.exists():
            return []
    return ["--insecure-policy"]


def _dest_args(opts: RegistryOptions, authfile: Path | None, prefix: str) -> list[str]:
    """Auth/TLS flags; ``prefix`` is ``dest-`` for copy, ``""`` for inspect."""
    args = []
    if authfile is not None:
        args.append(f"--{prefix}authfile={authfile}")
    if opts.cert_dir is not None:
        args.append(f"--{prefix}cert-dir={opts.cert_dir.absolute()}")
    if not opts.tls_verify:
        args.append(f"--{prefix}tls-verify=false")
    return args


_FATAL = re.compile(r'level=fatal msg="((?:[^"\\]|\\.)*)"')
_COPY_BLOB = re.compile(r"^Copying (blob|config) (sha256:[0-9a-f]{64})")
_SKIPPED = re.compile(r"Skipping blob (sha256:[0-9a-f]{64}) \(already present\)")
_UPLOADED = re.compile(r"Upload of layer (sha256:[0-9a-f]{64}) complete")
_CHECKING = re.compile(r"Checking /v2/\S+/blobs/(sha256:[0-9a-f]{64})")
_EXISTS = re.compile(r'msg="\.\.\. already exists"')
_DEBUG = re.compile(r'^time="[^"]*" level=debug ')
_HTTP_5XX = re.compile(
    r"(?:unexpected HTTP status|status code|HTTP status):? (5\d\d[^\"]*?)(?:\"|$|;)")


def _unquote_go(s: str) -> str:
    try:
        return json.loads(f'"{s}"')
    except json.JSONDecodeError:
        return s.replace('\\"', '"')


def _failure(stderr: str, secrets: Sequence[str]) -> str:
    """What a failed skopeo run said: its fatal message, else the end of its stderr, with
    every secret taken out."""
    err = scrub(stderr, secrets)
    m = _FATAL.search(err)
    return _unquote_go(m[1]) if m else err.strip()[-300:]


human_size = human_bytes  # the name oci's callers know


def short(digest: str) -> str:
    return digest[:19] + "…"


@dataclass
class BlobReport:
    """One blob of one push: ``uploaded``, ``present`` (already in the registry) or ``sent``
    (skopeo copied it but its log did not say which; only with an unexpected skopeo)."""

    digest: str
    size: int
    kind: str           # layer | config
    state: str = "pending"


@dataclass
class PushResult:
    dest: Reference
    digest: str
    seconds: float
    blobs: list[BlobReport] = field(default_factory=list)

    def _bytes(self, kind: str, states: tuple[str, ...]) -> tuple[int, int]:
        chosen = [b for b in self.blobs if b.kind == kind and b.state in states]
        return len(chosen), sum(b.size for b in chosen)

    @property
    def uploaded_bytes(self) -> int:
        """Every blob byte sent (layers and config; the manifest is counted separately)."""
        return sum(b.size for b in self.blobs if b.state in ("uploaded", "sent"))

    def summary(self) -> str:
        n_up, up = self._bytes("layer", ("uploaded", "sent"))
        n_had, had = self._bytes("layer", ("present",))
        total = n_up + n_had
        return (f"push: {self.dest}: {n_up} of {total} layer(s) uploaded ({human_size(up)}), "
                f"{n_had} already in the registry ({human_size(had)}), in {self.seconds:.1f}s")


class CopyLog:
    """Turn skopeo's ``--debug`` output into per-blob progress lines (push, and load into
    podman's storage: ``stage`` and ``present`` name them).

    Why ``--debug``: without a terminal skopeo 1.9.3 prints the same ``Copying blob sha256:...``
    line for a blob it uploads and one it skips (``skipped: already exists`` only appears in
    its terminal progress bars), all at once since blobs are copied in parallel. Its debug log
    says which: ``Skipping blob X (already present)`` (found by HEAD, or mounted from another
    repository of the registry) and ``Upload of layer X complete``.
    """

    def __init__(self, image: BuiltImage, progress: Progress, stage: str = "push",
                 present: str = "already in the registry") -> None:
        self.progress = progress
        self.stage, self.present = stage, present
        self.blobs: dict[str, BlobReport] = {
            b.digest: BlobReport(b.digest, b.size, "layer") for b in image.layers}
        self.blobs.setdefault(image.config.digest,
                              BlobReport(image.config.digest, image.config.size, "config"))
        self.config = image.config.digest
        self.checking: str | None = None
        self.fatal: str | None = None
        self.tail: list[str] = []

    def _done(self, digest: str, state: str) -> None:
        blob = self.blobs.get(digest)
        if blob is None or blob.state != "pending":
            return
        blob.state = state
        total = sum(b.size for b in self.blobs.values())
        done = sum(b.size for b in self.blobs.values() if b.state != "pending")
        transfer(self.progress, self.stage, done, total)
        what = self.present if state == "present" else state
        self.progress(f"{self.stage}: {blob.kind} {short(digest)} ({human_size(blob.size)}) "
                      f"{what}")

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        if m := _FATAL.search(line):
            self.fatal = _unquote_go(m[1])
        elif m := _SKIPPED.search(line):
            self._done(m[1], "present")
        elif m := _UPLOADED.search(line):
            self._done(m[1], "uploaded")
        elif m := _CHECKING.search(line):
            self.checking = m[1]
        elif _EXISTS.search(line) and self.checking == self.config:
            # skopeo logs no "Skipping" line for a config blob that is already there; it is
            # copied after every layer finished, so the last HEAD before this line was its.
            self._done(self.config, "present")
        elif line.startswith("Writing manifest"):
            for digest, blob in self.blobs.items():
                if blob.state == "pending":  # copied, but no debug line said how
                    self._done(digest, "sent")
        if line and not _DEBUG.match(line):
            self.tail = [*self.tail[-19:], line]


def _translate(message: str, dest: Reference, opts: RegistryOptions) -> PublishError:
    """skopeo's error -> one line that names the registry and says what to do."""
    host = dest.domain
    low = message.lower()
    detail = message.rsplit(": ", 1)[-1].strip()
    if "server gave http response to https client" in low:
        return PublishError(f"registry {host} speaks plain HTTP, not HTTPS",
                            hint="pass --tls-verify=false to push over plain HTTP "
                                 "(in --output: registry.insecure=true)")
    if "x509:" in low or "tls: " in low:
        x509 = message[message.find("x509:"):] if "x509:" in message else detail
        return PublishError(
            f"registry {host}'s TLS certificate was not accepted ({x509})",
            hint="pass --cert-dir DIR with the registry's CA certificate as DIR/ca.crt, or "
                 "--tls-verify=false for a registry you trust")
    if "unauthorized" in low or " 401 " in low:
        what = "rejected the credentials" if (opts.creds or opts.authfile) else \
            "requires credentials"
        return PublishError(f"registry {host} {what} (unauthorized)",
                            hint="check --creds/--authfile (or REGISTRY_AUTH_FILE, or log in "
                                 "with podman login / skopeo login)")
    if "denied" in low or " 403 " in low:
        return PublishError(f"registry {host} denied pushing to {dest.path} ({detail})",
                            hint="check that these credentials may push to this repository "
                                 "(--creds/--authfile)")
    if "connection refused" in low:
        return PublishError(f"registry {host} is not listening (connection refused)",
                            hint="check the host and port, and that the registry is running")
    if "no such host" in low or "server misbehaving" in low:
        return PublishError(f"cannot resolve the registry host {host.rsplit(':', 1)[0]}",
                            hint="check the registry name in the destination")
    if "timeout" in low or "deadline exceeded" in low:
        return PublishError(f"registry {host} did not answer in time ({detail})",
                            hint="check the network and the registry, then re-run the push")
    if m := _HTTP_5XX.search(message):
        return PublishError(
            f"registry {host} failed while storing the image (HTTP {m[1].strip()})",
            hint="the registry may be out of disk space or broken: check its logs, then "
                 "re-run the push (blobs it already has are skipped)")
    if any(s in low for s in ("eof", "connection reset", "broken pipe", "use of closed")):
        if registry_answers(host, opts):
            # The registry is up but dropped the upload: it refused the body mid-stream (a
            # 5xx it sent while skopeo was still writing, typically a full disk or a size
            # limit); skopeo then only sees the broken connection.
            return PublishError(
                f"registry {host} aborted a blob upload ({detail}) but is still up",
                hint="it may be out of disk space or limit upload sizes: check its logs, then "
                     "re-run the push (blobs it already has are skipped)")
        return PublishError(
            f"the connection to registry {host} broke during the push ({detail}) and the "
            "registry no longer answers",
            hint="re-run the push once it is back: blobs already in the registry are skipped, "
                 "and the tag is only written after every blob has arrived")
    if "413" in message or "too large" in low:
        return PublishError(f"registry {host} refused a blob as too large ({detail})",
                            hint="raise the registry's or its proxy's upload size limit")
    text = message if len(message) <= 300 else message[:297] + "..."
    return PublishError(f"push to {dest} failed: {text}",
                        hint="run again with --verbose to see skopeo's log")


def registry_answers(host: str, opts: RegistryOptions, timeout: float = 5) -> bool:
    """True when ``GET /v2/`` gets any HTTP answer (200 or 401: the registry process is up)."""
    ca_files = sorted(opts.cert_dir.glob("*.crt")) if opts.cert_dir is not None else []
    # as Go's HTTP client does, never send loopback traffic to a proxy
    loopback = host.startswith(("127.", "localhost", "[::1]"))
    for scheme in ("https", "http") if not opts.tls_verify else ("https",):
        try:
            with http.open_url(f"{scheme}://{host}/v2/", timeout=timeout, retries=0,
                               insecure=not opts.tls_verify, ca_files=ca_files,
                               proxies=not loopback):
                return True
        except http.HttpError:
            return True
        except (http.Unreachable, ValueError):
            continue
    return False


def push(image: BuiltImage, dests: Sequence[Reference], opts: RegistryOptions,
         progress: Progress, verbose: bool = False,
         sign: SignOptions | None = None) -> list[PushResult]:
    """Push ``image`` to every destination, proving each time that the bytes are the built
    ones; with ``sign``, skopeo signs each destination's manifest as it writes it."""
    skopeo = require_tool("skopeo", "push images")
    if not dests:
        raise UsageError("no destination to push to")
    for blob in (*image.layers, image.config):
        if not image.blob_path(blob.digest).exists():
            raise PublishError(f"blob {short(blob.digest)} of the built image is missing",
                               hint="run envnix build again")
    if sign is not None and sign.sign_by is not None:
        _check_gpg_signing(skopeo, image, dests[0], sign)
    results = []
    with private_authfile(opts, [d.domain for d in dests if d.domain]) as authfile:
        for dest in dests:
            results.append(_push_one(skopeo, image, dest, opts, authfile, progress, verbose,
                                     sign or SignOptions()))
    return results


def _check_gpg_signing(skopeo: str, image: BuiltImage, dest: Reference,
                       sign: SignOptions) -> None:
    """Sign the built manifest locally (``skopeo standalone-sign``, into a private temporary
    directory) before anything is sent. Why: skopeo copy signs only after it has written the
    manifest, so a key gpg lacks or a wrong passphrase would leave the tag pointing at an
    unsigned image; this way such a push fails with nothing pushed."""
    assert sign.sign_by is not None
    with tempfile.TemporaryDirectory(prefix="envnix-sign-") as tmp:
        cmd = [skopeo, "standalone-sign", *(
            [f"--passphrase-file={sign.passphrase_file.absolute()}"]
            if sign.passphrase_file else []),
            "--output", str(Path(tmp) / "signature"), str(image.blob_path(image.manifest)),
            str(dest), sign.sign_by]
        proc = process.run(cmd, error=PublishError)
    if proc.returncode != 0:
        message = _failure(proc.stderr, sign.secrets())
        raise PublishError(f"signing {dest} failed, nothing was pushed: {message[:300]}",
                           hint="check that the key is in gpg's keyring (GNUPGHOME) and "
                                "--sign-passphrase-file")


def _push_one(skopeo: str, image: BuiltImage, dest: Reference, opts: RegistryOptions,
              authfile: Path | None, progress: Progress, verbose: bool,
              sign: SignOptions) -> PushResult:
    secrets = sorted([*opts.secrets(), *sign.secrets()], key=len, reverse=True)
    total = sum(b.size for b in image.layers)
    progress(f"push: {image.manifest[:19]}… -> {dest} ({len(image.layers)} layers, "
             f"{human_size(total)})")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="envnix-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        cmd = [skopeo, *policy_args(), *sign.global_args(), "--debug", "copy",
               "--preserve-digests", f"--digestfile={digestfile}", *sign.copy_args(),
               *_dest_args(opts, authfile, "dest-"), image.source, dest.transport]
        log = CopyLog(image, progress)

        def on_line(raw: str) -> None:
            line = scrub(raw, secrets)
            if verbose:
                REPORTER.verbose(line)
            log.feed(line)

        with step(progress, f"push: {dest}"):
            code = process.run(cmd, error=PublishError, on_line=on_line,
                               merge_stderr=True).returncode
        if code != 0:
            message = log.fatal or (log.tail[-1] if log.tail else f"skopeo exited {code}")
            message = scrub(message, secrets)
            if sign.signing and any(w in message.lower() for w in ("sign", "passphrase",
                                                                    "gpg", "private key")):
                hint = ("this skopeo was built without sigstore (Debian's package): sign "
                        "with --sign-by (GPG), or use a skopeo with sigstore support"
                        if "sigstore disabled" in message else
                        "check that the key is in gpg's keyring (GNUPGHOME) or the key file "
                        "is a sigstore private key, and --sign-passphrase-file")
                raise PublishError(f"signing {dest} failed: {message[:300]}", hint=hint)
            raise _translate(message, dest, opts)
        pushed = digestfile.read_text().strip() if digestfile.exists() else ""
    seconds = time.monotonic() - started
    if pushed != image.manifest:
        raise PublishError(f"{dest}: skopeo pushed manifest {pushed or '(none)'} but the build "
                           f"made {image.manifest}: the pushed bytes are not the built bytes",
                           hint="report this: envnix pushes with --preserve-digests so "
                                "this should be impossible")
    served = registry_manifest_digest(dest, opts, authfile)
    if served != image.manifest:
        raise PublishError(f"{dest}: the registry serves manifest {served} but the build made "
                           f"{image.manifest}",
                           hint="something else pushed to this tag meanwhile, or the registry "
                                "rewrites manifests; push again or use another registry")
    result = PushResult(dest, image.manifest, seconds, list(log.blobs.values()))
    progress(result.summary())
    return result


def _inspect_raw(skopeo: str, ref: Reference, opts: RegistryOptions,
                 authfile: Path | None) -> process.Completed:
    """``skopeo inspect --raw``: the manifest bytes exactly as the registry serves them."""
    return process.run([skopeo, *policy_args(), "inspect", "--raw",
                        *_dest_args(opts, authfile, ""), ref.transport], error=PublishError)


def registry_manifest_digest(dest: Reference, opts: RegistryOptions,
                             authfile: Path | None) -> str:
    """sha256 of the manifest bytes the registry returns for ``dest`` (an independent check)."""
    proc = _inspect_raw(require_tool("skopeo", "push images"), dest, opts, authfile)
    if proc.returncode != 0:
        raise PublishError(f"pushed {dest}, but reading its manifest back failed: "
                           f"{_failure(proc.stderr, opts.secrets())}",
                           hint="re-run the push; if it persists, check the registry")
    return "sha256:" + hashlib.sha256(proc.stdout).hexdigest()


def copy_to_layout(src: Reference, layout: Path, tag: str, opts: RegistryOptions) -> None:
    """Copy the registry image ``src`` into the OCI layout ``layout`` as ``tag``, for reading
    (envnix diff): skopeo brings auth, certs.d and token flows, as for push."""
    skopeo = require_tool("skopeo", "read images from a registry")
    with private_authfile(opts, [src.domain or ""]) as authfile:
        cmd = [skopeo, *policy_args(), "copy", "--quiet",
               *_dest_args(opts, authfile, "src-"), src.transport, f"oci:{layout}:{tag}"]
        proc = process.run(cmd, error=PublishError)
    if proc.returncode != 0:
        message = _failure(proc.stderr, opts.secrets())
        low = message.lower()
        if any(s in low for s in ("http response to https", "x509:", "tls: ", "unauthorized",
                                  " 401 ", "connection refused", "no such host")):
            raise _translate(message, src, opts)
        if "manifest unknown" in low or "name unknown" in low:
            raise PublishError(f"registry {src.domain} has no image {src}",
                               hint="check the name and tag")
        raise PublishError(f"cannot read {src} from its registry: {message[:300]}")


def push_layout(layout: Path, tag: str, dest: Reference, opts: RegistryOptions,
                all_images: bool = False) -> None:
    """Copy the manifest ``tag`` names in the OCI layout to ``dest``, its digest kept: how an
    attached artifact reaches the registry. ``all_images``: ``tag`` names an image index
    (several platforms), pushed whole (``skopeo copy --all``), every platform's image too."""
    skopeo = require_tool("skopeo", "push to a registry")
    with private_authfile(opts, [dest.domain or ""]) as authfile:
        cmd = [skopeo, *policy_args(), "copy", "--quiet", "--preserve-digests",
               *(["--all"] if all_images else []),
               *_dest_args(opts, authfile, "dest-"), f"oci:{layout}:{tag}", dest.transport]
        proc = process.run(cmd, error=PublishError)
    if proc.returncode != 0:
        raise _translate(_failure(proc.stderr, opts.secrets()), dest, opts)


def remote_manifest(ref: Reference, opts: RegistryOptions) -> bytes:
    """The manifest bytes the registry serves for ``ref`` (its digest is their sha256)."""
    skopeo = require_tool("skopeo", "read images from a registry")
    with private_authfile(opts, [ref.domain or ""]) as authfile:
        proc = _inspect_raw(skopeo, ref, opts, authfile)
    if proc.returncode != 0:
        message = _failure(proc.stderr, opts.secrets())
        if "manifest unknown" in message.lower():
            raise PublishError(f"registry {ref.domain} has no image {ref}",
                               hint="check the name and tag")
        raise _translate(message, ref, opts)
    return proc.stdout

"""A real registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1 for publish tests.

Why a real one: the behaviour envnix relies on (blob HEAD-skip, tag created only by the final
manifest PUT, 401/x509/plain-HTTP failures, what a crash leaves behind) is the registry's, so
tests must watch a real registry's access log rather than a mock.

    reg = Registry(tmp_path / "reg", tls=True, auth=("alice", "s3cret")).start()
    ...  push to f"{reg.host}/team/app:1"; reg.blob_uploads(); reg.manifest("team/app", "1")
    reg.kill(); reg.restart(); reg.stop()

Variants: plain HTTP, TLS with a CA made by openssl (`reg.cert_dir` holds `ca.crt`, the layout
skopeo/podman `--cert-dir` expect), htpasswd bcrypt auth made by `htpasswd -Bbn`, and the token
flow (`token=True`): the registry answers 401 with `WWW-Authenticate: Bearer realm=...` and
trusts the JWTs of a :class:`TokenServer` on loopback, which grants pull and push to the login
`auth` names and anonymous pull on the repositories under `public` (as public registries do).
The first start binds `127.0.0.1:0` and reads the port from the log line
`listening on 127.0.0.1:PORT`; `restart()` reuses that port and the data directory.

    reg = Registry(tmp_path / "reg", auth=("alice", "s3cret"), token=True,
                   public=("public/",)).start()
    ...; reg.tokens.requests  # every token asked for: who, which scopes, what was granted
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["AccessLine", "Registry", "TokenRequest", "TokenServer", "have_registry_tools"]

_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
_ACCESS = re.compile(
    r'^\S+ - (?P<user>\S+) \[[^\]]+\] "(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[\d.]+" '
    r"(?P<status>\d{3}) (?P<size>\d+)"
)
_UPLOAD_DIGEST = re.compile(r"[?&]digest=sha256(?:%3A|:)([0-9a-f]{64})")
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


def have_registry_tools() -> bool:
    """True when the registry, htpasswd and openssl are installed (scripts/setup does it)."""
    return all(shutil.which(t) for t in ("docker-registry", "htpasswd", "openssl"))


@dataclass(frozen=True)
class AccessLine:
    """One line of the registry's access log."""

    method: str
    uri: str
    status: int
    user: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenRequest:
    """One request to the token server: the login's user (None: anonymous), the scopes asked
    for, the HTTP status answered and the access the token granted."""

    user: str | None
    scopes: tuple[str, ...]
    status: int
    granted: tuple[str, ...] = ()  # "repository:NAME:pull,push"


@dataclass
class TokenServer:
    """A Docker token service (the ``realm`` of ``auth: token``) on 127.0.0.1, in a thread.

    It signs RS256 JWTs with a key whose self-signed certificate (``cert``) is the registry's
    ``rootcertbundle``; the certificate rides in each token's ``x5c`` header, which is how
    distribution finds the key. Signing is ``openssl dgst -sha256 -sign`` (PKCS#1 v1.5 over
    SHA-256 is RS256): no RSA library needed. ``login`` may pull and push anywhere; anyone may
    pull the repositories whose names start with one of ``public``; anything else gets a token
    without that access (the registry then answers 401), a wrong login a 401 here.
    """

    workdir: Path
    login: tuple[str, str] | None = None
    public: tuple[str, ...] = ()
    service: str = "envnix-test-registry"
    issuer: str = "envnix-test-token-server"
    requests: list[TokenRequest] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.key, self.cert = self.workdir / "token.key", self.workdir / "token.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
             "-keyout", str(self.key), "-out", str(self.cert), "-subj", "/CN=envnix-token"],
            check=True, capture_output=True)
        pem = self.cert.read_text()
        self._x5c = "".join(pem.split("-----")[2].split())  # base64 DER, as x5c wants
        self._server: http.server.ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def start(self) -> TokenServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = owner._answer(self.path, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="envnix-token"')
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass  # self.requests is the log

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _user(self, authorization: str | None) -> tuple[str | None, bool]:
        """(user, login accepted); (None, True) for an anonymous request."""
        if not authorization:
            return None, True
        kind, _, value = authorization.partition(" ")
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, False
        return user, kind.lower() == "basic" and (user, password) == self.login

    def _answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, object]]:
        url = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(url.query)
        scopes = tuple(s for value in query.get("scope", []) for s in value.split(" ") if s)
        user, accepted = self._user(authorization)
        if url.path != "/token" or query.get("service") != [self.service] or not accepted:
            self._record(TokenRequest(user, scopes, 401 if not accepted else 400))
            return (401, {"details": "wrong login"}) if not accepted else (400, {})
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            wanted = set(actions.split(","))
            allowed = ({"pull", "push"} if user is not None else
                       {"pull"} if name.startswith(self.public) else set())
            if granted := sorted(wanted & allowed):
                access.append({"type": "repository", "name": name, "actions": granted})
        self._record(TokenRequest(user, scopes, 200, tuple(
            f"repository:{a['name']}:{','.join(a['actions'])}" for a in access)))
        token = self._token(user or "", access)
        return 200, {"token": token, "access_token": token, "expires_in": 600}

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _token(self, subject: str, access: list[dict[str, object]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + 600,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode())
                                 for part in (header, claims))
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), capture_output=True,
                                   check=True).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def token_for(self, scope: str) -> str:
        """A token for ``scope`` with the login (for the tests' own requests)."""
        auth = None
        if self.login:
            auth = "Basic " + base64.b64encode(":".join(self.login).encode()).decode()
        status, body = self._answer(
            "/token?" + urllib.parse.urlencode({"service": self.service, "scope": scope}),
            auth)
        assert status == 200, status
        return str(body["token"])


class Registry:
    """One docker-registry process with its own config, data directory and log."""

    def __init__(self, workdir: Path, *, tls: bool = False,
                 auth: tuple[str, str] | None = None, data_dir: Path | None = None,
                 token: bool = False, public: tuple[str, ...] = ()) -> None:
        self.workdir = Path(workdir).absolute()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls, self.auth = tls, auth
        self.data_dir = Path(data_dir) if data_dir else self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "registry.log"
        self.cert_dir = self.workdir / "certs.d"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self.tokens = TokenServer(self.workdir, auth, public) if token else None
        if tls:
            self._make_cert()
        if auth and not token:
            self._make_htpasswd(*auth)

    # --- setup -------------------------------------------------------------------------
    def _make_cert(self) -> None:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
             "-keyout", str(self.workdir / "tls.key"), "-out", str(self.workdir / "tls.crt"),
             "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True)
        self.cert_dir.mkdir(exist_ok=True)
        shutil.copyfile(self.workdir / "tls.crt", self.cert_dir / "ca.crt")

    def _make_htpasswd(self, user: str, password: str) -> None:
        out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                             capture_output=True, text=True).stdout
        (self.workdir / "htpasswd").write_text(out.strip() + "\n")

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.data_dir}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            # A fixed secret so upload state survives restart() (the registry signs _state).
            "  secret: envnix-test-secret",
        ]
        if self.tls:
            lines += ["  tls:", f"    certificate: {self.workdir / 'tls.crt'}",
                      f"    key: {self.workdir / 'tls.key'}"]
        if self.tokens:
            lines += ["auth:", "  token:", f"    realm: {self.tokens.realm}",
                      f"    service: {self.tokens.service}", f"    issuer: {self.tokens.issuer}",
                      f"    rootcertbundle: {self.tokens.cert}"]
        elif self.auth:
            lines += ["auth:", "  htpasswd:", "    realm: envnix-test",
                      f"    path: {self.workdir / 'htpasswd'}"]
        return "\n".join(lines) + "\n"

    # --- lifecycle ---------------------------------------------------------------------
    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the registry part of an image reference."""
        if not self.port:
            raise RuntimeError("registry not started")
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 15) -> Registry:
        """Start (or restart on the same port) and wait for 'listening on'."""
        if self.running:
            raise RuntimeError("registry already running")
        if self.tokens and not self.tokens.port:
            self.tokens.start()
        config = self.workdir / "config.yml"
        config.write_text(self._config())
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        try:
            self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self._new_log()
            if m := _LISTENING.search(text):
                self.port = int(m[1])
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"docker-registry did not start:\n{self._new_log()[-3000:]}")

    def _new_log(self) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            return f.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """Terminate gracefully (SIGTERM), then SIGKILL after 5 s (the token server stays up
        for a restart(); close() ends it too)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the crash case (open uploads are abandoned, no cleanup)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def restart(self) -> Registry:
        self.stop()
        return self.start()

    def close(self) -> None:
        """stop(), and the token server's thread."""
        self.stop()
        if self.tokens:
            self.tokens.stop()

    def __enter__(self) -> Registry:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- observation -------------------------------------------------------------------
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def access_log(self) -> list[AccessLine]:
        """Every request the registry answered, across restarts, in order."""
        lines = []
        for line in self.log_text().splitlines():
            if m := _ACCESS.match(line):
                lines.append(AccessLine(m["method"], m["uri"], int(m["status"]), m["user"]))
        return lines

    def authenticated_users(self) -> set[str]:
        """Users the registry authenticated (its app log; the access log leaves them out)."""
        return set(re.findall(r"auth\.user\.name=(\S+)", self.log_text()))

    def mark(self) -> int:
        """A position in the access log; pass it to blob_uploads(since=...)."""
        return len(self.access_log())

    def blob_uploads(self, since: int = 0) -> list[str]:
        """Digests of blobs whose upload completed (final `PUT ...?digest=` answered 201)."""
        done = []
        for line in self.access_log()[since:]:
            m = _UPLOAD_DIGEST.search(line.uri)
            if line.method == "PUT" and line.status == 201 and "/blobs/uploads/" in line.uri \
                    and m:
                done.append("sha256:" + m[1])
        return done

    def requests(self, method: str, since: int = 0, contains: str = "") -> list[AccessLine]:
        return [a for a in self.access_log()[since:] if a.method == method and contains in a.uri]

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))

    def manifest(self, repo: str, ref: str) -> tuple[int, bytes]:
        """(HTTP status, body) of GET /v2/<repo>/manifests/<ref>; (404, b"") when unknown."""
        scheme = "https" if self.tls else "http"
        req = urllib.request.Request(f"{scheme}://{self.host}/v2/{repo}/manifests/{ref}",
                                     headers={"Accept": MANIFEST_TYPES})
        if self.tokens:
            req.add_header("Authorization",
                           f"Bearer {self.tokens.token_for(f'repository:{repo}:pull')}")
        elif self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=30, context=self._ssl_context()) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, b""

    def manifest_digest(self, repo: str, ref: str) -> str | None:
        """sha256 of the manifest bytes the registry serves for repo:ref, or None."""
        status, body = self.manifest(repo, ref)
        return "sha256:" + hashlib.sha256(body).hexdigest() if status == 200 else None

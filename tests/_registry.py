"""A real registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1 for publish tests.

Why a real one: the behaviour envnix relies on (blob HEAD-skip, tag created only by the final
manifest PUT, 401/x509/plain-HTTP failures, what a crash leaves behind) is the registry's, so
tests must watch a real registry's access log rather than a mock.

    reg = Registry(tmp_path / "reg", tls=True, auth=("alice", "s3cret")).start()
    ...  push to f"{reg.host}/team/app:1"; reg.blob_uploads(); reg.manifest("team/app", "1")
    reg.kill(); reg.restart(); reg.stop()

Variants: plain HTTP, TLS with a CA made by openssl (`reg.cert_dir` holds `ca.crt`, the layout
skopeo/podman `--cert-dir` expect), htpasswd bcrypt auth made by `htpasswd -Bbn`. The first start
binds `127.0.0.1:0` and reads the port from the log line `listening on 127.0.0.1:PORT`;
`restart()` reuses that port and the data directory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AccessLine", "Registry", "have_registry_tools"]

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


class Registry:
    """One docker-registry process with its own config, data directory and log."""

    def __init__(self, workdir: Path, *, tls: bool = False,
                 auth: tuple[str, str] | None = None, data_dir: Path | None = None) -> None:
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
        if tls:
            self._make_cert()
        if auth:
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
        if self.auth:
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
        """Terminate gracefully (SIGTERM), then SIGKILL after 5 s."""
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

    def __enter__(self) -> Registry:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
        if self.auth:
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

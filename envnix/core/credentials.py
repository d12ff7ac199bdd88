"""Credentials where people already keep them: a netrc for package indexes, the containers
auth file or docker's config.json (with credential helpers) for registries.

Why read theirs: a user who can ``pip install`` from a private index, or ``docker pull`` a
private base, has already stored the secret; envnix asks for no second copy. A secret is only
ever held in memory, sent in a header (never in a URL, so never in envnix.lock, a .drv or a
log), or handed to Nix as the path of the user's own netrc (Nix's ``netrc-file``). Nothing
here writes a file.
"""

from __future__ import annotations

import base64
import json
import netrc
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from envnix.core import process
from envnix.core.errors import FetchError


@dataclass(frozen=True)
class Login:
    """A user name and its secret (a password or a token); ``repr`` never shows the secret."""

    user: str
    secret: str

    def __repr__(self) -> str:
        return f"Login(user={self.user!r}, secret=<hidden>)"

    def basic(self) -> str:
        """The value of an ``Authorization`` header for HTTP basic auth."""
        return "Basic " + base64.b64encode(f"{self.user}:{self.secret}".encode()).decode()


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or Path.home())


def netrc_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The netrc pip, uv, curl and Nix read: ``NETRC``, else ``~/.netrc``; None if absent."""
    env = _env(environ)
    path = Path(env["NETRC"]) if env.get("NETRC") else _home(env) / ".netrc"
    return path if path.is_file() else None


def netrc_login(host: str, environ: Mapping[str, str] | None = None) -> Login | None:
    """The netrc's login for ``host`` (a ``machine`` entry, else ``default``), or None.

    A netrc that cannot be parsed is an error naming the file (not its contents): silently
    going without the login would turn into a confusing 401 later.
    """
    path = netrc_path(environ)
    if path is None or not host:
        return None
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (netrc.NetrcParseError, OSError) as exc:
        line = getattr(exc, "lineno", None)
        raise FetchError(f"cannot read {path}" + (f" (line {line})" if line else "")
                         + ": not a valid netrc file",
                         hint="fix it (machine HOST login USER password SECRET)") from None
    if entry is None:
        return None
    login, _account, password = entry
    return Login(login or "", password or "") if login or password else None


def _auth_files(env: Mapping[str, str]) -> list[Path]:
    """Where skopeo and podman look, then docker: REGISTRY_AUTH_FILE, the runtime and config
    dirs' containers/auth.json, then ``$DOCKER_CONFIG/config.json`` or ~/.docker's."""
    home = _home(env)
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "containers"
                 / "auth.json")
    files.append(Path(env.get("DOCKER_CONFIG") or home / ".docker") / "config.json")
    return files


def _host_keys(host: str) -> tuple[str, ...]:
    """The keys an auth file may use for ``host`` (docker writes Docker Hub's as a URL)."""
    if host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        return ("docker.io", "https://index.docker.io/v1/", "index.docker.io",
                "registry-1.docker.io")
    return (host, f"https://{host}", f"http://{host}", f"https://{host}/v2/",
            f"http://{host}/v2/")


def registry_login(host: str, environ: Mapping[str, str] | None = None) -> Login | None:
    """The login a user stored for registry ``host``: the first auth file that names it, by
    ``credHelpers`` (docker-credential-NAME), an ``auths`` entry, or ``credsStore``."""
    env = _env(environ)
    for path in _auth_files(env):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            raise FetchError(f"cannot read the registry auth file {path}: not JSON",
                             hint="fix it, or log in again (podman login / docker login)"
                             ) from None
        if not isinstance(data, dict):
            continue
        keys = _host_keys(host)
        helpers = data.get("credHelpers") if isinstance(data.get("credHelpers"), dict) else {}
        if helper := next((helpers[k] for k in keys if k in helpers), None):
            return _helper_login(str(helper), host, env)
        auths = data.get("auths") if isinstance(data.get("auths"), dict) else {}
        for key in keys:
            entry = auths.get(key)
            if isinstance(entry, dict) and entry.get("auth"):
                return _decode_auth(str(entry["auth"]), host, path)
        if isinstance(data.get("credsStore"), str) and data["credsStore"]:
            login = _helper_login(data["credsStore"], host, env, required=False)
            if login is not None:
                return login
    return None


def _decode_auth(text: str, host: str, path: Path) -> Login:
    try:
        user, sep, secret = base64.b64decode(text, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise FetchError(f"registry {host}: the login in {path} is not base64 USER:PASSWORD",
                         hint=f"log in again: podman login {host}")
    return Login(user, secret)


def _helper_login(name: str, host: str, env: Mapping[str, str],
                  required: bool = True) -> Login | None:
    """Ask ``docker-credential-NAME get`` (the credential-helper protocol: the server on stdin,
    JSON with Username and Secret on stdout)."""
    program = shutil.which(f"docker-credential-{name}", path=env.get("PATH"))
    if program is None:
        if not required:
            return None
        raise FetchError(f"registry {host}: credential helper docker-credential-{name} is not "
                         "on PATH", hint="install it, or log in with podman login")
    proc = process.run([program, "get"], error=FetchError, input=host.encode(), timeout=60)
    if proc.returncode != 0:
        if not required:
            return None
        raise FetchError(f"registry {host}: docker-credential-{name} has no login for it",
                         hint=f"log in: docker login {host}")
    try:
        answer = json.loads(proc.stdout)
        return Login(str(answer["Username"]), str(answer["Secret"]))
    except (ValueError, KeyError, TypeError):
        raise FetchError(f"registry {host}: docker-credential-{name} answered something other "
                         "than its JSON") from None

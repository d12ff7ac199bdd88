"""What envnix hands to Nix: string literals for the generated .nix files, and the URLs,
hashes and names of the fixed-output fetches.

Why one module: a user string (a tag, ``--nixpkgs``, a manifest file name) pasted into
flake.nix between quotes could close the string and run Nix code at evaluation time, and a
lock entry is a download that Nix (or envnix seeding a ``--store``) performs as this user,
outside any sandbox. Every user string therefore reaches a .nix file through ``nix_string``
(the templates' ``nix`` filter), and every artifact through ``check_artifact``.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from envnix.core.errors import LockError

# A Nix store path name: no leading dot, at most 211 characters of these.
STORE_NAME = re.compile(r"[A-Za-z0-9+\-_?=][A-Za-z0-9+\-._?=]{0,210}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
FETCH_SCHEMES = ("http", "https")

_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def nix_string(value: object) -> str:
    """``value`` as a Nix double-quoted string literal that evaluates to exactly its text.

    Escapes ``\\``, ``"``, every ``$`` (so no ``${`` can start an interpolation) and line
    breaks (so the literal is one line, also inside a ``#`` comment). Nix strings cannot hold
    NUL, and no user string that reaches here can (argv and file names cannot either).
    """
    text = str(value)
    if "\0" in text:
        raise ValueError("a Nix string cannot contain NUL")
    return '"' + "".join(_ESCAPES.get(c, c) for c in text) + '"'


def store_name(text: str) -> str:
    """A valid Nix store path name (letters, digits, + - . _ ? =; no leading dot)."""
    name = re.sub(r"[^A-Za-z0-9+._?=-]", "-", text).lstrip(".")
    return name[:180] or "artifact"


def url_problem(url: object) -> str | None:
    """Why Nix's fetcher (and envnix's seeding) must not fetch ``url``; None when it may.

    Only http(s): a ``file://`` URL would read any host file as this user and tell whether
    it hashes to the pinned sha256 (an oracle for /etc/shadow). No user:password: it would be
    written into world-readable .drv files in /nix/store and sent to every mirror. Nothing
    curl (and so Nix) would refuse or read differently: spaces, control or non-ASCII
    characters, a missing host, a bad port.
    """
    if not isinstance(url, str) or not url:
        return "the URL is missing"
    if not url.isascii() or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        return "the URL contains spaces, control or non-ASCII characters"
    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return "the URL is malformed"
    if parts.scheme.lower() not in FETCH_SCHEMES:
        return f"only http(s) URLs are fetched, not {parts.scheme or 'a scheme-less'} URLs"
    if "@" in parts.netloc:
        return "the URL carries credentials (user@ or user:password@)"
    if not parts.hostname or not port_ok:
        return "the URL names no valid host[:port]"
    return None


def shown_url(url: object) -> str:
    """``url`` as an error message may show it: any user:password replaced, at most 200 chars."""
    return re.sub(r"//[^/@]*@", "//***@", str(url))[:200]


def check_artifact(artifact: Mapping[str, Any], what: str, source: str) -> None:
    """Refuse an artifact Nix would fetch unsafely: LockError naming ``source`` and ``what``.

    ``artifact`` has ``url`` and ``sha256`` (64 lowercase hex), and ``storeName`` when it
    comes from plan.json (a file name in envnix's temporary directory and the store).
    """
    problem = url_problem(artifact.get("url"))
    if problem:
        shown = shown_url(artifact.get("url"))
        raise LockError(f"{source}: {what}: {problem}: {shown!r}",
                        hint="artifacts must come from http(s) mirrors; re-lock with "
                             "envnix lock (serve a local mirror over http if you have one)")
    sha = artifact.get("sha256")
    if not isinstance(sha, str) or not SHA256_HEX.fullmatch(sha):
        raise LockError(f"{source}: {what}: sha256 is not 64 lowercase hex digits",
                        hint="run envnix lock to rewrite the lock")
    if "storeName" in artifact:
        name = artifact["storeName"]
        if not isinstance(name, str) or not STORE_NAME.fullmatch(name):
            raise LockError(f"{source}: {what}: storeName {str(name)[:80]!r} is not a "
                            "valid Nix store name", hint="render again (envnix render)")

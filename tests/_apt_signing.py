"""A throwaway OpenPGP key that signs the test archives' InRelease files, as real archives are.

The fetcher verifies every InRelease with gpgv, so the fixture archives (Ubuntu layout, NVIDIA's
flat layout) are clearsigned with this key, and the test session trusts its public keyring the
way a user would configure theirs: ENVNIX_APT_KEYRING (--apt-mirror sources, together with
Debian's own archive keyring) and ENVNIX_CUDA_APT_KEYRING (NVIDIA's repository). conftest.py
sets both to :data:`KEYRING` before any test runs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="envnix-test-key-"))
GNUPGHOME = _HOME / "gnupg"
KEYRING = _HOME / "archive-keyring.gpg"
"""The public keyring of the test archives (binary, as /usr/share/keyrings files are)."""
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
USER_ID = "envnix test archive <archive@envnix.invalid>"


def _gpg(*args: str, stdin: bytes | None = None) -> bytes:
    if shutil.which("gpg") is None:
        raise RuntimeError("gpg is not installed: run ./scripts/setup")
    proc = subprocess.run(["gpg", "--batch", "--homedir", str(GNUPGHOME), "--pinentry-mode",
                           "loopback", "--passphrase", "", *args], input=stdin,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _ensure_key() -> None:
    if KEYRING.is_file():
        return
    GNUPGHOME.mkdir(mode=0o700, parents=True, exist_ok=True)
    _gpg("--quick-gen-key", USER_ID, "ed25519", "sign", "never")
    KEYRING.write_bytes(_gpg("--export", USER_ID))


def public_keyring() -> bytes:
    """The test key's public keyring (binary)."""
    _ensure_key()
    return KEYRING.read_bytes()


def armored_public_key() -> bytes:
    """The test key's public key, ASCII-armored (as NVIDIA publishes its 3bf863cc.pub)."""
    _ensure_key()
    return _gpg("--export", "--armor", USER_ID)


def fingerprint() -> str:
    """The test key's primary fingerprint (upper-case hex), as gpgv's VALIDSIG reports it."""
    _ensure_key()
    for line in _gpg("--with-colons", "--list-keys", USER_ID).decode().splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    raise RuntimeError("the test key has no fingerprint")


def clearsign(text: str) -> str:
    """*text* clearsigned with the test key: an InRelease as archives publish it."""
    _ensure_key()
    return _gpg("--clearsign", "--digest-algo", "SHA256", "--local-user", USER_ID,
                stdin=text.encode()).decode()


def detach_sign(text: str) -> bytes:
    """An armored detached signature of *text*: a Release's Release.gpg."""
    _ensure_key()
    return _gpg("--detach-sign", "--armor", "--digest-algo", "SHA256", "--local-user", USER_ID,
                stdin=text.encode())


def trust_test_archives(environ: os._Environ[str] | dict[str, str]) -> None:
    """Make *environ* trust the test archives' key (and still Debian's, for real mirrors)."""
    _ensure_key()
    environ["ENVNIX_APT_KEYRING"] = os.pathsep.join([str(KEYRING), DEBIAN_KEYRING])
    environ["ENVNIX_CUDA_APT_KEYRING"] = str(KEYRING)


@atexit.register
def _cleanup() -> None:
    if GNUPGHOME.is_dir():
        subprocess.run(["gpgconf", "--homedir", str(GNUPGHOME), "--kill", "all"],
                       capture_output=True, check=False)
    shutil.rmtree(_HOME, ignore_errors=True)

"""Every ``ENVNIX_*`` environment variable envnix reads: one table, one typed accessor each.

Why one place: the variables were read across the lock, spec and oci modules, each with its own
idea of what an empty value means; here a reader sees them all, with their defaults, and a test
keeps every ``ENVNIX_`` name in envnix's source declared in ``OPTIONS``. The accessors keep each
variable's meaning exactly as it was (e.g. only ``1`` turns ENVNIX_APT_UNVERIFIED on, while
ENVNIX_REGISTRY_TLS_VERIFY is on unless it says 0, false or no). Variables that a command-line
option also takes are read by click (``envvar=OPTION.name``), so the flag wins over the
environment as usual. Every accessor takes an optional ``environ`` (default ``os.environ``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Option:
    """One environment variable: its name, what it means, and what envnix does when unset."""

    name: str
    meaning: str
    default: str

    def raw(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value as set (``""`` when set empty), or None when unset."""
        return (os.environ if environ is None else environ).get(self.name)


APT_MIRROR = Option("ENVNIX_APT_MIRROR", "Debian/Ubuntu mirror base URL to lock from (as "
                    "--apt-mirror)", "this machine's apt sources")
APT_SECURITY_MIRROR = Option("ENVNIX_APT_SECURITY_MIRROR", "the security suites' mirror, with "
                             "ENVNIX_APT_MIRROR", "the -security suites of ENVNIX_APT_MIRROR "
                             "(Ubuntu), none (Debian)")
APT_SNAPSHOT = Option("ENVNIX_APT_SNAPSHOT", "lock from the mirror (a snapshot service) as it "
                      "was at this time", "the mirror as it is now")
APT_KEYRING = Option("ENVNIX_APT_KEYRING", "keyring(s) the mirror's InRelease must be signed "
                     "with", "the distribution's archive keyring")
DEBIAN_KEYRING = Option("ENVNIX_DEBIAN_KEYRING", "Debian's archive keyring, where a source "
                        "names none of its own (envnix's flake sets its pinned copy)",
                        "/usr/share/keyrings/debian-archive-keyring.gpg")
APT_UNVERIFIED = Option("ENVNIX_APT_UNVERIFIED", "1: lock from indexes whose signature cannot "
                        "be checked (apt's [trusted=yes])", "signatures are checked")
APT_PROFILE = Option("ENVNIX_APT_PROFILE", "which Debian packages an image holds besides its "
                     "own (essential or minimal)", "essential")
CUDA_PROVIDER = Option("ENVNIX_CUDA_PROVIDER", "where install.cuda's libraries come from (as "
                       "--cuda-provider)", "conda for conda envs, else NVIDIA's PyPI wheels")
CUDA_APT_REPO = Option("ENVNIX_CUDA_APT_REPO", "NVIDIA's CUDA apt repository for the image's "
                       "release (a flat repository: InRelease and Packages at the URL "
                       "itself), or a mirror of it", "none: the apt provider cannot lock")
CUDA_APT_KEYRING = Option("ENVNIX_CUDA_APT_KEYRING", "the keyring NVIDIA's repository is "
                          "signed with (its cuda-archive-keyring.gpg, or .asc)",
                          "none: set it, or ENVNIX_APT_UNVERIFIED=1")
INSECURE_REGISTRIES = Option("ENVNIX_INSECURE_REGISTRIES", "comma-separated host[:port] of "
                             "registries spoken to over plain HTTP when locking a base image",
                             "none")
REGISTRY_CREDS = Option("ENVNIX_REGISTRY_CREDS", "USER:PASSWORD for the registry (as --creds)",
                        "skopeo's own auth lookup")
REGISTRY_CERT_DIR = Option("ENVNIX_REGISTRY_CERT_DIR", "directory with the registry's CA as "
                           "ca.crt (as --cert-dir)", "the system's CAs")
REGISTRY_TLS_VERIFY = Option("ENVNIX_REGISTRY_TLS_VERIFY", "0, false or no: allow plain HTTP "
                             "and untrusted certificates (as --tls-verify)", "true")

OPTIONS: tuple[Option, ...] = (
    APT_MIRROR, APT_SECURITY_MIRROR, APT_SNAPSHOT, APT_KEYRING, DEBIAN_KEYRING, APT_UNVERIFIED,
    APT_PROFILE,
    CUDA_PROVIDER, CUDA_APT_REPO, CUDA_APT_KEYRING,
    INSECURE_REGISTRIES, REGISTRY_CREDS, REGISTRY_CERT_DIR, REGISTRY_TLS_VERIFY,
)

Environ = Mapping[str, str] | None


def apt_mirror(environ: Environ = None) -> str | None:
    return APT_MIRROR.raw(environ)


def apt_security_mirror(environ: Environ = None) -> str | None:
    return APT_SECURITY_MIRROR.raw(environ)


def apt_snapshot(environ: Environ = None) -> str | None:
    """None when unset or empty."""
    return APT_SNAPSHOT.raw(environ) or None


def apt_keyring(environ: Environ = None) -> str | None:
    """None when unset or empty (the caller then takes the distribution's keyring)."""
    return APT_KEYRING.raw(environ) or None


def debian_keyring(environ: Environ = None) -> str:
    """Unset or empty: the path debian-archive-keyring installs it at."""
    return DEBIAN_KEYRING.raw(environ) or DEBIAN_KEYRING.default


def apt_unverified(environ: Environ = None) -> bool:
    """Only ``1`` turns it on: an unsafe switch is not guessed from ``yes`` or ``true``."""
    return APT_UNVERIFIED.raw(environ) == "1"


def apt_profile(environ: Environ = None) -> str:
    """The profile's name, unchecked (spec knows the profiles); ``essential`` when unset."""
    return APT_PROFILE.raw(environ) or "essential"


def cuda_apt_repo(environ: Environ = None) -> str | None:
    """Stripped; None when unset or blank."""
    return (CUDA_APT_REPO.raw(environ) or "").strip() or None


def cuda_apt_keyring(environ: Environ = None) -> str:
    """``""`` when unset."""
    return CUDA_APT_KEYRING.raw(environ) or ""


def insecure_registries(environ: Environ = None) -> frozenset[str]:
    """The hosts listed, each stripped; empty entries ignored."""
    return frozenset(h.strip() for h in (INSECURE_REGISTRIES.raw(environ) or "").split(",")
                     if h.strip())


def registry_creds(environ: Environ = None) -> str | None:
    return REGISTRY_CREDS.raw(environ) or None


def registry_cert_dir(environ: Environ = None) -> Path | None:
    value = REGISTRY_CERT_DIR.raw(environ)
    return Path(value) if value else None


def registry_tls_verify(environ: Environ = None) -> bool:
    return (REGISTRY_TLS_VERIFY.raw(environ) or "true").lower() not in ("0", "false", "no")

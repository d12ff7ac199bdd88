"""Every ``ENVNIX_*`` environment variable envnix reads: one table, one typed accessor each.

Why one place: the variables were read across the lock, spec and oci modules, each with its own
idea of what an empty value means; here a reader sees them all, with their defaults, and a test
keeps every ``ENVNIX_`` name in envnix's source declared in ``OPTIONS``. The accessors keep each
variable's meaning exactly as it was (e.g. only ``1`` turns ENVNIX_APT_UNVERIFIED on, while
ENVNIX_REGISTRY_TLS_VERIFY is on unless it says 0, false or no). Variables that a command-line
option also takes are read by click (``envvar=OPTION.name``), so the flag wins over the
environment as usual. Every accessor takes an optional ``environ`` (default ``os.environ``).

Some options also have a config-file key (``envnix.toml`` in the context, then the user's
``config.toml``; core/config.py reads them): a variable that is set beats the file, the file
beats the default. ``use_config`` installs the file's values as the layer under the process
environment; an explicit ``environ`` (tests) sees no file. ``help_text`` and
``markdown_table`` render this table for ``envnix --help`` and the README, so neither can drift.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Option:
    """One environment variable: its name, what it means, and what envnix does when unset.

    ``key`` is its config-file key (``table.name``; "" for none). ``join`` is how a TOML list
    becomes the variable's value ("" for a string only; "bool" for true/false), ``path`` says a
    relative path is taken from the file's directory, and ``project=False`` keeps the key out
    of a build context's envnix.toml: what decides trust (keys, certificates, builders, plain
    HTTP) comes only from the user's own file, as a stranger's build.envd cannot set it either.
    """

    name: str
    meaning: str
    default: str
    key: str = ""
    join: str = ""
    path: bool = False
    project: bool = True

    def raw(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value as set (``""`` when set empty), else the config file's, else None."""
        if environ is not None:
            return environ.get(self.name)
        value = os.environ.get(self.name)
        return _CONFIG.get(self.name) if value is None else value


APT_MIRROR = Option("ENVNIX_APT_MIRROR", "Debian/Ubuntu mirror base URL to lock from (as "
                    "--apt-mirror)", "this machine's apt sources", key="apt.mirror")
APT_SECURITY_MIRROR = Option("ENVNIX_APT_SECURITY_MIRROR", "the security suites' mirror, with "
                             "ENVNIX_APT_MIRROR", "the -security suites of ENVNIX_APT_MIRROR "
                             "(Ubuntu), none (Debian)", key="apt.security-mirror")
APT_SNAPSHOT = Option("ENVNIX_APT_SNAPSHOT", "lock from the mirror (a snapshot service) as it "
                      "was at this time", "the mirror as it is now", key="apt.snapshot")
UBUNTU_MIRROR = Option("ENVNIX_UBUNTU_MIRROR", "Ubuntu archive (or snapshot service) base URL, "
                       "ending in /ubuntu, for Ubuntu images when --apt-mirror is not given; "
                       "Debian images keep this machine's apt sources",
                       "this machine's Ubuntu apt sources, else Ubuntu's archive (its "
                       "snapshot service with ENVNIX_APT_SNAPSHOT)", key="apt.ubuntu-mirror")
UBUNTU_KEYRING = Option("ENVNIX_UBUNTU_KEYRING", "Ubuntu's archive keyring (where this "
                        "default path is missing, as on Debian, envnix takes the keys from "
                        "the archive and trusts them by their pinned fingerprints)",
                        "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
                        key="apt.ubuntu-keyring", path=True, project=False)
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
                       "--cuda-provider)", "conda for conda envs, else NVIDIA's PyPI wheels",
                       key="cuda.provider")
CUDA_APT_REPO = Option("ENVNIX_CUDA_APT_REPO", "NVIDIA's CUDA apt repository for the image's "
                       "release (a flat repository: InRelease and Packages at the URL "
                       "itself), or a mirror of it", "NVIDIA's own for an Ubuntu release; "
                       "none for Debian (its non-free CUDA 11.8)",
                       key="cuda.apt-repo")
CUDA_APT_KEYRING = Option("ENVNIX_CUDA_APT_KEYRING", "the keyring NVIDIA's repository is "
                          "signed with (its cuda-archive-keyring.gpg, or .asc)",
                          "the key NVIDIA publishes beside InRelease, trusted by its "
                          "pinned fingerprint")
CONDA_DEFAULT_CHANNELS = Option("ENVNIX_CONDA_DEFAULT_CHANNELS", "conda's default_channels "
                                "(comma-separated URLs): what 'defaults' means, and the "
                                "channels of a file that names none, as conda's own defaults "
                                "are for envd", "conda-forge, as envd's .condarc says",
                                key="conda.default-channels", join=",")
CONDA_CHANNEL_ALIAS = Option("ENVNIX_CONDA_CHANNEL_ALIAS", "conda's channel_alias: the URL a "
                             "bare channel name (conda-forge, pytorch, ...) is looked up under "
                             "when the file's .condarc does not say", "conda's own, as "
                             "py-rattler knows it", key="conda.channel-alias")
NPM_REGISTRY = Option("ENVNIX_NPM_REGISTRY", "npm registry base URL install.codex() is locked "
                      "from", "npm's own, as `npm config get registry` says", key="npm.registry")
JULIA_MIRROR = Option("ENVNIX_JULIA_MIRROR", "base URL of Julia's release archives (the "
                      "directory holding linux/<arch>/<series>/) install.julia() is locked from",
                      "Julia's own download host", key="julia.mirror")
OPENVSX_URL = Option("ENVNIX_OPENVSX_URL", "Open VSX (or a mirror of its API) that "
                     "install.vscode_extensions() is locked from", "Open VSX itself, where "
                     "envd downloads them", key="vscode.openvsx")
INSECURE_REGISTRIES = Option("ENVNIX_INSECURE_REGISTRIES", "comma-separated host[:port] of "
                             "registries spoken to over plain HTTP when locking a base image",
                             "none", key="registry.insecure", join=",", project=False)
REGISTRY_CREDS = Option("ENVNIX_REGISTRY_CREDS", "USER:PASSWORD for the registry (as --creds)",
                        "skopeo's own auth lookup")
REGISTRY_CERT_DIR = Option("ENVNIX_REGISTRY_CERT_DIR", "directory with the registry's CA as "
                           "ca.crt (as --cert-dir)", "the system's CAs",
                           key="registry.cert-dir", path=True, project=False)
REGISTRY_TLS_VERIFY = Option("ENVNIX_REGISTRY_TLS_VERIFY", "0, false or no: allow plain HTTP "
                             "and untrusted certificates (as --tls-verify)", "true",
                             key="registry.tls-verify", join="bool", project=False)
SUBSTITUTERS = Option("ENVNIX_SUBSTITUTERS", "binary caches for builds, space-separated (as "
                      "--substituters)", "nix.conf's substituters", key="nix.substituters",
                      join=" ")
TRUSTED_PUBLIC_KEYS = Option("ENVNIX_TRUSTED_PUBLIC_KEYS", "keys the binary caches sign with, "
                             "space-separated (as --nix-option trusted-public-keys)",
                             "nix.conf's trusted-public-keys", key="nix.trusted-public-keys",
                             join=" ", project=False)
LOAD = Option("ENVNIX_LOAD", "1, true or yes: load every build into the local engine (docker "
              "if its daemon answers, else podman), failing if there is none; 0, false or no: "
              "never (as --load/--no-load)", "load when there is an engine, else say so",
              key="build.load", join="bool")
BUILDERS = Option("ENVNIX_BUILDERS", "Nix remote builders, as nix.conf's builders line (as "
                  "--builders)", "nix.conf's builders", key="nix.builders", join=";",
                  project=False)

OPTIONS: tuple[Option, ...] = (
    APT_MIRROR, APT_SECURITY_MIRROR, APT_SNAPSHOT, APT_KEYRING, DEBIAN_KEYRING, APT_UNVERIFIED,
    APT_PROFILE, UBUNTU_MIRROR, UBUNTU_KEYRING,
    CUDA_PROVIDER, CUDA_APT_REPO, CUDA_APT_KEYRING, CONDA_DEFAULT_CHANNELS, CONDA_CHANNEL_ALIAS,
    NPM_REGISTRY, JULIA_MIRROR, OPENVSX_URL, INSECURE_REGISTRIES, REGISTRY_CREDS,
    REGISTRY_CERT_DIR, REGISTRY_TLS_VERIFY,
    SUBSTITUTERS, TRUSTED_PUBLIC_KEYS, BUILDERS, LOAD,
)

# The config file's values (variable name -> value) under the process environment.
_CONFIG: dict[str, str] = {}


def use_config(values: Mapping[str, str]) -> None:
    """Make ``values`` (from core/config.py) the layer between the environment and defaults."""
    _CONFIG.clear()
    _CONFIG.update(values)


def by_key() -> dict[str, Option]:
    """Config-file key -> its option."""
    return {o.key: o for o in OPTIONS if o.key}


def help_text() -> str:
    """The table for ``envnix --help``: one paragraph per variable, click leaves it unwrapped."""
    lines = ["\b", "Environment variables (config-file key in brackets; * = only in the "
             "user's config.toml):"]
    for o in OPTIONS:
        key = f" [{o.key}{'' if o.project else '*'}]" if o.key else ""
        lines += ["\b", f"  {o.name}{key}",
                  *textwrap.wrap(o.meaning, 76, initial_indent="      ",
                                 subsequent_indent="      "),
                  *textwrap.wrap(f"default: {o.default}", 76, initial_indent="      ",
                                 subsequent_indent="        ")]
    return "\n".join(lines)


def markdown_table() -> str:
    """The README's table of every variable and config key (a unit test keeps them equal)."""
    rows = ["| variable | config key | meaning | default |", "|---|---|---|---|"]
    for o in OPTIONS:
        key = f"`{o.key}`{'' if o.project else ' (user file only)'}" if o.key else "—"
        rows.append(f"| `{o.name}` | {key} | {o.meaning} | {o.default} |")
    return "\n".join(rows) + "\n"

Environ = Mapping[str, str] | None


def apt_mirror(environ: Environ = None) -> str | None:
    return APT_MIRROR.raw(environ)


def apt_security_mirror(environ: Environ = None) -> str | None:
    return APT_SECURITY_MIRROR.raw(environ)


def apt_snapshot(environ: Environ = None) -> str | None:
    """None when unset or empty."""
    return APT_SNAPSHOT.raw(environ) or None


def ubuntu_mirror(environ: Environ = None) -> str | None:
    """None when unset or blank."""
    return (UBUNTU_MIRROR.raw(environ) or "").strip() or None


def ubuntu_keyring(environ: Environ = None) -> str:
    """Unset or empty: the path ubuntu-keyring installs it at."""
    return UBUNTU_KEYRING.raw(environ) or UBUNTU_KEYRING.default


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


def conda_default_channels(environ: Environ = None) -> tuple[str, ...]:
    """The URLs listed, each stripped of spaces and a trailing slash; empty ones ignored."""
    return tuple(u.strip().rstrip("/") for u in (CONDA_DEFAULT_CHANNELS.raw(environ) or "")
                 .split(",") if u.strip())


def _base_url(option: Option, environ: Environ) -> str:
    """A base-URL setting as its users read it: ``""`` when unset or blank, no trailing
    slash (they append paths to it)."""
    return (option.raw(environ) or "").strip().rstrip("/")


def conda_channel_alias(environ: Environ = None) -> str:
    return _base_url(CONDA_CHANNEL_ALIAS, environ)


def npm_registry(environ: Environ = None) -> str:
    return _base_url(NPM_REGISTRY, environ)


def julia_mirror(environ: Environ = None) -> str:
    return _base_url(JULIA_MIRROR, environ)


def openvsx_url(environ: Environ = None) -> str:
    return _base_url(OPENVSX_URL, environ)


def insecure_registries(environ: Environ = None) -> frozenset[str]:
    """The hosts listed, each stripped; empty entries ignored."""
    return frozenset(h.strip() for h in (INSECURE_REGISTRIES.raw(environ) or "").split(",")
                     if h.strip())


def registry_creds(environ: Environ = None) -> str | None:
    return REGISTRY_CREDS.raw(environ) or None


def registry_cert_dir(environ: Environ = None) -> Path | None:
    value = REGISTRY_CERT_DIR.raw(environ)
    return Path(value) if value else None


def substituters(environ: Environ = None) -> str | None:
    return SUBSTITUTERS.raw(environ)


def trusted_public_keys(environ: Environ = None) -> str | None:
    return TRUSTED_PUBLIC_KEYS.raw(environ) or None


def builders(environ: Environ = None) -> str | None:
    """``""`` (build locally) stays ``""``."""
    return BUILDERS.raw(environ)


def load(environ: Environ = None) -> bool | None:
    """True or False when set to one of the words; None when unset, empty or anything else
    (then build loads when it finds an engine)."""
    value = (LOAD.raw(environ) or "").strip().lower()
    return True if value in ("1", "true", "yes") else False if value in ("0", "false", "no") \
        else None


def registry_tls_verify(environ: Environ = None) -> bool:
    return (REGISTRY_TLS_VERIFY.raw(environ) or "true").lower() not in ("0", "false", "no")

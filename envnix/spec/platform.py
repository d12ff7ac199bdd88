"""Target platforms (``--platform linux/arm64``): one record of every name a platform goes by.

Debian, manylinux, conda, the OCI config and qemu each spell an architecture their own way;
the stages ask this record instead of mapping names themselves. It lives in the spec stage
because the lock, render and cli stages all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from envnix.core.errors import UsageError


@dataclass(frozen=True)
class Platform:
    """One target platform, ``linux/<deb_arch>``."""

    deb_arch: str       # Debian's and the OCI config's name: amd64, arm64
    machine: str        # uname -m, manylinux's and the GNU triplet's: x86_64, aarch64
    conda_subdir: str   # linux-64, linux-aarch64

    @property
    def name(self) -> str:
        """As docker and the OCI image index spell it: ``linux/arm64``."""
        return f"linux/{self.deb_arch}"

    @property
    def multiarch(self) -> str:
        """Debian's multiarch directory (/usr/lib/<multiarch>)."""
        return f"{self.machine}-linux-gnu"

    @property
    def qemu(self) -> str:
        """The qemu-user-static program that runs this platform's binaries on another."""
        return f"qemu-{self.machine}-static"

    def manylinux(self, glibc: str) -> str:
        """uv's --python-platform for a glibc target, e.g. aarch64-manylinux_2_36."""
        major, minor = glibc.split(".")[:2]
        return f"{self.machine}-manylinux_{major}_{minor}"


AMD64 = Platform("amd64", "x86_64", "linux-64")
ARM64 = Platform("arm64", "aarch64", "linux-aarch64")
PLATFORMS = {p.name: p for p in (AMD64, ARM64)}
"""Every platform envnix builds for, by name."""
HOST = AMD64
"""The platform the builders run on (Nix system x86_64-linux)."""


def by_arch(deb_arch: str) -> Platform:
    """The platform of a Debian architecture name (as a lock's inputs record it)."""
    for p in PLATFORMS.values():
        if p.deb_arch == deb_arch:
            return p
    raise UsageError(f"architecture {deb_arch!r} is not one envnix builds for "
                     f"({', '.join(p.deb_arch for p in PLATFORMS.values())})")


def parse_platforms(text: str | None) -> tuple[Platform, ...]:
    """``--platform linux/amd64,linux/arm64``: the platforms in order, at least one;
    default (None or empty) the host's."""
    if not text:
        return (HOST,)
    out: list[Platform] = []
    for raw in text.split(","):
        name = raw.strip()
        # docker accepts "arm64" and "linux/arm64/v8" too; the variant is arm64's only one.
        full = name if "/" in name else f"linux/{name}"
        if full == "linux/arm64/v8":
            full = "linux/arm64"
        platform = PLATFORMS.get(full)
        if platform is None:
            raise UsageError(f"--platform {name!r}: envnix builds for "
                             f"{', '.join(PLATFORMS)}")
        if platform in out:
            raise UsageError(f"--platform names {platform.name} twice")
        out.append(platform)
    return tuple(out)

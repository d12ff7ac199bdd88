"""The parsed env.yaml as data: what the frontend read from it, for the stages after it.

The frontend (frontend/envyaml.py) reads env.yaml once, with its paths checked against the build
context, and the spec carries the result (``CondaRequest.env``): the lock solves its
dependencies and pip section without reading the file again. ``conda_spec_channel`` splits a
match spec's channel prefix, which both the frontend (channel checks) and the lock (rewriting it
to the channel's URL) need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CONDA_SUBDIRS = frozenset({
    "noarch", "linux-32", "linux-64", "linux-aarch64", "linux-armv6l", "linux-armv7l",
    "linux-ppc64", "linux-ppc64le", "linux-riscv64", "linux-s390x", "osx-64", "osx-arm64",
    "win-32", "win-64", "win-arm64", "freebsd-64", "zos-z", "emscripten-wasm32", "wasi-wasm32",
})
"""conda platform subdirectories, to tell ``chan/linux-64::pkg`` from ``chan/label/x::pkg``."""


@dataclass(frozen=True)
class EnvFile:
    """An env.yaml as conda would act on it, with every path already resolved."""

    source: Path
    channels: tuple[str, ...] = ()
    nodefaults: bool = False
    dependencies: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    pip_local: tuple[tuple[str, bool], ...] = ()
    """Local projects/archives from the pip section: (absolute path, editable)."""
    pip_index_url: str | None = None
    pip_extra_index_urls: tuple[str, ...] = ()
    pip_trusted_hosts: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    requirement_files: tuple[Path, ...] = ()
    """Every file ``-r`` pulled in (absolute), so a lock can notice when one changes."""


def conda_spec_channel(spec: str) -> tuple[str | None, str | None, str]:
    """Split ``chan::pkg`` / ``chan/subdir::pkg`` into (channel, subdir, the rest)."""
    if "::" not in spec:
        return None, None, spec.strip()
    channel, rest = spec.split("::", 1)
    channel = channel.strip().rstrip("/")
    subdir = None
    head, sep, last = channel.rpartition("/")
    if sep and last in CONDA_SUBDIRS:
        channel, subdir = head, last
    return channel or None, subdir, rest.strip()

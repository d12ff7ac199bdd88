"""envd's ``--output`` flag: one BuildKit-style CSV entry saying where a built image goes.

Why a parser of our own: envd users already write ``--output type=image,name=REF,push=true``
or ``type=oci,dest=img.tar`` in scripts and CI, so envnix accepts the same spelling and gives
the same error strings (envd's pkg/builder/util.go, see shared docs envd-reference.md §1.5/§2.1).
Parsing happens before the build, so a bad ``--output`` fails in milliseconds, not after Nix.

Supported types:
- ``image`` (``registry`` = ``image,push=true``): ``name=REF[,REF2]``, ``push=true|false``,
  ``registry.insecure=true`` (plain HTTP or an untrusted certificate, like ``--tls-verify=false``).
- ``oci`` / ``docker``: the image as one tar (envnix writes a tar that is both an OCI layout and
  a docker-archive, so either loader accepts it); ``dest=FILE``, or ``-``/none for stdout.
- ``tar``: the flattened root filesystem as a tar (BuildKit's ``tar`` exporter).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from envnix.core.errors import UsageError
from envnix.core.reference import image_name
from envnix.oci.registry import parse_destination

FILE_TYPES = ("oci", "docker", "tar")
IMAGE_TYPES = ("image", "registry")
# Attributes accepted per type. Anything else is refused rather than silently ignored: e.g.
# BuildKit's compression=zstd would change the pushed bytes, which envnix never does.
_IMAGE_ATTRS = {"name", "push", "registry.insecure", "oci-mediatypes", "compression"}
_FILE_ATTRS = {"dest", "name", "oci-mediatypes", "compression"}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


@dataclass(frozen=True)
class OutputSpec:
    """One parsed ``--output`` entry."""

    type: str
    attrs: dict[str, str] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    push: bool = False
    insecure: bool = False
    dest: str | None = None

    @property
    def to_stdout(self) -> bool:
        """True when the archive goes to stdout (so results must go to stderr)."""
        return self.type in FILE_TYPES and self.dest in (None, "", "-")

    def build_tag(self, tag_option: str | None, default: str) -> str:
        """The tag to build with: ``-t`` if given, else the first ``name=``, else ``default``.

        For oci/docker archives the tag is baked into the file, so a ``name=`` that differs
        from ``-t`` is refused instead of picking one silently. With push=true every target
        must name a registry; that is checked here, before the build, not after it.
        """
        if self.type in FILE_TYPES and tag_option and self.names and \
                self.names[0] != tag_option:
            raise UsageError(
                f"--output name={self.names[0]} differs from -t {tag_option}: the archive "
                "carries one name", hint="give the name once, with -t or with name=")
        tag = tag_option or (self.names[0] if self.names else default)
        if self.push:
            for target in self.names or (tag,):
                parse_destination(target, "latest")
        return tag


def _bool(key: str, value: str) -> bool:
    """Go's strconv.ParseBool, which envd uses for BuildKit attributes."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"invalid value {key}={value}: expected true or false")


def _fields(text: str) -> list[str]:
    """One CSV record, as Go's encoding/csv reads it (quotes allow commas inside a value)."""
    try:
        rows = list(csv.reader([text], strict=True, skipinitialspace=False))
    except csv.Error as e:
        raise UsageError(f"invalid --output {text!r}: {e}") from None
    if len(rows) != 1:
        raise UsageError(f"invalid --output {text!r}: expected one CSV line")
    return rows[0]


def _check_dest(kind: str, dest: str | None, stdout_isatty: Callable[[], bool]) -> None:
    if dest not in (None, "", "-"):
        path = Path(dest)
        if path.is_dir():
            raise UsageError("destination file is a directory")
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise UsageError(f"invalid destination file: {dest}: directory {parent} does not exist")
        return
    if stdout_isatty():
        raise UsageError(
            f"output file is required for {kind} exporter. refusing to write to console",
            hint=f"pass dest=FILE, or redirect stdout: --output type={kind},dest=- > img.tar")


def parse_output(values: Sequence[str],
                 stdout_isatty: Callable[[], bool] | None = None) -> OutputSpec | None:
    """Parse the ``--output`` values given on the command line (none -> None)."""
    values = [v for v in values if v]
    if not values:
        return None
    if len(values) > 1:
        raise UsageError("only one output type is supported")
    isatty = stdout_isatty or (lambda: os.isatty(1))
    kind = ""
    attrs: dict[str, str] = {}
    for item in _fields(values[0]):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"invalid value {item}")
        key = key.strip().lower()
        if key == "type":
            kind = value
        else:
            attrs[key] = value
    if not kind:
        raise UsageError("--output requires type=<type>")
    if "output" in attrs:
        v = attrs["output"]
        raise UsageError(f"output={v} not supported for --output, you meant dest={v}?")
    if kind == "local":
        if not attrs.get("dest"):
            raise UsageError("output directory is required for local exporter")
        raise UsageError("--output type=local is part of envd's CLI but envnix cannot export "
                         "a directory yet", hint="use type=tar,dest=rootfs.tar and unpack it")
    if kind not in IMAGE_TYPES + FILE_TYPES:
        raise UsageError(f"unknown output type {kind!r}",
                         hint="envnix supports type=image, registry, oci, docker and tar")

    if kind in IMAGE_TYPES and attrs.get("dest"):
        raise UsageError(f"output {attrs['dest']} is not supported by {kind} exporter")
    allowed = _IMAGE_ATTRS if kind in IMAGE_TYPES else _FILE_ATTRS
    for key in sorted(attrs):
        if key not in allowed:
            raise UsageError(f"output attribute {key!r} is not supported by envnix for "
                             f"type={kind}", hint=f"supported: {', '.join(sorted(allowed))}")
    if attrs.get("compression", "gzip") != "gzip":
        raise UsageError(f"compression={attrs['compression']}: an export keeps the layers the "
                         "build made; recompressing would change the digests it computed",
                         hint="build zstd layers with envnix build --compression zstd")
    if "oci-mediatypes" in attrs and not _bool("oci-mediatypes", attrs["oci-mediatypes"]):
        raise UsageError("oci-mediatypes=false: envnix images are OCI images")
    names = tuple(n.strip() for n in attrs.get("name", "").split(",") if n.strip())
    for name in names:
        image_name(name, "--output name=")

    if kind in IMAGE_TYPES:
        push = kind == "registry" or _bool("push", attrs.get("push", "false"))
        insecure = _bool("registry.insecure", attrs.get("registry.insecure", "false"))
        return OutputSpec(type="image", attrs=attrs, names=names, push=push, insecure=insecure)

    dest = attrs.get("dest")
    _check_dest(kind, dest, isatty)
    return OutputSpec(type=kind, attrs=attrs, names=names, dest=dest)

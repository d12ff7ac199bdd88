"""io.copy's arguments, read and checked where the call is made.

Why here: envd spells io.copy three ways over its versions (host_path/envd_path in v0,
source/target in v1, src/dest before 0.2), and every spelling names a context path that must
not leave the context. The target's final place is decided later (spec/copyrules.py), once
dev mode and Python are known.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from envnix.core.errors import SpecError
from envnix.spec import file_kind, image_path
from envnix.spec.copyrules import CopyRequest

__all__ = ["CopyCall", "read_copy_call"]


@dataclass(frozen=True)
class CopyCall:
    """One io.copy call: which envd version its spelling implies, a warning, and the request."""

    v0_signal: str | None
    v1_signal: str | None
    warning: str | None
    rel: str  # the source, relative to the context
    request: CopyRequest


def read_copy_call(context: Path, host_path: str | None = None, envd_path: str | None = None,
                   src: str | None = None, dest: str | None = None, source: str | None = None,
                   target: str | None = None, image: str | None = None) -> CopyCall:
    """Check one io.copy call against the context; SpecError names what is wrong."""
    v0 = "io.copy(host_path=)" if host_path is not None or envd_path is not None else None
    v1 = "io.copy(source=)" if not v0 and (source is not None or target is not None) else None
    warning = ("io.copy(src=, dest=) is envd's pre-0.2 spelling of io.copy(host_path=, "
               "envd_path=)" if src is not None or dest is not None else None)
    if image is not None:
        raise SpecError("io.copy(image=...) (copying out of another image) is not supported yet")
    from_ = host_path if host_path is not None else src if src is not None else source
    to_name, to = next(((n, v) for n, v in (("envd_path", envd_path), ("dest", dest),
                                             ("target", target)) if v is not None),
                       ("target", None))
    if not from_ or not to:
        raise SpecError("io.copy needs a source (host_path) and a target (envd_path)")
    path = (context / from_).resolve()
    root = context.resolve()
    if not path.is_relative_to(root):
        raise SpecError(f"io.copy: {from_!r} is outside the build context "
                        "(or a symlink pointing out of it)")
    if not path.exists():
        raise SpecError(f"io.copy: {from_!r} does not exist in the build context")
    mode = path.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise SpecError(f"io.copy: {from_!r} is {file_kind(mode)}; only files, "
                        "directories and symlinks can be copied")
    workdir = f"/home/envd/{context.name}"
    checked = image_path(to, f"io.copy: {to_name}", base=workdir)  # as written
    # Where it lands depends on the image's directories then (BuildKit's rule,
    # spec/copyrules.py), known once dev and Python are: build() decides, in call order.
    slash = "/" if to.endswith(("/", "/.")) and checked != "/" else ""
    return CopyCall(v0, v1, warning, path.relative_to(root).as_posix(),
                    CopyRequest(from_, path.is_dir(), checked + slash, str(path)))

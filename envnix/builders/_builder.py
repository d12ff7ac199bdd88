"""The builder contract every envnix builder keeps: inputs from the environment, the one
``envnix-builder: <what>: <why>`` error line, and deterministic output files (``meta.json``).

Not a builder itself (no env vars). Imported by every builder as a sibling module
(``sys.path[0]`` is this directory). Standard library only.

* ``main_wrapper`` turns bad input into the one-line ``envnix-builder: <what>: <why>`` error.
* ``getenv``, ``optional_env``, ``json_input`` read the derivation's attributes.
* ``write_meta`` writes a package tree's ``meta.json`` (see README.md).
"""

from __future__ import annotations

import configparser
import csv
import json
import lzma
import os
import sys
import tarfile
import traceback
import zipfile
import zlib
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

# --------------------------------------------------------------------------------------------
# Errors and the builder entry point


class BuilderError(Exception):
    """Bad input. ``why`` says what is wrong; ``what`` (optional) overrides the context."""

    def __init__(self, why: str, what: str | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.what = what


_context: list[str] = ["builder"]

# Exceptions that mean "the input is bad" rather than "the builder has a bug".
_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, lzma.LZMAError,
    zlib.error, EOFError, UnicodeError, csv.Error, configparser.Error, ValueError,
)


def set_context(what: str) -> None:
    """Set the ``<what>`` part of a later error line (e.g. ``deb libc6 2.36-9``)."""
    _context[0] = what


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return str(exc)
    if isinstance(exc, tarfile.TarError):
        return f"bad tar archive: {exc}"
    if isinstance(exc, zipfile.BadZipFile | zipfile.LargeZipFile):
        return f"bad zip archive: {exc}"
    if isinstance(exc, lzma.LZMAError | zlib.error | EOFError):
        return f"bad compressed data: {exc}"
    return f"bad input: {type(exc).__name__}: {exc}"


def _is_zstd_error(exc: BaseException) -> bool:
    mod = type(exc).__module__ or ""
    return mod.startswith(("zstandard", "compression.zstd", "_zstd"))


def die(what: str, why: str) -> NoReturn:
    """Print the one error line the envnix CLI looks for, and exit 1."""
    sys.stderr.write(f"envnix-builder: {_one_line(what)}: {_one_line(why)}\n")
    sys.stderr.flush()
    sys.exit(1)


def expected_failure(exc: BaseException) -> tuple[str, str] | None:
    """``(what, why)`` of the one line a builder step that raised ``exc`` ends with when the
    input was bad; None for anything else (a builder bug). main_wrapper prints it, and so
    does a parent for the work of its child processes (unpack_deb.py's groups)."""
    if isinstance(exc, BuilderError):
        return exc.what or _context[0], exc.why
    if isinstance(exc, _INPUT_ERRORS):
        return _context[0], _describe(exc)
    if _is_zstd_error(exc):
        return _context[0], f"bad zstd data: {exc}"
    return None


def internal_failure(exc: BaseException) -> tuple[str, str]:
    """``(what, why)`` for an exception :func:`expected_failure` does not know: a bug."""
    return _context[0], f"internal error: {type(exc).__name__}: {exc}"


def main_wrapper(fn: Callable[[], None], what: str) -> None:
    """Run a builder's main; bad input becomes one ``envnix-builder:`` line and exit 1.

    Unexpected exceptions (builder bugs) also print that line first, then the traceback.
    """
    set_context(what)
    try:
        fn()
    except Exception as exc:
        known = expected_failure(exc)
        if known is not None:
            die(*known)
        where, why = internal_failure(exc)
        sys.stderr.write(f"envnix-builder: {_one_line(where)}: {_one_line(why)}\n")
        traceback.print_exc()
        sys.exit(1)


def run_reporting(fn: Callable[[], None], what: str,
                  expected: tuple[type[BaseException], ...]) -> int:
    """mklayer's and mkimage's entry point: ``expected`` errors and OSErrors become one line
    ``envnix-builder: <what>: ...`` (an OSError as ``<file>: <strerror>``); returns 0 or 1.

    Unlike :func:`main_wrapper` it returns instead of exiting and lets other exceptions
    through: tests call those builders' ``main()`` in-process and read the code it returns.
    """
    try:
        fn()
    except expected as e:
        print(f"envnix-builder: {what}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        where = os.fsdecode(e.filename) if e.filename is not None else "I/O error"
        print(f"envnix-builder: {what}: {where}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


def optional_env(name: str) -> str | None:
    """A derivation attribute (Nix passes them as environment variables), None when unset."""
    return os.environ.get(name)


def json_input(value: str, what: str, opener: str = "[") -> Any:
    """A JSON input given inline (starting with ``opener``) or as the path of a file holding it.

    Nix passes short values inline; a long list of store paths may come as a file instead.
    """
    raw = value.strip()
    if not raw.startswith(opener):
        try:
            with open(raw, encoding="utf-8") as f:
                raw = f.read()
        except OSError as exc:
            raise BuilderError(f"cannot read {what} from {value}: {exc.strerror}") from None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BuilderError(f"{what}: not JSON: {exc}") from None


def json_path_list(value: str, what: str) -> list[str]:
    """``json_input`` that must be a list of non-empty path strings."""
    items = json_input(value, what)
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise BuilderError(f"{what} must be a JSON list of paths")
    return items


def load_json(path: str, unreadable: str, error: type[Exception] = BuilderError) -> Any:
    """The JSON in the file ``path``. An unreadable file raises ``error("<unreadable>:
    <strerror>")`` and bad JSON ``error("<path>: bad JSON: ...")``: mkimage and mklayer
    report them in those words."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise error(f"{unreadable}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise error(f"{path}: bad JSON: {e}") from None


MULTIARCH = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
"""Debian's multiarch directory name of each architecture envnix builds images for."""


def target_arch() -> str:
    """The image's Debian architecture (``arch``; image.nix sets it for a foreign platform
    only, so amd64 builders keep their inputs): files name it, nothing of it runs here."""
    arch = getenv("arch", "amd64")
    if arch not in MULTIARCH:
        raise BuilderError(f"arch {arch!r} is not one of {sorted(MULTIARCH)}")
    return arch


def getenv(name: str, default: str | None = None) -> str:
    """An input env var; a missing required one is a BuilderError."""
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise BuilderError(f"environment variable '{name}' is not set")
        return default
    return value


# --------------------------------------------------------------------------------------------
# Deterministic output files


def dumps_json(obj: object) -> bytes:
    """Canonical JSON: sorted keys, compact separators, ASCII, trailing newline."""
    return (json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            + "\n").encode("ascii")


def write_new_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` (must not exist, never follows a symlink) with ``data``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
    finally:
        os.close(fd)


META_FORMAT = 2
"""The version of a package tree's ``meta.json`` (``"format"``), which every tree builder
writes (mktree.py's config-files and io.copy trees too); a tree without the field predates it.
2 added the optional ``hardlinks`` groups; a version-1 tree reads as one without any."""


def check_version(data: dict[str, Any], key: str, known: int, what: str,
                  error: type[Exception] = BuilderError) -> int:
    """``data[key]``, the version of the file ``what`` (0 when absent: written before files
    carried one); newer than ``known`` is an error that says which envnix to use."""
    version = data.get(key, 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise error(f"{what}: {key!r} must be a version number")
    if version > known:
        raise error(f"{what}: {key} {version} is newer than this envnix reads ({known}); "
                    "build with the envnix that rendered it")
    return version


def write_meta(
    out: str, kind: str, name: str, version: str, modes: dict[str, list[int]],
    notes: Iterable[str] = (), hardlinks: list[list[str]] | None = None, **extra: object,
) -> None:
    """Write ``$out/meta.json`` (the package tree's metadata, see README.md)."""
    meta: dict[str, object] = {"format": META_FORMAT, "kind": kind, "name": name,
                               "version": version, "modes": modes, **extra}
    notes = list(notes)
    if notes:
        meta["notes"] = notes
    if hardlinks:
        meta["hardlinks"] = hardlinks
    write_new_file(os.path.join(out, "meta.json"), dumps_json(meta))


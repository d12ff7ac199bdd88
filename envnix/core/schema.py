"""Checks for the JSON files envnix writes and reads back (envnix.lock, plan.json, digests.json).

Why: these files come back from disk, where anything can have happened to them, and an
envnix.lock often arrives from a stranger's repository next to their build.envd. Before
envnix uses one, every field is checked: types, sha256 as 64 hex digits, URLs http(s) only (a
``file://`` URL would make Nix hash a host file), sizes non-negative integers, names that are
names, no entry twice. A bad file is one line naming the file and the field, e.g.
``envnix.lock: apt.packages[3].sha256: expected 64 hex digits``, never a traceback.

The checks are small composable functions (``obj``, ``array``, ``string`` ...), each raising
:class:`Invalid` with the JSON path of the field it looked at. Each file's own shape lives with
the stage that writes it: envnix.lock in envnix.lock.model, plan.json in envnix.render.plan,
digests.json in envnix.oci.layout; docs/schemas/ has them as JSON Schema.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from envnix.core.errors import EnvnixError
from envnix.core.nixexpr import SHA256_HEX, STORE_NAME, shown_url, url_problem

MAX_FILE_BYTES = 256 << 20
"""The largest file read back: a lock of a big CUDA image is a few MB."""

MAX_SIZE = 1 << 53
"""Sizes above this are not exact in JSON readers (Nix's fromJSON included)."""

class Invalid(Exception):
    """A value without the expected shape; ``where`` is its JSON path (``pip.wheels[0].url``)."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}" if where else what)
        self.where, self.what = where, what


Check = Callable[[Any, str], None]


def _at(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def show(value: Any) -> str:
    """A bad value for a message: short, one line."""
    text = json.dumps(value, ensure_ascii=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "true or false",
          int: "an integer", float: "a number", type(None): "null"}


def kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def string(pattern: str | None = None, expected: str = "a string", *, max_len: int = 4096,
           multiline: bool = False) -> Check:
    """A str matching ``pattern`` (fullmatch); no control characters (tab/newline only when
    ``multiline``)."""
    regex = re.compile(pattern) if pattern else None
    controls = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]" if multiline
                          else r"[\x00-\x1f\x7f]")

    def check(value: Any, where: str) -> None:
        if not isinstance(value, str):
            raise Invalid(where, f"expected {expected}, got {kind(value)}")
        if len(value) > max_len:
            raise Invalid(where, f"longer than {max_len} characters")
        if controls.search(value):
            raise Invalid(where, f"control character in {show(value)}")
        if regex is not None and not regex.fullmatch(value):
            raise Invalid(where, f"expected {expected}, got {show(value)}")
    return check


def integer(minimum: int = 0, maximum: int = MAX_SIZE,
            expected: str = "a non-negative integer") -> Check:
    def check(value: Any, where: str) -> None:
        if type(value) is not int or not minimum <= value <= maximum:
            raise Invalid(where, f"expected {expected}, got {show(value)}")
    return check


def boolean(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise Invalid(where, f"expected true or false, got {show(value)}")


def anything(value: Any, where: str) -> None:
    """Any JSON value (the parser already refused NaN, duplicate keys and deep nesting)."""


def one_of(*allowed: Any) -> Check:
    def check(value: Any, where: str) -> None:
        if value not in allowed or type(value) not in {type(a) for a in allowed}:
            raise Invalid(where, "expected " + " or ".join(map(show, allowed))
                          + f", got {show(value)}")
    return check


def nullable(inner: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if value is not None:
            inner(value, where)
    return check


def array(item: Check, *, unique: Callable[[Any], Any] | None = None,
          unique_field: str = "") -> Check:
    """A list of ``item``; with ``unique``, two items with the same key are an error (a lock
    that lists a package twice must not be collapsed to either one silently)."""
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise Invalid(where, f"expected a list, got {kind(value)}")
        seen: dict[Any, int] = {}
        for i, element in enumerate(value):
            item(element, _at(where, i))
            if unique is None:
                continue
            key = unique(element)
            if key in seen:
                field = _at(_at(where, i), unique_field) if unique_field else _at(where, i)
                raise Invalid(field, f"{show(key)} appears twice "
                                     f"(also {_at(where, seen[key])})")
            seen[key] = i
    return check


def tuple_of(*items: Check) -> Check:
    """A list of exactly ``len(items)`` values, each with its own check."""
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list) or len(value) != len(items):
            raise Invalid(where, f"expected a list of {len(items)}, got {show(value)}")
        for i, (element, inner) in enumerate(zip(value, items, strict=True)):
            inner(element, _at(where, i))
    return check


def obj(required: Mapping[str, Check], optional: Mapping[str, Check] | None = None, *,
        other_keys: bool = False) -> Check:
    """An object with the ``required`` fields, maybe the ``optional`` ones, and no other
    (unless ``other_keys``: then other keys are left alone)."""
    optional = optional or {}

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise Invalid(where, f"expected an object, got {kind(value)}")
        for key, inner in required.items():
            if key not in value:
                raise Invalid(_at(where, key), "missing")
            inner(value[key], _at(where, key))
        for key, inner in optional.items():
            if key in value:
                inner(value[key], _at(where, key))
        if not other_keys:
            for key in value:
                if key not in required and key not in optional:
                    raise Invalid(_at(where, key), "unknown field")
    return check


def mapping(key: Check, value: Check) -> Check:
    """An object used as a dictionary: every key and value checked."""
    def check(data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise Invalid(where, f"expected an object, got {kind(data)}")
        for k, v in data.items():
            key(k, _at(where, k))
            value(v, _at(where, k))
    return check


def _url(value: Any, where: str) -> None:
    """A URL Nix may fetch: the same rule render and --store seeding apply (url_problem)."""
    string(expected="an http(s) URL", max_len=8192)(value, where)
    problem = url_problem(value)
    if problem:
        raise Invalid(where, f"expected an http(s) URL, got {show(shown_url(value))}: {problem}")


url: Check = _url
sha256 = string(SHA256_HEX.pattern, "64 hex digits")
md5 = string(r"[0-9a-f]{32}", "32 hex digits")
digest = string(r"sha256:[0-9a-f]{64}", "sha256: and 64 hex digits")
size = integer()
text = string()
any_text = string(multiline=True, max_len=1 << 20)
"""Free text that may span lines: a shell command, an environment value, a control stanza."""
token = string(r"[^\s]{1,200}", "a word without spaces", max_len=200)
version = string(r"[A-Za-z0-9][A-Za-z0-9.+~:_!*-]{0,199}", "a version", max_len=200)
name = string(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}", "a package name", max_len=200)
file_name = string(r"[A-Za-z0-9_][A-Za-z0-9_.+~%=-]{0,254}", "a file name", max_len=255)
rel_path = string(r"(?!/)(?!(?:.*/)?\.\.(?:/|$))[A-Za-z0-9_.+~%=/-]{1,1024}",
                  "a relative path without ..", max_len=1024)
store_name = string(STORE_NAME.pattern, "a Nix store name", max_len=211)
strings = array(text)


def pep503(value: Any) -> str:
    """A pip project name as PEP 503 compares them: Foo_Bar and foo-bar are one project."""
    return re.sub(r"[-_.]+", "-", str(value)).lower()


# --------------------------------------------------------------------------------------------
# Reading: bytes -> JSON, with one-line errors naming the file
# --------------------------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(text: str) -> NoReturn:
    raise ValueError(f"{text} is not a JSON number")


def parse_json(data: bytes, origin: str, error: type[EnvnixError],
               hint: str | None = None) -> Any:
    """``data`` as JSON, or ``error`` with one line: ``origin:line:col: not valid JSON: ...``.

    Stricter than json.loads: UTF-8 only, no NaN/Infinity, no key twice in an object (JSON
    readers disagree on which one wins), and deep nesting is an error, not a RecursionError.
    """
    try:
        body = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{origin}: not UTF-8 text (byte {exc.start} is "
                    f"0x{data[exc.start]:02x})", hint=hint) from None
    try:
        return json.loads(body, object_pairs_hook=_no_duplicate_keys,
                          parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise error(f"not valid JSON: {exc.msg}", file=origin, line=exc.lineno, col=exc.colno,
                    hint=hint) from None
    except _DuplicateKey as exc:
        raise error(f"{origin}: not valid JSON: the key {show(exc.args[0])} appears twice in "
                    "one object", hint=hint) from None
    except RecursionError:
        raise error(f"{origin}: not valid JSON: nested too deeply", hint=hint) from None
    except ValueError as exc:  # NaN, or an integer with more digits than Python parses
        raise error(f"{origin}: not valid JSON: {exc}", hint=hint) from None


def read_bytes(path: Path, origin: str, error: type[EnvnixError],
               hint: str | None = None) -> bytes:
    """A regular file's bytes (a FIFO would block, a device never ends), at most
    MAX_FILE_BYTES, or ``error`` with one line."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{origin}: not a regular file", hint=hint)
        if info.st_size > MAX_FILE_BYTES:
            raise error(f"{origin}: {info.st_size} bytes is more than envnix reads back "
                        f"({MAX_FILE_BYTES >> 20} MiB)", hint=hint)
        with path.open("rb") as fh:
            return fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise error(f"{origin}: cannot read it: {exc.strerror or exc}", hint=hint) from None


def validate(data: Any, check: Check, origin: str, error: type[EnvnixError],
             hint: str | None = None) -> None:
    """Run ``check`` on ``data``; a mismatch becomes ``error``: ``origin: field: what``."""
    try:
        check(data, "")
    except Invalid as exc:
        raise error(f"{origin}: {exc}", hint=hint) from None


def check_version(data: dict[str, Any], key: str, current: int, origin: str,
                  error: type[EnvnixError], hint: str | None, *, made: str,
                  missing: str | None) -> int:
    """``data[key]``, the file's schema version, or ``error`` with one line.

    Why one function: every file envnix reads back says which version of its shape it is, and
    a file from a newer envnix must say "upgrade envnix" rather than fail on some field this
    envnix has never heard of. A file without the key is refused with ``missing`` or, when
    that is None, read as version 0 (written before the file had a version: still loadable).
    ``made`` is the verb of the message: "made", "rendered", "written".
    """
    if key not in data:
        if missing is None:
            return 0
        raise error(f"{origin}: {key}: missing{missing}", hint=hint)
    found = data[key]
    if found != current or type(found) is not int:
        newer = type(found) is int and found > current
        raise error(f"{origin}: {key} {show(found)} is not {current}: {made} by another envnix "
                    "version" + (" (a newer one: upgrade envnix to read it)" if newer else ""),
                    hint=hint)
    return found

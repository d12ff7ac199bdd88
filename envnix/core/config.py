"""The config files: ``envnix.toml`` in the build context, then the user's ``config.toml``.

Why files at all: mirrors, registries, caches, builders and the CUDA provider are the same for
every build of a project (or on one machine), and exporting half a dozen variables in every
shell and CI job is how they get lost. Each key is one ``ENVNIX_*`` option (core/options.py
has the table), so there is one meaning per setting; the order is the command line, then the
environment, then the context's envnix.toml, then ``$XDG_CONFIG_HOME/envnix/config.toml``
(``~/.config/envnix/config.toml``), then the default. A file envnix cannot use is one line,
``file:line:col`` where the TOML parser says where, and exit 2.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envnix.core import options
from envnix.core.errors import ConfigError, os_reason

PROJECT_FILE = "envnix.toml"


def user_file(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/envnix/config.toml`` (``~/.config`` when unset or empty)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "envnix" / "config.toml"


def load_config(context: Path | None, environ: Mapping[str, str] | None = None
                ) -> dict[str, str]:
    """Variable name -> value from both files, the context's winning key by key."""
    values = read_config(user_file(environ), project=False)
    if context is not None:
        values.update(read_config(context / PROJECT_FILE, project=True))
    return values


def read_config(path: Path, project: bool) -> dict[str, str]:
    """One file's settings as variable name -> value; {} when the file does not exist."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        reason = os_reason(exc) if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read the config file: {reason}", file=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if at:
            message = message[:at.start()]
        raise ConfigError(f"not valid TOML: {message[:1].lower()}{message[1:]}", file=str(path),
                          line=int(at[1]) if at else None, col=int(at[2]) if at else None,
                          hint=_HINT) from None
    values: dict[str, str] = {}
    known = options.by_key()
    for key, value in _flatten(data):
        option = known.get(key)
        line, col = _where(text, key)
        if option is None:
            raise ConfigError(f"unknown key {key}", file=str(path), line=line, col=col,
                              hint=_HINT)
        if project and not option.project:
            raise ConfigError(f"{key} is read only from the user's config file ({user_file()}), "
                              "not from a build context's", file=str(path), line=line, col=col,
                              hint="a context someone else wrote must not choose whom envnix "
                                   "trusts; move it to your own config file")
        values[option.name] = _value(option, value, path, line, col)
    return values


_HINT = "see envnix --help (Environment variables) for the keys and their meaning"


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, value in data.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            out += _flatten(value, key + ".")
        else:
            out.append((key, value))
    return out


def _where(text: str, key: str) -> tuple[int | None, int | None]:
    """Line and column of ``key``'s last part where it is assigned, if it is there once."""
    leaf = re.escape(key.rsplit(".", 1)[-1])
    hits = [(n, m.start(1) + 1) for n, line in enumerate(text.splitlines(), 1)
            if (m := re.match(rf"\s*(?:[\w.-]+\.)?[\"']?({leaf})[\"']?\s*=", line))]
    return hits[0] if len(hits) == 1 else (None, None)


def _value(option: options.Option, value: Any, path: Path, line: int | None,
           col: int | None) -> str:
    """The TOML value as the variable's text: strings as they are, lists joined, booleans."""
    def bad(wanted: str) -> ConfigError:
        return ConfigError(f"{option.key} must be {wanted}, not {type(value).__name__}",
                           file=str(path), line=line, col=col)

    if option.join == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return "true" if value else "false"
    if isinstance(value, list) and option.join:
        if not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return option.join.join(value)
    if not isinstance(value, str):
        raise bad("a string" + (" or a list of strings" if option.join else ""))
    if option.path and value:
        return str((path.parent / Path(value).expanduser()).absolute())
    return value

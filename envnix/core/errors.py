"""One error hierarchy for envnix: every failure a user can cause or meet is an EnvnixError.

The CLI catches EnvnixError only, prints ``envnix: <message>`` (one line, plus an optional
hint line) and exits with the class's exit code. Anything else is a bug and shows a traceback.

Exit codes say *what kind* of thing failed, so scripts can react without parsing text
(``EXIT_CODES`` is the table; the README shows the same one and a test keeps them equal).
Network failures have a code of their own (8) instead of the stage's: a download that failed
(unreachable mirror, registry or artifact URL, HTTP error, timeout) may well work when run
again, while a typo (4), a stale lock (5) or a failing builder (6) never will. CI can retry
on 8 and only on 8, whichever stage (lock, or a build seeding ``--store``) did the download.
A hash mismatch is not a network failure: it stays 6 (the bytes changed; re-lock).
Interrupts follow the shell's convention, 128 + signal: 130 for Ctrl-C, 143 for SIGTERM.
"""

from __future__ import annotations

import os
import signal


class EnvnixError(Exception):
    """Base class. Any error may say where in an input it arose (``file``, ``line``, ``col``:
    the message then starts ``file:line:col: ``, as compilers print it) and carry a ``hint``,
    an optional second line telling the user what to do."""

    exit_code = 1

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None,
        col: int | None = None, hint: str | None = None,
    ) -> None:
        where = ""
        if file:
            where = file
            if line:
                where += f":{line}"
                if col:
                    where += f":{col}"
            where += ": "
        super().__init__(where + message)
        self.message = where + message
        self.file, self.line, self.col = file, line, col
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(EnvnixError):
    """Bad command-line arguments or a missing input file."""


class ConfigError(UsageError):
    """An envnix.toml or config.toml envnix cannot use (bad TOML, unknown key, wrong type)."""


class FrontendError(EnvnixError):
    """build.envd could not be evaluated: syntax, unknown function, bad argument."""


class SpecError(EnvnixError):
    """The requested image is not something envnix can build (e.g. unknown OS)."""


class LockError(EnvnixError):
    """Resolving packages into a lock failed."""


class PackageNotFoundError(LockError):
    """A requested apt/pip/conda package does not exist in the configured indexes."""


class StaleLockError(LockError):
    """``envnix lock --check``: the lock does not match the inputs any more."""


class BuildError(EnvnixError):
    """Nix could not build the image."""


class HashMismatchError(BuildError):
    """A fetched artifact's sha256 differs from the one pinned in envnix.lock."""


class PublishError(EnvnixError):
    """Pushing to a registry, loading into a container engine or exporting an archive failed."""


class NetworkError(EnvnixError):
    """Something envnix needed could not be downloaded; running again may work."""


class FetchError(NetworkError):
    """An index or artifact could not be downloaded (unreachable mirror, HTTP error)."""


class ToolMissingError(EnvnixError):
    """A required external program (nix-build, skopeo, podman) is not on PATH."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt is for SIGINT.

    A BaseException so that ``except Exception`` never swallows it and every ``finally`` (and
    fileio's atomic writers) runs on the way out, as for Ctrl-C.
    """

    exit_code = 128 + signal.SIGTERM


INTERRUPTED = 128 + signal.SIGINT

# The one table of exit codes: code, the classes that exit with it (a subclass inherits its
# parent's), and what it means. The README's "Exit codes" table lists exactly these rows.
_EXIT_TABLE: tuple[tuple[int, tuple[type[EnvnixError], ...], str], ...] = (
    (2, (UsageError,), "usage: bad command-line arguments, an input file is missing, or a "
                       "config file (envnix.toml, config.toml) cannot be used"),
    (3, (FrontendError, SpecError), "build.envd / env.yaml: cannot be evaluated or asks for "
                                    "something envnix cannot build"),
    (4, (LockError,), "lock: resolving packages failed"),
    (5, (StaleLockError,), "stale or damaged lock: envnix.lock no longer matches its inputs "
                           "or cannot be read (`--check`, `--locked`); run envnix lock"),
    (6, (BuildError,), "Nix build failed (including a hash mismatch of a locked artifact)"),
    (7, (PublishError,), "push, load or export failed"),
    (8, (NetworkError,), "network: a mirror, index, registry or artifact could not be "
                         "downloaded (retrying may help)"),
    (127, (ToolMissingError,), "a required program (nix-build, skopeo, podman) is missing"),
    (INTERRUPTED, (), "interrupted (Ctrl-C / SIGINT): external processes stopped, nothing "
                      "half-written"),
    (Terminated.exit_code, (), "terminated (SIGTERM): as for 130"),
)
for _code, _classes, _ in _EXIT_TABLE:
    for _cls in _classes:
        _cls.exit_code = _code

# code -> what it means
EXIT_CODES: dict[int, str] = {code: meaning for code, _, meaning in _EXIT_TABLE}


def os_reason(exc: BaseException) -> str:
    """An OSError (or urllib's URLError around one) as a few words, without ``[Errno N]`` or
    the path that the caller's message names anyway; e.g. "permission denied"."""
    inner = getattr(exc, "reason", exc)
    if isinstance(inner, TimeoutError) or isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(inner, OSError) and inner.errno is not None:
        return (inner.strerror or os.strerror(inner.errno)).lower()
    if isinstance(inner, OSError) and inner.errno is None and inner.args:
        return str(inner.args[-1])
    text = str(inner) or type(inner).__name__
    return " ".join(text.split())

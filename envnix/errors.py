"""One error hierarchy for envnix: every failure a user can cause or meet is an EnvnixError.

The CLI catches EnvnixError only, prints ``envnix: <message>`` (one line, plus an optional
hint line) and exits with the class's exit code. Anything else is a bug and shows a traceback.
"""

from __future__ import annotations


class EnvnixError(Exception):
    """Base class. ``hint`` is an optional second line telling the user what to do."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(EnvnixError):
    """Bad command-line arguments or a missing input file."""

    exit_code = 2


class FrontendError(EnvnixError):
    """build.envd could not be evaluated: syntax, unknown function, bad argument."""

    exit_code = 3

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
        super().__init__(where + message, hint=hint)
        self.file, self.line, self.col = file, line, col


class SpecError(EnvnixError):
    """The requested image is not something envnix can build (e.g. unknown OS)."""

    exit_code = 3


class LockError(EnvnixError):
    """Resolving packages into a lock failed."""

    exit_code = 4


class PackageNotFoundError(LockError):
    """A requested apt/pip/conda package does not exist in the configured indexes."""


class FetchError(LockError):
    """An index or artifact could not be downloaded (unreachable mirror, HTTP error)."""


class StaleLockError(LockError):
    """``envnix lock --check``: the lock does not match the inputs any more."""

    exit_code = 5


class BuildError(EnvnixError):
    """Nix could not build the image."""

    exit_code = 6


class HashMismatchError(BuildError):
    """A fetched artifact's sha256 differs from the one pinned in envnix.lock."""


class ToolMissingError(EnvnixError):
    """A required external program (nix-build, skopeo, podman) is not on PATH."""

    exit_code = 127


class PublishError(EnvnixError):
    """Pushing to a registry, loading into a container engine or exporting an archive failed."""

    exit_code = 7

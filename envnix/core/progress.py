"""One progress reporter: what envnix says on stderr while it works.

Why one: the CLI, the lock writer, the frontend's warnings, nix-build's and skopeo's own lines
and the toolchain script each printed to stderr in their own way. Stages take a ``Progress``
(any callable taking one line), so a test can collect the lines in a list; commands pass
``REPORTER``. Results (image names, digests) are not progress: they go to stdout. A live
terminal display would replace Reporter, not the stages.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

Progress = Callable[[str], None]


class Reporter:
    """Lines to stderr: progress messages (silenced by ``quiet``), warnings (never silenced,
    prefixed ``envnix: warning:``) and a tool's own output passed through as it came."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        # Looked up on every line, not once: click's test runner swaps sys.stderr per call.
        return self._stream or sys.stderr

    def message(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    __call__ = message  # a Reporter is a Progress

    def warning(self, text: str) -> None:
        print(f"envnix: warning: {text}", file=self.stream, flush=True)

    def verbose(self, line: str) -> None:
        """One line of a tool's output (``--verbose``), newline included, unchanged."""
        self.stream.write(line)


REPORTER = Reporter()

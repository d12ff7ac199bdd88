"""One progress reporter: what envnix says on stderr while it works.

Why one: the CLI, the lock writer, the frontend's warnings, nix-build's and skopeo's own lines
and the toolchain script each printed to stderr in their own way. Stages take a ``Progress``
(any callable taking one line), so a test can collect the lines in a list; commands pass
``REPORTER``. Results (image names, digests) are not progress: they go to stdout.

Besides lines, a long step says what it is doing now (``status``: derivations done/total,
bytes downloaded or pushed with their rate). ``--progress`` (buildx's spelling) decides how:

* ``tty``: one live line at the bottom of the terminal, redrawn in place twice a second
  with the step's elapsed time; the lines scroll above it. Colour unless ``NO_COLOR`` is set
  (or TERM is dumb).
* ``plain``: lines only; a step that has said nothing for ``HEARTBEAT`` seconds prints its
  status once more, with the elapsed time, so a CI log is never silent for long.
* ``quiet``: no progress at all, only warnings and errors.
* ``auto`` (the default): ``tty`` when stderr is a terminal (and TERM is not dumb), else
  ``plain``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

Progress = Callable[[str], None]

MODES = ("auto", "plain", "tty", "quiet")
HEARTBEAT = 5.0
"""Seconds a step may go without a line in plain mode before its status is said again."""
_TICK = 0.5


def human_bytes(n: float) -> str:
    """``12.3 MB``: decimal units, as registries and download tools show them."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover - the loop returns


def _elapsed(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Reporter:
    """Lines to stderr: progress messages (silenced by ``quiet``), warnings (never silenced,
    prefixed ``envnix: warning:``), a tool's own output passed through as it came, and the
    status of the step running now (see the module docstring for the modes)."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None,
                 mode: str = "auto") -> None:
        self.quiet = quiet
        self._stream = stream
        self.mode = mode
        self._lock = threading.RLock()
        self._status: str | None = None
        self._step_started = 0.0
        self._last_line = time.monotonic()
        self._drawn = False
        self._ticker: threading.Thread | None = None
        self._transfers: dict[str, float] = {}
        self.heartbeat = HEARTBEAT

    @property
    def stream(self) -> TextIO:
        # Looked up on every line, not once: click's test runner swaps sys.stderr per call.
        return self._stream or sys.stderr

    def set_mode(self, mode: str) -> None:
        """``--progress``: auto, plain, tty or quiet."""
        if mode not in MODES:
            raise ValueError(mode)
        self.mode = mode
        if mode == "quiet":
            self.quiet = True

    @property
    def live(self) -> bool:
        """Whether the status is a live line redrawn in place (tty mode, or auto on one)."""
        if self.quiet or self.mode in ("plain", "quiet"):
            return False
        if self.mode == "tty":
            return True
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty()) and os.environ.get("TERM", "") != "dumb"

    @property
    def color(self) -> bool:
        return (self.live and "NO_COLOR" not in os.environ
                and os.environ.get("TERM", "") != "dumb")

    # -- lines -----------------------------------------------------------------------------

    def _line(self, text: str) -> None:
        with self._lock:
            self._clear()
            self.stream.write(text)
            self.stream.flush()
            self._last_line = time.monotonic()
            self._draw()

    def message(self, text: str) -> None:
        if not self.quiet:
            with self._lock:
                if self._status is not None:  # the step's latest news is its status
                    self._status = text
                self._line(text + "\n")

    __call__ = message  # a Reporter is a Progress

    def warning(self, text: str) -> None:
        label = "\x1b[33mwarning\x1b[0m" if self.color else "warning"
        self._line(f"envnix: {label}: {text}\n")

    def verbose(self, line: str) -> None:
        """One line of a tool's output (``--verbose``), newline included, unchanged."""
        self._line(line)

    # -- the step running now --------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        """A long step: ``text`` is its status until :meth:`status` says more; cleared after."""
        with self._lock:
            self._step_started = time.monotonic()
            self._last_line = self._step_started
        self.status(text)
        try:
            yield
        finally:
            self.status(None)

    def status(self, text: str | None) -> None:
        """What the running step does now (None: nothing runs). Never a line of its own in
        plain mode, except as the heartbeat."""
        if self.quiet:
            return
        with self._lock:
            if self._status is None and text is not None:
                self._step_started = time.monotonic()  # a status with no step() around it
            self._status = text
            if text is None:
                self._clear()
                self._transfers.clear()
            else:
                self._draw()
                self._start_ticker()

    def transfer(self, label: str, done: int, total: int | None) -> None:
        """Bytes moved so far for ``label`` (a download, a push), shown with the rate."""
        now = time.monotonic()
        with self._lock:
            started = self._transfers.setdefault(label, now)
        rate = done / (now - started) if now - started >= 0.5 else None
        amount = f"{human_bytes(done)}/{human_bytes(total)}" if total else human_bytes(done)
        self.status(f"{label}: {amount}" + (f" ({human_bytes(rate)}/s)" if rate else ""))

    def _render(self) -> str:
        assert self._status is not None
        text = f"{self._status} [{_elapsed(time.monotonic() - self._step_started)}]"
        width = shutil.get_terminal_size((100, 20)).columns - 1
        text = text if len(text) <= width else text[:max(width - 1, 0)] + "…"
        return f"\x1b[1m{text}\x1b[0m" if self.color else text

    def _draw(self) -> None:
        if self._status is not None and self.live:
            self.stream.write("\r\x1b[K" + self._render())
            self.stream.flush()
            self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def _start_ticker(self) -> None:
        if self._ticker is None or not self._ticker.is_alive():
            self._ticker = threading.Thread(target=self._tick, name="envnix-progress",
                                            daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while True:
            time.sleep(min(_TICK, self.heartbeat or _TICK))
            with self._lock:
                if self._status is None:
                    continue
                if self.live:
                    self._draw()  # the elapsed time moves
                elif time.monotonic() - self._last_line >= self.heartbeat:
                    elapsed = _elapsed(time.monotonic() - self._step_started)
                    self.stream.write(f"{self._status} (still working, {elapsed})\n")
                    self.stream.flush()
                    self._last_line = time.monotonic()


REPORTER = Reporter()
atexit.register(REPORTER.status, None)  # leave the terminal's last line clean


def step(progress: Progress | None, text: str) -> contextlib.AbstractContextManager[None]:
    """:meth:`Reporter.step` when ``progress`` is a Reporter; nothing for a plain callable
    (a test's list), which gets lines only."""
    return progress.step(text) if isinstance(progress, Reporter) else contextlib.nullcontext()


def status(progress: Progress | None, text: str | None) -> None:
    if isinstance(progress, Reporter):
        progress.status(text)


def transfer(progress: Progress | None, label: str, done: int, total: int | None) -> None:
    if isinstance(progress, Reporter):
        progress.transfer(label, done, total)

"""Bounds on evaluating an untrusted build.envd: nesting, steps, CPU time and memory.

A build.envd from a stranger must not crash, hang or exhaust the machine running envnix.
Three layers, each needed because the one before cannot catch everything:

- ``check_source`` reads the text BEFORE the parser sees it: starlark-rust parses and compiles
  recursively, and deep nesting (3000 ``[``, 10000 ``+`` or ``elif``) overflows the native
  stack (SIGSEGV, no Python exception). The error points at the first offending token.
- ``Budget`` is the interpreter's ``check_cancelled`` hook (called about every 1000 bytecode
  instructions): it stops runaway loops and gradual memory growth with a file:line:col.
- ``run_isolated`` runs the whole evaluation in a forked child with RLIMIT_AS and RLIMIT_CPU:
  one builtin call can allocate gigabytes (``list(range(1 << 27))`` asks for 15 GB at once)
  or run for minutes between two checks, and Rust aborts the process when an allocation
  fails. Measured on main: in-process checks alone cannot bound these, so the child does,
  and envnix reports its death as one line.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import math
import os
import pickle
import re
import resource
import select
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from envnix.core.errors import EnvnixError, FrontendError

T = TypeVar("T")

MAX_SOURCE_BYTES = 1 << 20
"""Largest .envd file read (1 MiB). Hand-written build files are a few KiB; the cap bounds
the time the nesting scan and the parser spend and the memory the source text takes."""

MAX_NESTING = 100
"""Deepest nesting accepted, counted per statement as open brackets + operators and keywords
chained without a comma + enclosing blocks + elif branches (an over-estimate of the syntax
tree's depth). On an 8 MiB native stack starlark-rust crashed at 1,517 nested ``def``s,
1,811 ``elif``s, 1,960 blocks, 2,060 ``{``, 2,358 ``[`` and about 3,270 levels of ``+``,
``-``, ``not``, ``.``, calls or indexing (measured one by one with this count): 100 keeps
a factor of 15 in hand, and the deepest file in tests/corpus counts 11."""

MAX_STEPS = 100_000
"""Interpreter checks allowed per evaluation; one comes about every 1000 bytecode
instructions, so about 10^8 instructions (2.3 s of CPU where this was measured). Real
build.envd files need none: they evaluate in milliseconds. A count, unlike time, fails the
same file on every machine."""

MAX_CPU_SECONDS = 10.0
"""CPU seconds the evaluation may use, checked with the steps (long builtin calls such as
sorting a huge list run between checks; the child's RLIMIT_CPU stops those a little later)."""

MAX_MEMORY_BYTES = 1 << 30
"""Address space the evaluation may add (1 GiB), enforced as the child's RLIMIT_AS. Memory
growth past half of it gets a positioned error from the step checks; a single allocation
past it makes the interpreter fail and the child ends. Real evaluations add a few MiB."""

WALL_SECONDS = 120.0
"""Wall-clock time the parent waits for the child before killing it: only a child stuck
without using CPU (a blocked read) gets here; everything else hits the CPU limit first."""


# -- nesting, before parsing ------------------------------------------------------------------
_OPERATOR_CHARS = frozenset("+-*/%&|^~<>!.")  # not "=": assignment nests nothing
_CHAIN_KEYWORDS = frozenset({"not", "and", "or", "in", "if", "else", "for", "lambda", "is"})
_OPEN, _CLOSE = "([{", ")]}"
_WORD = re.compile(r"\w+")
# One token at a time; strings in one match each (C speed for a long literal), unterminated
# ones up to their line's end (the parser reports them).
_TOKEN = re.compile(r"""
    (?P<nl>\n)
  | (?P<space>[ \t\f\r]+)
  | (?P<comment>\#[^\n]*)
  | (?P<cont>\\\n)
  | (?P<string>[rRbB]{0,2}(?:
        \"\"\"[^"\\]*(?:(?:\\[\s\S]|"(?!""))[^"\\]*)*(?:\"\"\")?
      | '''[^'\\]*(?:(?:\\[\s\S]|'(?!''))[^'\\]*)*(?:''')?
      | "[^"\\\n]*(?:\\[\s\S][^"\\\n]*)*"?
      | '[^'\\\n]*(?:\\[\s\S][^'\\\n]*)*'?))
  | (?P<word>\w+)
  | (?P<other>[\s\S])
""", re.VERBOSE)


def check_source(text: str, display: str) -> None:
    """FrontendError at the first token nested deeper than MAX_NESTING (see there)."""
    _NestingScan(text, display).run()


class _NestingScan:
    """One pass over the text: strings and comments skipped, brackets and indentation tracked.

    Per statement, ``chains`` holds one counter per open bracket (plus one for the statement):
    operators, keywords and postfix brackets since the last comma at that level. The depth at
    a token is: enclosing blocks + elif branches before it + open brackets + sum(chains).
    """

    def __init__(self, text: str, display: str) -> None:
        self.text, self.display = text, display
        self.line, self.line_start = 1, 0
        self.indents: list[int] = [0]
        self.elifs: list[int] = [0]  # per indentation level: elif branches so far
        self.blocks = 0  # len(indents) - 1 + sum(elifs), for the current statement
        self.chains: list[int] = [0]
        self.expr = 0  # len(chains) - 1 + sum(chains)
        self.at_line_start = True
        self.continued = False  # after a backslash continuation

    def check(self, pos: int) -> None:
        if self.blocks + self.expr > MAX_NESTING:
            raise FrontendError(
                f"nested too deeply: more than {MAX_NESTING} levels of brackets, operators "
                "and blocks", file=self.display, line=self.line,
                col=pos - self.line_start + 1,
                hint="split the expression or block into smaller named parts")

    def bump(self, pos: int) -> None:
        self.chains[-1] += 1
        self.expr += 1
        self.check(pos)

    def newline(self, pos: int) -> None:
        self.line += 1
        self.line_start = pos + 1

    def run(self) -> None:
        text, n, i = self.text, len(self.text), 0
        operand = False  # the previous token ends an operand: a bracket after it is postfix
        while i < n:
            if self.at_line_start and len(self.chains) == 1 and not self.continued:
                i = self.start_line(i)
                operand = False
                continue
            m = _TOKEN.match(text, i)
            assert m is not None  # the last alternative matches any character
            kind, token, i = m.lastgroup, m[0], m.end()
            if kind == "nl":
                self.newline(i - 1)
                if len(self.chains) == 1 and not self.continued:
                    self.at_line_start = True
                    self.chains, self.expr = [0], 0
                self.continued = False
            elif kind in ("space", "comment"):
                pass
            elif kind == "cont":
                self.continued = True
                self.newline(i - 1)
            elif kind == "string":
                lines = token.count("\n")
                if lines:
                    self.line += lines
                    self.line_start = text.rindex("\n", 0, i) + 1
                operand = True
            elif kind == "word":
                operand = token not in _CHAIN_KEYWORDS
                if not operand:
                    self.bump(m.start())
            else:
                was_operand, operand = operand, False
                self.symbol(token, m.start(), was_operand)
                operand = token in _CLOSE

    def symbol(self, c: str, pos: int, after_operand: bool) -> None:
        if c in _OPEN:
            if after_operand:
                self.bump(pos)  # a call or an index: one more level above its arguments
            self.chains.append(0)
            self.expr += 1
            self.check(pos)
        elif c in _CLOSE:
            if len(self.chains) > 1:
                self.expr -= self.chains.pop() + 1
        elif c in ",;":  # not ':': a lambda's body nests inside it
            self.expr -= self.chains[-1]
            self.chains[-1] = 0
        elif c in _OPERATOR_CHARS:
            self.bump(pos)

    def start_line(self, i: int) -> int:
        """Indentation of a logical line: blocks opened and closed, elif chains counted."""
        text, n = self.text, len(self.text)
        width, j = 0, i
        while j < n and text[j] in " \t\f":
            width = (width // 8 + 1) * 8 if text[j] == "\t" else width + 1
            j += 1
        if j >= n or text[j] in "\r\n#" or text[j : j + 2] == "\\\n":
            return j if j > i else self.skip_blank(j)
        self.at_line_start = False
        while width < self.indents[-1]:
            self.indents.pop()
            self.elifs.pop()
        if width > self.indents[-1]:
            self.indents.append(width)
            self.elifs.append(0)
        word = _WORD.match(text, j)
        if word and word[0] == "elif":
            self.elifs[-1] += 1
        elif not (word and word[0] == "else"):
            self.elifs[-1] = 0
        self.blocks = len(self.indents) - 1 + sum(self.elifs)
        self.check(j)
        return j

    def skip_blank(self, j: int) -> int:
        """At the newline, comment or continuation of a blank line: consume it."""
        text = self.text
        if text[j] == "#":
            while j < len(text) and text[j] != "\n":
                j += 1
            return j
        if text[j] == "\r":
            return j + 1
        if text[j] == "\\":
            j += 1
        self.newline(j)
        return j + 1


# -- steps, CPU and memory, while evaluating --------------------------------------------------
def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Budget:
    """The ``check_cancelled`` hook for one whole evaluation (every file, and the call).

    A truthy return makes Starlark stop with "Evaluation cancelled" at the current position;
    ``exceeded`` then says which limit it was, for the one-line error.
    """

    def __init__(self) -> None:
        self.steps = 0
        self.cpu_start = time.process_time()
        self.rss_start = -1  # read at the first check: most evaluations never get there
        self.exceeded: str | None = None

    def __call__(self) -> bool:
        self.steps += 1
        if self.rss_start < 0:
            self.rss_start = _rss_bytes()
        if self.steps > MAX_STEPS:
            self.exceeded = (f"evaluation stopped after about {MAX_STEPS // 1000} million "
                             "instructions (an endless or very long loop?)")
        elif self.steps % 8 == 0:
            if time.process_time() - self.cpu_start > MAX_CPU_SECONDS:
                self.exceeded = (f"evaluation stopped after {MAX_CPU_SECONDS:g} s of CPU time "
                                 "(an endless or very long loop?)")
            elif _rss_bytes() - self.rss_start > MAX_MEMORY_BYTES // 2:
                self.exceeded = (f"evaluation stopped: it used more than "
                                 f"{MAX_MEMORY_BYTES // 2 >> 20} MiB of memory")
        return self.exceeded is not None


def is_panic(exc: BaseException) -> bool:
    """pyo3 turns a Rust panic into PanicException, a BaseException outside any module."""
    return type(exc).__name__ == "PanicException"


def panic_error(exc: BaseException, display: str) -> FrontendError:
    """One line for a Rust panic inside the interpreter (out of memory, length overflow)."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "internal error"
    if "memory" in reason or "alloc" in reason:
        return FrontendError(f"evaluation ran out of memory (the limit is "
                             f"{MAX_MEMORY_BYTES >> 20} MiB)", file=display)
    if "overflow" in reason or "capacity" in reason:
        return FrontendError(f"a string or list grew too large ({reason})", file=display)
    return FrontendError(f"the Starlark interpreter failed: {reason}", file=display)


# -- the child process ------------------------------------------------------------------------
def run_isolated(work: Callable[[], T], display: str) -> T:
    """``work()`` in a forked child under RLIMIT_AS / RLIMIT_CPU; its result or EnvnixError.

    The child sends back a pickled result or exception; if it dies (allocation abort, CPU
    limit, native crash), the parent turns that into one FrontendError naming ``display``.
    Anything the child writes to stderr (Rust's panic messages) is kept out of the user's
    terminal and only used to name the cause.
    """
    if not hasattr(os, "fork"):
        return work()
    with tempfile.TemporaryFile() as err:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's lines are measured through the parent
            _child(work, read_fd, write_fd, err.fileno(), display)
        os.close(write_fd)
        try:
            data = _read_all(read_fd, pid, display)
            _, status = os.waitpid(pid, 0)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            raise
        finally:
            os.close(read_fd)
        err.seek(0)
        stderr = err.read(4096).decode("utf-8", "replace")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and data:
        kind, value = pickle.loads(data)  # complete: the child wrote it all, then exited 0
        if kind == "ok":
            return value  # type: ignore[no-any-return]
        raise thaw_error(value)
    raise _death(status, stderr, display)


def freeze_error(exc: BaseException) -> tuple[str, str, tuple[Any, ...], dict[str, Any]]:
    """An exception as plain data for the pipe: EnvnixError subclasses are rebuilt without
    calling their ``__init__`` (whatever its signature); anything else is a bug, sent back as
    a RuntimeError carrying the child's traceback."""
    if not isinstance(exc, EnvnixError):
        exc = RuntimeError("evaluating build.envd failed in the child process:\n"
                           + "".join(traceback.format_exception(exc)))
    state = {k: v for k, v in vars(exc).items() if _picklable(v)}
    return type(exc).__module__, type(exc).__qualname__, exc.args, state


def thaw_error(frozen: tuple[str, str, tuple[Any, ...], dict[str, Any]]) -> BaseException:
    module, qualname, args, state = frozen
    cls: Any = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    exc = cls.__new__(cls)
    BaseException.__init__(exc, *args)
    vars(exc).update(state)
    return exc  # type: ignore[no-any-return]


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def _child(work: Callable[[], Any], read_fd: int, write_fd: int, err_fd: int,
           display: str) -> None:
    code = 0
    try:
        os.close(read_fd)
        os.dup2(err_fd, 2)
        faulthandler.disable()  # a crash is reported by the parent, in one line
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent cleans up
        if _address_space():
            _set_soft_limit(resource.RLIMIT_AS, _address_space() + MAX_MEMORY_BYTES,
                            lower=True)
        # More room for the recursive compiler than an 8 MiB default stack.
        _set_soft_limit(resource.RLIMIT_STACK, 64 << 20, lower=False)
        cpu = math.ceil(time.process_time() + MAX_CPU_SECONDS) + 2  # after the step check
        _set_soft_limit(resource.RLIMIT_CPU, cpu, lower=True)
        try:
            result: tuple[str, Any] = ("ok", work())
        except BaseException as exc:
            result = ("error", freeze_error(panic_error(exc, display) if is_panic(exc) else exc))
        data = pickle.dumps(result)
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view):]
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def _set_soft_limit(which: int, value: int, *, lower: bool) -> None:
    """Move the soft limit to ``value`` (capped by the hard one), only down (``lower``) or
    only up."""
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    unlimited = soft == resource.RLIM_INFINITY
    if (unlimited or value < soft) if lower else (not unlimited and value > soft):
        resource.setrlimit(which, (value, hard))


def _address_space() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _read_all(fd: int, pid: int, display: str) -> bytes:
    chunks: list[bytes] = []
    deadline = time.monotonic() + WALL_SECONDS
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise FrontendError(f"evaluation did not finish within {WALL_SECONDS:g} s",
                                file=display)
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _death(status: int, stderr: str, display: str) -> FrontendError:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return FrontendError(f"evaluation stopped after {MAX_CPU_SECONDS:g} s of CPU time "
                                 "(an endless or very long computation?)", file=display)
        if "memory allocation" in stderr or sig in (signal.SIGABRT, signal.SIGKILL):
            return FrontendError("evaluation ran out of memory (the limit is "
                                 f"{MAX_MEMORY_BYTES >> 20} MiB)", file=display)
        return FrontendError(f"the Starlark interpreter crashed ({signal.Signals(sig).name}); "
                             "the file is probably nested too deeply", file=display,
                             hint="split deeply nested expressions into smaller parts")
    first = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    return FrontendError(f"evaluation failed (exit status {os.WEXITSTATUS(status)}: {first})",
                         file=display)

"""The one way envnix runs an external program (nix-build, nix-store, skopeo, podman, uv, gpgv).

Why a runner of our own and not ``subprocess.run``: the program runs in its own session and
process group, so a Ctrl-C or SIGTERM that reaches envnix reaches it only through envnix, and
envnix stops the *whole* group — SIGINT first (Nix then kills its builders and removes its
temporary roots itself), SIGTERM after a grace period, SIGKILL last — before it exits 130/143.
``subprocess.run`` kills only its direct child, and only on KeyboardInterrupt: nix-build and
its builders kept running after envnix was gone. A timeout stops the group the same way and
becomes a one-line error of the caller's kind.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from envnix.core.errors import EnvnixError, Terminated, ToolMissingError, os_reason

# How long the group gets after SIGINT, then after SIGTERM, before SIGKILL.
GRACE_INT = 10.0
GRACE_TERM = 5.0

_EOF = object()


@dataclass(frozen=True)
class Completed:
    """What a program did: exit status, stdout (bytes) and stderr (text, lines kept)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    def last_error_line(self) -> str:
        """The last non-empty stderr line: what most tools say when they fail."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        return lines[-1] if lines else f"{Path(self.argv[0]).name} exited {self.returncode}"


def run(argv: Sequence[str], *, error: type[EnvnixError], timeout: float | None = None,
        on_line: Callable[[str], None] | None = None, merge_stderr: bool = False,
        env: Mapping[str, str] | None = None, input: bytes | None = None) -> Completed:
    """Run ``argv`` to completion in its own process group; never raises on a non-zero exit.

    ``input`` (small: a credential helper's question) is written to stdin, then closed.

    ``on_line`` gets each stderr line (stdout's, with ``merge_stderr``) as it arrives, in this
    thread. ``error`` is the EnvnixError class for a timeout or a program that cannot start.
    KeyboardInterrupt and Terminated stop the group and propagate.
    """
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            start_new_session=True, env=None if env is None else dict(env))
    except FileNotFoundError:
        raise ToolMissingError(f"{argv[0]} not found: envnix cannot run it",
                               hint="install it, or put it on PATH") from None
    except OSError as exc:
        raise error(f"cannot run {argv[0]}: {os_reason(exc)}") from None
    assert proc.stdout is not None
    if input is not None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(input)
        proc.stdin.close()
    lines: queue.Queue[object] = queue.Queue()
    stdout = bytearray()
    stderr: list[str] = []
    readers = []
    if merge_stderr:
        readers.append(threading.Thread(target=_read_lines, args=(proc.stdout, lines, stdout),
                                        daemon=True))
    else:
        assert proc.stderr is not None
        readers.append(threading.Thread(target=_read_lines, args=(proc.stderr, lines, None),
                                        daemon=True))
        readers.append(threading.Thread(target=_read_all, args=(proc.stdout, stdout),
                                        daemon=True))
    for reader in readers:
        reader.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            try:
                item = lines.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    stop_group(proc)
                    raise error(f"{Path(argv[0]).name} did not finish within {timeout:g} s "
                                "and was stopped") from None
                continue
            if item is _EOF:
                break
            assert isinstance(item, str)
            stderr.append(item)
            if on_line is not None:
                on_line(item)
        while proc.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                stop_group(proc)
                raise error(f"{Path(argv[0]).name} did not finish within {timeout:g} s "
                            "and was stopped")
            time.sleep(0.05)
        for reader in readers:
            reader.join()
    except BaseException:
        stop_group(proc)
        raise
    return Completed(tuple(argv), proc.returncode, bytes(stdout), "".join(stderr))


def _read_lines(stream, out: queue.Queue[object], keep: bytearray | None) -> None:  # type: ignore[no-untyped-def]
    try:
        for raw in iter(stream.readline, b""):
            if keep is not None:
                keep.extend(raw)
            out.put(raw.decode("utf-8", "replace"))
    finally:
        out.put(_EOF)


def _read_all(stream, out: bytearray) -> None:  # type: ignore[no-untyped-def]
    while chunk := stream.read(1 << 16):
        out.extend(chunk)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc``'s process group: SIGINT, SIGTERM after GRACE_INT, SIGKILL after
    GRACE_TERM; a second Ctrl-C skips straight to SIGKILL. Descendants that left the group
    (Nix puts each builder in a session of its own) are killed with the group at SIGKILL."""
    pgid = proc.pid  # start_new_session: the child leads its group
    for sig, grace in ((signal.SIGINT, GRACE_INT), (signal.SIGTERM, GRACE_TERM)):
        if proc.poll() is not None and not _group_alive(pgid):
            break
        _killpg(pgid, sig)
        try:
            if _wait_group(proc, pgid, grace):
                break
        except (KeyboardInterrupt, Terminated):
            break
    if proc.poll() is None or _group_alive(pgid):
        victims = _descendants(proc.pid) if proc.poll() is None else []
        _killpg(pgid, signal.SIGKILL)
        for pid in victims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=GRACE_TERM)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_group(proc: subprocess.Popen[bytes], pgid: int, seconds: float) -> bool:
    """Wait until the leader has exited and the group is empty; False after ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        proc.poll()
        if proc.returncode is not None and not _group_alive(pgid):
            return True
        time.sleep(0.05)
    return False


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), deepest last; empty where /proc is absent."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def install_signal_handlers() -> None:
    """SIGTERM raises Terminated in the main thread (as SIGINT raises KeyboardInterrupt), so
    both unwind through the runner, which stops the external programs, and through fileio's
    atomic writers, which remove their temporary files."""
    def _terminate(signum: int, frame: object) -> None:
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)

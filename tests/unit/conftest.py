"""The unit tier's guard: a unit test that opens a network connection or starts a program fails.

Unit tests must pass with the network cut and without Nix, so the calls that reach the network
(connect, name lookup) or start a program (exec, spawn, system, subprocess) are replaced, for
the whole of each unit test's setup, call and teardown (fixtures of any scope included,
except the session's final teardown, which finalizes both tiers' session fixtures), by
ones that raise. The attempt is also recorded, so a test whose code under test swallows the
exception still fails, naming the call.

Allowed: AF_UNIX sockets (they never leave the machine) and a bare os.fork. The frontend
evaluates every build.envd in a forked copy of this interpreter under RLIMIT_AS/RLIMIT_CPU
(envnix/frontend/bounds.py); the copy inherits these patches, so it cannot exec or connect
either. Forbidding fork would push every spec test to integration for no network or Nix use.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest


class UnitTierViolation(Exception):
    """Raised in place of a network or process call; not an OSError, so no retry loop eats it."""


_attempts: list[str] = []

_PROCESS_CALLS = ("forkpty", "posix_spawn", "posix_spawnp", "system",
                  "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe")


def _refuse(what: str) -> UnitTierViolation:
    message = (f"unit test tried {what}: unit tests run without network and without processes;"
               " move this test to tests/integration")
    _attempts.append(message)
    return UnitTierViolation(message)


def _family_of(address: Any) -> str:
    return "AF_UNIX" if isinstance(address, str | bytes) else "network"


def _guarded_connect(original: Callable[..., Any], name: str) -> Callable[..., Any]:
    def connect(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX:
            return original(self, address)
        raise _refuse(f"socket.{name}({address!r})")
    return connect


def _refusing(what: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        shown = ", ".join(repr(a) for a in args[:2])
        raise _refuse(f"{what}({shown})")
    return refuse


def _execute_child(self: subprocess.Popen[Any], args: Any, *rest: Any, **kw: Any) -> None:
    raise _refuse(f"subprocess.Popen({args!r})")


def _install(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(socket.socket, "connect", _guarded_connect(socket.socket.connect, "connect"))
    mp.setattr(socket.socket, "connect_ex",
               _guarded_connect(socket.socket.connect_ex, "connect_ex"))
    mp.setattr(socket, "create_connection", _refusing("socket.create_connection"))
    mp.setattr(socket, "getaddrinfo", _refusing("socket.getaddrinfo"))
    mp.setattr(subprocess.Popen, "_execute_child", _execute_child)
    for name in _PROCESS_CALLS:
        if hasattr(os, name):
            mp.setattr(os, name, _refusing(f"os.{name}"))


@pytest.hookimpl(wrapper=True)
def _guarded(item: pytest.Item) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    _attempts.clear()
    _install(mp)
    try:
        result = yield
    finally:
        mp.undo()
    if _attempts:
        pytest.fail("\n".join(dict.fromkeys(_attempts)), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def _guarded_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """The test's own teardown, guarded. With no next item pytest also finalizes the whole
    session's fixtures here, the integration tier's too (sshd, builder stores), which may
    start programs: that last teardown belongs to no tier and is left unguarded."""
    if nextitem is None:
        return (yield)
    return (yield from _guarded(item))


pytest_runtest_setup = _guarded
pytest_runtest_call = _guarded
pytest_runtest_teardown = _guarded_teardown

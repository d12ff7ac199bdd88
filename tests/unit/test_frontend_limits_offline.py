"""The offline tests of tests/integration/test_frontend_limits.py (no network, no program started).

Bounded evaluation: a hostile build.envd gets one `envnix:` line and exit 3, never a crash,
a hang or a traceback (nesting, steps, CPU, memory, special files as the build file).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envnix.core.errors import FrontendError
from envnix.frontend import bounds, load_spec
from envnix.frontend.bounds import MAX_NESTING, run_isolated

BASE = 'def build():\n    base(os="debian12", language="python3.11")\n'


def write(context: Path, source: str, name: str = "build.envd") -> Path:
    context.mkdir(exist_ok=True)
    (context / name).write_text(source)
    return context


def test_nesting_at_the_limit_evaluates(tmp_path: Path) -> None:
    deepest = "x = " + "[" * MAX_NESTING + "]" * MAX_NESTING + "\n"
    spec = load_spec(write(tmp_path, deepest + BASE), warn=lambda _: None)
    assert spec.os.codename == "bookworm"
    with pytest.raises(FrontendError, match="nested too deeply") as info:
        load_spec(write(tmp_path, "x = " + "(" * (MAX_NESTING + 1) + ")" * (MAX_NESTING + 1)
                        + "\n" + BASE))
    assert (info.value.file, info.value.line, info.value.col) == ("build.envd", 1,
                                                                  4 + MAX_NESTING + 1)


def test_strings_and_comments_do_not_count(tmp_path: Path) -> None:
    source = ("# " + "[" * 500 + "\nNOTE = '''\n" + "(" * 500 + "\n'''\nX = r'\\'' + '" +
              "{" * 500 + "'\n" + BASE)
    assert load_spec(write(tmp_path, source), warn=lambda _: None).os.codename == "bookworm"


def test_cpu_limit_ends_a_busy_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """A builtin can run long between two step checks; RLIMIT_CPU ends the child then."""
    monkeypatch.setattr(bounds, "MAX_CPU_SECONDS", 1.0)

    def busy() -> None:
        while True:
            pass

    with pytest.raises(FrontendError, match=r"^b\.envd: evaluation stopped after 1 s of CPU "
                                            r"time"):
        run_isolated(busy, "b.envd")


def test_a_native_crash_is_an_error_not_a_dead_envnix() -> None:
    """The child's safety net, with a real crash: the parser's recursion, unchecked."""
    import starlark as sl

    def crash() -> None:
        sl.eval(sl.Module(), sl.parse("b.envd", "x = " + "+".join(["1"] * 400_000),
                                      sl.Dialect.extended()), sl.Globals.standard())

    with pytest.raises(FrontendError, match=r"^b\.envd: the Starlark interpreter crashed "
                                            r"\(SIGSEGV\)"):
        run_isolated(crash, "b.envd")


def test_child_keeps_error_details_and_reports_bugs(tmp_path: Path) -> None:
    with pytest.raises(FrontendError) as info:
        load_spec(write(tmp_path, BASE + "    install.apt_pakages(name=['jq'])\n"))
    assert (info.value.file, info.value.line, info.value.col) == ("build.envd", 3, 5)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        run_isolated(lambda: 1 // 0, "b.envd")
    assert run_isolated(lambda: os.getpid(), "b.envd") != os.getpid()

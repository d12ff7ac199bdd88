"""Evaluate build.envd with a real Starlark interpreter and record every API call.

The file is never run as Python: starlark-pyo3 gives no file system, network or host state.
The API functions come from a generated prelude (see api.py) that forwards each call to
``_envnix_call``; this module turns Starlark's errors into one-line ``file:line:col`` messages
with did-you-mean suggestions.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import starlark as sl

from envnix.core.errors import EnvnixError, FrontendError
from envnix.frontend.api import BY_NAME, BY_STARLARK_NAME, FUNCTIONS, GLOBALS, prelude_source
from envnix.frontend.bounds import (
    MAX_SOURCE_BYTES,
    Budget,
    check_source,
    is_panic,
    panic_error,
)
from envnix.frontend.include import IncludedRepo, IncludeNeeded
from envnix.spec import file_kind

PRELUDE_FILE = "<envnix prelude>"
INCLUDE_TABLE_FILE = "<envnix includes>"

_STARLARK_TYPE_WANTED = {
    "str": "string", "list": "list", "dict": "dict", "bool": "bool", "int": "int",
}


CallHandler = Callable[[str, dict[str, Any]], Any]  # returns the call's Starlark value


@dataclass
class _Frame:
    file: str
    line: int
    function: str


class _CallError(Exception):
    """Raised from Python into Starlark; carries the real error out through the interpreter."""


class Evaluator:
    """Runs one manifest: top-level statements first, then the chosen function."""

    def __init__(self, manifest: Path, handler: CallHandler,
                 includes: Mapping[str, IncludedRepo] | None = None) -> None:
        self.manifest = manifest
        self.includes = dict(includes or {})  # include(git=URL)'s repositories, fetched
        self.display_name = manifest.name
        self.source = ""
        self.sources: dict[str, str] = {}  # display name -> text, for error columns
        self.handler = handler
        self._pending: dict[str, EnvnixError] = {}
        self._loaded: dict[Path, sl.FrozenModule] = {}
        self._included: dict[str, tuple[sl.FrozenModule, list[str]]] = {}  # display -> names
        self._include_table: str | None = None
        self._include_files: set[str] = set()  # display names of included repositories' files
        self._loading: list[Path] = []
        self._globals = sl.Globals.extended_by([sl.LibraryExtension.StructType])
        # The prelude alone may call call_stack() (where a located call was made from).
        self._prelude_globals = sl.Globals.extended_by([sl.LibraryExtension.StructType,
                                                        sl.LibraryExtension.CallStack])
        self._user_dialect = sl.Dialect.extended()
        self._user_dialect.enable_load = True
        self._budget = Budget()  # a fresh one for each run()

    # -- public -------------------------------------------------------------------------------
    def loaded_files(self) -> list[Path]:
        """The files load() read, resolved (the manifest not included)."""
        return list(self._loaded)

    def run(self, function: str) -> str:
        """Evaluate the manifest and call ``function``; returns the syntax marker (v0/v1)."""
        self._budget = Budget()
        try:
            return self._run(function)
        except BaseException as exc:
            if is_panic(exc):  # a Rust panic (e.g. "len overflow" on a huge string)
                raise panic_error(exc, self.display_name) from None
            raise

    def _run(self, function: str) -> str:
        self.source = read_source(self.manifest)
        self.sources[self.display_name] = self.source
        self._loading.append(self.manifest.resolve())
        try:
            frozen = self._evaluate(self.display_name, self.source)
        except sl.StarlarkError as exc:
            raise self._translate(exc) from None
        try:
            frozen.call_with(self._options(), function)
        except sl.StarlarkError as exc:
            text = str(exc)
            if "Module has no symbol" in text and "Traceback" not in text:
                defined = re.findall(r"^def\s+(\w+)", self.source, flags=re.M)
                raise FrontendError(
                    f"{self.display_name} has no function {function!r}"
                    + _did_you_mean(function, defined),
                    file=None,
                ) from None
            raise self._translate(exc) from None
        return _syntax_marker(self.source)

    def _options(self) -> sl.EvalOptions:
        return sl.EvalOptions(check_cancelled=self._budget)

    def _evaluate(self, display: str, text: str, *, included: bool = False) -> sl.FrozenModule:
        """One .envd file in a fresh module that has the API prelude; load() resolves here.

        The text is checked for nesting before the parser sees it (bounds.check_source);
        every evaluation runs under the same step/CPU/memory budget. ``included``: a file of
        an include()d repository, which gets no include table and no load().
        """
        check_source(text, display)
        module = self._module(display, text, included=included)
        return module.freeze()

    def _module(self, display: str, text: str, *, included: bool = False) -> sl.Module:
        module = sl.Module()
        module.add_callable("_envnix_call", self._record)
        # include()'s repositories as structs, by URL: the prelude's include returns one.
        sl.eval_with(self._options(), module,
                     sl.parse(INCLUDE_TABLE_FILE, "_envnix_included = {}\n" if included
                              else self._table_source(), self._table_dialect()),
                     self._globals, sl.FileLoader(self._load_included))
        sl.eval_with(self._options(), module,
                     _prelude_ast(),
                     self._prelude_globals)
        sl.eval_with(self._options(), module, sl.parse(display, text, self._user_dialect),
                     self._globals, sl.FileLoader(self._refuse_load if included else self._load))
        return module

    # -- include(git=URL) --------------------------------------------------------------------
    @staticmethod
    def _table_dialect() -> sl.Dialect:
        dialect = sl.Dialect.extended()
        dialect.enable_load = True
        return dialect

    def _table_source(self) -> str:
        """Starlark binding ``_envnix_included``: each fetched repository's exported names
        (envd: every global of every .envd file, but ``_``-prefixed ones) as one struct.
        Made once, when the manifest's module is, so every repository file is evaluated
        once; an error in one is raised here, naming that file."""
        if self._include_table is None:
            loads, entries = [], []
            for i, (url, repo) in enumerate(self.includes.items()):
                fields, taken = [], {}
                for path, text in repo.files:
                    display = include_display(url, path)
                    names = self._included_file(display, text)
                    for name in names:
                        if name in taken:
                            raise FrontendError(
                                f"include(git={url!r}): found duplicated object name: {name} "
                                f"in {path} (also in {taken[name]})")
                        taken[name] = path
                    if names:
                        symbols = ", ".join(f"_envnix_i{i}_{n}={n!r}" for n in names)
                        loads.append(f"load({display!r}, {symbols})")
                    fields += [f"{n}=_envnix_i{i}_{n}" for n in names]
                entries.append(f"{url!r}: struct({', '.join(fields)})")
            self._include_table = "".join(line + "\n" for line in loads) + (
                "_envnix_included = {" + ", ".join(entries) + "}\n")
        return self._include_table

    def _load_included(self, display: str) -> sl.FrozenModule:
        return self._included[display][0]

    def _included_file(self, display: str, text: str) -> list[str]:
        """Evaluate one file of an included repository (as build.envd: same prelude, same
        budget); the names it exports."""
        self.sources[display] = text
        self._include_files.add(display)
        try:
            check_source(text, display)
            module = self._module(display, text, included=True)
            frozen, names = _module_names(module, text, self._options())
        except sl.StarlarkError as exc:
            raise self._translate(exc) from None
        self._included[display] = (frozen, names)
        return names

    def _refuse_load(self, name: str) -> sl.FrozenModule:
        self._fail(f"load({name!r}) inside an included repository is not supported",
                   hint="envnix reads an included repository's .envd files as one module each")

    def _load(self, name: str) -> sl.FrozenModule:
        """load("lib.envd", ...): relative to the manifest's directory (envd resolves it against
        the process's working directory, which makes a file mean different things depending
        on where envd runs), never outside it, cycles reported."""
        if "\0" in name:
            self._fail(f"load({name!r}): the name contains a NUL character")
        root = self.manifest.parent.resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root):
            self._fail(f"load({name!r}): the file is outside {root}")
        if path in self._loading:
            self._fail(f"Detected cycle import during parsing {name}")
        if path in self._loaded:
            return self._loaded[path]
        try:
            text = read_source(path, f"load({name!r}): ")
        except FrontendError as exc:
            self._fail(exc.message, exc.hint)
        display = path.relative_to(root).as_posix()
        self.sources[display] = text
        self._loading.append(path)
        try:
            self._loaded[path] = self._evaluate(display, text)
        except FrontendError as exc:  # the nesting check, pointing into the loaded file
            self._fail_with(exc)
        except sl.StarlarkError as exc:
            self._fail_with(self._translate(exc))
        finally:
            self._loading.pop()
        return self._loaded[path]

    # -- Python side of the prelude ----------------------------------------------------------
    def _record(self, qualname: str, values: list[Any], types: list[str],
                stack: str | None = None) -> Any:
        fn = BY_NAME[qualname]
        args: dict[str, Any] = {}
        if stack is not None:  # the innermost frame of a build file: the call's place
            frames = [m for m in re.finditer(r"^\s*\* (.+?):(\d+), in ", stack, flags=re.M)
                      if m[1] != PRELUDE_FILE]
            args["where"] = f"{frames[-1][1]}:{frames[-1][2]}" if frames else ""
        for param, value, type_name in zip(fn.params, values, types, strict=True):
            if value is None:
                continue
            want = _STARLARK_TYPE_WANTED.get(param.kind)
            if want and type_name != want:
                self._fail(f"{qualname}: for parameter {param.name}: got {type_name}, want {want}")
            if param.kind == "list":
                for item in value:
                    if not isinstance(item, str):
                        self._fail(
                            f"{qualname}: for parameter {param.name}: expected a list of strings, "
                            f"got {_starlark_type(item)} {item!r}"
                        )
            if param.kind == "dict":
                for key, item in value.items():
                    if not isinstance(key, str) or not isinstance(item, str):
                        self._fail(
                            f"{qualname}: for parameter {param.name}: expected string keys and "
                            f"values, got {key!r}: {item!r}"
                        )
            bad = next((text for text in _strings(value) if "\0" in text), None)
            if bad is not None:
                # No path, name, command or file the image could hold contains a NUL.
                shown = repr(bad) if len(bad) <= 60 else repr(bad[:60]) + "..."
                self._fail(f"{qualname}: parameter {param.name}: {shown} contains a NUL "
                           "character")
            args[param.name] = value
        if qualname == "include" and args.get("where", "").rpartition(":")[0] in (
                self._include_files):
            self._fail("include() inside an included repository is not supported",
                       hint="include that repository from build.envd itself")
        if not fn.supported:
            self._fail(
                f"{qualname}() is part of envd's API but envnix cannot build it yet",
                hint="remove the call, or follow the envnix issue tracker for support",
            )
        # The handler validates meaning (e.g. an unknown os); raising here, inside the call,
        # is what lets the error point at the call site.
        try:
            return self.handler(qualname, args)  # a value only for data.envd
        except IncludeNeeded as exc:  # kept whole: the caller fetches and evaluates again
            self._fail_with(exc)
        except EnvnixError as exc:
            self._fail(exc.message, exc.hint)

    def _fail(self, message: str, hint: str | None = None) -> NoReturn:
        self._fail_with(FrontendError(message, hint=hint))

    def _fail_with(self, error: FrontendError) -> NoReturn:
        """Raise ``error`` through the interpreter; one that names its file keeps its place."""
        key = f"envnix-error-{len(self._pending)}"
        self._pending[key] = error
        raise _CallError(key)

    # -- error translation -------------------------------------------------------------------
    def _translate(self, exc: sl.StarlarkError) -> FrontendError:
        text = str(exc)
        frames = [
            _Frame(m[1], int(m[2]), m[3])
            for m in re.finditer(r"^\s*\* (.+?):(\d+), in (\S+)", text, flags=re.M)
        ]
        pointer = re.search(r"^\s*--> (.+?):(\d+):(\d+)", text, flags=re.M)
        message_match = re.search(r"^error: (.*)$", text, flags=re.M)
        message = message_match[1] if message_match else text.strip().splitlines()[-1]

        file, line, col = self.display_name, None, None
        if pointer and pointer[1] != PRELUDE_FILE:
            file, line, col = pointer[1], int(pointer[2]), int(pointer[3])
        else:
            user_frames = [f for f in frames if f.file != PRELUDE_FILE]
            if user_frames:
                file, line = user_frames[-1].file, user_frames[-1].line
                col = self._column_of_call(file, line)

        if message == "Evaluation cancelled" and self._budget.exceeded:
            message = self._budget.exceeded
        pending = re.search(r"envnix-error-\d+", message)
        if pending and pending[0] in self._pending:
            err = self._pending[pending[0]]
            if err.file:
                return err
            if err.message.startswith("include(") and line is not None and not (
                    pointer and pointer[1] != PRELUDE_FILE):  # the call's own column
                found = self._source_at(file, line, 1).find("include(")
                col = found + 1 if found >= 0 else col
            if isinstance(err, IncludeNeeded):
                return IncludeNeeded(err.url, file=file, line=line, col=col)
            return FrontendError(err.message, file=file, line=line, col=col, hint=err.hint)
        text = self._rewrite(message, file, line, col)
        return FrontendError(text, file=file, line=line, col=col, hint=_ADJACENT_STRINGS_HINT
                             if text.startswith("Parse error: unexpected string literal")
                             else None)

    def _column_of_call(self, file: str, line: int) -> int | None:
        lines = self.sources.get(file, "").splitlines()
        if not 0 < line <= len(lines):
            return None
        text = lines[line - 1]
        return len(text) - len(text.lstrip()) + 1

    def _source_at(self, file: str, line: int | None, col: int | None) -> str:
        lines = self.sources.get(file, "").splitlines()
        if line is None or not 0 < line <= len(lines):
            return ""
        return lines[line - 1][(col or 1) - 1 :]

    def _rewrite(self, message: str, file: str, line: int | None, col: int | None) -> str:
        """Say Starlark's complaints in envd's words, naming the API function, not the wrapper."""
        # Python's own exceptions met while handing values over: say what, not which class.
        message = re.sub(r"^(?:StarlarkError|ValueError|TypeError|OverflowError): ", "", message)
        m = re.match(r"Exceeds the limit \((\d+) digits\) for integer string conversion", message)
        if m:
            return f"integer too large: envnix takes integers of at most {m[1]} digits"
        m = re.match(r"Found `(.+?)` extra named parameter\(s\) for call to `?.*?(_envnix_\w+)`?$",
                     message)
        if m and m[2] in BY_STARLARK_NAME:
            fn = BY_STARLARK_NAME[m[2]]
            names = [p.name for p in fn.params]
            bad = m[1].split("`, `")[0]
            return f"{fn.qualname}() got an unexpected keyword argument {bad!r}" + _did_you_mean(
                bad, names
            )
        m = re.match(r"Missing parameter `(.+?)` for call to `?.*?(_envnix_\w+)`?$", message)
        if m and m[2] in BY_STARLARK_NAME:
            return f"{BY_STARLARK_NAME[m[2]].qualname}() missing required argument {m[1]!r}"
        m = re.match(r"Object of type `struct` has no attribute `(\w+)`", message)
        if m:
            called = re.match(r"(\w+)\.(\w+)", self._source_at(file, line, col))
            module = called[1] if called else "module"
            members = [f.attr for f in FUNCTIONS if f.module == module]
            suggestion = _did_you_mean(m[1], members)
            if suggestion:
                suggestion = suggestion.replace("'", f"'{module}.", 1)
            return f"{module} has no function {m[1]!r}" + suggestion
        m = re.match(r"Variable `(\w+)` not found", message)
        if m:
            text = self.sources.get(file, self.source)
            defined = re.findall(r"^(?:def\s+)?(\w+)\s*[(=]", text, flags=re.M)
            return f"unknown name {m[1]!r}" + _did_you_mean(m[1], [*GLOBALS, *defined])
        message = re.sub(r"`?<envnix prelude>\._envnix_(\w+)`?",
                         lambda mm: mm[1].replace("__", "."), message)
        return message


_ADJACENT_STRINGS_HINT = ("Starlark, unlike Python, does not join adjacent strings: put a comma "
                         "between two list items, or + between two parts of one string")

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def one_line(error: EnvnixError) -> EnvnixError:
    """``error`` with control characters (a newline in a build file's string) escaped, so
    the CLI prints one line however the message quoted the user's value."""
    def escape(text: str) -> str:
        return _CONTROL.sub(lambda m: repr(m[0])[1:-1], text)

    if _CONTROL.search(error.message) or (error.hint and _CONTROL.search(error.hint)):
        error.message = escape(error.message)
        error.args = (error.message,)
        error.hint = escape(error.hint) if error.hint else error.hint
    return error


def include_display(url: str, path: str) -> str:
    """How errors name a file of an included repository: its URL, then its path."""
    return f"{url.rstrip('/')}/{path}"


_IDENTIFIER = re.compile(r"\b[A-Za-z][A-Za-z0-9_]*\b")


def _module_names(module: sl.Module, text: str,
                  options: sl.EvalOptions) -> tuple[sl.FrozenModule, list[str]]:
    """The module frozen, and the globals it defines but ``_``-prefixed ones and the API.

    starlark-pyo3 cannot list a module's names, so every identifier of the text is asked
    for: a value, or an error converting one (a function), means bound; None means an
    unbound name or a global set to None, which a load() of it from the frozen module tells
    apart.
    """
    names, maybe = [], []
    for name in sorted(set(_IDENTIFIER.findall(text)) - set(GLOBALS) - _KEYWORDS):
        try:
            value = module[name]
        except sl.StarlarkError:
            names.append(name)  # a function, a struct of them, ...
            continue
        (names if value is not None else maybe).append(name)
    frozen = module.freeze()
    dialect = sl.Dialect.extended()
    dialect.enable_load = True
    loader = sl.FileLoader(lambda _: frozen)
    for name in maybe:
        try:
            sl.eval_with(options, sl.Module(),
                         sl.parse("<probe>", f"load('m', {name!r})\n", dialect),
                         sl.Globals.standard(), loader)
        except sl.StarlarkError:
            continue
        names.append(name)
    return frozen, sorted(names)


_KEYWORDS = frozenset({
    "and", "as", "assert", "break", "class", "continue", "def", "del", "elif", "else",
    "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda",
    "load", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with",
    "yield", "True", "False", "None",
})


def _strings(value: Any) -> list[str]:
    """Every string inside an argument (lists and dicts as Starlark hands them over); a loop,
    not recursion: a build file can nest lists as deep as the interpreter converts them."""
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return found


@functools.cache
def _prelude_ast() -> sl.AstModule:
    """The prelude parsed once per process (evaluating it does not consume the AST): parsing
    it was a fifth of the time of evaluating a small build.envd."""
    dialect = sl.Dialect.extended()
    dialect.enable_positional_only_arguments = True
    return sl.parse(PRELUDE_FILE, prelude_source(), dialect)


def _did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _starlark_type(value: Any) -> str:
    return {int: "int", bool: "bool", float: "float", dict: "dict", list: "list"}.get(
        type(value), type(value).__name__
    )


def read_source(path: Path, prefix: str = "") -> str:
    """The text of a .envd file: a regular file (a FIFO or a device would block or never
    end), at most MAX_SOURCE_BYTES, UTF-8. Errors start with ``prefix``, then the path."""
    where = f"{prefix}{path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FrontendError(f"{where}: file does not exist",
                            hint=None if prefix else "run envnix in the directory with "
                                 "build.envd, or pass --path/--from") from None
    except OSError as exc:
        raise FrontendError(f"{where}: cannot open it ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FrontendError(f"{where}: is {file_kind(mode)}, not a file",
                                hint="point it at a regular .envd file")
        data = fh.read(MAX_SOURCE_BYTES + 1)
    if len(data) > MAX_SOURCE_BYTES:
        raise FrontendError(f"{where}: larger than {MAX_SOURCE_BYTES >> 20} MiB; a build file "
                            "this big is not hand-written")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrontendError(f"{where}: not UTF-8 text ({exc.reason})") from None


def _syntax_marker(source: str) -> str:
    first = source.splitlines()[0] if source else ""
    return "v1" if "# syntax=v1" in first else "v0"


def parse_from(value: str, default_file: str = "build.envd") -> tuple[str, str]:
    """envd's ``--from file:func`` rules: empty parts fall back to build.envd / build."""
    if value.count(":") > 1:
        raise FrontendError("invalid from format, expected `file:func`")
    file, _, func = value.partition(":")
    return (file or default_file, func or "build")

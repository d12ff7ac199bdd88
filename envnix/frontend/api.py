"""The envd build.envd API surface as envnix knows it: names, parameters, and support status.

One table drives three things: the Starlark prelude (so the interpreter itself checks arity and
keyword names and reports the call site), did-you-mean suggestions, and the list of functions
that are accepted but not built yet (so a file that uses them fails loudly, never silently).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

REQUIRED = object()


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "str", "list", "dict", "bool", "int", "any"
    default: object = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Function:
    """One envd API function. ``skip`` (a reason) marks calls accepted with a warning line:
    they need something envnix cannot provide reproducibly (a toolchain downloaded at build
    time, an editor's marketplace) or only affect ``envd up``, not the image."""

    qualname: str
    params: tuple[Param, ...]
    supported: bool = True
    positional_only: bool = False
    skip: str | None = None
    located: bool = False  # the handler gets ``where``: the call's file:line (for the lock)

    @property
    def module(self) -> str | None:
        return self.qualname.split(".")[0] if "." in self.qualname else None

    @property
    def attr(self) -> str:
        return self.qualname.split(".")[-1]

    @property
    def starlark_name(self) -> str:
        return "_envnix_" + self.qualname.replace(".", "__")


def _f(
    qualname: str, *params: Param, supported: bool = True, positional_only: bool = False,
    skip: str | None = None, located: bool = False,
) -> Function:
    return Function(qualname, params, supported, positional_only, skip, located)


def _p(name: str, kind: str = "str", default: object = None) -> Param:
    return Param(name, kind, default)


_RUNTIME_ONLY = "it only affects `envd up` (the running container), not the image"

FUNCTIONS: tuple[Function, ...] = (
    # global functions
    _f("base", _p("os"), _p("language"), _p("image"), _p("dev", "bool")),
    _f("shell", _p("name", "str", REQUIRED), positional_only=True),
    _f("run", _p("commands", "list", REQUIRED), _p("mount_host", "bool"), located=True),
    _f("git_config", _p("name"), _p("email"), _p("editor")),
    _f("include", _p("git", "str", REQUIRED), located=True),
    # install.*
    _f("install.apt_packages", _p("name", "list")),
    _f("install.system_packages", _p("name", "list")),
    _f("install.python_packages", _p("name", "list"), _p("requirements"),
       _p("local_wheels", "list")),
    _f("install.conda_packages", _p("name", "list"), _p("channel", "list"), _p("env_file")),
    _f("install.cuda", _p("version", "str", REQUIRED), _p("cudnn"), located=True),
    _f("install.python", _p("version")),
    _f("install.conda", _p("use_mamba", "bool")),
    _f("install.r_packages", _p("name", "list")),
    _f("install.julia_packages", _p("name", "list"), skip="Julia packages come from a "
       "package server at build time, unpinned; Julia itself is installed: io.copy a depot "
       "from the build context and point JULIA_DEPOT_PATH at it with runtime.environ"),
    _f("install.vscode_extensions", _p("name", "list")),
    _f("install.uv", _p("python_version")),
    _f("install.pixi", _p("use_pixi_mirror", "bool"), _p("pypi_index")),
    _f("install.r_lang"),
    _f("install.julia"),
    _f("install.rust", _p("version")),
    _f("install.go", _p("version")),
    _f("install.nodejs", _p("version")),
    _f("install.codex", _p("version")),
    # config.*
    _f("config.pip_index", _p("url"), _p("extra_url"), _p("trust", "bool"), _p("mode")),
    _f("config.conda_channel", _p("channel"), _p("use_mamba", "bool")),
    _f("config.apt_source", _p("source"), _p("mode")),
    _f("config.jupyter", _p("token"), _p("port", "int"), _p("password")),
    _f("config.gpu", _p("count", "int"), skip=_RUNTIME_ONLY),
    _f("config.shm_size", _p("size", "int"), skip=_RUNTIME_ONLY),
    _f("config.cran_mirror", _p("url"), skip="R packages come from the release's r-cran-* "
       "packages, pinned, not from CRAN"),
    _f("config.julia_pkg_server", _p("url"), skip="no Julia packages are installed at build "
       "time"),
    _f("config.rstudio_server", skip="RStudio Server is downloaded at "
       "build time, unpinned"),
    _f("config.entrypoint", _p("args", "list")),
    _f("config.repo", _p("url"), _p("description")),
    _f("config.owner", _p("uid", "int", REQUIRED), _p("gid", "int", REQUIRED)),
    # io.*
    _f("io.copy", _p("host_path"), _p("envd_path"), _p("src"), _p("dest"), _p("source"),
       _p("target"), _p("image")),
    _f("io.http", _p("url", "str", REQUIRED), _p("checksum"), _p("filename"), located=True),
    _f("io.mount", _p("src"), _p("dest")),
    # runtime.*
    _f("runtime.environ", _p("env", "dict"), _p("extra_path", "list")),
    _f("runtime.command", _p("commands", "dict")),
    _f("runtime.expose", _p("envd_port", "int", REQUIRED), _p("host_port", "int"),
       _p("service"), _p("listen_addr")),
    _f("runtime.daemon", _p("commands", "any", REQUIRED)),  # a list of argv lists
    _f("runtime.init", _p("commands", "list", REQUIRED)),
    _f("runtime.mount", _p("host_path"), _p("envd_path")),
    # data.*
    _f("data.envd", _p("name", "str", REQUIRED)),
)

# Module members that are values, not functions: envd's data.path (host dataset directories,
# for runtime.mount(host_path=...)).
MODULE_VALUES: dict[str, dict[str, dict[str, str]]] = {
    "data": {"path": {"huggingface": "~/.cache/huggingface", "dgl": "~/.dgl"}},
}

BY_NAME: dict[str, Function] = {f.qualname: f for f in FUNCTIONS}
BY_STARLARK_NAME: dict[str, Function] = {f.starlark_name: f for f in FUNCTIONS}
MODULES: tuple[str, ...] = tuple(sorted({f.module for f in FUNCTIONS if f.module}))
GLOBALS: tuple[str, ...] = (*MODULES, *sorted(f.qualname for f in FUNCTIONS if not f.module))


@functools.cache  # the same text for every evaluation
def prelude_source() -> str:
    """Starlark that defines every API function with its real signature.

    Each wrapper hands its arguments, and their Starlark type names, to the Python side
    (``_envnix_call``), so tuples-for-lists are caught exactly as envd catches them.
    """
    lines: list[str] = []
    for fn in FUNCTIONS:
        params = []
        for p in fn.params:
            params.append(p.name if p.required else f"{p.name} = None")
        if fn.positional_only and params:
            params.append("/")
        names = [p.name for p in fn.params]
        lines.append(f"def {fn.starlark_name}({', '.join(params)}):")
        values = "[" + ", ".join(names) + "]"
        types = "[" + ", ".join(f"type({n})" for n in names) + "]"
        stack = ", call_stack()" if fn.located else ""
        call = f"_envnix_call({fn.qualname!r}, {values}, {types}{stack})"
        if fn.qualname == "include":  # the repository's module, which the evaluator made
            lines.append(f"    {call}")
            lines.append("    return _envnix_included[git]")
        else:
            lines.append(f"    return {call}")
        lines.append("")
    for module in MODULES:
        members = [f for f in FUNCTIONS if f.module == module]
        fields = ", ".join([f"{f.attr} = {f.starlark_name}" for f in members] + [
            f"{name} = struct(" + ", ".join(f"{k} = {v!r}" for k, v in values.items()) + ")"
            for name, values in MODULE_VALUES.get(module, {}).items()])
        lines.append(f"{module} = struct({fields})")
    for fn in FUNCTIONS:
        if not fn.module:
            lines.append(f"{fn.qualname} = {fn.starlark_name}")
    return "\n".join(lines) + "\n"

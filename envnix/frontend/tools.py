"""envd's tool installers (install.uv, install.nodejs, install.codex, install.julia,
install.pixi, install.go, install.rust, install.r_lang) as ToolSpecs: what each asks for and
where envd puts it.

envd downloads these at build time from release hosts; envnix takes them from registries it
can pin instead: uv and Node.js from PyPI wheels (their files go where envd puts the tool,
not into a Python), Codex from the npm registry (its native build), Julia from its release
archive (the one envd downloads, pinned at lock time), pixi from its conda package, Go, Rust
and R from the distribution's archive (apt). The lock stage pins each artifact; this module
only records the request.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from envnix.core.errors import SpecError
from envnix.core.nixexpr import url_problem
from envnix.core.progress import Progress
from envnix.spec import R_CRAN, OsRelease, PythonSpec, ToolSpec

UV_VERSION = "0.9.22"
"""The uv envd installs (its uv.go): the same release, as a wheel."""
VSCODE_PREFIX = "vscode-"
"""A VS Code extension's tool name: ``vscode-<publisher>.<name>``."""
_EXTENSION = re.compile(r"(?P<id>[A-Za-z0-9][A-Za-z0-9-]*\.[A-Za-z0-9][A-Za-z0-9_-]*?)"
                        r"(?:-(?P<version>\d+\.\d+\.\d+[A-Za-z0-9.+-]*))?")
PIXI_VERSION = "0.62.2"
"""The pixi envd installs (its pixi.go): the same release, as its conda package."""
JULIA_VERSION = "1.10.10"
"""The Julia envd installs (its julia.sh): the same release archive, pinned at lock time."""

# (function) -> the tool's name in the spec and the lock
TOOL_NAMES = {"install.uv": "uv", "install.nodejs": "nodejs", "install.codex": "codex",
              "install.julia": "julia", "install.pixi": "pixi",
              "install.go": "go", "install.rust": "rust", "install.r_lang": "r"}

_VERSION = {
    "install.nodejs": re.compile(r"v?(?P<v>\d+(?:\.\d+){0,2})"),
    "install.go": re.compile(r"(?:go|v)?(?P<v>\d+\.\d+(?:\.\d+)?)"),
    "install.rust": re.compile(r"v?(?P<v>\d+\.\d+(?:\.\d+)?)"),
    # envd takes a release tag of codex's repository (rust-v0.98.0); npm has it as 0.98.0
    "install.codex": re.compile(r"(?:rust-)?v?(?P<v>\d+\.\d+\.\d+(?:-(?:alpha|beta)\.\d+)?)"),
}
_EXAMPLE = {"install.nodejs": "22 or 22.20.0", "install.codex": "0.98.0",
            "install.go": "1.19 or 1.19.8", "install.rust": "1.63"}


def check_call(qualname: str, args: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments, checked where it is made: a version envnix cannot read is an
    error on that line. Returns them with ``version`` normalised (no leading v/go)."""
    version = args.get("version")
    pattern = _VERSION.get(qualname)
    if pattern is None or version is None:
        return dict(args)
    match = pattern.fullmatch(version.strip())
    if not match:
        raise SpecError(f"{qualname}(version={version!r}) is not a version envnix can pin",
                        hint=f'write e.g. {qualname}(version="{_EXAMPLE[qualname]}"), or '
                             "leave version out")
    return {**args, "version": match["v"]}


class ToolCalls:
    """SpecBuilder's part for the tool installers: each call is checked where it is made and
    recorded (the last call of a function wins), and becomes a ToolSpec once the image's
    Python is known."""

    v1_signals: list[str]
    os: OsRelease | None
    base_image: str | None
    _warn: Progress  # SpecBuilder's: a warning line, kept in the spec
    apt: list[str]  # SpecBuilder's: install.apt_packages' names
    files: dict[str, str]  # SpecBuilder's: image path -> text the image gets

    @functools.cached_property
    def tool_calls(self) -> dict[str, dict[str, Any]]:
        return {}

    def _tool(self, qualname: str, **args: Any) -> None:
        self.v1_signals.append(f"{qualname}()")  # envd v1 functions
        self.tool_calls[qualname] = check_call(qualname, args)

    def _install_uv(self, python_version: str | None = None) -> None:
        self._tool("install.uv", python_version=python_version)

    def _install_nodejs(self, version: str | None = None) -> None:
        self._tool("install.nodejs", version=version)

    def _install_codex(self, version: str | None = None) -> None:
        self._tool("install.codex", version=version)

    def _install_pixi(self, use_pixi_mirror: bool | None = None,
                      pypi_index: str | None = None) -> None:
        """pixi, and envd's /etc/pixi/config.toml for ``pypi_index``; its other mirror
        (``use_pixi_mirror``) is a conda channel mirror, which the file does not name."""
        self._tool("install.pixi")
        if pypi_index:
            if problem := url_problem(pypi_index):
                raise SpecError(f"install.pixi(pypi_index={pypi_index!r}): {problem}")
            self.files["/etc/pixi/config.toml"] = (
                f"[pypi-config]\nindex-url = {json.dumps(pypi_index)}\n")
        if use_pixi_mirror:
            self._warn("install.pixi(use_pixi_mirror=True): not applied; pixi uses its own "
                       "default channels' hosts (set a mirror in /etc/pixi/config.toml with "
                       "io.copy)")

    @functools.cached_property
    def vscode_extensions(self) -> dict[str, str | None]:
        return {}  # publisher.name -> version (None: the newest), in call order

    def _install_vscode_extensions(self, name: list[str] | None = None) -> None:
        """envd's ``publisher.name[-version]``: each one pinned at lock time from Open VSX,
        where envd downloads it on the host at every build."""
        for entry in name or []:
            match = _EXTENSION.fullmatch(entry.strip())
            if not match:
                raise SpecError(f"install.vscode_extensions: {entry!r}: invalid publisher",
                                hint='name each as publisher.name or publisher.name-1.2.3, '
                                     'e.g. "ms-python.python"')
            self.vscode_extensions[match["id"]] = match["version"]

    def _install_julia(self) -> None:
        self._tool("install.julia")

    def _install_go(self, version: str | None = None) -> None:
        self._tool("install.go", version=version)

    def _install_rust(self, version: str | None = None) -> None:
        self._tool("install.rust", version=version)

    def _install_r_lang(self) -> None:
        self._tool("install.r_lang")

    def _install_r_packages(self, name: list[str] | None = None) -> None:
        """CRAN packages as the distribution packages them (``r-cran-<name>``), pinned like any
        .deb: envd installs them from CRAN at build time, which nothing pins. A package the
        release does not carry fails the lock naming the r-cran- package."""
        if not name:
            raise SpecError("Can not install empty R package")
        packages = [f"{R_CRAN}{n.strip().lower()}" for n in name]
        self._warn(f"install.r_packages({name!r}): from the release's {', '.join(packages)} "
                   "(CRAN's packages as the distribution builds them), pinned like any .deb")
        if "install.r_lang" not in self.tool_calls:  # R itself, as envd's R images have it
            self._install_r_lang()
        self.apt.extend(packages)

    @property
    def uv_python(self) -> str | None:
        """The Python install.uv asks for (envd: 3.11), as major.minor; None without it."""
        if "install.uv" not in self.tool_calls:
            return None
        version = self.tool_calls["install.uv"].get("python_version") or "3.11"
        if version.startswith("2"):
            raise SpecError("envd doesn't support this Python version")
        return ".".join(version.split(".")[:2])

    def tool_specs(self, python: PythonSpec | None, dev: bool) -> list[ToolSpec]:
        """The ToolSpecs of the calls made, in the order first called, then the VS Code
        extensions (dev images only, as envd). A base(image=...) has no archive envnix
        resolves from: the apt tools are refused there."""
        assert self.os is not None
        tools = [ToolSpec(f"{VSCODE_PREFIX}{ext}", version, "openvsx")
                 for ext, version in self.vscode_extensions.items()] if dev else []
        if self.vscode_extensions and not dev:
            self._warn("install.vscode_extensions skipped: envd installs them in dev images "
                       "only (base(dev=True))")
        for qualname, args in self.tool_calls.items():
            version = args.get("version")
            name = TOOL_NAMES[qualname]
            if qualname == "install.uv":
                tools.append(_uv(args.get("python_version"), python, self._warn))
            elif qualname == "install.nodejs":
                tools.append(ToolSpec(name, version, "pypi", path=["/opt/nodejs/bin"]))
            elif qualname == "install.codex":
                tools.append(ToolSpec(name, version, "npm"))
            elif qualname == "install.julia":
                tools.append(ToolSpec(name, JULIA_VERSION, "release"))
            elif qualname == "install.pixi":
                tools.append(ToolSpec(name, PIXI_VERSION, "conda"))
            elif self.base_image:
                raise SpecError(f"{qualname}() on base(image={self.base_image!r}) is not "
                                "supported: envnix takes it from the distribution's archive, "
                                "and envnix resolves none for that base",
                                hint='use a release base such as base(image="debian:12"), '
                                     "or a base image that has the tool")
            else:
                tools.append(_apt_tool(qualname, version, self.os.codename, self._warn))
        return tools


def _uv(python_version: str | None, python: PythonSpec | None, warn: Progress) -> ToolSpec:
    """uv and uvx in /usr/bin as envd puts them, using the image's own pinned Python: envd's
    `uv python install` downloads one from a host envnix cannot pin."""
    assert python is not None  # the frontend gives an image with install.uv a Python
    asked = python_version or python.version
    other = "" if asked.startswith(python.version) else f" (not {asked}: an image has one)"
    warn(f"install.uv(): uv uses the image's Python {python.version}{other}, "
         f"{python.interpreter}, instead of downloading one with `uv python install`")
    return ToolSpec("uv", UV_VERSION, "pypi", env={
        "UV_LINK_MODE": "copy",
        "UV_PYTHON": python.interpreter,
        "UV_PYTHON_PREFERENCE": "only-system",
        "UV_PYTHON_DOWNLOADS": "never",
    })


def _apt_tool(qualname: str, version: str | None, codename: str, warn: Progress) -> ToolSpec:
    """Go, Rust or R from the distribution's packages, at the version asked for when the
    archive has it (the lock says what it has when not)."""
    name = TOOL_NAMES[qualname]
    if qualname == "install.go":
        if version is None:
            packages, path, where = ["golang-go"], [], "/usr/bin/go"
        else:
            series = ".".join(version.split(".")[:2])
            exact = f"={version}*" if version.count(".") == 2 else ""
            packages = [f"golang-{series}-go{exact}"]
            path = [f"/usr/lib/go-{series}/bin"]
            where = f"/usr/lib/go-{series}/bin/go"
        warn(f"{qualname}(): Go comes from {codename}'s {packages[0].split('=')[0]} package "
             f"({where}), not envd's download into /usr/local/go")
        return ToolSpec(name, version, "apt", packages=packages, path=path)
    if qualname == "install.rust":
        packages = [f"rustc={version}*" if version else "rustc", "cargo"]
        warn(f"{qualname}(): rustc and cargo come from {codename}'s packages (/usr/bin), "
             "not envd's rustup into /opt/rust")
        return ToolSpec(name, version, "apt", packages=packages)
    warn(f"{qualname}(): R comes from {codename}'s r-base package, not envd's CRAN archive")
    return ToolSpec(name, None, "apt", packages=["r-base"])

"""Frontend: build.envd (Starlark) -> ImageSpec.

The evaluator forwards each API call here; SpecBuilder checks what each argument *means*
(unknown os, unsupported python, missing requirements file) while the call is still on the
Starlark stack, so every complaint points at the line that caused it.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from envnix.errors import SpecError, UsageError
from envnix.frontend.evaluate import Evaluator, parse_from
from envnix.spec import (
    RELEASE_ALIASES,
    SYSTEM_PYTHONS,
    CondaRequest,
    ImageSpec,
    OsRelease,
    PipRequest,
    PythonSpec,
    release_for,
)

__all__ = ["load_spec", "parse_from"]

DEFAULT_PYTHON = "3.11"  # envd >= 0.4 turns language="python" / "python3" into 3.11

_LANGUAGE_RE = re.compile(r"^python(?P<version>3(?:\.\d+)?)?$")
_REQUIREMENT_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,\s-]*\])?\s*([<>=!~;].*)?$"
)


class SpecBuilder:
    """Accumulates API calls into an ImageSpec, following envd's last-call-wins rules."""

    def __init__(self, context: Path, warn: Callable[[str], None]) -> None:
        self.context = context
        self.warn = warn
        self.os: OsRelease | None = None
        self.language: str | None = None
        self.apt: list[str] = []
        self.pip = PipRequest()
        self.conda = CondaRequest()
        self.env: dict[str, str] = {}
        self.extra_path: list[str] = []
        self.warnings: list[str] = []
        self.base_called = False

    def __call__(self, qualname: str, args: dict[str, Any]) -> None:
        handler = getattr(self, "_" + qualname.replace(".", "_"))
        handler(**args)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        self.warn(message)

    # -- base / language -----------------------------------------------------------------------
    def _base(self, os: str | None = None, language: str | None = None,
              image: str | None = None, dev: bool | None = None) -> None:
        if image is not None:
            raise SpecError("base(image=...) (envd v1 custom images) is not supported yet",
                            hint='use base(os="debian12", language="python3.11")')
        if language is None:
            raise SpecError("language is required")
        match = _LANGUAGE_RE.match(language)
        if not match:
            raise SpecError(f"language {language} is not supported",
                            hint='envnix builds Python images: language="python3.11"')
        version = match["version"] or DEFAULT_PYTHON
        if version == "3":
            version = DEFAULT_PYTHON
        os_name = os if os is not None else "ubuntu22.04"  # envd >= 0.4's default
        if os_name in RELEASE_ALIASES:
            self._warn(f'base(os="{os_name}") read as "{RELEASE_ALIASES[os_name]}"')
            os_name = RELEASE_ALIASES[os_name]
        release = release_for(os_name)
        self.os, self.language, self.base_called = release, version, True

    # -- install.* -------------------------------------------------------------------------------
    def _install_apt_packages(self, name: list[str] | None = None) -> None:
        self.apt.extend(name or [])

    def _install_system_packages(self, name: list[str] | None = None) -> None:
        self._warn("install.system_packages is envd's pre-0.2 name; read as install.apt_packages")
        self._install_apt_packages(name)

    def _install_python_packages(self, name: list[str] | None = None,
                                 requirements: str | None = None,
                                 local_wheels: list[str] | None = None) -> None:
        for entry in name or []:
            if not _REQUIREMENT_RE.match(entry.strip()):
                raise SpecError(
                    f"pip requirement {entry!r} is not a plain requirement; pip options and "
                    "URLs inside name= are not supported yet",
                    hint="put index URLs in config.pip_index(url=..., extra_url=...)",
                )
            self.pip.packages.append(entry.strip())
        if requirements is not None:
            # envd: the last requirements= wins.
            self.pip.requirements_files = [self._context_file(requirements, "requirements file")]
        if local_wheels:
            raise SpecError("install.python_packages(local_wheels=...) is not supported yet")

    def _install_conda_packages(self, name: list[str] | None = None,
                                channel: list[str] | None = None,
                                env_file: str | None = None) -> None:
        if env_file is not None and (name or channel):
            # envd says "env_file and name/channel are mutually exclusive", yet the seed's own
            # build.envd does exactly this; take both, channel= first, and say so once.
            self._warn("install.conda_packages: envd rejects env_file together with "
                       "name/channel; envnix accepts it and searches channel= before "
                       "env.yaml's channels")
        self.conda.packages.extend(name or [])
        self.conda.channels.extend(channel or [])
        if env_file is not None:
            # envd: the last env_file wins.
            self.conda.env_file = self._context_file(env_file, "env_file")

    def _context_file(self, rel: str, what: str) -> str:
        path = (self.context / rel).resolve()
        if not path.is_relative_to(self.context.resolve()):
            raise SpecError(f"{what} {rel!r} is outside the build context")
        if not path.is_file():
            raise SpecError(f"{what} {rel!r} does not exist in {self.context}")
        return path.relative_to(self.context.resolve()).as_posix()

    # -- config.* --------------------------------------------------------------------------------
    def _config_conda_channel(self, channel: str | None = None,
                              use_mamba: bool | None = None) -> None:
        if not channel:
            raise SpecError("channel is required")
        # envd writes the string verbatim to .condarc; it is usually an indented """ block.
        self.conda.condarc = textwrap.dedent(channel).strip("\n") + "\n"

    def _config_pip_index(self, url: str | None = None, extra_url: str | None = None,
                          trust: bool | None = None, mode: str | None = None) -> None:
        if not url:
            raise SpecError("url is required")
        self.pip.index_url = url
        self.pip.extra_index_urls = [extra_url] if extra_url else []
        self.pip.trusted_hosts = []
        if trust:
            hosts = [url, *self.pip.extra_index_urls]
            self.pip.trusted_hosts = sorted({urlsplit(u).hostname or u for u in hosts})

    # -- runtime.* -------------------------------------------------------------------------------
    def _runtime_environ(self, env: dict[str, str] | None = None,
                         extra_path: list[str] | None = None) -> None:
        self.env.update(env or {})
        self.extra_path.extend(extra_path or [])

    def _provider(self) -> str:
        """Distribution python when the release ships the version and no conda is asked for;
        otherwise conda, envd's own default (env at /opt/conda/envs/envd)."""
        assert self.os is not None
        if self.conda.requested or self.language not in SYSTEM_PYTHONS.get(self.os.codename, ()):
            return "conda"
        return "system"

    def build(self, name: str, manifest: str, function: str, syntax: str) -> ImageSpec:
        if not self.base_called or self.os is None or self.language is None:
            raise SpecError(
                f"{manifest} never calls base(); envd's default base (ubuntu22.04) is not "
                "supported yet",
                hint='add base(os="debian12", language="python3.11") to the build function',
            )
        return ImageSpec(
            name=name,
            manifest=manifest,
            function=function,
            os=self.os,
            python=PythonSpec(self._provider(), self.language),
            apt_packages=self.apt,
            pip=self.pip,
            conda=self.conda,
            env=self.env,
            extra_path=self.extra_path,
            workdir=f"/home/envd/{name}",
            syntax=syntax,
            warnings=self.warnings,
        )


def _stderr_warning(message: str) -> None:
    print(f"envnix: warning: {message}", file=sys.stderr)


def load_spec(context: Path, from_: str = "build.envd:build",
              warn: Callable[[str], None] = _stderr_warning) -> ImageSpec:
    """Evaluate ``<context>/<file>`` and call its build function; return the ImageSpec."""
    context = context.resolve()
    if not context.is_dir():
        raise UsageError(f"build context {context} is not a directory")
    file, function = parse_from(from_)
    manifest = context / file
    builder = SpecBuilder(context, warn)
    syntax = Evaluator(manifest, builder).run(function)
    return builder.build(context.name, file, function, syntax)

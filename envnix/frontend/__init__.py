"""Frontend: build.envd (Starlark) -> ImageSpec.

The evaluator forwards each API call here; SpecBuilder checks what each argument *means*
(unknown os, unsupported python, missing requirements file) while the call is still on the
Starlark stack, so every complaint points at the line that caused it.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from envnix.core.errors import EnvnixError, FrontendError, SpecError, UsageError
from envnix.core.progress import REPORTER, Progress
from envnix.core.reference import InvalidReference, Reference
from envnix.frontend.api import BY_NAME
from envnix.frontend.bounds import freeze_error, run_isolated, thaw_error
from envnix.frontend.cudacalls import CudaCalls
from envnix.frontend.envyaml import parse_env_yaml
from envnix.frontend.evaluate import Evaluator, one_line, parse_from
from envnix.frontend.include import (
    MAX_INCLUDES,
    Fetcher,
    IncludedRepo,
    IncludeNeeded,
    check_url,
)
from envnix.frontend.iocopy import read_copy_call
from envnix.frontend.iohttp import io_http
from envnix.frontend.localprojects import (
    install_local_projects,
    install_local_wheels,
    local_projects,
    local_wheel,
    offline_pip_install,
)
from envnix.frontend.runsteps import RunReading, read_run_command
from envnix.frontend.tools import JULIA_VERSION, ToolCalls
from envnix.spec import (
    CONDA_PREFIX,
    CUSTOM_IMAGE_RELEASE,
    RELEASE_ALIASES,
    SHELLS,
    SYSTEM_PYTHONS,
    CondaRequest,
    CopySpec,
    DevSpec,
    ImageSpec,
    OsRelease,
    PipRequest,
    PythonSpec,
    RunSpec,
    RuntimeSpec,
    apt_profile_from_env,
    check_env_name,
    cuda_conda,
    file_kind,
    has_control_character,
    image_path,
    release_for,
)
from envnix.spec import cuda as cuda_table
from envnix.spec.apt import RunAptRepo
from envnix.spec.copyrules import BASE_DIRS, CONDA_DIRS, CopyRequest, copy_targets, dev_dirs
from envnix.spec.cuda_provider import provider as provider_named
from envnix.spec.pipargs import add_entry, check_index_url, has_pip_words

__all__ = ["evaluate_spec", "load_spec", "parse_from"]

DEFAULT_PYTHON = "3.11"  # envd >= 0.4 turns language="python" / "python3" into 3.11
V1_DEFAULT_IMAGE = "ubuntu:22.04"  # envd v1's base() default

# v1 base images that are distribution releases envnix builds from their archives.
IMAGE_RELEASES = {
    "ubuntu:22.04": "ubuntu22.04", "ubuntu:jammy": "ubuntu22.04",
    "ubuntu:20.04": "ubuntu20.04", "ubuntu:focal": "ubuntu20.04",
    "debian:12": "debian12", "debian:bookworm": "debian12",
    "debian:12-slim": "debian12", "debian:bookworm-slim": "debian12",  # ImageSpec.slim
}

_LANGUAGE_RE = re.compile(r"^python(?P<version>3(?:\.\d+)?)?$")
_R_LANGUAGE_RE = re.compile(r"^[rR](?:\d[\d.]*)?$")  # envd v0: "r", "r4.2"
_REQUIREMENT_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,\s-]*\])?\s*([<>=!~;].*)?$")


class SpecBuilder(ToolCalls, CudaCalls):
    """Accumulates API calls into an ImageSpec, following envd's last-call-wins rules."""
    _io_http = io_http  # envnix/frontend/iohttp.py

    def __init__(self, context: Path, warn: Progress,
                 cuda_provider: str | None = None,
                 owner: tuple[int, int] | None = None,
                 includes: Mapping[str, IncludedRepo] | None = None) -> None:
        self.context = context
        self.includes = dict(includes or {})  # include(git=URL): the fetched repositories
        self.include_pins: dict[str, dict[str, str]] = {}  # those used, in call order
        self.warn = warn
        self.cuda_provider = cuda_provider  # --cuda-provider; None: chosen per image
        self.os: OsRelease | None = None
        self.language: str | None = None
        self.apt: list[str] = []
        self.pip = PipRequest()
        self.conda = CondaRequest()
        self.env: dict[str, str] = {}
        self.extra_path: list[str] = []
        self.warnings: list[str] = []
        self.base_called = False
        self.slim = False  # base(image="debian:12-slim")
        self.dev: bool | None = None
        self.dev_spec = DevSpec()
        self.owner: tuple[int, int] | None = owner  # --owner: wins over config.owner
        self.owner_given = owner is not None
        self.runtime = RuntimeSpec()
        self.files: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self.v0_signals: list[str] = []
        self.v1_signals: list[str] = []
        self.conda_enabled = False
        self.copy_requests: list[tuple[str, CopyRequest]] = []  # (context path, as written)
        self.requirements_local: list[tuple[str, bool]] = []  # -e . in requirements=
        self.local_wheels: list[str] = []  # install.python_packages(local_wheels=), in order
        self.env_copies: list[CopySpec] = []  # env.yaml's local pip paths, placed exactly
        self.runs: list[RunSpec] = []
        self.downloads: list[Any] = []  # io.http calls (HttpSpec), in call order
        self.apt_repos: list[tuple[str, str]] = []  # (source line, file:line) run() adds
        self.apt_keys: list[str] = []  # URLs of the keys run() steps install, for all of them
        self.cuda: tuple[str, str] | None = None  # (version, cudnn) of install.cuda
        # (major.minor, what asked, cuDNN major or "") of a CUDA release env.yaml asks for
        self.cuda_implied: tuple[str, str, str] | None = None
        self.base_image: str | None = None

    def __call__(self, qualname: str, args: dict[str, Any]) -> Any:
        fn = BY_NAME[qualname]
        if fn.skip:
            self._warn(f"{qualname}() skipped: {fn.skip}")
            return None
        handler = getattr(self, "_" + qualname.replace(".", "_"))
        return handler(**args)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        self.warn(message)

    # -- base / language -----------------------------------------------------------------------
    def _base(self, os: str | None = None, language: str | None = None,
              image: str | None = None, dev: bool | None = None) -> None:
        if os is None and language is None and image is None and dev is None:
            # envd v1's base(): its defaults, ubuntu:22.04 and dev=False; an earlier base()'s
            # image stays (envd sets the image only when one is given). v0 would say
            # "language is required", but envd >= 1.0 reads every file without a marker as v1.
            self.v1_signals.append("base()")
            if self.base_called and self.dev is not None:  # after base(image=..., dev=...)
                self.dev = False
            else:
                self._base(image=V1_DEFAULT_IMAGE, dev=False)
            return
        if image is not None or dev is not None:
            # v0 also has base(image=, language=) (envd's custom-image path): same build.
            if language is not None:
                self.v0_signals.append("base(image=, language=)")
                self.language = self._language_version(language)
            else:
                self.v1_signals.append("base(image=/dev=)")
            self.dev = bool(dev)
            os = self._os_for_image(image or V1_DEFAULT_IMAGE)
            self.slim = bool(os) and (image or "").endswith("-slim")
            self.base_image = None if os else image
            self.os = release_for(os) if os else CUSTOM_IMAGE_RELEASE
            self.base_called = True
            return
        self.v0_signals.append("base(os=, language=)")
        if language is None:
            raise SpecError("language is required")
        if _R_LANGUAGE_RE.match(language):
            # envd v0's R images (its r-base:4.2 base): R here is the release's r-base, as
            # install.r_lang() gives it, and no Python unless the file asks for one.
            self._warn(f'base(language="{language}"): R comes from the release\'s r-base '
                       "package, as install.r_lang() gives it")
            self._base_os(os)
            self._install_r_lang()
            return
        if language.lower().startswith("julia"):  # envd v0's Julia images: install.julia()
            self._warn(f'base(language="{language}"): Julia {JULIA_VERSION} as '
                       "install.julia() installs it")
            self._base_os(os)
            self._install_julia()
            return
        version = self._language_version(language)
        self._base_os(os)
        self.language = version

    def _base_os(self, os: str | None) -> None:
        """v0's base(os=...): the release (envd >= 0.4's default ubuntu22.04)."""
        os_name = os if os is not None else "ubuntu22.04"
        if os_name in RELEASE_ALIASES:
            self._warn(f'base(os="{os_name}") read as "{RELEASE_ALIASES[os_name]}"')
            os_name = RELEASE_ALIASES[os_name]
        self.os, self.base_called = release_for(os_name), True

    @staticmethod
    def _language_version(language: str) -> str:
        match = _LANGUAGE_RE.match(language)
        if not match:
            raise SpecError(f"language {language} is not supported",
                            hint='envnix builds Python images: language="python3.11"')
        version = match["version"] or DEFAULT_PYTHON
        return DEFAULT_PYTHON if version == "3" else version

    def _os_for_image(self, image: str) -> str | None:
        """Release images map onto envnix's own OS builds; any other image (None) is built
        upon, pinned by digest at lock time."""
        name = image.removeprefix("docker.io/").removeprefix("library/")
        if name in IMAGE_RELEASES:
            return IMAGE_RELEASES[name]
        try:
            Reference.parse(image)
        except InvalidReference as exc:
            raise SpecError(f"base(image={image!r}) is not a valid image reference: {exc}",
                            hint='e.g. "registry.example.com/team/base:1" or '
                                 '"name@sha256:<64 hex>"') from None
        return None

    # -- install.* -------------------------------------------------------------------------------

    def _install_python(self, version: str | None = None) -> None:
        self.v1_signals.append("install.python()")
        version = version or DEFAULT_PYTHON
        if version.startswith("2"):
            raise SpecError("envd doesn't support this Python version")
        self.language = version if version.count(".") == 1 else ".".join(
            version.split(".")[:2])

    def _install_conda(self, use_mamba: bool | None = None) -> None:
        self.v1_signals.append("install.conda()")
        self.conda_enabled = True

    def _install_apt_packages(self, name: list[str] | None = None) -> None:
        self.apt.extend(name or [])

    def _install_system_packages(self, name: list[str] | None = None) -> None:
        self.v0_signals.append("install.system_packages()")
        self._warn("install.system_packages is envd's pre-0.2 name; read as install.apt_packages")
        self._install_apt_packages(name)

    def _install_python_packages(self, name: list[str] | None = None,
                                 requirements: str | None = None,
                                 local_wheels: list[str] | None = None) -> None:
        for entry in name or []:
            if has_control_character(entry):
                raise SpecError(f"pip requirement {entry!r} contains a control character",
                                hint="one requirement per list entry, as pip would read it")
            if not has_pip_words(entry) and _REQUIREMENT_RE.match(entry.strip()):
                self.pip.packages.append(entry.strip())
            else:  # envd runs `pip install <entry>`: shell words, pip options included
                add_entry(self.pip, entry, "install.python_packages")
        if requirements is not None:
            # envd: the last requirements= wins.
            self.pip.requirements_files = [self._context_file(requirements, "requirements file")]
            self.requirements_local = local_projects(self.context,
                                                     self.pip.requirements_files[0])
        for rel in local_wheels or []:
            rel = self._context_file(rel, "local wheel")
            self.pip.packages += [r for r in local_wheel(self.context, rel)
                                  if r not in self.pip.packages]
            self.local_wheels += [rel] if rel not in self.local_wheels else []

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
        if not path.exists():
            raise SpecError(f"{what} {rel!r} does not exist in {self.context}",
                            hint="name it relative to the build context, the directory "
                                 "holding build.envd, and keep it there")
        if not path.is_file():
            raise SpecError(f"{what} {rel!r} is {file_kind(path.stat().st_mode)}, not a file")
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
        for name, value in (("url", url), ("extra_url", extra_url)):
            if value is not None:
                check_index_url(name, value)
        self.pip.index_url = url
        self.pip.extra_index_urls = [extra_url] if extra_url else []
        self.pip.trusted_hosts = []
        if trust:
            hosts = [url, *self.pip.extra_index_urls]
            self.pip.trusted_hosts = sorted({urlsplit(u).hostname or u for u in hosts})

    def _config_apt_source(self, source: str | None = None, mode: str | None = None) -> None:
        if not source:
            raise SpecError("source is required")
        # Written into the image for apt at run time; the build resolves from the lock.
        self.files["/etc/apt/sources.list"] = textwrap.dedent(source).strip("\n") + "\n"

    def _config_jupyter(self, token: str | None = None, port: int | None = None,
                        password: str | None = None) -> None:
        self.runtime.jupyter = {"token": token if token is not None else password or "",
                                "port": port or 8888}
        if "notebook" not in self.pip.packages:
            self.pip.packages.append("notebook")

    def _config_entrypoint(self, args: list[str] | None = None) -> None:
        self.runtime.entrypoint = list(args or [])

    def _config_repo(self, url: str | None = None, description: str | None = None) -> None:
        self.labels["ai.tensorchord.envd.repo"] = url or ""
        if description:
            self.labels["ai.tensorchord.envd.repo.description"] = description

    def _config_owner(self, uid: int, gid: int) -> None:
        if not (0 <= uid <= 65535 and 0 <= gid <= 65535):
            raise SpecError("get a wrong uid or gid")
        if not self.owner_given:
            self.owner = (uid, gid)

    def _shell(self, name: str) -> None:
        shell = name.strip().lower()  # envd lowercases the name
        if shell not in SHELLS:
            # envd quietly gives bash for any other name; envnix says so instead of guessing.
            raise SpecError(f"shell {name!r} is not supported: envd installs only bash, zsh "
                            "and fish", hint='write shell("bash"), shell("zsh") or '
                                         'shell("fish")')
        if shell == "zsh":
            self._warn('shell("zsh"): zsh comes from the distribution; envd\'s oh-my-zsh and '
                       "its .zshrc are left out (envd clones them from a git host at build "
                       "time, unpinned)")
        elif shell == "fish":
            self._warn('shell("fish"): fish comes from the distribution\'s package, not '
                       "envd's static fish 4 download")
        self.dev_spec.shell = shell

    def _git_config(self, name: str | None = None, email: str | None = None,
                    editor: str | None = None) -> None:
        for what, value in (("name", name), ("email", email), ("editor", editor)):
            if value and has_control_character(value):
                # .gitconfig is line-based: a newline would add settings of its own.
                raise SpecError(f"git_config: {what} {value!r} contains a control character")
        self.dev_spec.git = {k: v for k, v in
                             (("name", name), ("email", email), ("editor", editor)) if v}

    def _io_copy(self, **args: str | None) -> None:
        call = read_copy_call(self.context, **args)
        for signals, signal in ((self.v0_signals, call.v0_signal),
                                (self.v1_signals, call.v1_signal)):
            if signal:
                signals.append(signal)
        if call.warning:
            self._warn(call.warning)
        self.copy_requests.append((call.rel, call.request))

    def _run(self, commands: list[str], mount_host: bool | None = None, where: str = "") -> None:
        """mount_host=True: the build context (ignore rules applied, as for io.copy) is an
        input of the step and appears at its working directory while it runs, never in its
        layer (templates/image.nix, builders/run_steps.py)."""
        kept: list[str] = []
        at = f"{where}: " if where else ""  # the step's file:line
        cwd: str | None = None  # a `cd` in one command holds for the next (one script)
        for command in commands or []:
            reading = read_run_command(command, cwd)
            cwd = reading.cwd
            for message in reading.fetches:
                self._warn(at + message)
            if reading.taken:
                self._take_run_installs(reading, at)
            if reading.kept is not None:
                kept.append(reading.kept)
        if kept:
            self.runs.append(RunSpec(kept, mount_host=bool(mount_host)))

    def _take_run_installs(self, reading: RunReading, at: str) -> None:
        """A run() step's package installs, locked as the install.* calls they mean, and the
        apt repositories (with their keys) they install from."""
        self.apt_repos += [(line, at.rstrip(": ")) for line in reading.apt_repos]
        self.apt_keys += [k for k in reading.apt_keys if k not in self.apt_keys]
        for function, kwargs in reading.install_calls():
            if "requirements" in kwargs:  # every -r of a step applies, unlike requirements=
                self.pip.requirements_files.append(
                    self._context_file(kwargs["requirements"], "requirements file"))
            else:
                self(function, kwargs)
        self._warn(at + reading.summary())

    def _include(self, git: str, where: str = "") -> None:
        """envd's include(): the repository must have been fetched (pinned) before this
        evaluation; otherwise the caller fetches it and evaluates again."""
        check_url(git)
        repo = self.includes.get(git)
        if repo is None:
            raise IncludeNeeded(git)
        self.include_pins.setdefault(git, repo.pin())

    # -- runtime.* -------------------------------------------------------------------------------
    def _runtime_environ(self, env: dict[str, str] | None = None,
                         extra_path: list[str] | None = None) -> None:
        for name in env or {}:
            check_env_name(name, "runtime.environ: env")
        self.env.update(env or {})
        self.extra_path.extend(extra_path or [])

    def _runtime_command(self, commands: dict[str, str] | None = None) -> None:
        self.runtime.commands.update(commands or {})

    def _runtime_expose(self, envd_port: int, host_port: int | None = None,
                        service: str | None = None, listen_addr: str | None = None) -> None:
        if not 0 < envd_port < 65535:
            raise SpecError("envd_port must be a positive integer less than 65535")
        if host_port is not None and not 0 <= host_port < 65535:
            raise SpecError("host_port must be a positive integer less than 65535")
        self.runtime.expose.append({"envd_port": envd_port, "host_port": host_port or 0,
                                    "service": service or "",
                                    "listen_addr": listen_addr or "127.0.0.1"})

    def _runtime_daemon(self, commands: list[Any]) -> None:
        for argv in commands:
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise SpecError(f"invalid daemon commands ({argv!r})")
            self.runtime.daemon.append(list(argv))

    def _runtime_init(self, commands: list[str]) -> None:
        self.runtime.init.extend(commands)

    def _runtime_mount(self, host_path: str | None = None, envd_path: str | None = None,
                       what: str = "runtime.mount: envd_path") -> None:
        if envd_path:
            image_path(envd_path, what, base="/")  # NUL and ".." named as written
            if envd_path == "~" or envd_path.startswith("~/"):
                envd_path = "/home/envd" + envd_path[1:]
            self.runtime.mounts.append(image_path(envd_path, what))

    def _data_envd(self, name: str) -> str:
        """envd's data.envd(name): a host directory `envd up` binds through runtime.mount; the
        image records only the mount (like envd), the value names the source as envd does."""
        if not name or has_control_character(name) or "/" in name:
            raise SpecError(f"data.envd: name {name!r} is not a plain data set name",
                            hint='e.g. data.envd(name="mnist")')
        return f"envd://{name}"

    def _io_mount(self, src: str | None = None, dest: str | None = None) -> None:
        self._runtime_mount(src, dest, "io.mount: dest")

    def _provider(self) -> str:
        """Distribution python when the release ships the version and no conda is asked for;
        otherwise conda, envd's own default (env at /opt/conda/envs/envd)."""
        assert self.os is not None
        if (self.conda.requested or self.conda_enabled or self.syntax == "v1"
                or self.language not in SYSTEM_PYTHONS.get(self.os.codename, ())):
            return "conda"
        return "system"

    def _choose_syntax(self, marker: str) -> tuple[str, str]:
        """envd reads only line 1; without a marker, the calls the file made decide."""
        if marker == "v1":
            return "v1", "# syntax=v1 on line 1"
        # io.copy("a", "/b") fills host_path/envd_path positionally in v1 files too: weak.
        if self.v1_signals and set(self.v0_signals) <= {"io.copy(host_path=)"}:
            return "v1", "it calls " + ", ".join(dict.fromkeys(self.v1_signals))
        if self.v0_signals:
            return "v0", "it calls " + ", ".join(dict.fromkeys(self.v0_signals))
        return "v0", "no syntax marker and no version-specific call (envd < 1.0 default)"

    def build(self, name: str, manifest: str, function: str, marker: str) -> ImageSpec:
        self.syntax, reason = self._choose_syntax(marker)
        if not self.base_called:
            if self.syntax == "v0":
                # envd v0: no base() call means python "3" on its default OS.
                self._base(language="python3")
            else:
                self.os = release_for(IMAGE_RELEASES[V1_DEFAULT_IMAGE])
        assert self.os is not None
        dev = self.dev if self.dev is not None else self.syntax == "v0"
        if self.owner is not None:
            self.dev_spec.uid, self.dev_spec.gid = self.owner
        # CUDA's wheels (and conda packages) need a Python; apt and nixpkgs CUDA do not.
        cuda_needs_python = self.cuda is not None and provider_named(
            self._choose_cuda(self.conda.requested)[0]).installer in ("pip", "conda")
        wants_pip = bool(self.pip.packages or self.pip.requirements_files or self.local_wheels)
        base_python = (self.base_image is not None and self.language is None and wants_pip
                       and not (self.conda.requested or self.conda_enabled
                                or cuda_needs_python or self.uv_python))
        if self.language is None and not base_python and (
                self.conda.requested or self.conda_enabled or cuda_needs_python or wants_pip
                or self.uv_python):
            # envd: pip/conda need a Python, 3.11 by default (uv: its python_version).
            self.language = self.uv_python or DEFAULT_PYTHON
        python = (PythonSpec("base", "") if base_python  # the base's own, found at lock time
                  else PythonSpec(self._provider(), self.language) if self.language else None)
        workdir = image_path(f"/home/envd/{name}", "working directory")
        copies = self._copies(dev, python)
        if python and python.provider == "conda" and self.conda.env_file:
            self._env_yaml_extras(workdir)
        local = [install_local_wheels(self.local_wheels, workdir, python)] if (
            python and self.local_wheels) else []
        if python and self.requirements_local:
            local.insert(0, install_local_projects(self.context, self.requirements_local,
                                                   self.pip.requirements_files[0], workdir,
                                                   python))
        for project_copies, packages, run, note in reversed(local):
            self.env_copies += project_copies
            self.pip.packages += [p for p in packages if p not in self.pip.packages]
            self.runs.insert(0, run)  # before build.envd's run() steps, as envd installs
            self._warn(note)
        files = dict(self.files)
        labels = {"ai.tensorchord.envd.syntax.version": self.syntax,
                  "ai.tensorchord.envd.vendor": "envnix", **self.labels}
        cuda = self._cuda_spec(dev, python)
        if cuda:
            labels.update(cuda_table.gpu_labels(cuda.version, cuda.cudnn))
        if self.runtime.expose:
            labels["ai.tensorchord.envd.ports"] = ",".join(
                str(p["envd_port"]) for p in self.runtime.expose)
        if dev and self.dev_spec.git:
            files[f"{self.dev_spec.home}/.gitconfig"] = "[user]\n" + "".join(
                f"\t{k} = {v}\n" for k, v in self.dev_spec.git.items() if k != "editor") + (
                f"[core]\n\teditor = {self.dev_spec.git['editor']}\n"
                if "editor" in self.dev_spec.git else "")
        return ImageSpec(
            name=name,
            manifest=manifest,
            function=function,
            os=self.os,
            python=python,
            apt_packages=self.apt,
            pip=self.pip,
            conda=self.conda,
            env=self.env,
            extra_path=self.extra_path,
            workdir=workdir,
            syntax=self.syntax,
            syntax_reason=reason,
            dev=self.dev_spec if dev else None,
            owner=self.owner if not dev and self.owner != (0, 0) else None,
            runtime=self.runtime,
            files=files,
            copies=copies + self.env_copies,
            runs=self.runs, downloads=self.downloads,
            apt_repos=[RunAptRepo(line, tuple(self.apt_keys), where)
                       for line, where in self.apt_repos],
            labels=labels,
            warnings=self.warnings,
            base_image=self.base_image,
            cuda=cuda,
            apt_profile=apt_profile_from_env(), slim=self.slim,
            tools=self.tool_specs(python, dev),
        )

    def _copies(self, dev: bool, python: PythonSpec | None) -> list[CopySpec]:
        """io.copy targets as envd's BuildKit copy places them (spec/copyrules.py)."""
        existing = BASE_DIRS | (dev_dirs(self.dev_spec.home) if dev else set()) | (
            CONDA_DIRS if python and python.provider == "conda" else set())
        targets = copy_targets([req for _, req in self.copy_requests], existing)
        return [CopySpec(rel, image_path(target, "io.copy: target"))
                for (rel, _), target in zip(self.copy_requests, targets, strict=True)]

    def _env_yaml_extras(self, workdir: str) -> None:
        """What env.yaml asks of the image beyond packages: ``variables`` become image Env
        (build.envd's runtime.environ wins on a clash), and local pip paths are copied in
        like io.copy and installed by pip inside the hermetic build, offline.

        The copies land under the workdir at their context-relative path, where ``envd up``
        mounts the project, so an editable install follows the live sources in a dev container.
        """
        assert self.conda.env_file is not None
        env = parse_env_yaml(self.context / self.conda.env_file, context=self.context)
        self.conda.env = env  # the lock's copy: env.yaml is read once
        for key, value in env.variables.items():
            check_env_name(key, f"{env.source.name}: variables")
            if "\0" in value:
                raise SpecError(f"{env.source.name}: variables: the value of {key} contains "
                                "a NUL character")
            self.env.setdefault(key, value)
        # A CUDA package (pytorch-cuda=11.8, cudatoolkit=11.3, ...) asks for a release: the
        # image then gets its NVIDIA config and __cuda without install.cuda (see _cuda_spec).
        implied = cuda_conda.implied_request(env.dependencies, env.source.name)
        if implied:
            self.cuda_implied = (implied[0], f"{env.source.name}: {implied[1]}",
                                 cuda_conda.implied_cudnn(env.dependencies))
        if not env.pip_local:
            return
        root = self.context.resolve()
        arguments: list[str] = []
        for local, editable in env.pip_local:
            path = Path(local)
            if not path.is_relative_to(root):
                raise SpecError(
                    f"{env.source.name}: local pip path {local} is outside the build context "
                    f"{root}", hint="move it under the directory that holds build.envd")
            rel = path.relative_to(root).as_posix()
            target = workdir if rel == "." else f"{workdir}/{rel}"
            self.env_copies.append(CopySpec(rel, target))
            arguments += (["-e"] if editable else []) + [target]
        # Before build.envd's own run() steps, as envd installs env.yaml before running them.
        self.runs.insert(0, offline_pip_install(f"{CONDA_PREFIX}/bin/python", arguments))


def load_spec(context: Path, from_: str = "build.envd:build",
              warn: Progress = REPORTER.warning,
              cuda_provider: str | None = None, owner: tuple[int, int] | None = None,
              name: str | None = None,
              include_pins: Mapping[str, Mapping[str, str]] | None = None,
              locked: bool = False, fetcher: Fetcher | None = None) -> ImageSpec:
    """Evaluate ``<context>/<file>`` and call its build function; return the ImageSpec.

    ``cuda_provider`` (--cuda-provider) overrides where CUDA libraries come from, ``owner``
    (--owner) the config.owner, ``name`` the context directory's (the lock's). The file
    is untrusted: it is evaluated in a child process with bounded memory and CPU time
    (envnix.frontend.bounds); its warnings are passed to ``warn`` here, in order.

    include(git=URL): the child never runs git. An evaluation that meets a repository not
    fetched yet stops; this process fetches it (at ``include_pins``' commit when the lock
    has one, else at HEAD; ``locked``: an unpinned one is an error) and evaluates again.
    """
    file_name = Path(parse_from(from_)[0]).name
    includes: dict[str, IncludedRepo] = {}
    while True:
        def work() -> tuple[ImageSpec | None, list[str], Any]:
            warnings: list[str] = []
            try:
                return (evaluate_spec(context, from_, warnings.append, cuda_provider, owner,
                                      name, includes), warnings, None)
            except EnvnixError as exc:  # sent with the warnings printed before it
                return None, warnings, freeze_error(exc)

        spec, warnings, error = run_isolated(work, file_name)
        failed = thaw_error(error) if error is not None else None
        if isinstance(failed, IncludeNeeded):  # this round's warnings come again in the next
            where = ":".join(str(p) for p in (failed.file, failed.line, failed.col) if p)
            if len(includes) >= MAX_INCLUDES:
                raise FrontendError(f"include(git={failed.url!r}): more than {MAX_INCLUDES} "
                                    "repositories included", file=failed.file,
                                    line=failed.line, col=failed.col)
            fetcher = fetcher or Fetcher()
            includes[failed.url] = fetcher.repo(
                failed.url, (include_pins or {}).get(failed.url), where, locked)
            continue
        for message in warnings:
            warn(message)
        if failed is not None:
            raise failed
        assert spec is not None
        return spec


def evaluate_spec(context: Path, from_: str = "build.envd:build",
                  warn: Progress = REPORTER.warning,
                  cuda_provider: str | None = None, owner: tuple[int, int] | None = None,
                  name: str | None = None,
                  includes: Mapping[str, IncludedRepo] | None = None) -> ImageSpec:
    """load_spec in this process: the nesting, step and CPU checks apply, but nothing stops
    one huge allocation or a native crash from taking the process down (load_spec's child
    does). For callers that run their own child, such as the fuzz test."""
    context = context.resolve()
    if not context.is_dir():
        raise UsageError(f"build context {context} is not a directory")
    file, function = parse_from(from_)
    manifest = context / file
    builder = SpecBuilder(context, warn, cuda_provider, owner, includes)
    try:
        evaluator = Evaluator(manifest, builder, includes)
        syntax = evaluator.run(function)
        spec = builder.build(name or context.name, file, function, syntax)
    except EnvnixError as exc:
        raise one_line(exc) from None
    read = [manifest, *evaluator.loaded_files(), *(
        [context / spec.conda.env_file] if spec.conda.env_file else [])]
    spec.includes = list(builder.include_pins.values())
    spec.sources = sorted({p.resolve().relative_to(context).as_posix() for p in read
                           if p.resolve().is_relative_to(context)})
    return spec

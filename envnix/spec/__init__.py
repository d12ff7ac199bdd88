"""ImageSpec: the typed description of an image that every stage after the frontend reads.

The frontend (Starlark) only *records* intent into an ImageSpec; lock, render and build never
look at build.envd again. Keeping it plain data (JSON round-trip) is what lets ``envnix spec``
show exactly what will be built and lets the lock fingerprint its inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from envnix.core import options
from envnix.core.errors import SpecError, UsageError
from envnix.spec.apt import RunAptRepo
from envnix.spec.cuda import DRIVER_LIBRARY_DIRS, release_key
from envnix.spec.cuda_provider import provider as provider_named
from envnix.spec.envyaml import EnvFile

PythonProvider = Literal["system", "conda", "local", "base"]


@dataclass(frozen=True)
class OsRelease:
    """A distribution release, e.g. Debian 12 (bookworm)."""

    distro: str
    release: str
    codename: str
    glibc: str
    components: tuple[str, ...] = ("main",)

    @property
    def label(self) -> str:
        return f"{self.distro}{self.release}"


# Releases envnix can build from; the key is what build.envd writes in base(os=...).
KNOWN_RELEASES: dict[str, OsRelease] = {
    "debian12": OsRelease("debian", "12", "bookworm", "2.36"),
    # envd's own bases; Ubuntu archives need main + universe (python3-pip, many -dev libs).
    "ubuntu20.04": OsRelease("ubuntu", "20.04", "focal", "2.31", ("main", "universe")),
    "ubuntu22.04": OsRelease("ubuntu", "22.04", "jammy", "2.35", ("main", "universe")),
}

# Spellings seen in real build.envd files, read as the release they mean (with a warning).
RELEASE_ALIASES: dict[str, str] = {"ubuntu20.4": "ubuntu20.04", "ubuntu22.4": "ubuntu22.04"}

# Python versions each release ships as its own packages (the "system" provider).
SYSTEM_PYTHONS: dict[str, tuple[str, ...]] = {
    "bookworm": ("3.11",), "focal": ("3.8",), "jammy": ("3.10",),
}

# envd's conda environment: every conda package and the env's pip packages live here.
CONDA_PREFIX = "/opt/conda/envs/envd"

# base(image=...) of an arbitrary image: the base brings its own OS, so there is no archive to
# resolve from. envnix does not look inside the base's layers to find its libc, so conda
# packages and wheels are chosen for glibc 2.17 (the manylinux2014 floor) to run on any base.
CUSTOM_IMAGE_RELEASE = OsRelease("image", "", "", "2.17", ())


@dataclass(frozen=True)
class PythonSpec:
    """Where the image's interpreter comes from and the paths that follow from that.

    "system": the distribution's python (Debian's python3.X packages, /usr/bin/python3.X, pip
    packages in /usr/local/lib/python3.X/dist-packages). "conda": python from conda channels
    in envd's env at /opt/conda/envs/envd, pip packages in that env's site-packages.

    On a base(image=...) pip packages without install.python() go to the base's own Python,
    as envd's pip in the base would install them: "base" until the lock has read which one
    (envnix.lock.basesystem.base_python), then "local" (a python.org build in /usr/local, as
    the official python images have: PYTHON_VERSION in their Env) or "system" (Debian's).
    """

    provider: PythonProvider
    version: str

    @property
    def prefix(self) -> str:
        return {"conda": CONDA_PREFIX, "local": "/usr/local"}.get(self.provider, "/usr")

    @property
    def interpreter(self) -> str:
        return f"{self.prefix}/bin/python{self.version}"

    @property
    def site_packages(self) -> str:
        if self.provider in ("conda", "local"):
            return f"{self.prefix}/lib/python{self.version}/site-packages"
        # Debian's python puts /usr/local/lib/pythonX.Y/dist-packages on sys.path.
        return f"/usr/local/lib/python{self.version}/dist-packages"

    @property
    def scripts_dir(self) -> str:
        return f"{CONDA_PREFIX}/bin" if self.provider == "conda" else "/usr/local/bin"

    @property
    def data_dir(self) -> str:
        return CONDA_PREFIX if self.provider == "conda" else "/usr/local"

    @property
    def headers_dir(self) -> str:
        return f"{self.data_dir}/include/python{self.version}"

    @property
    def apt_packages(self) -> tuple[str, ...]:
        """The distribution packages that provide this interpreter (system provider)."""
        return (f"python{self.version}", "python3") if self.provider == "system" else ()


@dataclass
class PipRequest:
    """pip requirements, with the index settings from config.pip_index."""

    packages: list[str] = field(default_factory=list)
    requirements_files: list[str] = field(default_factory=list)
    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    trusted_hosts: list[str] = field(default_factory=list)
    # pip options written inside name= entries (envd hands them to pip verbatim): indexes
    # searched before the configured ones, find-links pages, and --pre.
    package_indexes: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    prerelease: bool = False


@dataclass
class CondaRequest:
    """conda packages: install.conda_packages names/channels, env.yaml, and the .condarc text.

    ``env_file`` is relative to the build context; its parsed content is locked, not the path.
    ``env`` is that content, read once by the frontend (for a conda Python) so the lock does
    not read env.yaml again; ``envnix spec`` shows the path, not this.
    """

    packages: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    env_file: str | None = None
    condarc: str | None = None
    env: EnvFile | None = None

    @property
    def requested(self) -> bool:
        return bool(self.packages or self.env_file)


@dataclass
class CopySpec:
    """io.copy: a context path (file or directory) and where it lands in the image."""

    source: str  # relative to the build context, normalised, never escaping it
    target: str  # absolute image path of the copied file or directory itself


@dataclass
class HttpSpec:
    """io.http: a file downloaded into EXTRA_SOURCE_DIR, pinned by sha256 at lock time."""

    url: str
    sha256: str | None  # the checksum the file gives (hex), or None: the lock computes it
    filename: str  # a plain file name: it lands in EXTRA_SOURCE_DIR, never elsewhere
    where: str = ""  # the call's file:line, for lock errors

    @property
    def target(self) -> str:
        return f"{EXTRA_SOURCE_DIR}/{self.filename}"


EXTRA_SOURCE_DIR = "/home/envd/extra_source"  # envd's directory for io.http downloads


@dataclass
class RunSpec:
    """run(): one group of shell commands, executed hermetically inside the Nix build."""

    commands: list[str]
    mount_host: bool = False


@dataclass
class RuntimeSpec:
    """runtime.* and config.* calls that shape the container, not its files."""

    commands: dict[str, str] = field(default_factory=dict)
    expose: list[dict[str, Any]] = field(default_factory=list)
    daemon: list[list[str]] = field(default_factory=list)
    init: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    jupyter: dict[str, Any] | None = None


@dataclass
class DevSpec:
    """What a dev image adds (envd's default for v0, base(dev=True) in v1): a fixed user."""

    user: str = "envd"
    uid: int = 1000  # fixed: envd takes the host user's, which makes images host-dependent
    gid: int = 1000
    shell: str = "bash"  # one of SHELLS
    git: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> str:
        return f"/home/{self.user}"

    @property
    def shell_path(self) -> str:
        """The login shell (passwd, SHELL, Cmd): where the Debian package puts it; fish is
        /usr/bin/fish, as envd sets SHELL."""
        return SHELLS[self.shell]


# shell(): the shells envd knows, each the Debian package of that name, and its path.
SHELLS = {"bash": "/bin/bash", "zsh": "/bin/zsh", "fish": "/usr/bin/fish"}


@dataclass
class CudaSpec:
    """A CUDA release and what of it the image gets (see envnix.spec.cuda).

    ``provider`` says where the libraries come from (envnix.spec.cuda.PROVIDERS);
    ``requirements`` are what envnix adds to that provider's request, in its own terms (pip
    lines, conda match specs, apt package names or nixpkgs attributes); ``variant`` names the
    nvidia/cuda image flavour the components correspond to. ``cudnn`` "" means no cuDNN.
    ``implied_by`` says what asked for CUDA: install.cuda, or a package in env.yaml.
    """

    version: str
    cudnn: str
    provider: str
    variant: str
    components: list[str]
    requirements: list[str]
    implied_by: str = "install.cuda"

    @property
    def major(self) -> int:
        return release_key(self.version)[0]

    @property
    def major_minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


R_CRAN = "r-cran-"
"""Debian's and Ubuntu's package names for CRAN's packages (r-cran-rlang): what
install.r_packages installs."""


@dataclass
class ToolSpec:
    """A tool envd's install.* puts into the image (uv, Node.js, Go, ...), and where from.

    ``source`` says which installer locks it: "pypi" (a wheel whose files go to the tool's
    paths, not a Python package), "npm" (a registry's tarball, likewise), "release" (a
    release archive), "conda" (a conda package), "openvsx" (a VS Code extension) or "apt"
    (``packages`` join the image's apt roots). ``env``
    and ``path`` are what envd sets for the tool (PATH entries are appended after the
    system's).
    """

    name: str
    version: str | None
    source: str
    packages: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)

    @property
    def locked(self) -> bool:
        """Whether the lock pins it as a tool artifact (apt tools are apt packages)."""
        return self.source != "apt"


@dataclass
class ImageSpec:
    """Everything the image should contain, independent of how it is resolved."""

    name: str
    manifest: str
    function: str
    os: OsRelease
    python: PythonSpec | None
    apt_packages: list[str] = field(default_factory=list)
    pip: PipRequest = field(default_factory=PipRequest)
    conda: CondaRequest = field(default_factory=CondaRequest)
    env: dict[str, str] = field(default_factory=dict)
    extra_path: list[str] = field(default_factory=list)
    workdir: str = "/"
    syntax: str = "v0"
    syntax_reason: str = ""
    dev: DevSpec | None = None
    owner: tuple[int, int] | None = None
    """config.owner (or --owner) in a serving image: who owns io.copy's files, the workdir
    and the home of the user ``envd`` made for it (a dev image has its dev user instead)."""
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    files: dict[str, str] = field(default_factory=dict)  # image path -> text (config files)
    copies: list[CopySpec] = field(default_factory=list)
    runs: list[RunSpec] = field(default_factory=list)
    downloads: list[HttpSpec] = field(default_factory=list)  # io.http, in call order
    labels: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    cuda: CudaSpec | None = None
    # base(image=...) of an image that is not a known release: built on top of its layers,
    # pinned by digest in the lock (os is then CUSTOM_IMAGE_RELEASE).
    base_image: str | None = None
    # Which of the release's always-there packages the image gets (see APT_PROFILES).
    apt_profile: str = "essential"
    # A slim release image (debian:12-slim): as its /etc/dpkg/dpkg.cfg.d/docker does, the
    # image leaves out docs (but copyright files), man and info pages and locales.
    slim: bool = False
    # The files the frontend read, relative to the build context (the manifest, load()ed
    # files, env.yaml): the lock records their hashes, so Nix alone can tell it is stale.
    sources: list[str] = field(default_factory=list)
    # install.uv, install.nodejs, install.go, ...: in call order, one per tool (last call wins).
    tools: list[ToolSpec] = field(default_factory=list)
    # include(git=URL): {url, commit, sha256} of each repository read, in call order; the
    # lock's image section records them, so later evaluations read the same commit.
    includes: list[dict[str, str]] = field(default_factory=list)
    # apt sources run() steps add (echo 'deb ...' | tee ...), read at lock time like the
    # release's archive, with the keys the steps install.
    apt_repos: list[RunAptRepo] = field(default_factory=list)

    # Base packages every image gets: libc, a /bin/sh and CA certificates.
    BASE_APT = ("base-files", "libc6", "dash", "ca-certificates")
    # The system libraries every manylinux wheel may link against without vendoring them
    # (PEP 600's core set). The optional GUI ones (libGL, libglib, X11) must be asked for,
    # as with envd; a missing one is the import error users know from envd images.
    MANYLINUX_APT = ("libgcc-s1", "libstdc++6")

    def apt_roots(self) -> list[str]:
        """The package names the apt resolver starts from, in a stable order."""
        if self.base_image:
            # The base brings its OS: only what the file asks for, resolved against the base's
            # own dpkg status at lock time (envnix.lock.basesystem); no release set, no apt.
            return self._unique([*self._dev_apt_roots(), *self.apt_packages])
        roots = list(self.BASE_APT)
        if self.python:
            roots += self.python.apt_packages
        if self.pip.packages or self.pip.requirements_files or self.cuda:
            roots += self.MANYLINUX_APT
        if self.cuda and "cudnn" in self.cuda.components:
            roots.append("zlib1g")  # cuDNN links libz.so.1 and does not vendor it
        if self.cuda and provider_named(self.cuda.provider).installer == "apt":
            roots += self.cuda.requirements
        if self.dev:
            roots += self._dev_apt_roots()
            if self.apt_profile == "essential":
                roots.append("apt")  # a dev image is a Debian system: apt as in Debian's images
        roots += self.apt_packages
        roots += [p for tool in self.tools if tool.source == "apt" for p in tool.packages]
        return self._unique(roots)

    def _dev_apt_roots(self) -> tuple[str, ...]:
        """envd's dev stack, minus its downloaded tools (sshd, horust, starship)."""
        return ("sudo", self.dev.shell, "coreutils") if self.dev else ()

    @staticmethod
    def _unique(names: Sequence[str]) -> list[str]:
        return list(dict.fromkeys(names))

    def env_list(self, cuda_library_dirs: Sequence[str] = ()) -> list[str]:
        """The image config's Env, in a fixed order.

        ``cuda_library_dirs``: the image's directories holding packaged CUDA libraries (the
        lock knows them; see render), put on LD_LIBRARY_PATH before the driver's mount points.
        """
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        if self.python and self.python.provider == "conda":
            path = f"{CONDA_PREFIX}/bin:/opt/conda/bin:{path}"  # as envd sets it
        tools = self.cuda_tools_dir()
        if tools:
            path += f":{tools}/bin"
        for entry in dict.fromkeys(p for tool in self.tools for p in tool.path):
            path += f":{entry}"
        if self.extra_path:
            path = path + ":" + ":".join(self.extra_path)
        env = {"PATH": path, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        for tool in self.tools:
            env.update(tool.env)
        if self.dev:
            env.update({"SHELL": self.dev.shell_path, "USER": self.dev.user,
                        "ENVD_WORKDIR": self.workdir})
        if self.cuda:
            env.update(self._cuda_env(cuda_library_dirs))
        env.update(self.env)
        if "PATH" in self.env:
            env["PATH"] = self.env["PATH"]
        return [f"{k}={v}" for k, v in env.items()]

    def _cuda_env(self, library_dirs: Sequence[str]) -> dict[str, str]:
        """What NVIDIA's container toolkit reads, and where the loader finds CUDA libraries:
        the packaged ones first, then the driver's (mounted by the toolkit at run time)."""
        assert self.cuda is not None
        env = {"NVIDIA_VISIBLE_DEVICES": "all",
               "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
               "NVIDIA_REQUIRE_CUDA": f"cuda>={self.cuda.major_minor}",
               "LD_LIBRARY_PATH": ":".join([*library_dirs, *DRIVER_LIBRARY_DIRS])}
        tools = self.cuda_tools_dir()
        if tools and provider_named(self.cuda.provider).is_toolkit(self.cuda):
            env["CUDA_HOME"] = tools  # nvcc, headers and libs of one release, as a toolkit
        return env

    def cuda_tools_dir(self) -> str | None:
        """Dev images: the directory whose bin/ holds the CUDA compiler tools, as the
        provider lays them out."""
        if not (self.cuda and self.dev and "nvcc" in self.cuda.components):
            return None
        return provider_named(self.cuda.provider).tools_dir(
            self.cuda, self.python.site_packages if self.python else None)

    def to_dict(self) -> dict[str, Any]:
        """The spec as ``envnix spec`` prints it: env.yaml by its path (``conda.env_file``)."""
        data = dataclasses.asdict(dataclasses.replace(
            self, conda=dataclasses.replace(self.conda, env=None)))
        del data["conda"]["env"]
        del data["sources"]  # a fact of this evaluation, not of the image
        if data["owner"] is None:  # (most images): kept out, as before the field existed
            del data["owner"]
        if not data["tools"]:  # likewise
            del data["tools"]
        if not data["downloads"]:  # io.http likewise
            del data["downloads"]
        if not data["includes"]:  # include() likewise
            del data["includes"]
        if not data["apt_repos"]:  # run()'s apt sources likewise
            del data["apt_repos"]
        if not data["slim"]:  # a slim base likewise
            del data["slim"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


APT_PROFILES = {
    "essential": "the release's Essential: yes packages and their dependencies, as every "
                 "Debian and Ubuntu system has them (grep, sed, find, dpkg, login...)",
    "minimal": "only the packages the image asks for and their declared dependencies "
               "(distroless style, for serving images)",
}


def apt_profile_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The apt profile ENVNIX_APT_PROFILE asks for (default: essential)."""
    value = options.apt_profile(environ)
    if value not in APT_PROFILES:
        raise UsageError(f"{options.APT_PROFILE.name}={value!r} is not an apt profile",
                         hint="one of: " + "; ".join(f"{k} ({v})"
                                                     for k, v in APT_PROFILES.items()))
    return value


def release_for(os_name: str) -> OsRelease:
    """Map base(os=...) to a release, or explain which ones are supported."""
    try:
        return KNOWN_RELEASES[os_name]
    except KeyError:
        known = ", ".join(sorted(KNOWN_RELEASES))
        raise SpecError(
            f"os {os_name!r} is not supported yet (supported: {known})",
            hint='write base(os="debian12", language="python3.11")',
        ) from None


def with_base_python(spec: ImageSpec, base: Mapping[str, Any] | None) -> ImageSpec:
    """``spec`` with the base's own Python (PythonSpec "base") replaced by the one the lock
    found in the base (its ``python`` record); any other spec as it is."""
    if spec.python is None or spec.python.provider != "base" or not base or "python" not in base:
        return spec
    found = base["python"]
    return dataclasses.replace(spec, python=PythonSpec(found["provider"], found["version"]))


_FILE_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)",
               stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFSOCK: "a socket"}


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, for error messages (FIFO, device...)."""
    return _FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")


_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def image_path(path: str, what: str, base: str | None = None) -> str:
    """``path`` as an absolute image path with ``//`` and ``.`` collapsed, or SpecError.

    Every path a build file names inside the image goes through here: ``..`` is refused
    (not resolved), because tools that later join the path onto a directory on the host
    would otherwise write outside it; a NUL cannot be part of any path. A relative path is
    taken below ``base`` when one is given, and refused otherwise.
    """
    if "\0" in path:
        raise SpecError(f"{what} {path!r} contains a NUL character")
    if not path.startswith("/") and base is None:
        raise SpecError(f"{what} {path!r} is not an absolute path",
                        hint="image paths start with / (or ~ for /home/envd where allowed)")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise SpecError(f"{what} {path!r} contains a '..' component",
                        hint="write the image path without '..'")
    if not path.startswith("/"):
        return image_path(f"{base}/{path}", what)
    return "/" + "/".join(parts)


def has_control_character(text: str) -> bool:
    """True if ``text`` holds a C0 control character or DEL. Strings that end up in line-based
    files (uv's requirements.in, /etc/pip.conf, .gitconfig) must not: a "\r" or "\n" inside
    one value starts a line of its own there."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def check_env_name(name: str, what: str) -> None:
    """SpecError unless ``name`` is a POSIX environment variable name ([A-Za-z_][A-Za-z0-9_]*):
    anything else (a space, '=', a leading digit) breaks the image's Env or the shell."""
    if not _ENV_NAME_RE.fullmatch(name):
        raise SpecError(f"{what}: {name!r} is not a valid environment variable name",
                        hint="use letters, digits and _, not starting with a digit")


def fingerprint(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``: how the lock notices its inputs changed."""
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()

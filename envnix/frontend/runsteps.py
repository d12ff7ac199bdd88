"""run() steps that reach for the network, read before anything is built.

Why: envd runs run() commands with the network open, so real files install packages there
(``pip install``, ``apt-get install``, ``conda install``) or fetch sources (``git clone``,
``curl``). A Nix build has no network: such a step would fail deep inside the build, or worse,
be an unpinned input. So each command is split into its simple commands (outside quotes, at
``&&``, ``;`` and newlines) and read:

- package installs whose meaning is clear become locked inputs, exactly as if the file had
  called install.apt_packages / install.python_packages / install.conda_packages, and the
  caller says so; ``apt-get update`` and cache clean-ups around them go with them;
- a fetch (git, curl, wget, mim, npm, ...) stays, with a warning naming the step, the host it
  needs and what to write instead: the lock still pins everything else, and the build stops
  at that step (the builder names it again);
- anything else stays a run() step, its text untouched.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from envnix.core.errors import SpecError
from envnix.spec import EXTRA_SOURCE_DIR
from envnix.spec.apt import CODENAME_PLACEHOLDER

__all__ = ["RunReading", "read_run_command"]


@dataclass
class RunReading:
    """What one run() command turned into: package requests, and the text left to run."""

    apt: list[str] = field(default_factory=list)
    pip: list[str] = field(default_factory=list)  # entries as install.python_packages takes
    pip_requirements: list[str] = field(default_factory=list)  # -r FILE, context-relative
    conda: list[str] = field(default_factory=list)
    conda_channels: list[str] = field(default_factory=list)
    kept: str | None = None  # the command without what was taken out; None: nothing left
    taken: list[str] = field(default_factory=list)  # the simple commands taken out, as written
    fetches: list[str] = field(default_factory=list)  # a warning per step that needs the network
    apt_repos: list[str] = field(default_factory=list)  # one-line ``deb ...`` sources added
    apt_keys: list[str] = field(default_factory=list)  # URLs of the keys they are signed with
    cwd: str | None = None  # where an earlier `cd` of the step left the shell (None: its own)

    def install_calls(self) -> list[tuple[str, dict[str, Any]]]:
        """The install.* calls the taken commands stand for, as (function, keyword arguments)."""
        calls: list[tuple[str, dict[str, Any]]] = []
        if self.apt:
            calls.append(("install.apt_packages", {"name": self.apt}))
        if self.pip:
            calls.append(("install.python_packages", {"name": self.pip}))
        calls += [("install.python_packages", {"requirements": r}) for r in self.pip_requirements]
        if self.conda:
            calls.append(("install.conda_packages", {"name": self.conda, **(
                {"channel": self.conda_channels} if self.conda_channels else {})}))
        return calls

    def summary(self) -> str:
        """The warning that says what was taken out of the step and what it became."""
        steps = "; ".join(f"`{t}`" for t in self.taken)
        calls = ", ".join([
            *(f"the apt source `{line}` (read at lock time, like the release's archive)"
              for line in self.apt_repos),
            *(f"the key {url} of run()'s apt sources" for url in self.apt_keys),
            *(f"{function}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
              for function, kwargs in self.install_calls())])
        return (f"run(): {steps} reads as {calls or 'nothing to install'}: locked like the "
                "install.* calls, since the build has no network")


# Top-level shell syntax that joins simple commands. Only && ; and newlines can be taken apart
# without changing what the rest means; a pipe, || or a subshell around an install cannot.
_SPLIT = ("&&", ";", "\n")
_OPAQUE = ("||", "|", "&", "(", ")", "`", "$(")

_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_APT_TOOLS = ("apt-get", "apt")
_APT_OPTIONS_WITH_VALUE = ("-o", "--option", "-t", "--target-release", "-c", "--config-file")
_APT_NOOP_VERBS = ("update", "clean", "autoclean", "autoremove")
_PIP_DROPPED = ("-U", "--upgrade", "--no-cache-dir", "-q", "--quiet", "-v", "--verbose",
                "--user", "--disable-pip-version-check", "--no-warn-script-location",
                "--break-system-packages", "--ignore-installed", "--force-reinstall",
                "--no-input", "--compile", "--no-compile", "--prefer-binary", "--only-binary=:all:",
                "--upgrade-strategy=eager", "--upgrade-strategy=only-if-needed")
_PIP_DROPPED_WITH_VALUE = ("--progress-bar", "--root-user-action", "--upgrade-strategy",
                           "--timeout", "--retries", "--cache-dir")
_CONDA_TOOLS = ("conda", "mamba", "micromamba")
_CONDA_DROPPED = ("-y", "--yes", "-q", "--quiet", "--override-channels", "--freeze-installed",
                  "--no-update-deps", "-S", "--satisfied-skip-solve")
_CONDA_DROPPED_WITH_VALUE = ("-n", "--name", "-p", "--prefix")
_CLEANUP = re.compile(r"^(rm -[rf]+ (/var/lib/apt/lists/?\*?|/var/cache/apt/\S*|~?/?\S*/\.cache/pip"
                      r"\S*|/root/\.cache\S*|/tmp/\*)( \S+)*|pip3? cache purge|"
                      r"(conda|mamba|micromamba) clean( -\S+)*)$")

_IO_HTTP = ('io.http(url="{url}", checksum="sha256:<its sha256>") puts the file in '
            f"{EXTRA_SOURCE_DIR}/, pinned; a later run() step can move it")
_NO_NPM = ("envnix locks no npm packages yet: install the tool from a PyPI wheel or a Debian "
           "package (install.python_packages / install.apt_packages)")
# Fetchers: what each needs, and what to write instead. {url} is the URL in the step, if any.
_FETCHERS: dict[str, str] = {
    "git": "vendor the repository into the build context at the commit you want (a submodule "
           "or a copy) and io.copy it; a clone made during the build cannot be pinned",
    "curl": _IO_HTTP,
    "wget": _IO_HTTP,
    "mim": 'install.python_packages(name=["<package> -f <the wheel index mim uses for your '
           'torch and CUDA>"]) locks the wheel mim would pick',
    "npm": _NO_NPM,
    "yarn": _NO_NPM,
    "go": "envnix locks no Go modules yet: install the program from a Debian package "
          "(install.apt_packages) or copy a built binary with io.copy",
    "cargo": "envnix locks no crates yet: install the program from a Debian package "
             "(install.apt_packages) or copy a built binary with io.copy",
    "add-apt-repository": 'install.apt_packages names packages of the image\'s archive; another '
                          "repository goes in config.apt_source(source=...)",
    "pipx": 'install.python_packages(name=["<package>"]) locks the same wheel',
    "poetry": "export the project's locked requirements (poetry export -f requirements.txt) and "
              "use install.python_packages(requirements=...)",
    "huggingface-cli": "download the files into the build context and io.copy them",
    "gdown": "download the file into the build context and io.copy it",
}
_FETCHING_VERBS = {"git": ("clone", "fetch", "pull", "submodule", "ls-remote"),
                   "go": ("get", "install", "mod"), "cargo": ("install", "fetch"),
                   "npm": ("install", "i", "ci", "add", "update"), "yarn": ("add", "install", ""),
                   "mim": ("install", "download"), "pipx": ("install", "run"),
                   "poetry": ("install", "add", "update"),
                   "huggingface-cli": ("download",)}


def _split(command: str) -> list[tuple[str, bool]]:
    """The simple commands of ``command`` (raw text, split outside quotes at && ; and
    newlines), each with whether it uses syntax that cannot be taken apart (pipes, ||,
    subshells)."""
    parts: list[tuple[str, bool]] = []
    current: list[str] = []
    opaque = False
    quote = ""
    i = 0
    while i < len(command):
        ch = command[i]
        if quote:
            current.append(ch)
            if ch == "\\" and quote == '"' and i + 1 < len(command):
                current.append(command[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch == "\\" and i + 1 < len(command):
            current += [ch, command[i + 1]]
            i += 1
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        else:
            sep = next((s for s in _SPLIT if command.startswith(s, i)), None)
            if sep is not None:
                parts.append(("".join(current).strip(), opaque))
                current, opaque = [], False
                i += len(sep)
                continue
            if any(command.startswith(s, i) for s in _OPAQUE):
                opaque = True
            current.append(ch)
        i += 1
    parts.append(("".join(current).strip(), opaque))
    return [(text, opaque) for text, opaque in parts if text]


def _words(simple: str) -> list[str] | None:
    """The words of a simple command without leading VAR=value and sudo; None if the shell
    would read it differently than shlex can tell (unbalanced quotes)."""
    try:
        words = shlex.split(simple, comments=True)
    except ValueError:
        return None
    while words and (_ENV_ASSIGNMENT.match(words[0]) or words[0] in ("sudo", "-E", "env")):
        words = words[1:]
    return words


def _tool(words: list[str]) -> tuple[str, list[str]]:
    """The program's base name and its arguments; ``python -m pip`` is pip."""
    if not words:
        return "", []
    name = words[0].rsplit("/", 1)[-1]
    if re.fullmatch(r"python[0-9.]*", name) and words[1:2] == ["-m"] and len(words) > 2:
        return words[2], words[3:]
    if name == "uv" and words[1:3] == ["pip", "install"]:
        return "pip", words[2:]
    if re.fullmatch(r"pip[0-9.]*", name):
        return "pip", words[1:]
    return name, words[1:]


def _host(words: list[str]) -> str:
    for w in words:
        parts = urlsplit(w)
        if parts.scheme in ("http", "https", "git", "ssh") and parts.hostname:
            return parts.hostname
        m = re.match(r"^[\w.-]+@([\w.-]+):", w)
        if m:
            return m.group(1)
    return ""


def _url(words: list[str]) -> str:
    return next((w for w in words if urlsplit(w).scheme in ("http", "https")), "URL")


def _apt(args: list[str], simple: str) -> list[str] | None:
    """Packages of ``apt-get install``; [] for apt-get update/clean; None for other verbs."""
    packages: list[str] = []
    verb = ""
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a in _APT_OPTIONS_WITH_VALUE:
            skip = True
        elif a.startswith("-"):
            continue
        elif not verb:
            verb = a
        else:
            packages.append(a)
    if verb in _APT_NOOP_VERBS:
        return []
    if verb != "install":
        return None
    for p in packages:
        if p.endswith(".deb") or "/" in p:
            raise SpecError(f"run(): `{simple}` installs a .deb file; envnix installs packages "
                            "of the image's archive only",
                            hint="name the package in install.apt_packages(name=[...])")
    return packages


def _is_local(word: str) -> bool:
    return word in (".", "..") or word.startswith(("./", "../", "/", "file:"))


def _pip(args: list[str], simple: str, reading: RunReading, cwd: str | None = None) -> bool:
    """Take ``pip install ARGS`` into ``reading``; False if it is not an install of packages
    from an index. A local project (``-e /src``, ``.``, ``--no-index``) stays a run() step: it
    builds offline from what the image holds, as the seed's ``pip install -e`` does."""
    if not args or args[0] != "install":
        return False
    after_option = [prev in ("-r", "--requirement", "-c", "--constraint")
                    for prev in args[:-1]]
    if any(a in ("-e", "--editable", "--no-index") or a.startswith("--editable=")
           or (_is_local(a) and not value)
           for a, value in zip(args[1:], after_option, strict=True)):
        return False
    kept: list[str] = []
    it = iter(args[1:])
    for a in it:
        if a in _PIP_DROPPED or (a.split("=", 1)[0] in _PIP_DROPPED_WITH_VALUE and "=" in a):
            continue
        if a in _PIP_DROPPED_WITH_VALUE:
            next(it, None)
            continue
        if a in ("-r", "--requirement") or a.startswith("--requirement="):
            path = a.split("=", 1)[1] if "=" in a else next(it, "")
            if cwd is not None and not path.startswith(("/", "~")):
                path = f"{cwd.rstrip('/')}/{path}"  # where pip reads it after the `cd`
            if path.startswith(("/", "~")):
                raise SpecError(f"run(): `{simple}` reads {path}, a file inside the image, "
                                "and installs from the network during the build",
                                hint='name the file in the build context: install.python_'
                                     'packages(requirements="requirements.txt") locks it')
            reading.pip_requirements.append(path)
            continue
        if a not in ("pip", "setuptools", "wheel"):  # pip's own tools: the image's are used
            kept.append(a)
    if kept:
        reading.pip.append(shlex.join(kept))
    return True


def _conda(args: list[str], reading: RunReading) -> bool:
    if not args or args[0] != "install":
        return False
    it = iter(args[1:])
    for a in it:
        if a in _CONDA_DROPPED:
            continue
        if a in _CONDA_DROPPED_WITH_VALUE:
            next(it, None)
        elif a in ("-c", "--channel"):
            reading.conda_channels.append(next(it, ""))
        elif a.startswith("--channel="):
            reading.conda_channels.append(a.split("=", 1)[1])
        elif not a.startswith("-"):
            reading.conda.append(a)
    return True


_SOURCES_LIST = re.compile(r"^/etc/apt/sources\.list(\.d/[\w.@+-]+\.list)?$")
_KEY_PATH = re.compile(r"^/(etc/apt/(trusted\.gpg\.d|keyrings)|usr/share/keyrings)/[\w.@+-]+$")
_FETCH_TOOLS = ("curl", "wget")


def _pipeline(simple: str) -> list[list[str]] | None:
    """The words of each command of a plain pipeline (``a | b``, no other shell syntax), or
    None."""
    stages = []
    for part in re.split(r"(?<!\|)\|(?!\|)", simple):
        if any(t in part for t in ("||", "&", "`", "$(", "(", ")")):
            return None
        words = _words(part.strip())
        if not words:
            return None
        stages.append(words)
    return stages


def _deb_line(words: list[str]) -> str | None:
    """The ``deb ...`` line an ``echo``/``printf`` prints (one argument or several words)."""
    if words[0] not in ("echo", "printf"):
        return None
    args = [w for w in words[1:] if w not in ("-e", "-n")]
    line = " ".join(args).replace("\\n", "\n").strip()
    if not line.startswith("deb ") or "\n" in line:
        return None
    return line


def _apt_repo(simple: str) -> str | None:
    """The one-line apt source a step adds: ``echo 'deb ...' | tee [-a] /etc/apt/sources.list
    [.d/NAME.list]``, ``echo 'deb ...' >> FILE`` or ``add-apt-repository 'deb ...'``. The line
    keeps shell expansions such as ``$(lsb_release -cs)`` for the lock to fill in."""
    text = simple.replace("$(lsb_release -cs)", CODENAME_PLACEHOLDER).replace(
        "$(lsb_release -sc)", CODENAME_PLACEHOLDER)
    m = re.fullmatch(r"(.*?)\s*>>?\s*(\S+)", text)
    if m and _SOURCES_LIST.match(m[2]) and (words := _words(m[1])):
        return _deb_line(words)
    stages = _pipeline(text)
    if stages is None:
        return None
    if len(stages) == 1 and stages[0][0] == "add-apt-repository":
        line = " ".join(w for w in stages[0][1:] if not w.startswith("-"))
        return line if line.startswith("deb ") else None
    if len(stages) == 2 and stages[1][0] == "tee" and any(
            _SOURCES_LIST.match(w) for w in stages[1][1:]):
        return _deb_line(stages[0])
    return None


def _apt_key(simple: str) -> str | None:
    """The URL of an archive key a step installs: ``curl|wget URL | apt-key add -``,
    ``... | gpg --dearmor -o PATH`` or ``... | tee PATH``, or ``curl -o PATH URL`` /
    ``wget -O PATH URL`` into apt's key directories."""
    stages = _pipeline(simple)
    if not stages or stages[0][0] not in _FETCH_TOOLS:
        return None
    url = _url(stages[0])
    if url == "URL":
        return None
    if len(stages) == 1:
        out = next((b for a, b in zip(stages[0], stages[0][1:], strict=False)
                    if a in ("-o", "-O", "--output", "--output-document")), "")
        return url if _KEY_PATH.match(out) else None
    sink = stages[-1]
    if sink[:2] == ["apt-key", "add"] or (
            sink[0] in ("gpg", "tee") and any(_KEY_PATH.match(w) for w in sink[1:])):
        return url
    return None


def read_run_command(command: str, cwd: str | None = None) -> RunReading:
    """Read one run() command (see the module doc); SpecError for an install that cannot be
    taken apart from the shell syntax around it. *cwd*: where an earlier command of the same
    run() left the shell with ``cd`` (envd runs a step's commands as one script), so that a
    relative ``-r FILE`` is read where pip would read it; the reading's ``cwd`` carries it on."""
    reading = RunReading(cwd=cwd)
    kept: list[str] = []
    for simple, opaque in _split(command):
        if (line := _apt_repo(simple)) is not None:
            reading.apt_repos.append(line)
            reading.taken.append(simple)
            continue
        if (key := _apt_key(simple)) is not None:
            reading.apt_keys.append(key)
            reading.taken.append(simple)
            continue
        words = _words(simple)
        if words is None:
            kept.append(simple)
            continue
        tool, args = _tool(words)
        if tool == "cd" and not opaque:
            target = args[0] if args else "~"
            relative = not target.startswith(("/", "~")) and reading.cwd is not None
            reading.cwd = f"{reading.cwd}/{target}" if relative else target
            kept.append(simple)
            continue
        verb = next((a for a in args if not a.startswith("-")), "")
        if tool in _FETCHERS and (tool not in _FETCHING_VERBS or verb in _FETCHING_VERBS[tool]):
            reading.fetches.append(
                f"run(): `{simple}` fetches from {_host(words) or 'the network'} during the "
                "build, which has no network: the build stops at this step; "
                + _FETCHERS[tool].format(url=_url(words)))
            kept.append(simple)
            continue
        if opaque and "install" in args and (tool in (*_APT_TOOLS, *_CONDA_TOOLS) or (
                tool == "pip" and _pip(args, simple, RunReading()))):
            raise SpecError(f"run(): `{simple}` installs packages inside a pipe, || or "
                            "subshell, which envnix cannot take apart",
                            hint="name the packages in install.apt_packages / "
                                 "install.python_packages / install.conda_packages, and keep "
                                 "the rest in run()")
        if opaque:
            taken = False
        elif _CLEANUP.match(" ".join(words)):  # goes with the installs it cleans up after
            taken = bool(reading.apt or reading.pip or reading.conda or reading.taken)
        elif tool in _APT_TOOLS:
            packages = _apt(args, simple)
            taken = packages is not None
            reading.apt += packages or []
        elif tool == "pip":
            taken = _pip(args, simple, reading, reading.cwd)
        elif tool in _CONDA_TOOLS:
            taken = _conda(args, reading)
        else:
            taken = False
        if taken:
            reading.taken.append(simple)
        else:
            kept.append(simple)
    if not reading.taken:
        reading.kept = command
        return reading
    reading.kept = " && ".join(kept) if kept else None
    return reading

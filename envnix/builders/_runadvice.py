"""Why a run() group failed, in one line: the failing command (from the ERR trap's line
numbers or the shell's message) and, when the output shows a network attempt, the declarative
replacement to use instead (install.python_packages, install.apt_packages, ...).

Why a module of its own: this is user-facing advice text, growing with each tool it knows;
it has nothing to do with how the commands run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys

import _builder as B
from _sandbox import RunResult, command_at_line

TAIL_LINES = 20
SCAN_BYTES = 256 * 1024


# Output that means "something tried the network" whatever the tool.
NETWORK_SIGNS = (
    "temporary failure in name resolution", "name or service not known",
    "network is unreachable", "failed to establish a new connection", "could not resolve",
    "temporary failure resolving", "no address associated with hostname",
    "newconnectionerror", "condahttperror", "unable to resolve host address",
    "could not connect to", "failed to connect to", "can't connect to remote host",
    "getaddrinfo", "could not find a version that satisfies", "no matching distribution found",
)
# Output that means the same only when the failing command is a known downloader.
WEAK_NETWORK_SIGNS = ("connection refused", "bad address", "connection timed out",
                      "unable to connect")

_SPLIT_RE = re.compile(r"&&|\|\||[;|&\n()]")
_PIP_RE = re.compile(r"^(?:sudo\s+(?:-\S+\s+)*)?(?:\S*/)?(?:(?:python[\d.]*)\s+-m\s+pip|"
                     r"pip[\d.]*)\s+install\b(.*)$", re.S)
_APT_RE = re.compile(r"^(?:sudo\s+(?:-\S+\s+)*)?(?:\S*/)?(?:apt-get|apt|aptitude)\b(.*)$", re.S)
_CONDA_RE = re.compile(r"^(?:sudo\s+(?:-\S+\s+)*)?(?:\S*/)?(?:conda|mamba|micromamba)\s+"
                       r"install\b(.*)$", re.S)
_FETCH_RE = re.compile(r"^(?:sudo\s+(?:-\S+\s+)*)?(?:\S*/)?(curl|wget)\b(.*)$", re.S)
_OTHER_NET_RE = re.compile(r"^(?:sudo\s+(?:-\S+\s+)*)?(?:\S*/)?(git|npm|yarn|cargo|go|"
                           r"conda|mamba|pip[\d.]*|apt-get|apt)\b")
_PIP_VALUE_OPTS = frozenset({
    "-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url",
    "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--src", "--platform",
    "--python-version", "--implementation", "--abi", "--only-binary", "--no-binary",
    "--upgrade-strategy", "--progress-bar", "--trusted-host", "--cache-dir", "--log",
    "--timeout", "--retries", "--proxy", "--cert", "--client-cert", "--exists-action",
    "-e", "--editable", "--config-settings", "-C", "--global-option", "--report",
})
_CONDA_VALUE_OPTS = frozenset({"-c", "--channel", "-n", "--name", "-p", "--prefix",
                               "--file"})


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split()


def _segments(command: str) -> list[str]:
    return [s.strip() for s in _SPLIT_RE.split(command) if s.strip()]


def _positional(words: list[str], value_opts: frozenset[str]) -> tuple[list[str], dict[str, str]]:
    pos: list[str] = []
    opts: dict[str, str] = {}
    skip = False
    for i, w in enumerate(words):
        if skip:
            skip = False
            continue
        if w.startswith(">") or w.startswith("<") or re.match(r"^\d*[<>]", w):
            break
        if w.startswith("-"):
            name, eq, value = w.partition("=")
            if name in value_opts:
                if not eq:
                    value = words[i + 1] if i + 1 < len(words) else ""
                    skip = True
                opts.setdefault(name, value)
            continue
        pos.append(w)
    return pos, opts


def _abbrev(command: str, limit: int = 80) -> str:
    text = " ".join(command.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _names(names: list[str]) -> str:
    return json.dumps(names)


def network_advice(command: str, output: str, generic: bool = True) -> str | None:
    """The declarative replacement for a command that needed the network, or None if the
    output shows no network attempt (or, with ``generic=False``, names no known tool)."""
    low = output.lower()
    strong = any(s in low for s in NETWORK_SIGNS)
    weak = any(s in low for s in WEAK_NETWORK_SIGNS)
    for seg in _segments(command):
        m = _PIP_RE.match(seg)
        if m and (strong or weak):
            pos, opts = _positional(_words(m.group(1)), _PIP_VALUE_OPTS)
            missing = re.findall(r"satisfies the requirement ([^\s(]+)", output)
            missing = list(dict.fromkeys(missing))
            local = [p for p in pos if p.startswith(("/", ".", "file:"))] + (
                [opts["-e"]] if "-e" in opts else []) + (
                [opts["--editable"]] if "--editable" in opts else [])
            reqs = opts.get("-r") or opts.get("--requirement")
            if local:
                deps = missing or ["<its build dependencies>"]
                return (f'"{_abbrev(seg)}" needs the network, which builds do not have (pip '
                        "fetches the project's build dependencies); put them in the image "
                        f"with install.python_packages(name={_names(deps)}) and add "
                        "--no-build-isolation")
            if reqs:
                return (f'"{_abbrev(seg)}" needs the network, which builds do not have; use '
                        f'install.python_packages(requirements="{reqs}")')
            names = [p for p in pos if not p.startswith(("git+", "http:", "https:"))] or missing
            return (f'"{_abbrev(seg)}" needs the network, which builds do not have; use '
                    f"install.python_packages(name={_names(names)})")
        m = _APT_RE.match(seg)
        if m and (strong or weak):
            words = _words(m.group(1))
            pos, _ = _positional(words, frozenset({"-o", "-t", "--target-release", "-c"}))
            if pos[:1] == ["install"] and pos[1:]:
                return (f'"{_abbrev(seg)}" needs the network, which builds do not have; use '
                        f"install.apt_packages(name={_names(pos[1:])})")
            if pos[:1] in (["update"], ["upgrade"], ["dist-upgrade"], ["full-upgrade"],
                           ["install"]):
                return (f'"{_abbrev(seg)}" needs the network, which builds do not have; use '
                        "install.apt_packages(name=[...]) (envnix resolves and pins apt "
                        "packages when locking)")
        m = _CONDA_RE.match(seg)
        if m and (strong or weak):
            pos, _ = _positional(_words(m.group(1)), _CONDA_VALUE_OPTS)
            return (f'"{_abbrev(seg)}" needs the network, which builds do not have; use '
                    f"install.conda_packages(name={_names(pos)})")
        m = _FETCH_RE.match(seg)
        if m and (strong or weak):
            urls = [w for w in _words(m.group(2)) if re.match(r"^[a-z][a-z0-9+.-]*://", w)]
            url = urls[0] if urls else "..."
            return (f'"{_abbrev(seg)}" needs the network, which builds do not have; use '
                    f'io.http(url="{url}", checksum="sha256:...") or put the file in the '
                    "build context and io.copy it")
        if _OTHER_NET_RE.match(seg) and (strong or weak):
            return (f'"{_abbrev(seg)}" needs the network, which builds do not have; declare '
                    "what it downloads instead (install.python_packages, install.apt_packages, "
                    "install.conda_packages, io.http, or io.copy from the build context)")
    if strong and generic:
        return (f'"{_abbrev(command)}" needs the network, which builds do not have; declare '
                "what it downloads instead (install.python_packages, install.apt_packages, "
                "install.conda_packages, io.http, or io.copy from the build context)")
    return None


def _tail(path: str) -> tuple[list[str], str]:
    """(last TAIL_LINES lines, last SCAN_BYTES of text) of the output."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - SCAN_BYTES))
        text = f.read().decode("utf-8", "replace")
    return text.splitlines()[-TAIL_LINES:], text


def _failing_command(commands: list[str], result: RunResult, text: str) -> int | None:
    for line in reversed(result.err_lines):
        idx = command_at_line(commands, line)
        if idx is not None:
            return idx
    for m in reversed(list(re.finditer(r"^\S*sh: (?:line )?(\d+): ", text, re.M))):
        idx = command_at_line(commands, int(m.group(1)))
        if idx is not None:
            return idx
    return 0 if len(commands) == 1 else None


def fail(commands: list[str], result: RunResult) -> None:
    lines, text = _tail(result.log)
    for line in lines:
        sys.stderr.write(f"  | {line}\n")
    code = result.code
    proot_err = re.search(r"^proot error: (.*)$", text, re.M)
    if proot_err and code in (1, 255) and not result.err_lines:
        raise B.BuilderError(f"proot could not start the commands: {proot_err.group(1)}",
                             what="run")
    killed = re.search(r"^proot info: pid \d+: terminated with signal (\d+)", text, re.M)
    idx = _failing_command(commands, result, text)
    shown = commands[idx] if idx is not None else "; ".join(commands)
    for cand in ([commands[idx]] if idx is not None else commands):
        advice = network_advice(cand, text, generic=False)
        if advice is not None:
            raise B.BuilderError(advice, what="run()")
    advice = network_advice(shown, text)
    if advice is not None:
        raise B.BuilderError(advice, what="run()")
    if code < 0:
        status = f"signal {-code}"
    elif killed and code == 255:
        status = f"signal {killed.group(1)}"
    else:
        status = f"exit {code}"
    where = "" if idx is not None else f" (one of {len(commands)} commands)"
    raise B.BuilderError(f"command failed ({status}){where}: {_abbrev(shown, 120)}", what="run")

"""pip's own words inside a requirement entry, read as envd hands them to pip.

envd runs ``python -m pip install <entry>`` for each ``install.python_packages(name=[...])``
entry, so an entry is shell words: requirements, and pip options such as
``"torch --index-url https://host/whl/cpu"``. A requirements file's lines are read the same
way. What can be locked is kept (indexes and find-links pages are read at lock time, direct
wheel URLs pinned by sha256, ``--pre`` lets the resolver take pre-releases); anything else is
refused with what to write instead.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from envnix.core.errors import SpecError
from envnix.spec import PipRequest, has_control_character

# pip options that take a value, and what envnix does with each.
_INDEX = ("-i", "--index-url")
_EXTRA_INDEX = ("--extra-index-url",)
_FIND_LINKS = ("-f", "--find-links")
_TRUSTED = ("--trusted-host",)
_WHEEL_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._]*)-[^-/]+(-\d[^-/]*)?-[^-/]+-[^-/]+-[^-/]+"
                         r"\.whl$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,\s-]*\])?$")


@dataclass
class PipWords:
    """One entry's (or file's) requirements and the pip options it gave."""

    requirements: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)  # --index-url and --extra-index-url
    find_links: list[str] = field(default_factory=list)
    trusted_hosts: list[str] = field(default_factory=list)
    pre: bool = False


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def has_pip_words(entry: str) -> bool:
    """Whether ``entry`` is more than one plain requirement: options, URLs or several words."""
    return entry.lstrip().startswith("-") or " -" in entry or "://" in entry or "@" in entry


def _url(value: str, option: str, where: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(
            ord(c) < 33 or ord(c) == 127 for c in value):
        raise SpecError(f"{_at(where)}{option} {value!r} is not an http(s) URL",
                        hint="indexes and find-links pages are read at lock time over http(s); "
                             "a local directory cannot be locked: serve it, or io.copy the "
                             "wheels and install them with run()")
    return value


def _direct(name: str, url: str, where: str) -> str:
    """``name @ url``: an http(s) wheel, pinned by sha256 when the lock downloads it."""
    if url.startswith("git+"):
        return git_reference(name, url, where)
    _url(url, "URL", where)
    filename = urlsplit(url).path.rsplit("/", 1)[-1]
    if not filename.endswith(".whl"):
        raise SpecError(f"{_at(where)}{url!r} is not a wheel; envnix installs wheels only",
                        hint="point at a .whl file, or use the released version from an index")
    if not name:
        match = _WHEEL_NAME.match(filename)
        if not match:
            raise SpecError(f"{_at(where)}{filename!r} is not a wheel file name",
                            hint="write 'name @ URL'")
        name = match[1]
    return f"{name} @ {url}"


def git_reference(name: str, url: str, where: str) -> str:
    """``name @ git+https://host/repo@ref``: the lock pins the ref's commit and the image
    build compiles the project from that commit's tree (lock/sources.py)."""
    plain, _, fragment = url.removeprefix("git+").partition("#")
    egg = re.search(r"(?:^|&)egg=([A-Za-z0-9][A-Za-z0-9._-]*)", fragment)
    name = name or (egg[1] if egg else "")
    parts = urlsplit(plain)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.username or any(
            ord(c) < 33 or ord(c) == 127 for c in url):
        raise SpecError(f"{_at(where)}{url!r}: only git+https:// (and git+http://) references "
                        "are fetched",
                        hint="a local, ssh or file repository cannot be pinned for every "
                             "machine: push it to an http(s) git server, or io.copy the "
                             "project and install it with run()")
    # Without a name, uv learns it from the project's static metadata, as pip would by
    # building it (which the lock never does).
    return f"{name} @ git+{plain}" if name else f"git+{plain}"


_EDITABLE = re.compile(r"^(?:-e|--editable)(?:\s*=\s*|\s+)(?P<path>\S.*)$")


def local_project(line: str) -> tuple[str, bool] | None:
    """(path, editable) when a requirements-file line installs a project from a directory
    (``-e .``, ``--editable ./pkg``, ``./pkg``, ``.``), else None. Such a project is the
    build context's: the frontend copies it into the image and pip installs it there,
    offline (envnix.frontend), and the lock leaves the line to it."""
    m = _EDITABLE.match(line.strip())
    text, editable = (m["path"], True) if m else (line.strip(), False)
    text = text.strip().strip("'\"")
    if text in (".", "..") or text.startswith(("./", "../", "/", "file:")):
        return text.removeprefix("file://").removeprefix("file:"), editable
    return None


def parse_pip_words(entry: str, where: str) -> PipWords:
    """Split one entry (or requirements-file line) into requirements and pip options."""
    try:
        words = shlex.split(entry, comments=False)
    except ValueError as exc:
        raise SpecError(f"{_at(where)}{entry!r} is not valid shell words: {exc}",
                        hint="quote each requirement once, as pip's command line reads it"
                        ) from None
    out = PipWords()
    i = 0
    while i < len(words):
        word = words[i]
        option, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        if option in (*_INDEX, *_EXTRA_INDEX, *_FIND_LINKS, *_TRUSTED):
            if eq:
                value = inline
            elif i + 1 < len(words):
                i += 1
                value = words[i]
            else:
                raise SpecError(f"{_at(where)}{option} needs a value",
                                hint=f"write {option} https://host/simple after the option")
            if option in _TRUSTED:
                out.trusted_hosts.append(value)
            elif option in _FIND_LINKS:
                out.find_links.append(_url(value, option, where))
            else:
                out.indexes.append(_url(value, option, where))
        elif word == "--pre":
            out.pre = True
        elif word.startswith("-"):
            raise SpecError(
                f"{_at(where)}pip option {word!r} cannot be locked",
                hint="envnix locks --index-url, --extra-index-url, -f/--find-links, --pre "
                     "and 'name @ https://...whl'; install a local or editable project "
                     "with io.copy and run()" if word in ("-e", "--editable") else
                     "envnix locks --index-url, --extra-index-url, -f/--find-links, --pre "
                     "and 'name @ https://...whl'; remove the option")
        elif i + 1 < len(words) and words[i + 1] == "@":
            if i + 2 >= len(words):
                raise SpecError(f"{_at(where)}{word} @ needs a URL",
                                hint=f"write '{word} @ https://host/{word}-1.0-py3-none-any.whl'")
            out.requirements.append(_direct(word, words[i + 2], where))
            i += 2
        elif "@" in word and "://" in word.split("@", 1)[1]:
            name, url = word.split("@", 1)
            out.requirements.append(_direct(name.strip(), url.strip(), where))
        elif "://" in word:
            out.requirements.append(_direct("", word, where))
        else:
            out.requirements.append(word)
        i += 1
    return out


def check_name(requirement: str, where: str) -> None:
    """A bare word must at least start like a requirement (a name, then a specifier), or be
    a git reference parse_pip_words already checked."""
    if requirement.startswith("git+"):
        return
    head = re.split(r"[<>=!~;@ ]", requirement, maxsplit=1)[0]
    if not _NAME.match(head):
        raise SpecError(f"{_at(where)}{requirement!r} is not a pip requirement",
                        hint="write 'name', 'name==1.2' or 'name @ https://...whl'")


def add_entry(request: PipRequest, entry: str, where: str) -> None:
    """One install.python_packages entry with pip words, into the request."""
    words = parse_pip_words(entry, where)
    for requirement in words.requirements:
        check_name(requirement, where)
    request.packages.extend(words.requirements)
    for have, values in ((request.package_indexes, words.indexes),
                         (request.find_links, words.find_links),
                         (request.trusted_hosts, words.trusted_hosts)):
        have.extend(v for v in values if v not in have)
    request.prerelease = request.prerelease or words.pre


def check_index_url(name: str, value: str) -> None:
    """config.pip_index URLs land in /etc/pip.conf (line-based) and in uv's arguments: an
    http(s) URL on one line, nothing else."""
    parts = urlsplit(value)
    if (parts.scheme not in ("http", "https") or not parts.netloc
            or " " in value or has_control_character(value)):
        raise SpecError(f"config.pip_index: {name} {value!r} is not an http(s) URL without "
                        "spaces or control characters")
    if "@" in parts.netloc:  # /etc/pip.conf, the lock and the .drv files would all keep it
        raise SpecError(f"config.pip_index: {name} carries a login (user:password@"
                        f"{parts.hostname})", hint=f"remove it and put 'machine "
                        f"{parts.hostname} login USER password SECRET' in ~/.netrc: envnix, uv "
                        "and Nix read it there")

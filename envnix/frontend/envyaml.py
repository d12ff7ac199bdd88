"""Conda inputs: env.yaml files, the .condarc text of config.conda_channel, channel resolution.

envd never parses env.yaml itself; it runs ``conda env update`` and pip inside the build. envnix
must lock the same request without conda, so this module reads the file the way conda does
(background: the team's locking notes §3 and the envd reference §3):

* ``name`` and ``prefix`` are ignored: they name the exporting machine's env, not the image's;
* ``channels`` keep their order (names, full URLs and the ``defaults`` marker as written),
  ``nodefaults`` is dropped and remembered;
* ``dependencies`` are conda match specs as written, one ``pip:`` list among them;
* the ``pip:`` lines are requirements-file syntax (conda writes them to a temp file next to
  env.yaml and runs ``pip install -r`` from that directory), so ``-r``, index options and
  local paths are relative to env.yaml.

env.yaml is untrusted input like build.envd: every file it names (``-r`` files, nested ones
included, and local paths) must resolve, symlinks followed, inside the build context, and is
checked before anything is read (:func:`resolve_in_context`).

Unlike conda (which drops unknown keys with a warning) an unknown top-level key is an error:
a misspelt ``dependencies`` would otherwise lock an empty environment.

The YAML is *composed*, not loaded: nodes keep their line numbers for errors, and scalars keep
their text as written (``FOO: 1.10`` stays ``"1.10"``, not the float 1.1).
"""

from __future__ import annotations

import os
import re
import stat
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from envnix.core import options
from envnix.core.errors import FrontendError, LockError, SpecError
from envnix.core.http import local_path
from envnix.spec.envyaml import EnvFile, conda_spec_channel
from envnix.spec.pipargs import git_reference

ENV_KEYS = ("name", "prefix", "channels", "dependencies", "variables")
"""The top-level keys conda's env.yaml understands; any other key is an error here."""

DEFAULT_CHANNEL_ALIAS = ""
"""conda's channel_alias when .condarc sets none. Empty on purpose: envnix does not pick a
conda host for the user, so a bare channel name needs config.conda_channel to say where it is."""

_VCS_RE = re.compile(r"^(?:git|hg|svn|bzr)\+|@\s*(?:git|hg|svn|bzr)\+", re.I)
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HTTP_RE = re.compile(r"^https?://[^\s/]", re.I)
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
_COMMENT_RE = re.compile(r"(^|\s+)#.*$")
_OPTION_RE = re.compile(r"^(?P<opt>--?[A-Za-z][A-Za-z-]*)(?:\s*=\s*|\s+|(?<=^-[a-z]))(?P<arg>.*)$")
MAX_TEXT_BYTES = 16 << 20
"""The largest env.yaml or requirements file envnix reads: far beyond any real one, and a
bound on what a stranger's repository can make the lock step hold in memory."""
# pip options that change nothing for a binary-only, hash-pinned lock.
_NOOP_PIP_OPTIONS = frozenset({"--prefer-binary", "--require-hashes"})
_OPTION_ALIASES = {"-r": "--requirement", "-e": "--editable", "-i": "--index-url",
                   "-c": "--constraint", "-f": "--find-links"}
_TAKES_ARGUMENT = frozenset({"--requirement", "--editable", "--index-url", "--extra-index-url",
                             "--trusted-host", "--constraint", "--find-links", "--only-binary",
                             "--no-binary"})


# --------------------------------------------------------------------------------------------
# env.yaml
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """A source position for error messages."""

    file: str
    line: int | None = None
    col: int | None = None

    def error(self, message: str, hint: str | None = None) -> FrontendError:
        return FrontendError(message, file=self.file, line=self.line, col=self.col, hint=hint)


def _where(path: Path, node: yaml.Node) -> _Where:
    return _Where(str(path), node.start_mark.line + 1, node.start_mark.column + 1)


def resolve_in_context(ref: str | os.PathLike[str], context: Path,
                       base: Path | None = None) -> Path:
    """The path ``ref`` names (relative to ``base``, default ``context``; ``~`` expanded),
    symlinks followed, or ValueError saying why it may not be used: it resolves outside the
    build context. Call it before touching the file, so nothing outside is ever read.

    The one containment rule for files named by untrusted input (env.yaml's ``-r`` and local
    paths, build.envd's ``requirements=``).
    """
    root = Path(context).resolve()
    try:
        target = ((base or root) / Path(ref).expanduser()).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable directory
        raise ValueError(f"cannot resolve it: {getattr(exc, 'strerror', None) or exc}") from None
    if not target.is_relative_to(root):
        raise ValueError(f"it resolves to {target}, outside the build context {root}")
    return target


def read_context_text(path: Path) -> str:
    """A text file that :func:`resolve_in_context` returned, or ValueError with a one-line
    reason: only regular files (a FIFO would block, a device never ends), at most
    MAX_TEXT_BYTES, UTF-8 (a leading BOM is dropped, as pip does)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file")
    if info.st_size > MAX_TEXT_BYTES:
        raise ValueError(f"{path} is {info.st_size} bytes; envnix reads at most "
                         f"{MAX_TEXT_BYTES >> 20} MiB from an env.yaml or requirements file")
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (byte {exc.start})") from None


def _compose(text: str, path: Path) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.problem} ({exc.context})"
        if mark is None:
            raise FrontendError(f"invalid YAML: {problem}", file=str(path)) from None
        raise FrontendError(f"invalid YAML: {problem}", file=str(path), line=mark.line + 1,
                            col=mark.column + 1) from None
    except yaml.YAMLError as exc:  # e.g. a reader error for bytes that are not text
        raise FrontendError(f"invalid YAML: {exc}", file=str(path)) from None


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _scalar(node: yaml.Node, path: Path, what: str) -> str:
    """The scalar's text as written; YAML typing (floats, booleans) is deliberately ignored."""
    if not isinstance(node, yaml.ScalarNode) or _is_null(node):
        raise _where(path, node).error(f"{what} must be a string")
    text = str(node.value).strip()
    if not text:
        raise _where(path, node).error(f"{what} must not be empty")
    return text


def _items(node: yaml.Node, path: Path, what: str) -> list[yaml.Node]:
    if _is_null(node):
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise _where(path, node).error(f"{what} must be a list")
    return list(node.value)


def _mapping(node: yaml.Node, path: Path, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
    """(key, key node, value node) triples; duplicate keys are an error, not last-wins."""
    if _is_null(node):
        return []
    if not isinstance(node, yaml.MappingNode):
        raise _where(path, node).error(f"{what} must be a mapping")
    seen: dict[str, int] = {}
    out = []
    for key_node, value_node in node.value:
        key = _scalar(key_node, path, f"a key in {what}")
        if key in seen:
            raise _where(path, key_node).error(
                f"{key!r} appears twice in {what} (first on line {seen[key]})")
        seen[key] = key_node.start_mark.line + 1
        out.append((key, key_node, value_node))
    return out


def parse_env_yaml(path: Path, context: Path | None = None) -> EnvFile:
    """Read a conda env.yaml (``conda env export`` output or hand-written).

    Every file it names must lie inside ``context``, the build context (default: the
    env.yaml's own directory, the narrowest safe choice for callers that do not know it).
    """
    path = Path(path)
    if not path.exists():
        raise FrontendError("env.yaml file does not exist", file=str(path))
    try:
        if context is not None:
            resolve_in_context(path.absolute(), context)
        text = read_context_text(path)
    except ValueError as exc:
        raise FrontendError(f"cannot read env.yaml: {exc}", file=str(path)) from None
    root = _compose(text, path)
    if root is None:
        raise FrontendError("env.yaml is empty", file=str(path),
                            hint="an env.yaml needs at least `dependencies:`")
    if not isinstance(root, yaml.MappingNode):
        raise _where(path, root).error("env.yaml must be a mapping (name:, channels:, ...)")
    sections: dict[str, yaml.Node] = {}
    for key, key_node, value in _mapping(root, path, "env.yaml"):
        if key not in ENV_KEYS:
            raise _where(path, key_node).error(
                f"unknown key {key!r} in env.yaml",
                hint="env.yaml keys are: " + ", ".join(ENV_KEYS))
        sections[key] = value

    channels: list[str] = []
    nodefaults = False
    for node in _items(sections.get("channels", _NULL), path, "channels"):
        channel = _scalar(node, path, "a channel").rstrip("/")
        if channel == "nodefaults":
            nodefaults = True
        elif channel not in channels:
            channels.append(channel)

    dependencies: list[str] = []
    pip_entries: list[tuple[str, _Where]] = []
    for node in _items(sections.get("dependencies", _NULL), path, "dependencies"):
        if isinstance(node, yaml.MappingNode):
            for key, key_node, value in _mapping(node, path, "a dependencies entry"):
                if key != "pip":
                    raise _where(path, key_node).error(
                        f"unknown dependencies section {key!r}; only `pip:` is supported")
                for item in _items(value, path, "pip"):
                    pip_entries.append((_scalar(item, path, "a pip line"), _where(path, item)))
            continue
        spec = _scalar(node, path, "a dependency")
        _check_match_spec(spec, _where(path, node))
        dependencies.append(spec)

    variables: dict[str, str] = {}
    for key, key_node, value in _mapping(sections.get("variables", _NULL), path, "variables"):
        if "=" in key or not key.strip():
            raise _where(path, key_node).error(f"{key!r} is not a valid variable name")
        if _is_null(value) or not isinstance(value, yaml.ScalarNode):
            raise _where(path, value).error(f"variable {key} must have a string value")
        variables[key] = value.value

    pip = _PipSection(Path(context) if context is not None else path.parent)
    pip.read(pip_entries, path.parent.resolve(), ())
    return EnvFile(
        source=path,
        channels=tuple(channels),
        nodefaults=nodefaults,
        dependencies=tuple(dependencies),
        pip=tuple(pip.lines),
        pip_local=tuple(pip.local),
        pip_index_url=pip.index_url,
        pip_extra_index_urls=tuple(pip.extra_index_urls),
        pip_trusted_hosts=tuple(pip.trusted_hosts),
        variables=variables,
        requirement_files=tuple(pip.files),
    )


_NULL = yaml.ScalarNode("tag:yaml.org,2002:null", "")


def _check_match_spec(spec: str, where: _Where) -> None:
    """Reject what no conda would parse now, so the error points at env.yaml, not the solver."""
    from rattler import MatchSpec  # deferred: only conda users pay for the import

    try:
        MatchSpec(spec, strict=False)
    except Exception as exc:  # rattler raises its own InvalidMatchSpecError type
        raise where.error(f"invalid conda match spec {spec!r}: {exc}") from None


# --------------------------------------------------------------------------------------------
# pip section (requirements-file syntax)
# --------------------------------------------------------------------------------------------


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """pip's preprocessing: join backslash continuations, drop comments and blank lines."""
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = number
        if raw.endswith("\\") and not raw.endswith("\\\\"):
            buf += raw[:-1]
            continue
        line = _COMMENT_RE.sub("", buf + raw).strip()
        buf = ""
        if line:
            yield start, line
    if buf.strip():
        yield start, _COMMENT_RE.sub("", buf).strip()


class _PipSection:
    """Accumulates what the pip lines of env.yaml (and the files they include) ask for."""

    def __init__(self, context: Path) -> None:
        self.context = context
        self.lines: list[str] = []
        self.local: list[tuple[str, bool]] = []
        self.index_url: str | None = None
        self.extra_index_urls: list[str] = []
        self.trusted_hosts: list[str] = []
        self.files: list[Path] = []

    def read(self, entries: Iterable[tuple[str, _Where]], base: Path,
             stack: tuple[Path, ...]) -> None:
        for text, where in entries:
            line = _COMMENT_RE.sub("", text).strip()
            if line:
                self._line(line, where, base, stack)

    def _line(self, line: str, where: _Where, base: Path, stack: tuple[Path, ...]) -> None:
        vcs = line.removeprefix("--editable").removeprefix("-e").strip(" =")
        if _VCS_RE.search(vcs):
            self._vcs(vcs, line, where)
            return
        if not line.startswith("-"):
            self._requirement(line, where, base, editable=False)
            return
        m = _OPTION_RE.match(line)
        option = m["opt"] if m else line.split()[0]
        option = _OPTION_ALIASES.get(option, option)
        arg = (m["arg"].strip() if m else "").strip("'\"")
        if option in _NOOP_PIP_OPTIONS and not arg:
            return
        if option in _TAKES_ARGUMENT and not arg:
            raise where.error(f"pip option {option} needs a value")
        if option == "--requirement":
            self._include(arg, where, base, stack)
        elif option == "--editable":
            self._requirement(arg, where, base, editable=True)
        elif option in ("--index-url", "--extra-index-url") and not _HTTP_RE.match(arg):
            # uv would read a file:// index from the host: only indexes served over http(s)
            raise where.error(f"{option} {arg}: an index must be an http(s):// URL")
        elif option in ("--index-url", "--extra-index-url") and "@" in arg.split("/")[2]:
            raise where.error(f"{option}: the URL carries a login (user:password@); put it in "
                              "~/.netrc instead, where envnix, uv and Nix read it")
        elif option == "--index-url":
            self.index_url = arg  # pip: the last --index-url wins
        elif option == "--extra-index-url":
            if arg not in self.extra_index_urls:
                self.extra_index_urls.append(arg)
        elif option == "--trusted-host":
            if arg not in self.trusted_hosts:
                self.trusted_hosts.append(arg)
        elif option == "--only-binary" and arg == ":all:":
            return  # envnix only ever installs wheels
        else:
            raise where.error(f"pip option line {line!r} is not supported yet",
                              hint="supported: -r, -e <path>, --index-url, "
                                   "--extra-index-url, --trusted-host")

    def _inside(self, path: str, base: Path, where: _Where, what: str, hint: str) -> Path:
        """*path* resolved against *base*, or the error naming *what* if it leaves the context."""
        try:
            return resolve_in_context(path, self.context, base)
        except ValueError as exc:
            raise where.error(f"{what}: {exc}", hint=hint) from None

    def _include(self, ref: str, where: _Where, base: Path, stack: tuple[Path, ...]) -> None:
        if _URL_RE.match(ref):
            raise where.error(f"-r {ref}: requirements files from URLs are not supported yet")
        target = self._inside(ref, base, where, f"-r {ref}",
                              "envnix reads only files inside the build context")
        if target in stack:
            chain = " -> ".join(p.name for p in (*stack, target))
            raise where.error(f"requirements files include each other: {chain}")
        try:
            text = read_context_text(target)
        except ValueError as exc:
            raise where.error(f"-r {ref}: {exc}") from None
        if target not in self.files:
            self.files.append(target)
        entries = ((line, _Where(str(target), number)) for number, line in _logical_lines(text))
        # pip resolves paths in an included file against that file's directory.
        self.read(entries, target.parent, (*stack, target))

    def _vcs(self, req: str, line: str, where: _Where) -> None:
        """``git+https://...#egg=name`` or ``name @ git+https://...`` (also after ``-e``: the
        image holds the project installed, as the editable's import would find it): pinned
        to a commit and built from it like build.envd's git references; other VCSs and
        non-http(s) repositories are one line."""
        if not re.search(r"(^|@\s*)git\+", req, re.I):
            raise where.error(f"pip VCS requirement {line!r} is not supported",
                              hint="only git over http(s) is pinned; pin a released version")
        name, _, url = req.rpartition(" @ ") if " @ " in req else ("", "", req)
        try:
            self.lines.append(git_reference(name.strip(), url.strip(), ""))
        except SpecError as exc:
            raise where.error(f"pip VCS requirement {line!r}: "
                              f"{exc.message.removeprefix(repr(url.strip()) + ': ')}",
                              hint=exc.hint) from None

    def _requirement(self, req: str, where: _Where, base: Path, *, editable: bool) -> None:
        local = _local_path(req)
        if local is None:
            if editable:
                raise where.error(f"-e {req}: only local paths can be editable",
                                  hint="VCS editables are not supported yet")
            self.lines.append(req)
            return
        if re.search(r"\[[^\]]*\]$", local):
            raise where.error(f"extras on a local path ({req!r}) are not supported yet")
        target = self._inside(local, base, where, f"local pip path {req!r}",
                              "move it under the build context")
        if not target.exists():
            raise where.error(f"local pip path {req!r} does not exist (looked at {target})")
        entry = (str(target), editable)
        if entry not in self.local:
            self.local.append(entry)


def _local_path(req: str) -> str | None:
    """The path a requirement line names, or None for a name/URL requirement (pip's rules)."""
    direct = re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*@\s*(file:.*)$", req)
    if direct:
        req = direct[1].strip()
    if req.startswith("file:"):
        return local_path(req)
    if _URL_RE.match(req):
        return None
    if req.startswith((".", "/", "~")):
        return req
    first = re.split(r"\s|;|[<>=!~]", req, maxsplit=1)[0]
    if "/" in first or first.lower().endswith(_ARCHIVE_SUFFIXES):
        return first
    return None


# --------------------------------------------------------------------------------------------
# .condarc and channel resolution
# --------------------------------------------------------------------------------------------

_CONDARC_KNOWN = frozenset({
    "channels", "default_channels", "custom_channels", "custom_multichannels", "channel_alias",
    "migrated_channel_aliases", "migrated_custom_channels", "channel_priority",
    "show_channel_urls", "ssl_verify", "proxy_servers", "envs_dirs", "pkgs_dirs",
    "auto_activate_base", "always_yes", "allow_conda_downgrades", "remote_connect_timeout_secs",
    "remote_read_timeout_secs", "remote_max_retries", "report_errors", "pip_interop_enabled",
    "auto_update_conda", "changeps1", "solver", "use_only_tar_bz2", "client_ssl_cert",
    "client_ssl_cert_key", "offline", "override_channels_enabled", "allowlist_channels",
    "denylist_channels", "repodata_fns", "add_pip_as_python_dependency", "safety_checks",
})
"""conda settings a .condarc may hold; only the channel ones matter to envnix."""


@dataclass(frozen=True)
class Condarc:
    """The channel settings of a .condarc (config.conda_channel's text)."""

    origin: str
    channels: tuple[str, ...] = ()
    default_channels: tuple[str, ...] = ()
    custom_channels: dict[str, str] = field(default_factory=dict)
    channel_alias: str = DEFAULT_CHANNEL_ALIAS
    warnings: tuple[str, ...] = ()


def parse_condarc(text: str, origin: str) -> Condarc:
    """Read the channel settings; ``origin`` names where the text came from, for messages.

    envd writes the string verbatim, and build.envd files indent it inside a triple-quoted
    string, so it is dedented first. One repair is made, with a warning: when
    ``custom_channels:`` is empty and is followed by unindented ``name: URL`` lines (the
    seed's config lost its indentation that way), those lines are read as its entries.
    conda itself would silently ignore them and fetch those channels from its default host,
    which is never what the author meant.
    """
    body = textwrap.dedent(text).strip("\n") + "\n"
    try:
        root = yaml.compose(body, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1} of the text)" if mark else ""
        raise FrontendError(f"invalid .condarc YAML{where}: {exc.problem or exc.context}",
                            file=origin) from None
    if root is None:
        return Condarc(origin=origin)
    if not isinstance(root, yaml.MappingNode):
        raise FrontendError(".condarc must be a YAML mapping", file=origin)

    def fail(message: str) -> FrontendError:
        return FrontendError(message, file=origin, hint="see conda's .condarc documentation")

    def strings(key: str, node: yaml.Node) -> tuple[str, ...]:
        if _is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode) or not all(
                isinstance(n, yaml.ScalarNode) and n.value.strip() for n in node.value):
            raise fail(f".condarc {key} must be a list of channel names or URLs")
        return tuple(n.value.strip().rstrip("/") for n in node.value)

    channels: tuple[str, ...] = ()
    defaults: tuple[str, ...] = ()
    custom: dict[str, str] = {}
    alias = DEFAULT_CHANNEL_ALIAS
    warnings: list[str] = []
    empty_custom_line: int | None = None
    strays: list[tuple[int, str, str]] = []
    for key_node, value in root.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else ""
        if key == "channels":
            channels = strings(key, value)
        elif key == "default_channels":
            defaults = strings(key, value)
        elif key == "channel_alias":
            if not isinstance(value, yaml.ScalarNode) or _is_null(value):
                raise fail(".condarc channel_alias must be a URL")
            alias = value.value.strip().rstrip("/")
        elif key == "custom_channels":
            if _is_null(value):
                empty_custom_line = key_node.start_mark.line
                continue
            if not isinstance(value, yaml.MappingNode):
                raise fail(".condarc custom_channels must map channel names to URLs")
            for name_node, url_node in value.value:
                if not (isinstance(name_node, yaml.ScalarNode)
                        and isinstance(url_node, yaml.ScalarNode) and url_node.value.strip()):
                    raise fail(".condarc custom_channels must map channel names to URLs")
                custom[name_node.value.strip()] = url_node.value.strip().rstrip("/")
        elif (key not in _CONDARC_KNOWN and isinstance(value, yaml.ScalarNode)
              and _URL_RE.match(value.value.strip())):
            strays.append((key_node.start_mark.line, key, value.value.strip().rstrip("/")))
    if empty_custom_line is not None and not custom:
        # Only the name: URL lines *after* the empty custom_channels: belong to it.
        found = [(k, url) for line, k, url in strays if line > empty_custom_line]
        if found:
            custom = dict(found)
            warnings.append(
                f"{origin}: custom_channels is empty and is followed by unindented "
                f"{', '.join(k for k, _ in found)}; reading them as custom_channels entries "
                "(indent them under custom_channels: to silence this)")
    return Condarc(origin=origin, channels=channels, default_channels=defaults,
                   custom_channels=custom, channel_alias=alias, warnings=tuple(warnings))


@dataclass(frozen=True)
class ChannelLocation:
    """One conda channel: the URL the lock records, and the URLs to fetch it from, in order.

    ``canonical`` is what goes into envnix.lock; ``urls`` are the mirrors actually used. The
    sha256 of a package does not depend on where it was fetched, so a lock made behind a
    mirror rebuilds anywhere that can reach either the canonical URL or a mirror.
    """

    name: str
    canonical: str
    urls: tuple[str, ...]


def _is_url(value: str) -> bool:
    return bool(_URL_RE.match(value))


def resolve_channel(name_or_url: str, condarc: Condarc | None,
                    fallback_alias: str = "") -> ChannelLocation:
    """Where one channel (not ``defaults``: see :func:`resolve_channels`) is fetched from.

    A full URL is itself. A name goes, in conda's order, through ``custom_channels`` (longest
    matching name prefix, so ``conda-forge/label/dev`` uses the ``conda-forge`` entry), then a
    ``default_channels`` URL ending in ``/<name>``, then ``channel_alias``, then
    ``fallback_alias`` (conda's own alias when nothing configured one: only a name nothing
    else places goes there, so a mirror's channels keep their mirror URLs as their identity).
    """
    value = name_or_url.strip().rstrip("/")
    if value == "defaults":
        raise ValueError("'defaults' stands for several channels; use resolve_channels()")
    if _is_url(value):
        return ChannelLocation(value, value, (value,))
    if value.startswith("/"):
        url = Path(value).as_uri()
        return ChannelLocation(value, url, (url,))
    rc = condarc or Condarc(origin="(no .condarc)")
    alias = rc.channel_alias.rstrip("/")
    canonical_by_alias = f"{alias}/{value}" if alias else None
    parts = value.split("/")
    for n in range(len(parts), 0, -1):
        prefix = "/".join(parts[:n])
        if prefix in rc.custom_channels:
            mirror = f"{rc.custom_channels[prefix]}/{value}"
            return ChannelLocation(value, canonical_by_alias or mirror, (mirror,))
    for url in rc.default_channels:
        if _is_url(url) and url.endswith("/" + value):
            return ChannelLocation(value, canonical_by_alias or url, (url,))
    if canonical_by_alias:
        return ChannelLocation(value, canonical_by_alias, (canonical_by_alias,))
    if fallback_alias:
        url = f"{fallback_alias.rstrip('/')}/{value}"
        return ChannelLocation(value, url, (url,))
    raise LockError(
        f"conda channel {value!r} has no URL: no channel_alias, custom_channels entry or "
        "default_channels URL names it",
        hint='say where it is with config.conda_channel(channel="""channel_alias: <URL>""") '
             "or a custom_channels entry, or list the channel's full URL; or set "
             f"{options.CONDA_CHANNEL_ALIAS.name} for every file on this machine",
    )


def resolve_channels(names: Sequence[str], condarc: Condarc | None,
                     specs: Sequence[str] = (),
                     fallback_alias: str = "") -> tuple[ChannelLocation, ...]:
    """Resolve a channel list in priority order: ``defaults`` expands to default_channels,
    and channels named only in ``chan::pkg`` specs come last (conda and pixi add them too).
    Duplicates (same canonical URL) keep their first position."""
    rc = condarc or Condarc(origin="(no .condarc)")
    wanted = list(names)
    for spec in specs:
        channel, _, _ = conda_spec_channel(spec)
        if channel:
            wanted.append(channel)
    out: dict[str, ChannelLocation] = {}
    for name in wanted:
        name = name.strip().rstrip("/")
        if name == "defaults":
            if not rc.default_channels:
                raise LockError(
                    "the channel list has 'defaults' but no default_channels are configured",
                    hint="set default_channels in config.conda_channel or, for every "
                         f"file on this machine, {options.CONDA_DEFAULT_CHANNELS.name}; or "
                         "use nodefaults")
            expanded = [resolve_channel(d, rc, fallback_alias)
                        for d in rc.default_channels if d != "defaults"]
        else:
            expanded = [resolve_channel(name, rc, fallback_alias)]
        for location in expanded:
            out.setdefault(location.canonical, location)
    return tuple(out.values())


def effective_channels(env_channels: Sequence[str], condarc: Condarc | None, *,
                       nodefaults: bool = False, first: Sequence[str] = ()) -> tuple[str, ...]:
    """conda's channel order: ``first`` (install.conda_packages channel=), env.yaml's, then
    the .condarc ``channels`` unless env.yaml says ``nodefaults``. Without a .condarc nothing
    is appended: envnix does not invent conda's implicit ``defaults``."""
    names = [*first, *env_channels]
    if condarc is not None and not nodefaults:
        names += condarc.channels
    out: dict[str, None] = {}
    for name in names:
        out.setdefault(name.strip().rstrip("/"), None)
    return tuple(out)

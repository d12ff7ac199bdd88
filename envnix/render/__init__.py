"""Render: ImageSpec + Lock -> a self-contained directory that Nix builds.

The directory carries everything `nix build` needs with no envnix installed: the Nix
expression (from templates/*.j2), plan.json (artifacts and layer grouping, from the lock),
image-config.json (the OCI config template) and the builder programs.

The output directory is envnix's: a marker file (``MARKER``) says envnix made it, a directory
that is neither empty nor marked is refused (it may hold the user's files), and even in its
own directory render removes only the entries it writes. Everything lands inside it: image
paths must be absolute and normalised, and no symbolic link is followed while writing (a
cloned repository can ship a ``.envnix`` holding links to anywhere on the host).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from envnix import __version__
from envnix.core.errors import SpecError, UsageError, os_reason
from envnix.core.fileio import atomic_write
from envnix.core.nixexpr import check_artifact, nix_string, store_name
from envnix.core.reference import default_name, image_name
from envnix.core.schema import check_version
from envnix.lock.apt.resolver import auto_installed
from envnix.lock.model import IMAGE_FORMAT, LOCK_NAME, Lock
from envnix.lock.toolchain_pin import for_lock
from envnix.render.baseimage import base_layers, inherit_config, merged_env
from envnix.render.context import MOUNT_HOST, check_copies, ignore_file, load_ignore
from envnix.render.files import (
    INIT_PATH,
    files_tree,
    image_files,
    image_path,
    init_script,
)
from envnix.spec import CONDA_PREFIX, CudaSpec, ImageSpec, with_base_python
from envnix.spec.cuda import gpu_labels, implied_by_wheels, variant_for
from envnix.spec.cuda_provider import provider as provider_named

# The --toolchain host escape hatch only (NOT reproducible, never the default): where the
# machine's python3 (image.nix's hostPython) and its libraries are, shown to the sandbox.
HOST_SANDBOX_PATHS = ("/usr", "/lib", "/lib64")
# The one Nix setting envnix does not leave to the user's nix.conf: builders that could see the
# host could make other bytes. Everything else (substituters, keys, builders, max-jobs) is the
# user's; see envnix.nix.build_options and docs/nix-config.md.
NIX_BASE_OPTIONS = ("--option", "sandbox", "true")

# Artifacts at least this big (compressed) get a layer of their own, so changing a small
# package never re-uploads torch; the rest are grouped by kind. Stays far below ~100 layers.
OWN_LAYER_BYTES = 10 * 1024 * 1024
MAX_LAYERS = 100


@dataclass(frozen=True)
class Rendered:
    directory: Path
    tag: str
    toolchain: str
    compression: str = "gzip"
    slim: bool = False


def nix_options(toolchain: str) -> list[str]:
    """Options every build of a rendered project needs: the sandbox, plus the host's paths for
    the (non-reproducible) host toolchain. The user's own Nix settings are not in here."""
    opts = list(NIX_BASE_OPTIONS)
    if toolchain == "host":
        opts += ["--option", "extra-sandbox-paths", " ".join(HOST_SANDBOX_PATHS)]
    return opts


# Every timestamp in an image: file mtimes in layers, the config's ``created``. A constant, not
# the calling shell's SOURCE_DATE_EPOCH: the lock alone decides the bytes, so `lock --check`
# saying "up to date" means the same digest (the lock holds no time of its own).
IMAGE_EPOCH = 0


def _artifact_key(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def plan_layers(artifacts: dict[str, dict[str, Any]], with_files: bool = False,
                with_context: bool = False, custom_base: bool = False,
                with_nixpkgs_cuda: bool = False, with_triggers: bool = False,
                base_meta: bool = False) -> list[dict[str, Any]]:
    """Group artifacts into layers: skeleton, OS, conda, pip, tools, metadata, triggers; big
    artifacts alone.

    On a base(image=...) the base's layers come first and bring the OS: no skeleton; a
    metadata layer only with ``base_meta`` (apt packages or users on the base: mkmeta.py
    then merges the base's dpkg database and accounts with what is added).
    """
    layers: list[dict[str, Any]] = ([] if custom_base else
                                    [{"name": "skeleton", "trees": ["@skeleton"]}])
    for kinds, group in ((("deb",), "os"), (("conda",), "conda"),
                         (("wheel", "sdist", "git"), "pip"),
                         (("tool",), "tools")):
        keys = sorted(k for k, a in artifacts.items() if a["kind"] in kinds)
        small = [k for k in keys if artifacts[k]["size"] < OWN_LAYER_BYTES]
        big = [k for k in keys if artifacts[k]["size"] >= OWN_LAYER_BYTES]
        if small:
            layers.append({"name": group, "trees": small})
        for key in big:
            layers.append({"name": f"{group}-{store_name(artifacts[key]['name'])}", "trees": [key]})
    if with_nixpkgs_cuda:  # cudaPackages and their closure (builders/nix_closure.py)
        layers.append({"name": "cuda-nixpkgs", "trees": ["@cuda-nixpkgs"]})
    if with_context:
        layers.append({"name": "context", "trees": ["@context"]})
    if with_files:
        layers.append({"name": "config", "trees": ["@files"]})
    # run() groups come last, as in envd, each its own layer over everything below it (see
    # the template: their whiteouts only mean something over the layers beneath).
    if not custom_base or base_meta:
        layers.append({"name": "meta", "trees": ["@meta"]})
        if with_triggers:  # the caches the image's own tools compile over all of the above
            layers.append({"name": "triggers", "trees": ["@triggers"]})
    if len(layers) > MAX_LAYERS:
        big = sum(1 for a in artifacts.values() if a["size"] >= OWN_LAYER_BYTES)
        raise SpecError(f"the image would have {len(layers)} layers, more than the limit of "
                        f"{MAX_LAYERS}: each of its {big} packages of "
                        f"{OWN_LAYER_BYTES >> 20} MiB or more is a layer of its own",
                        hint="leave out some large packages, or move them into a base image "
                             "(base(image=...))")
    return layers


# Packages whose postinst or file trigger compiles a cache, and the triggers.py entry for each
# (Ubuntu's t64 names too). An image with none of them has no triggers layer at all.
TRIGGER_PACKAGES: dict[str, tuple[str, ...]] = {
    "libglib2.0-0": ("glib-schemas", "gio-modules"),
    "libglib2.0-0t64": ("glib-schemas", "gio-modules"),
    "libgdk-pixbuf-2.0-0": ("gdk-pixbuf-loaders",),
    "libgdk-pixbuf2.0-0": ("gdk-pixbuf-loaders",),
    "shared-mime-info": ("mime",),
    "fontconfig": ("fontconfig",),
    "locales": ("locales",),
    "python3-minimal": ("python-bytecode",),
}


def image_triggers(lock: Lock) -> list[str]:
    """The cache triggers the locked apt packages bring (on a base(image=...): those the
    packages added to it bring)."""
    names = {p["name"] for p in lock.apt_packages}
    return sorted({t for pkg, ts in TRIGGER_PACKAGES.items() if pkg in names for t in ts})


def lock_artifacts(lock: Lock) -> dict[str, dict[str, Any]]:
    """Every artifact Nix fetches for ``lock``, keyed ``kind:name`` as the layer plan names
    them: templates/image.nix derives the same list from the lock at evaluation, and a
    ``--store`` build seeds these (same URL, sha256 and store name), each checked as Nix
    would fetch it."""
    artifacts: dict[str, dict[str, Any]] = {}

    def pinned(kind: str, entry: dict[str, Any], file_name: str) -> None:
        """A .deb, wheel, sdist or tool: fetched from its URL at its sha256."""
        artifacts[_artifact_key(kind, entry["name"])] = {
            "kind": kind, "name": entry["name"], "version": entry["version"],
            "url": entry["url"], "sha256": entry["sha256"], "size": entry["size"],
            "storeName": store_name(file_name),
        }

    for pkg in lock.apt_packages:
        pinned("deb", pkg, pkg["url"].rsplit("/", 1)[-1])
    for pkg in lock.conda_packages:
        # Nix's builtin fetcher takes one URL: the channel's configured mirror (what this
        # machine reached when locking) before the canonical URL. The hash pins the bytes.
        fetch_url = (pkg.get("mirrors") or [pkg["url"]])[0]
        artifacts[_artifact_key("conda", pkg["name"])] = {
            "kind": "conda", "name": pkg["name"], "version": pkg["version"], "url": fetch_url,
            "sha256": pkg["sha256"], "size": pkg["size"], "fn": pkg["fn"],
            "storeName": store_name(pkg["fn"]),
        }
    for wheel in lock.pip_wheels:
        pinned("wheel", wheel, wheel["filename"])
    builds = lock.source_builds or {}
    for sdist in lock.sdists:  # built into a wheel inside Nix (builders/build_sdist.py)
        pinned("sdist", sdist, sdist["filename"])
    for wheel in builds.get("wheels", []):  # the build root's: never in a layer
        pinned("build-wheel", wheel, wheel["filename"])
    for pkg in builds.get("debs", []):
        pinned("build-deb", pkg, pkg["url"].rsplit("/", 1)[-1])
    for tool in lock.tools:  # install.uv, ...: the members builders/install_tool.py places
        pinned("tool", tool, tool["filename"])
    for file in lock.http_files:  # io.http: the later of two calls for one name wins
        artifacts[_artifact_key("http", file["filename"])] = {
            "kind": "http", "name": file["filename"], "url": file["url"],
            "sha256": file["sha256"], "size": file["size"],
            "storeName": store_name(file["filename"]),
        }
    for key, artifact in artifacts.items():  # what Nix will fetch, as this user
        check_artifact(artifact, f"artifact {key}", LOCK_NAME)
    return artifacts


def git_sources(lock: Lock) -> dict[str, dict[str, Any]]:
    """The pip git references, keyed as the layer plan names them (``sdist:NAME``, built as
    sdists are): Nix fetches them with builtins.fetchGit at the pinned commit, so they are no
    fixed-output artifacts (nothing to seed or check by sha256)."""
    return {_artifact_key("sdist", g["name"]): {"kind": "git", "name": g["name"], "size": 0}
            for g in lock.git_sources}


SERVING_USER = "envd"
"""The account a serving image with config.owner gets for those ids (envd's user name)."""


def image_plan(spec: ImageSpec, lock: Lock) -> dict[str, Any]:
    """The image section's layer plan: how artifacts group into layers, the base layers,
    users, run() steps, and what the image's apt, Python and triggers need."""
    artifacts = lock_artifacts(lock)
    base = base_layers(lock.base) if lock.base else []
    for i, layer in enumerate(base):
        check_artifact(layer, f"base layer {i + 1}", LOCK_NAME)
    python = spec.python
    nixpkgs_cuda = provider_named(spec.cuda.provider).nix_plan(spec.cuda) if spec.cuda else None
    triggers = image_triggers(lock)
    return {
        "mtime": IMAGE_EPOCH,
        "workdir": spec.workdir,
        "condaPrefix": CONDA_PREFIX,
        "python": {
            "interpreter": python.interpreter if python else "",
            "sitePackages": python.site_packages if python else "",
            "scriptsDir": python.scripts_dir if python else "",
            "dataDir": python.data_dir if python else "",
            "headersRoot": python.headers_dir if python else "",
            "version": python.version if python else "",
        },
        "layers": plan_layers({**artifacts, **git_sources(lock)},
                              with_files=bool(image_files(spec) or spec.runtime.mounts),
                              with_context=bool(spec.copies or lock.http_files),
                              custom_base=lock.base is not None,
                              with_nixpkgs_cuda=nixpkgs_cuda is not None,
                              with_triggers=bool(triggers),
                              base_meta=bool(lock.base and (lock.apt_packages or spec.dev))),
        "triggers": triggers,
        "nixpkgsCuda": nixpkgs_cuda,
        "baseLayers": base,
        # the sha256 of the base's dpkg status the apt packages were resolved against
        **({"baseStatus": lock.base["system"]["dpkg_status"]}
           if lock.base and "system" in lock.base else {}),
        "users": ([[spec.dev.user, spec.dev.uid, spec.dev.gid, spec.dev.home,
                    spec.dev.shell_path]] if spec.dev else
                  [[SERVING_USER, *spec.owner, f"/home/{SERVING_USER}", "/bin/sh"]]
                  if spec.owner and not lock.base else []),
        "runs": [{"commands": r.commands, **({"mountHost": True} if r.mount_host else {})}
                 for r in spec.runs],
        "aptSources": image_apt_sources(spec, lock),
        "aptAuto": image_apt_auto(lock),
        "runEnv": dict(item.split("=", 1) for item in (
            merged_env(spec, lock.base) if lock.base
            else spec.env_list(cuda_library_dirs(spec, lock)))),
    }


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def reads_context(spec: ImageSpec) -> bool:
    """Whether Nix imports files of the context (io.copy, run(mount_host=True)): then the
    ignore rules decide which."""
    return bool(spec.copies) or any(r.mount_host for r in spec.runs)


def image_sources(spec: ImageSpec, context: Path) -> dict[str, str]:
    """sha256 of each context file the image was described from (manifest, load()ed files,
    env.yaml, requirements files, the ignore file io.copy honours): Nix checks them."""
    names = {*spec.sources, *spec.pip.requirements_files}
    ignore = ignore_file(context) if reads_context(spec) else None
    if ignore:
        names.add(ignore)
    out = {}
    for name in sorted(names):
        path = context / name
        if path.is_file():
            out[name] = _sha256_file(path)
    return out


def image_section(spec: ImageSpec, lock: Lock, context: Path) -> dict[str, Any]:
    """The lock's image section for ``spec``: everything lib.buildImage needs besides the
    artifacts, computed here once so that `envnix build` and a Nix-only build agree."""
    spec = with_locked_cuda(spec, lock)
    for copy in spec.copies:  # the frontend checks these too; this does not rely on it
        image_path(copy.target, "io.copy target", root_ok=True)
    tree = files_tree(spec)
    owner = ([spec.dev.uid, spec.dev.gid] if spec.dev
             else list(spec.owner) if spec.owner else [0, 0])
    if spec.copies:
        check_copies(context, spec.copies)
    if any(r.mount_host for r in spec.runs):
        check_copies(context, [MOUNT_HOST])
    return {
        "format": IMAGE_FORMAT,
        # The context directory's name when first locked: envd's image name and working
        # directory come from it, so a checkout under another name reads it back from here.
        "name": spec.name,
        "defaultTag": f"{default_name(spec.name)}:dev",  # image.nix's tag unless given one
        "plan": image_plan(spec, lock),
        "config": image_config(spec, lock),
        "files": {rel: [text, mode, *(owner if in_home else [0, 0])]
                  for rel, (text, mode, in_home) in sorted(tree.files.items())},
        "mounts": tree.mounts,
        "copies": [{"source": c.source, "target": c.target} for c in spec.copies],
        "copyOwner": owner,  # envd chowns copies to the dev user (or config.owner's ids)
        "ignore": [{"regex": r.regex, "negate": r.negate} for r in load_ignore(context)]
                  if reads_context(spec) else [],
        "sources": image_sources(spec, context),
        # include(git=URL): each repository's commit and the sha256 of its .envd files, so
        # later evaluations read the same commit (only then: other locks keep their bytes)
        **({"includes": spec.includes} if spec.includes else {}),
        # a slim base (debian:12-slim): image.nix packs it as --slim does
        **({"slim": True} if spec.slim else {}),
    }


APT_SOURCES_LIST = "/etc/apt/sources.list"


def image_apt_sources(spec: ImageSpec, lock: Lock) -> list[dict[str, Any]]:
    """The archives the lock read, for the image's own apt (mkmeta.py writes them when apt is
    in the image): ``apt-get install`` inside a dev image reads what the image came from.
    Nothing when ``config.apt_source`` wrote sources.list: as in envd, that is apt's only list.
    Flat repositories (a CUDA repository) are left out: the image has no keyring for them,
    and one unverifiable source makes every ``apt-get update`` fail."""
    if APT_SOURCES_LIST in spec.files or lock.base is not None:  # a base keeps its own
        return []
    out = []
    for src in lock.apt_sources:
        if src.get("flat"):
            continue
        entry = {"uri": src["uri"], "suite": src["suite"], "components": src["components"]}
        if src.get("snapshot"):
            entry["snapshot"] = src["snapshot"]
        out.append(entry)
    return out


def image_apt_auto(lock: Lock) -> list[str]:
    """The packages the image's apt should see as automatically installed (extended_states),
    so ``apt-get autoremove`` treats them as after ``apt-get install`` of the image's
    packages; nothing without apt in the image."""
    names = {p["name"] for p in lock.apt_packages}
    if "apt" not in names or lock.base is not None:
        return []
    roots = [r.split("=", 1)[0] for r in lock.inputs.get("apt", {}).get("packages", [])]
    return auto_installed(lock.apt_packages, roots)


def _remove(path: Path) -> None:
    """Remove ``path`` whatever it is; a symbolic link is removed, never followed."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _real_dir(path: Path) -> Path:
    """``path`` as a directory of its own: a link or file under that name is replaced."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(exist_ok=True)
    return path


def _mkdirs(root: Path, rel: str) -> Path:
    """Make ``root/rel``'s directories one by one, refusing to go through anything but a
    directory (a file, or a link, where a directory was asked for)."""
    current = root
    for part in [p for p in rel.split("/") if p]:
        current = current / part
        try:
            os.mkdir(current)
        except FileExistsError:
            if current.is_symlink() or not current.is_dir():
                raise SpecError(f"image path /{rel} lies below the file "
                                f"/{current.relative_to(root).as_posix()}") from None
    return current


def with_locked_cuda(spec: ImageSpec, lock: Lock) -> ImageSpec:
    """``spec`` with the CUDA its pip packages brought (torch's NVIDIA wheels) when
    install.cuda asked for none: the image then gets the same NVIDIA env, library path and
    GPU labels as if it had. Only the lock knows the release, so this happens here. The
    same goes for the Python of a base(image=...) (spec.with_base_python)."""
    spec = with_base_python(spec, lock.base)
    if spec.cuda is not None or spec.python is None:
        return spec
    implied = implied_by_wheels((w["name"], w["version"]) for w in lock.pip_wheels)
    if implied is None:
        return spec
    version, cudnn, source = implied
    cuda = CudaSpec(version=version, cudnn=cudnn, provider="pypi",
                    variant=variant_for(cudnn, dev=False), components=[], requirements=[],
                    implied_by=f"pip: {source}")
    return dataclasses.replace(spec, cuda=cuda, labels={**spec.labels,
                                                        **gpu_labels(version, cudnn)})


def cuda_library_dirs(spec: ImageSpec, lock: Lock) -> list[str]:
    """The image directories of the locked CUDA libraries, as the spec's provider lays them
    out. From the lock, not the spec: packages pull CUDA libraries install.cuda did not name
    (torch's component wheels, another release's apt packages), and the loader must find
    those too."""
    if spec.cuda is None:
        return []
    return provider_named(spec.cuda.provider).library_dirs(
        spec.cuda, spec.python.site_packages if spec.python else None,
        apt_packages=(p["name"] for p in lock.apt_packages),
        wheels=(w["name"] for w in lock.pip_wheels))


def image_config(spec: ImageSpec, lock: Lock) -> dict[str, Any]:
    """The OCI config minus rootfs/history (which mkimage fills from the built layers)."""
    created = datetime.fromtimestamp(IMAGE_EPOCH, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rt = spec.runtime
    labels = {
        "io.envnix.version": __version__,  # io.envnix.lock.digest: image.nix adds it
        "io.envnix.manifest": f"{spec.manifest}:{spec.function}",
        "ai.tensorchord.envd.build.manifestFile": spec.manifest,
        **spec.labels,
    }
    graph = {"commands": rt.commands, "expose": rt.expose, "daemon": rt.daemon,
             "init": rt.init, "mounts": rt.mounts, "environ": spec.env}
    if any(graph.values()):
        labels["ai.tensorchord.envd.graph.runtime"] = json.dumps(graph, sort_keys=True)
    config: dict[str, Any] = {
        "Env": spec.env_list(cuda_library_dirs(spec, lock)),
        "WorkingDir": spec.workdir,
        "Cmd": [spec.dev.shell_path] if spec.dev else ["/bin/sh"],
        "Labels": labels,
    }
    ports = [p["envd_port"] for p in rt.expose] + ([8888] if rt.jupyter and spec.dev else [])
    if ports:
        config["ExposedPorts"] = {f"{p}/tcp": {} for p in sorted(set(ports))}
    if rt.entrypoint:
        config["Entrypoint"] = rt.entrypoint
    elif init_script(spec):
        config["Entrypoint"] = [INIT_PATH]
    if spec.dev:
        config["User"] = spec.dev.user
    if lock.base:
        inherit_config(config, spec, lock.base)
    return {"architecture": lock.platform.split("/", 1)[1], "os": "linux", "created": created,
            "config": config}


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: (resources.files("envnix.templates") / name).read_text("utf-8")
        ),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters["nix"] = nix_string  # every value pasted into a .nix file goes through this
    return env


def _write(path: Path, text: str) -> None:
    """Atomic write, skipped when unchanged (keeps mtimes stable for tools that watch them)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    atomic_write(path, text, skip_unchanged=True)


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _write_zstandard(directory: Path, needed: bool) -> None:
    """Give the host toolchain's Python the ``zstandard`` module for .conda packages.

    Debian's python3 has no zstandard, and ``python -E`` ignores PYTHONPATH, so the builders
    take a directory holding a copy of envnix's own installed zstandard as ``zstdPath``. Only
    the installed module is copied (same CPython ABI as the host's python3 on Debian 12).
    """
    if not needed:
        _remove(directory)
        return
    import zstandard

    source = Path(zstandard.__file__).parent
    _remove(directory)  # always a fresh copy: a shipped .envnix must not bring its own module
    directory.mkdir()
    for file in sorted(source.rglob("*")):
        rel = file.relative_to(source).as_posix()
        if file.is_dir() or "__pycache__" in rel or rel.endswith(".pyi"):
            continue
        parent = _mkdirs(directory, posixpath.dirname(f"zstandard/{rel}"))
        atomic_write(parent / file.name, file.read_bytes())


# What render writes at the top of its output directory: nothing else there is touched.
MARKER = ".envnix-generated"
MARKER_FORMAT = 1
_BUILDER_NAME = re.compile(r"[A-Za-z0-9_]+\.py")


def _read_marker(out_dir: Path) -> dict[str, Any] | None:
    """The marker's record when ``out_dir`` carries a valid one (a regular file), else None."""
    marker = out_dir / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    if type(data.get("format")) is int and data["format"] > MARKER_FORMAT:  # a newer envnix's
        check_version(data, "format", MARKER_FORMAT, str(marker), UsageError, made="written",
                      missing=None, hint="upgrade envnix, or give another directory with "
                                         "--out-dir")
    if data.get("format") != MARKER_FORMAT:
        return None
    builders = data.get("builders")
    ok = isinstance(builders, list) and all(isinstance(b, str) for b in builders)
    return {"builders": builders if ok else []}


def _made_before_markers(out_dir: Path) -> bool:
    """A project rendered by an envnix older than the marker: its default.nix says so."""
    nix = out_dir / "default.nix"
    if nix.is_symlink() or not nix.is_file():
        return False
    try:
        with nix.open("rb") as fh:
            return fh.read(64).startswith(b"# Generated by envnix ")
    except OSError:
        return False


def _write_marker(out_dir: Path, builders: list[str]) -> None:
    atomic_write(out_dir / MARKER, _json({
        "about": "made by envnix render: envnix rewrites this directory's own entries",
        "format": MARKER_FORMAT, "builders": sorted(set(builders))}), skip_unchanged=True)


def claim_out_dir(out_dir: Path) -> list[str]:
    """Make ``out_dir`` envnix's output directory, or refuse it; returns the builder files
    the last render wrote there (the only files of builders/ a new render may remove)."""
    if out_dir.is_symlink():
        raise UsageError(f"output directory {out_dir} is a symbolic link: envnix writes only "
                         "into a directory of its own",
                         hint="remove the link, or give the real directory with --out-dir")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output directory {out_dir} is not a directory",
                         hint="give a new or empty directory with --out-dir")
    if not out_dir.exists():
        out_dir.mkdir(parents=True)
        return []
    record = _read_marker(out_dir)
    if record is not None:
        return list(record["builders"])
    if any(os.scandir(out_dir)) and not _made_before_markers(out_dir):
        raise UsageError(f"output directory {out_dir} is not empty and was not made by envnix "
                         f"(it has no {MARKER}); envnix would replace its files/, builders/ "
                         "and context/", hint="give a new or empty directory with --out-dir")
    return []


# What renders before lib.buildImage wrote and a render now removes from its own directory.
_FORMER_ENTRIES = ("plan.json", "image-config.json", "files", "context", "flake.nix")


def render(spec: ImageSpec, lock: Lock, out_dir: Path, tag: str,
           toolchain: str = "pinned", context: Path | None = None,
           compression: str = "gzip", slim: bool = False) -> Rendered:
    """Write the Nix project for ``spec`` + ``lock`` into ``out_dir``: templates/image.nix
    (lib.buildImage of envnix's flake), the builders, the toolchain pin and the lock with its
    image section, and a default.nix that calls image.nix on the build context (with
    ``compression`` and ``slim``, lib.buildImage's arguments, as its defaults)."""
    image_name(tag, "the tag")
    spec = with_locked_cuda(spec, lock)
    nixpkgs_cuda = spec.cuda is not None and provider_named(spec.cuda.provider).installer == "nix"
    if nixpkgs_cuda and os.environ.get("NIXPKGS_ALLOW_UNFREE") != "1":
        raise UsageError("CUDA from nixpkgs is unfree (NVIDIA's licence) and nixpkgs builds "
                         "it only when you accept that",
                         hint="set NIXPKGS_ALLOW_UNFREE=1, or use --cuda-provider pypi")
    if context is None:  # a spec read from no files (tests, tools): nothing to copy or check
        if spec.copies or spec.sources:
            raise ValueError("render: io.copy and source checks need the build context")
        out_dir.mkdir(parents=True, exist_ok=True)
        context = out_dir
    if lock.image is None:  # every check comes before the first write
        lock = dataclasses.replace(lock, image=image_section(spec, lock, context))
    try:
        _render_into(out_dir, spec, lock, tag, toolchain, context, compression, slim)
    except OSError as exc:
        where = exc.filename or out_dir
        raise UsageError(f"cannot write {where}: {os_reason(exc)}",
                         hint="check the output directory's permissions and free space, or "
                              "give another with --out-dir") from None
    return Rendered(out_dir, tag, toolchain, compression, slim)


def _render_into(out_dir: Path, spec: ImageSpec, lock: Lock, tag: str, toolchain: str,
                 context: Path, compression: str, slim: bool) -> None:
    previous = claim_out_dir(out_dir)
    source = resources.files("envnix.builders")
    wanted = sorted(p.name for p in source.iterdir()
                    if p.name.endswith(".py") and p.name != "__init__.py")
    _write_marker(out_dir, [*previous, *wanted])  # before anything else: it is envnix's now
    pin = for_lock(lock.toolchain)  # the lock's own, or (older locks) the shipped one
    variables = {
        "envnix_version": __version__,
        "manifest": spec.manifest,
        "tag": tag,
        "toolchain": toolchain,
        "compression": compression,
        "slim": str(slim).lower(),
        # relative, so the project moves with its context (and the goldens hold no tmp path)
        "context": "/" + os.path.relpath(context.resolve(), out_dir.resolve()),
        "nix_options": " ".join(f"'{o}'" if " " in o or not o else o
                                for o in nix_options(toolchain)),
    }
    for name in _FORMER_ENTRIES:
        _remove(out_dir / name)
    _write(out_dir / "default.nix", _templates().get_template("default.nix.j2").render(variables))
    _write(out_dir / "image.nix", (resources.files("envnix.templates") / "image.nix")
           .read_text("utf-8"))
    _write(out_dir / "toolchain-pin.json", _json(pin.for_nix()))
    # The Nix code that makes the pinned toolchain: one file, also envnix's own flake's.
    _write(out_dir / "toolchain.nix",
           (resources.files("envnix.toolchain") / "toolchain.nix").read_text("utf-8"))
    _write(out_dir / LOCK_NAME, lock.dumps())
    # Only the host toolchain needs a copy of zstandard (.conda, zstd layers): pinned has it.
    _write_zstandard(out_dir / "toolchain", needed=toolchain == "host" and (compression == "zstd"
                     or any(p["fn"].endswith(".conda") for p in lock.conda_packages)
                     or any(t["filename"].endswith(".conda") for t in lock.tools)))
    builders = _real_dir(out_dir / "builders")
    for name in previous:  # only builder files envnix wrote there itself
        stale = builders / name
        if name not in wanted and _BUILDER_NAME.fullmatch(name) and (
                stale.is_file() or stale.is_symlink()):
            stale.unlink()
    for name in wanted:
        _write(builders / name, (source / name).read_text("utf-8"))
    _write_marker(out_dir, wanted)

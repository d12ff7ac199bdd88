"""Render: ImageSpec + Lock -> a self-contained directory that Nix builds.

The directory carries everything `nix build` needs with no envnix installed: the Nix
expression (from templates/*.j2), plan.json (artifacts and layer grouping, from the lock),
image-config.json (the OCI config template) and the builder programs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from envnix import __version__
from envnix.errors import UsageError
from envnix.fileio import atomic_write
from envnix.lock.lockfile import LOCK_NAME, Lock
from envnix.lock.schema import PLAN_SCHEMA
from envnix.render.context import write_context_tree
from envnix.spec import CONDA_PREFIX, CudaSpec, ImageSpec, cuda_apt, cuda_nixpkgs
from envnix.spec.cuda import gpu_labels, implied_by_wheels, library_dir, variant_for

HOST_PYTHON = "/usr/bin/python3"
HOST_SANDBOX_PATHS = ("/usr", "/lib", "/lib64")
NIX_BASE_OPTIONS = (
    "--option", "sandbox", "true", "--option", "substituters", "",
    # Fetches and layer compression are independent derivations: build them in parallel.
    "--option", "max-jobs", "auto",
)

# Artifacts at least this big (compressed) get a layer of their own, so changing a small
# package never re-uploads torch; the rest are grouped by kind. Stays far below ~100 layers.
OWN_LAYER_BYTES = 10 * 1024 * 1024
MAX_LAYERS = 100


@dataclass(frozen=True)
class Rendered:
    directory: Path
    tag: str
    toolchain: str


def nix_options(toolchain: str) -> list[str]:
    """Options every Nix call needs here: sandboxed, no binary cache, host python visible."""
    opts = list(NIX_BASE_OPTIONS)
    if toolchain == "host":
        opts += ["--option", "extra-sandbox-paths", " ".join(HOST_SANDBOX_PATHS)]
    return opts


def store_name(text: str) -> str:
    """A valid Nix store path name (letters, digits, + - . _ ? =; no leading dot)."""
    name = re.sub(r"[^A-Za-z0-9+._?=-]", "-", text).lstrip(".")
    return name[:180] or "artifact"


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        return int(value)
    except ValueError:
        return 0


def _artifact_key(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def plan_layers(artifacts: dict[str, dict[str, Any]], with_files: bool = False,
                with_context: bool = False, custom_base: bool = False,
                with_nixpkgs_cuda: bool = False) -> list[dict[str, Any]]:
    """Group artifacts into layers: skeleton, OS, pip, metadata; big artifacts alone.

    On a base(image=...) the base's layers come first and bring the OS: no skeleton and no
    metadata layer (its /etc/passwd would replace the base's).
    """
    layers: list[dict[str, Any]] = ([] if custom_base else
                                    [{"name": "skeleton", "trees": ["@skeleton"]}])
    for kind, group in (("deb", "os"), ("conda", "conda"), ("wheel", "pip")):
        keys = sorted(k for k, a in artifacts.items() if a["kind"] == kind)
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
    if not custom_base:
        layers.append({"name": "meta", "trees": ["@meta"]})
    if len(layers) > MAX_LAYERS:  # fold the smallest own-layer artifacts back into their group
        raise ValueError(f"{len(layers)} layers exceed the limit of {MAX_LAYERS}")
    return layers


def build_plan(spec: ImageSpec, lock: Lock, tag: str) -> dict[str, Any]:
    from envnix.render.baseimage import base_layers, merged_env

    artifacts: dict[str, dict[str, Any]] = {}
    for pkg in lock.apt_packages:
        artifacts[_artifact_key("deb", pkg["name"])] = {
            "kind": "deb", "name": pkg["name"], "version": pkg["version"], "url": pkg["url"],
            "sha256": pkg["sha256"], "size": pkg["size"],
            "storeName": store_name(pkg["url"].rsplit("/", 1)[-1]),
        }
    for pkg in lock.conda_packages:
        # The whole record goes to the builder: it becomes conda-meta/<name>-<ver>-<build>.json.
        record = {k: v for k, v in pkg.items() if k not in ("kind", "mirrors")}
        # Nix's builtin fetcher takes one URL: the channel's configured mirror (what this
        # machine reached when locking) before the canonical URL. The hash pins the bytes.
        fetch_url = (pkg.get("mirrors") or [pkg["url"]])[0]
        artifacts[_artifact_key("conda", pkg["name"])] = {
            "kind": "conda", "name": pkg["name"], "version": pkg["version"], "url": fetch_url,
            "sha256": pkg["sha256"], "size": pkg["size"], "fn": pkg["fn"],
            "storeName": store_name(pkg["fn"]),
            "record": json.dumps(record, sort_keys=True, separators=(",", ":")),
        }
    for wheel in lock.pip_wheels:
        artifacts[_artifact_key("wheel", wheel["name"])] = {
            "kind": "wheel", "name": wheel["name"], "version": wheel["version"],
            "url": wheel["url"], "sha256": wheel["sha256"], "size": wheel["size"],
            "storeName": store_name(wheel["filename"]),
        }
    python = spec.python
    nixpkgs_cuda = (cuda_nixpkgs.plan_entry(spec.cuda.version, spec.cuda.cudnn,
                                            spec.cuda.components)
                    if spec.cuda and spec.cuda.provider == "nixpkgs" else None)
    return {
        "schema": PLAN_SCHEMA,  # read back by envnix.lock.schema.read_plan
        "tag": tag,
        "storeName": store_name(tag.replace(":", "-")),
        "mtime": source_date_epoch(),
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
        "artifacts": artifacts,
        "layers": plan_layers(artifacts, with_files=bool(image_files(spec) or spec.runtime.mounts),
                              with_context=bool(spec.copies), custom_base=lock.base is not None,
                              with_nixpkgs_cuda=nixpkgs_cuda is not None),
        "nixpkgsCuda": nixpkgs_cuda,
        "baseLayers": base_layers(lock.base) if lock.base else [],
        "users": ([[spec.dev.user, spec.dev.uid, spec.dev.gid, spec.dev.home,
                    f"/bin/{spec.dev.shell}"]] if spec.dev else []),
        "runs": [{"commands": r.commands} for r in spec.runs],
        "runEnv": dict(item.split("=", 1) for item in (
            merged_env(spec, lock.base) if lock.base
            else spec.env_list(cuda_library_dirs(spec, lock)))),
    }


INIT_PATH = "/usr/local/bin/envnix-init"

# What libpam-runtime's postinst (pam-auth-update) writes with Debian's default profile; without
# maintainer scripts they are missing and sudo aborts ("unable to initialize PAM").
_PAM_COMMON = {
    "auth": "auth\t[success=1 default=ignore]\tpam_unix.so nullok\n"
            "auth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\n",
    "account": "account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so\n"
               "account\trequisite\t\t\tpam_deny.so\naccount\trequired\t\t\tpam_permit.so\n",
    "password": "password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\n"
                "password\trequisite\t\t\tpam_deny.so\npassword\trequired\t\t\tpam_permit.so\n",
    "session": "session\t[default=1]\t\t\tpam_permit.so\nsession\trequisite\t\t\tpam_deny.so\n"
               "session\trequired\t\t\tpam_permit.so\nsession\trequired\tpam_unix.so\n",
}


def _init_script(spec: ImageSpec) -> str | None:
    """A small init for dev images (envd uses horust): runtime.init commands in order, then
    runtime.daemon commands and Jupyter in the background, then the container's command."""
    rt = spec.runtime
    if not spec.dev or not (rt.init or rt.daemon or rt.jupyter):
        return None
    lines = ["#!/bin/sh", "# envnix-init: runtime.init, then runtime.daemon in the background,",
             "# then the command (a shell when none was given).", "set -e"]
    lines += [f"sh -c {shlex.quote(cmd)}" for cmd in rt.init]
    lines += [" ".join(shlex.quote(a) for a in argv) + " &" for argv in rt.daemon]
    if rt.jupyter:
        lines.append(
            "python3 -m notebook --ip 0.0.0.0 --notebook-dir \"$ENVD_WORKDIR\" "
            f"--NotebookApp.token {shlex.quote(str(rt.jupyter['token']))} --port 8888 "
            "--allow-root > /tmp/jupyter.log 2>&1 &")
    lines += ['[ "$#" -gt 0 ] || set -- /bin/' + spec.dev.shell, 'exec "$@"']
    return "\n".join(lines) + "\n"


def image_files(spec: ImageSpec) -> dict[str, tuple[str, int]]:
    """Config files envd writes into the image (path -> (text, mode)); no host state."""
    files = {path: (text, 0o644) for path, text in spec.files.items()}
    if spec.pip.index_url:  # envd writes /etc/pip.conf for config.pip_index
        conf = ["[global]", f"index-url={spec.pip.index_url}"]
        if spec.pip.extra_index_urls:
            conf.append("extra-index-url=" + " ".join(spec.pip.extra_index_urls))
        if spec.pip.trusted_hosts:
            conf.append("trusted-host=" + " ".join(spec.pip.trusted_hosts))
        files["/etc/pip.conf"] = ("\n".join([*conf, "[install]", "src=/tmp"]) + "\n", 0o644)
    if spec.conda.condarc and spec.python and spec.python.provider == "conda":
        files["/opt/conda/.condarc"] = (spec.conda.condarc, 0o644)
    if spec.dev:
        files[f"/etc/sudoers.d/{spec.dev.user}"] = (
            f"{spec.dev.user} ALL=(ALL) NOPASSWD:ALL\n", 0o440)
        for kind, text in _PAM_COMMON.items():
            files[f"/etc/pam.d/common-{kind}"] = (text, 0o644)
        files["/etc/pam.d/common-session-noninteractive"] = (_PAM_COMMON["session"], 0o644)
        # pam_unix's account check needs a shadow entry; '*' = no password, no aging.
        files["/etc/shadow"] = ("".join(f"{user}:*::0:99999:7:::\n" for user in
                                        ("root", "nobody", spec.dev.user)), 0o640)
    init = _init_script(spec)
    if init:
        files[INIT_PATH] = (init, 0o755)
    return files


def _write_files_tree(directory: Path, spec: ImageSpec) -> None:
    """The config files as a package tree (root/ + meta.json) that Nix imports as is."""
    shutil.rmtree(directory, ignore_errors=True)
    files = image_files(spec)
    if not files and not spec.runtime.mounts:
        return
    modes: dict[str, list[int]] = {}
    owner = (spec.dev.uid, spec.dev.gid) if spec.dev else (0, 0)
    for path, (text, mode) in sorted(files.items()):
        target = directory / "root" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(0o755 if mode & 0o111 else 0o644)
        in_home = spec.dev is not None and path.startswith(spec.dev.home + "/")
        if mode not in (0o644, 0o755) or in_home:
            modes[path.lstrip("/")] = [mode, *(owner if in_home else (0, 0))]
    for mount in spec.runtime.mounts:  # envd only creates the mount points at build time
        (directory / "root" / mount.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (directory / "meta.json").write_text(json.dumps(
        {"kind": "files", "name": "config", "version": "0", "modes": modes},
        sort_keys=True, separators=(",", ":")) + "\n")


def with_locked_cuda(spec: ImageSpec, lock: Lock) -> ImageSpec:
    """``spec`` with the CUDA its pip packages brought (torch's NVIDIA wheels) when
    install.cuda asked for none: the image then gets the same NVIDIA env, library path and
    GPU labels as if it had. Only the lock knows the release, so this happens here."""
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
    """The image directories of every NVIDIA wheel's shared libraries, in the lock's order.

    From the lock, not the spec: torch or cuDNN pull component wheels install.cuda did not
    name, and the loader must find those too (cuDNN's libraries carry no RUNPATH to cuBLAS).
    """
    if spec.cuda is not None and spec.cuda.provider == "nixpkgs":
        return [cuda_nixpkgs.LIBRARY_DIR]
    if spec.cuda is not None and spec.cuda.provider == "apt":  # NVIDIA's /usr/local/cuda-X.Y
        return cuda_apt.library_dirs(spec.cuda, (p["name"] for p in lock.apt_packages))
    if spec.cuda is None or spec.python is None or spec.cuda.provider != "pypi":
        return []
    dirs: dict[str, None] = {}
    for wheel in lock.pip_wheels:
        rel = library_dir(wheel["name"], spec.cuda.major)
        if rel:
            dirs.setdefault(f"{spec.python.site_packages}/{rel}", None)
    return list(dirs)


def image_config(spec: ImageSpec, lock: Lock) -> dict[str, Any]:
    """The OCI config minus rootfs/history (which mkimage fills from the built layers)."""
    created = datetime.fromtimestamp(source_date_epoch(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rt = spec.runtime
    labels = {
        "io.envnix.version": __version__,
        "io.envnix.lock.digest": lock.digest,
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
        "Cmd": [f"/bin/{spec.dev.shell}"] if spec.dev else ["/bin/sh"],
        "Labels": labels,
    }
    ports = [p["envd_port"] for p in rt.expose] + ([8888] if rt.jupyter and spec.dev else [])
    if ports:
        config["ExposedPorts"] = {f"{p}/tcp": {} for p in sorted(set(ports))}
    if rt.entrypoint:
        config["Entrypoint"] = rt.entrypoint
    elif _init_script(spec):
        config["Entrypoint"] = [INIT_PATH]
    if spec.dev:
        config["User"] = spec.dev.user
    if lock.base:
        from envnix.render.baseimage import inherit_config

        inherit_config(config, spec, lock.base)
    return {"architecture": "amd64", "os": "linux", "created": created, "config": config}


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: (resources.files("envnix.templates") / name).read_text("utf-8")
        ),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def _write(path: Path, text: str) -> None:
    """Atomic write, skipped when unchanged (keeps mtimes stable for tools that watch them)."""
    atomic_write(path, text, skip_unchanged=True)


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _write_zstandard(directory: Path, needed: bool) -> None:
    """Give the host toolchain's Python the ``zstandard`` module for .conda packages.

    Debian's python3 has no zstandard, and ``python -E`` ignores PYTHONPATH, so the builders
    take a directory holding a copy of envnix's own installed zstandard as ``zstdPath``. Only
    the installed module is copied (same CPython ABI as the host's python3 on Debian 12).
    """
    target = directory / "zstandard"
    if not needed:
        shutil.rmtree(directory, ignore_errors=True)
        return
    import zstandard

    source = Path(zstandard.__file__).parent
    if target.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyi"))


def render(spec: ImageSpec, lock: Lock, out_dir: Path, tag: str,
           toolchain: str = "host", nixpkgs: str = "nixpkgs",
           context: Path | None = None) -> Rendered:
    """Write the Nix project for ``spec`` + ``lock`` into ``out_dir``."""
    spec = with_locked_cuda(spec, lock)
    nixpkgs_cuda = spec.cuda is not None and spec.cuda.provider == "nixpkgs"
    if nixpkgs_cuda and os.environ.get("NIXPKGS_ALLOW_UNFREE") != "1":
        raise UsageError("CUDA from nixpkgs is unfree (NVIDIA's licence) and nixpkgs builds "
                         "it only when you accept that",
                         hint="set NIXPKGS_ALLOW_UNFREE=1, or use --cuda-provider pypi")
    out_dir.mkdir(parents=True, exist_ok=True)
    env = _templates()
    variables = {
        "envnix_version": __version__,
        "manifest": spec.manifest,
        "tag": tag,
        "toolchain": toolchain,
        "nixpkgs": nixpkgs,
        "host_python": HOST_PYTHON,
        "nixpkgs_cuda": nixpkgs_cuda,
        "nix_options": " ".join(f"'{o}'" if " " in o or not o else o
                                for o in nix_options(toolchain)),
    }
    _write(out_dir / "default.nix", env.get_template("default.nix.j2").render(variables))
    _write(out_dir / "flake.nix", env.get_template("flake.nix.j2").render(variables))
    _write(out_dir / "plan.json", _json(build_plan(spec, lock, tag)))
    _write_files_tree(out_dir / "files", spec)
    owner = (spec.dev.uid, spec.dev.gid) if spec.dev else (0, 0)  # envd chowns copies
    if spec.copies and context is None:
        raise ValueError("render: io.copy needs the build context directory")
    write_context_tree(out_dir / "context", context or out_dir, spec.copies, owner)
    _write(out_dir / "image-config.json", _json(image_config(spec, lock)))
    _write(out_dir / LOCK_NAME, lock.dumps())
    _write_zstandard(out_dir / "toolchain",
                     needed=any(p["fn"].endswith(".conda") for p in lock.conda_packages))
    builders = out_dir / "builders"
    builders.mkdir(exist_ok=True)
    source = resources.files("envnix.builders")
    wanted = {p.name for p in source.iterdir()
              if p.name.endswith(".py") and p.name != "__init__.py"}
    for stale in builders.iterdir():
        if stale.name not in wanted:
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink()
    for name in sorted(wanted):
        _write(builders / name, (source / name).read_text("utf-8"))
    return Rendered(out_dir, tag, toolchain)

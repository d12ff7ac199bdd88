"""Load a built image into podman or docker, and check the engine holds the built image.

Why two ways: podman's storage is written directly from the OCI layout (``skopeo copy`` to
``containers-storage:``), which skips every layer podman already has and needs no second copy
of the image; a docker daemon takes only a tar, the one archive envnix builds (an OCI layout and
a docker-archive in one). Afterwards the engine's image ID is compared with the built config
(or manifest) digest, so a stale image of the same name is caught.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from envnix.core import process
from envnix.core.errors import PublishError, ToolMissingError
from envnix.core.progress import REPORTER, Progress
from envnix.core.reference import Reference
from envnix.oci.layout import BuiltImage, require_tool
from envnix.oci.registry import CopyLog, human_size, policy_args


@dataclass(frozen=True)
class LoadResult:
    engine: str
    names: tuple[str, ...]
    image_id: str | None


def docker_status() -> str | None:
    """None when a docker daemon answers, else why not (one line)."""
    docker = shutil.which("docker")
    if not docker:
        return "docker is not installed"
    try:
        proc = process.run([docker, "info", "--format", "{{.ServerVersion}}"],
                           error=PublishError, timeout=20)
    except PublishError:
        return "the docker daemon did not answer within 20 s"
    if proc.returncode == 0 and proc.text.strip():
        return None
    lines = [ln.strip() for ln in (proc.stderr or proc.text).splitlines() if ln.strip()]
    return "docker has no daemon: " + (lines[-1] if lines else
                                       f"docker info exited {proc.returncode}")


def choose_engine(requested: str) -> str:
    """auto: docker when its daemon answers, else podman (daemonless); explicit: that one."""
    if requested == "podman":
        require_tool("podman", "load images into podman")
        return "podman"
    if requested == "docker":
        if reason := docker_status():
            raise PublishError(f"cannot load into docker: {reason}",
                               hint="start the docker daemon (or set DOCKER_HOST), or use "
                                    "--engine podman")
        return "docker"
    docker_reason = docker_status()
    if docker_reason is None:
        return "docker"
    if shutil.which("podman"):
        return "podman"
    if not shutil.which("docker"):
        raise ToolMissingError("no container engine to load into: neither podman nor docker "
                               "is on PATH", hint="install podman (apt-get install podman) or "
                               "docker, or push to a registry with envnix push")
    raise PublishError(f"no container engine to load into: podman is not installed and "
                       f"{docker_reason}",
                       hint="start the docker daemon (or set DOCKER_HOST), or install podman")


_LOADED = re.compile(r"^Loaded image(?:\(s\))?(?: ID)?:\s*(.+)$", re.M)


def load_archive(archive: Path, image: BuiltImage, engine: str, progress: Progress) -> LoadResult:
    """``<engine> load -i image.tar``, then check the engine's image ID is the built one."""
    progress(f"load: {engine} load -i {archive}")
    proc = process.run([engine, "load", "-i", str(archive)], error=PublishError)
    if proc.returncode != 0:
        raise PublishError(f"{engine} load failed: {proc.last_error_line()}",
                           hint=f"run {engine} load -i {archive} to see the full error")
    names = tuple(n.strip() for m in _LOADED.finditer(proc.text) for n in m[1].split(","))
    return LoadResult(engine, names, check_loaded(engine, names[0], image) if names else None)


def check_loaded(engine: str, name: str, image: BuiltImage) -> str | None:
    """The engine's ID of ``name``, which must be the built image's (None if it gives none)."""
    field_name = "{{.Id}}" if engine == "docker" else "{{.ID}}"
    got = process.run([engine, "image", "inspect", "--format", field_name, name],
                      error=PublishError)
    if got.returncode != 0 or not got.text.strip():
        return None
    image_id = "sha256:" + got.text.strip().removeprefix("sha256:")
    # docker with the containerd store reports the manifest digest as the ID.
    if image_id not in (image.config.digest, image.manifest):
        raise PublishError(f"{engine} holds {name} as {image_id}, not the built "
                           f"image {image.config.digest}",
                           hint=f"remove it ({engine} rmi {name}) and load again")
    return image_id


def podman_name(name: str) -> str:
    """The name podman gives an image loaded as ``name``: ``localhost/`` when no registry is
    named (as ``podman load`` of a docker-archive does), so ``podman run name`` finds it."""
    return name if Reference.parse(name).domain else f"localhost/{name}"


def load_into_podman(image: BuiltImage, name: str, progress: Progress,
                     verbose: bool = False) -> LoadResult:
    """Copy the OCI layout into podman's storage; layers podman has are skipped, not copied."""
    skopeo = require_tool("skopeo", "load images into podman")
    target = podman_name(name)
    progress(f"load: {image.manifest[:19]}… -> podman {target} ({len(image.layers)} layers)")
    log = CopyLog(image, progress, stage="load", present="already in podman")

    def on_line(line: str) -> None:
        if verbose:
            REPORTER.verbose(line)
        log.feed(line)

    proc = process.run([skopeo, *policy_args(), "--debug", "copy", "--preserve-digests",
                        image.source, f"containers-storage:{target}"], error=PublishError,
                       on_line=on_line, merge_stderr=True)
    if proc.returncode != 0:
        reason = log.fatal or (log.tail[-1] if log.tail else f"skopeo exited {proc.returncode}")
        raise PublishError(f"loading into podman failed: {reason}",
                           hint="check podman's storage (podman info), or build with --no-load")
    had = [b for b in log.blobs.values() if b.kind == "layer" and b.state == "present"]
    progress(f"load: podman {target}: {len(image.layers) - len(had)} of {len(image.layers)} "
             f"layer(s) stored, {len(had)} already in podman "
             f"({human_size(sum(b.size for b in had))})")
    return LoadResult("podman", (target,), check_loaded("podman", target, image))

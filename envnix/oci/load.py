"""Load a built image into podman or docker, and check the engine holds the built image.

Why through image.tar: both engines accept the one archive envnix builds (an OCI layout and a
docker-archive in one tar), so loading needs no registry; afterwards the engine's image ID is
compared with the built config (or manifest) digest, so a stale image of the same name is caught.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from envnix.core import process
from envnix.core.errors import PublishError, ToolMissingError
from envnix.core.progress import Progress
from envnix.oci.layout import BuiltImage, require_tool


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
    image_id = None
    if names:
        field_name = "{{.Id}}" if engine == "docker" else "{{.ID}}"
        got = process.run([engine, "image", "inspect", "--format", field_name, names[0]],
                          error=PublishError)
        if got.returncode == 0 and got.text.strip():
            image_id = "sha256:" + got.text.strip().removeprefix("sha256:")
            # docker with the containerd store reports the manifest digest as the ID.
            if image_id not in (image.config.digest, image.manifest):
                raise PublishError(f"{engine} holds {names[0]} as {image_id}, not the built "
                                   f"image {image.config.digest}",
                                   hint=f"remove it ({engine} rmi {names[0]}) and load again")
    return LoadResult(engine, names, image_id)

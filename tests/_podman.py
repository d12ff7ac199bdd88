"""Run podman from tests with private storage and the settings that work on these machines.

Why: the default podman setup fails here (crun cannot set rlimits and does not support the
hybrid cgroup layout), and tests must not share image storage with each other or the host.
So every user of this module gets its own directory holding `containers.conf` (runc,
cgroupfs, file events, no network, explicit ulimits, all libpod state inside the directory)
and `storage.conf` (overlay, or vfs where overlay cannot stack; graphroot/runroot inside the
directory), selected through
CONTAINERS_CONF / CONTAINERS_STORAGE_CONF (see shared/testenv/README.md).

    with private_podman(tmp_path / "podman") as env:
        out = podman("run", "--rm", f"oci:{layout}:dev", "/usr/bin/sh", "-c", "echo hi", env=env)
        assert out.stdout == "hi\\n"

Not a conftest fixture on purpose: any test module (or a script) can import it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PodmanError", "have_podman", "podman", "podman_env", "private_podman"]


class PodmanError(AssertionError):
    """A podman command failed; the message carries the command, exit code and stderr.

    An AssertionError so that pytest shows it as a test failure with the full message.
    """


def have_podman() -> bool:
    """True when podman and runc (the runtime the config selects) are installed."""
    return shutil.which("podman") is not None and shutil.which("runc") is not None


def _toml_str(value: str | Path) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def storage_driver(directory: Path) -> str:
    """overlay where the kernel can stack it on ``directory``'s file system, else vfs.

    vfs stores every layer as a full copy of the root file system up to it, so a 9-layer
    CUDA image took over 10 GB and a full test session ~20 GB; overlay stores each layer once.
    ENVNIX_TEST_PODMAN_DRIVER forces one.
    """
    forced = os.environ.get("ENVNIX_TEST_PODMAN_DRIVER")
    if forced:
        return forced
    try:
        with open("/proc/filesystems", encoding="utf-8") as f:
            has_overlay = any(line.split()[-1] == "overlay" for line in f if line.strip())
        fs = subprocess.run(["stat", "-f", "-c", "%T", str(directory)], capture_output=True,
                            text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "vfs"
    # overlay cannot use an overlay or tmpfs upper directory reliably on older kernels.
    return "overlay" if has_overlay and fs not in ("overlayfs", "tmpfs") else "vfs"


def podman_env(workdir: str | Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Write podman's config files into `workdir` and return the environment that selects them.

    `base` is the environment to extend (default: `os.environ`). Storage, runtime state,
    events and temporary copies all live under `workdir`, so deleting it removes everything.
    (libpod's database defaults to `<graphroot>/libpod`. Do not set `static_dir`: podman
    4.3.1 then waits 20 s for every container to exit, "Exceeded conmon timeout".)
    """
    root = Path(workdir).absolute()
    for sub in ("graph", "run", "tmp", "volumes", "copytmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "containers.conf").write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
        'netns = "none"\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f"events_logfile_path = {_toml_str(root / 'events.log')}\n"
        f"tmp_dir = {_toml_str(root / 'tmp')}\n"
        f"volume_path = {_toml_str(root / 'volumes')}\n"
        f"image_copy_tmp_dir = {_toml_str(root / 'copytmp')}\n",
        encoding="utf-8",
    )
    (root / "storage.conf").write_text(
        "[storage]\n"
        f'driver = "{storage_driver(root)}"\n'
        f"runroot = {_toml_str(root / 'run')}\n"
        f"graphroot = {_toml_str(root / 'graph')}\n",
        encoding="utf-8",
    )
    env = dict(os.environ if base is None else base)
    env["CONTAINERS_CONF"] = str(root / "containers.conf")
    env["CONTAINERS_STORAGE_CONF"] = str(root / "storage.conf")
    return env


def podman(
    *args: str,
    env: Mapping[str, str],
    check: bool = True,
    timeout: float = 600,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS...` with `env` (from podman_env); text output captured.

    With `check` (the default) a non-zero exit raises PodmanError showing stderr, so a test
    failure explains itself; pass `check=False` to assert on exit codes yourself.
    """
    cmd = ["podman", *args]
    proc = subprocess.run(
        cmd, env=dict(env), capture_output=True, text=True, timeout=timeout, input=input,
        check=False,
    )
    if check and proc.returncode != 0:
        raise PodmanError(
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
        )
    return proc


@contextmanager
def private_podman(workdir: str | Path) -> Iterator[dict[str, str]]:
    """`podman_env(workdir)`, then on exit podman's storage emptied and unmounted.

    Why: as root, the overlay driver bind-mounts ``graph/overlay`` onto itself and leaves it
    mounted when podman exits, so pytest could not delete the directory and each session
    left gigabytes of layers behind on a disk shared with CI.
    """
    env = podman_env(workdir)
    try:
        yield env
    finally:
        podman("system", "reset", "--force", env=env, check=False, timeout=300)
        graph = str(Path(workdir).absolute() / "graph")
        with open("/proc/self/mounts", encoding="utf-8") as f:
            mounts = [line.split()[1] for line in f]
        for point in sorted((m for m in mounts if m == graph or m.startswith(graph + "/")),
                            reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)

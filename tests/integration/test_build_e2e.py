"""End to end, all real: lock against PyPI and the Debian mirror, build with Nix, run with podman.

The quickstart image (Debian 12, python3.11, libgl1 + libglib2.0-0, six/numpy/opencv-python)
is built once per session; the other tests reuse its store paths, so they only build what
differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _cli import Built, build, copy_example, envnix, parse_build, without_nix_path
from _podman import podman

pytestmark = [pytest.mark.network, pytest.mark.slow]

# A plain Nix user's flags: the sandbox, no cache, and no host path (the generated project
# builds on the pinned toolchain).
NIX_FLAGS = ["--option", "sandbox", "true", "--option", "substituters", ""]


def lock_of(context: Path) -> dict:
    return json.loads((context / "envnix.lock").read_text())


def wheel_version(context: Path, name: str) -> str:
    return next(w["version"] for w in lock_of(context)["pip"]["wheels"] if w["name"] == name)


def test_quickstart_runs_numpy_and_opencv(quickstart: Built, podman_environ: dict) -> None:
    out = podman("run", "--rm", f"oci:{quickstart.layout}", "python3", "-c",
                 "import six, numpy, cv2; print(numpy.__version__, cv2.__version__)",
                 env=podman_environ)
    numpy_version, cv2_version = out.stdout.split()
    assert numpy_version == wheel_version(quickstart.context, "numpy")
    assert wheel_version(quickstart.context, "opencv-python").startswith(cv2_version)


def test_image_config_env_workdir_labels(quickstart: Built) -> None:
    layout = quickstart.layout
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    assert manifest_digest == quickstart.manifest
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest.split(":")[1]).read_text())
    assert manifest["config"]["digest"] == quickstart.config
    config = json.loads((layout / "blobs/sha256" / quickstart.config.split(":")[1]).read_text())
    env = config["config"]["Env"]
    assert env[0].startswith("PATH=/usr/local/sbin:/usr/local/bin:")
    assert "LANG=C.UTF-8" in env and "LC_ALL=C.UTF-8" in env
    assert "ENVNIX_EXAMPLE=quickstart" in env
    assert config["config"]["WorkingDir"] == "/home/envd/quickstart"
    assert config["created"] == "1970-01-01T00:00:00Z"
    labels = config["config"]["Labels"]
    assert labels["io.envnix.version"]
    lock_bytes = (quickstart.context / "envnix.lock").read_bytes()
    assert labels["io.envnix.lock.digest"] == "sha256:" + hashlib.sha256(lock_bytes).hexdigest()
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) >= 3


def test_umoci_validates_layout_and_rootfs(quickstart: Built, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{quickstart.layout}:dev", str(bundle)],
                   check=True, capture_output=True)
    rootfs = bundle / "rootfs"
    assert (rootfs / "bin").is_symlink() and (rootfs / "bin").readlink() == Path("usr/bin")
    assert (rootfs / "usr/bin/python3.11").is_file()
    assert (rootfs / "usr/bin/sh").is_symlink()
    bundle_pem = (rootfs / "etc/ssl/certs/ca-certificates.crt").read_text()
    assert bundle_pem.count("BEGIN CERTIFICATE") > 100
    assert "Package: libc6\nStatus: install ok installed" in (
        rootfs / "var/lib/dpkg/status").read_text()
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    f2py = rootfs / "usr/local/bin/f2py"
    assert f2py.read_text().splitlines()[0] == "#!/usr/bin/python3.11"
    assert f2py.stat().st_mode & 0o111
    site = rootfs / "usr/local/lib/python3.11/dist-packages"
    assert (site / "numpy/__init__.py").is_file()
    assert not list(site.rglob("*.pyc")), "no host-compiled bytecode in the image"


def test_entry_point_script_runs(quickstart: Built, podman_environ: dict) -> None:
    out = podman("run", "--rm", f"oci:{quickstart.layout}", "numpy-config", "--version",
                 env=podman_environ)
    assert out.stdout.strip() == wheel_version(quickstart.context, "numpy")


def test_noop_rebuild_builds_nothing_and_keeps_digests(quickstart: Built) -> None:
    # With a current lock, build touches no index: every mirror and proxy here is a dead port.
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "ENVNIX_APT_MIRROR": f"{dead}/debian", "http_proxy": dead,
           "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead}
    again = parse_build(quickstart.context,
                        envnix("build", str(quickstart.context), "-t", "quickstart:dev", env=env))
    assert (again.config, again.manifest) == (quickstart.config, quickstart.manifest)
    assert "0 derivation(s) built" in again.stderr
    assert "lock: envnix.lock is up to date" in again.stderr


def test_nix_build_of_the_generated_project_gives_same_image(quickstart: Built,
                                                             tmp_path: Path) -> None:
    """A Nix user without envnix: nix-build of .envnix/default.nix (image.nix on the context)
    is the derivation envnix built."""
    proc = subprocess.run(["nix-build", str(quickstart.context / ".envnix" / "default.nix"),
                           "-A", "image", "--out-link", str(tmp_path / "result"), *NIX_FLAGS],
                          check=True, capture_output=True, text=True)
    assert proc.stdout.strip() == str(quickstart.store_path)
    digests = json.loads((tmp_path / "result/digests.json").read_text())
    assert (digests["config"], digests["manifest"]) == (quickstart.config, quickstart.manifest)


def test_rebuild_in_separate_store_is_bit_identical(quickstart: Built, tmp_path: Path) -> None:
    """Reproducibility: same lock, a fresh Nix store (nothing shared), same digests."""
    context = tmp_path / "quickstart"  # the context's name is part of the image (workdir)
    shutil.copytree(quickstart.context, context, ignore=shutil.ignore_patterns(".envnix"))
    store = tmp_path / "store"
    again = build(context, "-t", "quickstart:dev", "--locked", "--store", str(store))
    assert again.store_path == quickstart.store_path
    assert (store / str(quickstart.store_path).lstrip("/")).is_dir()
    assert (again.config, again.manifest) == (quickstart.config, quickstart.manifest)
    subprocess.run(["chmod", "-R", "u+w", str(store)], check=False)


def test_failed_fetch_into_separate_store_leaves_this_machines_store_alone(
        quickstart: Built, tmp_path: Path) -> None:
    """Nix 2.8's builtin fetcher in a chroot store writes to the host's /nix/store path, and a
    failed fetch leaves a 0-byte file there; envnix seeds the chroot store itself instead."""
    context = tmp_path / "quickstart"
    shutil.copytree(quickstart.context, context, ignore=shutil.ignore_patterns(".envnix"))
    lock = json.loads((context / "envnix.lock").read_text())
    wheel = lock["pip"]["wheels"][0]
    wheel["url"] = "http://127.0.0.1:9/" + wheel["filename"]
    wheel["sha256"] = hashlib.sha256(os.urandom(16)).hexdigest()  # on no machine's store
    (context / "envnix.lock").write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    store = tmp_path / "store"
    proc = envnix("build", str(context), "--locked", "--store", str(store), check=False)
    assert proc.returncode == 8, proc.stderr  # a network failure (envnix/errors.py)
    assert f"cannot download http://127.0.0.1:9/{wheel['filename']}" in proc.stderr
    fixed = subprocess.run(["nix-store", "--print-fixed-path", "sha256", wheel["sha256"],
                            wheel["filename"]], capture_output=True, text=True, check=True)
    host_path = Path(fixed.stdout.strip())
    assert not host_path.exists() and not (store / str(host_path).lstrip("/")).exists()
    subprocess.run(["chmod", "-R", "u+w", str(store)], check=False)


def test_cv2_without_system_gl_fails_with_clear_import_error(
    quickstart: Built, podman_environ: dict, tmp_path: Path
) -> None:
    context = copy_example("quickstart", tmp_path)
    manifest = context / "build.envd"
    text = manifest.read_text()
    manifest.write_text(text.replace('install.apt_packages(name=["libgl1", "libglib2.0-0"])',
                                     'install.apt_packages(name=[])'))
    built = build(context, "-t", "nogl:dev")
    proc = podman("run", "--rm", f"oci:{built.layout}", "python3", "-c", "import cv2",
                  env=podman_environ, check=False)
    assert proc.returncode == 1
    # opencv's GUI build loads libxcb/libGL/GLib from the system; the first missing one is named.
    assert re.search(r"ImportError: lib(GL|xcb|gthread-2\.0|glib-2\.0)\.so[.\d]*: cannot open "
                     r"shared object file", proc.stderr), proc.stderr[-500:]
    ok = podman("run", "--rm", f"oci:{built.layout}", "python3", "-c",
                "import numpy; print('ok')", env=podman_environ)
    assert ok.stdout == "ok\n"


def test_lock_is_deterministic_and_check_reports_changes(quickstart: Built,
                                                         tmp_path: Path) -> None:
    context = tmp_path / "qs"
    shutil.copytree(quickstart.context, context, ignore=shutil.ignore_patterns(".envnix"))
    before = (context / "envnix.lock").read_bytes()
    envnix("lock", str(context))
    assert (context / "envnix.lock").read_bytes() == before
    assert envnix("lock", "--check", str(context)).returncode == 0
    manifest = context / "build.envd"
    manifest.write_text(manifest.read_text().replace('"libglib2.0-0"]', '"libglib2.0-0", "jq"]'))
    proc = envnix("lock", "--check", str(context), check=False)
    assert proc.returncode == 5
    assert proc.stderr.splitlines()[0] == (
        "envnix: envnix.lock is stale: apt packages changed: added jq")
    proc = envnix("build", str(context), "--locked", check=False)
    assert proc.returncode == 5 and "stale" in proc.stderr
    assert (context / "envnix.lock").read_bytes() == before


def test_hash_mismatch_is_one_line_and_leaves_nothing(quickstart: Built, tmp_path: Path) -> None:
    context = tmp_path / "tampered"
    shutil.copytree(quickstart.context, context, ignore=shutil.ignore_patterns(".envnix"))
    lock = lock_of(context)
    six = next(w for w in lock["pip"]["wheels"] if w["name"] == "six")
    six["sha256"] = "0" * 64
    text = json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (context / "envnix.lock").write_text(text)
    proc = envnix("build", str(context), "--locked", check=False)
    assert proc.returncode == 6, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("envnix: ")]
    assert len(errors) == 1
    assert errors[0].startswith("envnix: hash mismatch for six-1.17.0-py2.py3-none-any.whl")
    assert "Traceback" not in proc.stderr
    assert (context / "envnix.lock").read_text() == text
    assert not (context / ".envnix" / "result").exists()


def test_nix_missing_from_path_is_one_line(quickstart: Built) -> None:
    proc = envnix("build", str(quickstart.context), "--locked", env=without_nix_path(),
                  check=False)
    assert proc.returncode == 127
    assert "envnix: nix-build not found on PATH" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_apt_and_pip_packages_suggest_names(tmp_path: Path) -> None:
    context = tmp_path / "typo"
    context.mkdir()
    manifest = context / "build.envd"
    manifest.write_text('def build():\n    base(os="debian12", language="python3.11")\n'
                        '    install.apt_packages(name=["libgl"])\n')
    proc = envnix("lock", str(context), check=False)
    assert proc.returncode == 4
    assert "apt package 'libgl' not found" in proc.stderr and "libgl1" in proc.stderr
    manifest.write_text('def build():\n    base(os="debian12", language="python3.11")\n'
                        '    install.python_packages(name=["nump"])\n')
    proc = envnix("lock", str(context), check=False)
    assert proc.returncode == 4
    assert "pip package 'nump' not found" in proc.stderr and "numpy" in proc.stderr
    assert not (context / "envnix.lock").exists()



def test_v0_default_is_a_dev_image_with_fixed_user_and_sudo(quickstart: Built,
                                                             podman_environ: dict) -> None:
    ident = podman("run", "--rm", f"oci:{quickstart.layout}", "id", env=podman_environ)
    assert ident.stdout.startswith("uid=1000(envd) gid=1000(envd)")
    root = podman("run", "--rm", f"oci:{quickstart.layout}", "sudo", "-n", "id", "-u",
                  env=podman_environ)
    assert root.stdout.strip() == "0"
    pwd = podman("run", "--rm", f"oci:{quickstart.layout}", "pwd", env=podman_environ)
    assert pwd.stdout.strip() == "/home/envd/quickstart"

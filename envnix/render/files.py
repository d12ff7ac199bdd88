"""The config files envd writes into an image (pip.conf, sudoers, PAM, the init script, a
dev user's .gitconfig, ...) and the checks every image path gets: render puts them into the
lock's image section, and builders/mktree.py writes them in Nix."""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass

from envnix.core.errors import SpecError
from envnix.spec import ImageSpec

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


def init_script(spec: ImageSpec) -> str | None:
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
    lines += ['[ "$#" -gt 0 ] || set -- ' + spec.dev.shell_path, 'exec "$@"']
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
    init = init_script(spec)
    if init:
        files[INIT_PATH] = (init, 0o755)
    return files


def image_path(path: object, what: str, *, root_ok: bool = False) -> str:
    """``path`` relative to a tree's root/ (``/etc/pip.conf`` -> ``etc/pip.conf``), or a
    SpecError: image paths must be absolute and normalised (no ``..``, ``.``, ``//``, no
    trailing ``/``), so that joined to the tree they can only land inside it."""
    text = path if isinstance(path, str) else ""
    ok = (text.startswith("/") and not text.startswith("//") and "\0" not in text
          and posixpath.normpath(text) == text and (root_ok or text != "/"))
    if not ok:
        raise SpecError(f"{what} {str(path)[:200]!r} is not an absolute, normalised image path",
                        hint="write it as /dir/name: no '..' or '.' components, no '//', "
                             "no trailing '/'")
    return text.lstrip("/")


@dataclass(frozen=True)
class FilesTree:
    """The config files tree, checked: image path (relative) -> (text, mode, in_home), and
    the mount points to create."""

    files: dict[str, tuple[str, int, bool]]
    mounts: list[str]


def files_tree(spec: ImageSpec) -> FilesTree:
    """image_files() and runtime.mount points as tree paths, every one checked first."""
    files = {image_path(path, "config file"): (
                text, mode, spec.dev is not None and path.startswith(spec.dev.home + "/"))
             for path, (text, mode) in image_files(spec).items()}
    mounts = [image_path(m, "runtime.mount") for m in spec.runtime.mounts]
    for rel in [*files, *mounts]:  # a file cannot also be a directory of the tree
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise SpecError(f"image path /{rel} lies below the config file "
                                f"/{'/'.join(parts[:i])}")
    for rel in mounts:
        if rel in files:
            raise SpecError(f"runtime.mount /{rel} is also a config file")
    return FilesTree(files, mounts)

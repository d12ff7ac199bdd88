"""Nix builder: execute one envd ``run()`` group over the image's root filesystem and emit the
group's file changes as a package tree (one layer).

Why: envd runs each ``run()`` group as a Dockerfile RUN. envnix runs it inside a Nix derivation
instead, so the result is an input-addressed, network-free, reproducible layer. The parts
live in siblings: _rootfs.py composes the root, _sandbox.py runs proot (namespaces, seccomp),
_rundiff.py turns the run's changes into the tree, _runadvice.py says why a group failed.

Environment:
  out       output directory (Nix's $out)
  trees     the image's package trees in layer order, later ones overriding earlier ones: a
            JSON list of paths, or the path of a file holding it (Nix's passAsFile). A tree
            entry named ``.wh.<name>`` deletes ``<name>`` of the earlier trees and
            ``.wh..wh..opq`` empties its directory (OCI whiteouts: earlier run() layers).
  commands  the group: JSON list of command strings, or the path of a file holding it
  workdir   absolute image path used as cwd (envd: /home/envd/<context name>); created (as a
            change of this layer) if the image lacks it
  shell     optional; default /usr/bin/bash, and /bin/sh when the image has no bash
  env       optional JSON object of variables for the commands (or the path of a file holding
            it), applied on top of DEFAULT_ENV
  proot     absolute path of the proot binary (host toolchain: /usr/bin/proot)
  prootLoader  optional JSON list: the command that starts ``proot`` (pinned toolchain: its
            ld.so and --library-path, since the sandbox has no /lib64/ld-linux-x86-64.so.2)
  mount     optional: a directory (run(mount_host=True): the build context, ignore rules
            applied) shown at the working directory while the commands run. They get a
            writable scratch copy of it, as BuildKit's mount of the context is a throwaway
            layer in envd: what they write there is discarded, and neither the store path nor
            the layer sees it. The image's own working directory stays as it was.
  pkgName, pkgVersion  optional, for meta.json (default "run", "0")
  qemu, arch  optional, for an image of another platform (``arch`` arm64): the qemu-user
            program proot runs the image's programs with (``proot -q``; the toolchain pin's
            emulators). Without it a foreign binary is never started.

How the group runs (envd's RUN, made hermetic):
  1. The trees are copied (never linked: commands may rewrite any file) into
     ``$NIX_BUILD_TOP/envnix-run-*/rootfs`` in order, whiteouts applied. On disk every entry
     gets its image permission bits minus setuid/setgid (Nix's seccomp filter forbids them)
     plus owner rw(x); the image's real mode/owner is remembered. ``dev/`` gets fd/stdin/
     stdout/stderr links and a 1777 ``shm`` directory (dev/ is never part of the diff).
  2. argv: ``PROOT -0 -r ROOTFS -w WORKDIR -b /proc -b /dev/null -b /dev/zero -b /dev/full
     -b /dev/random -b /dev/urandom -b /dev/tty SHELL -c SCRIPT`` (only /dev nodes that exist),
     stdin /dev/null, stdout+stderr into one log file, cwd the work dir, a new session,
     umask 022. Environment: DEFAULT_ENV, then ``env``, then PROOT_TMP_DIR=<work dir>/proot-tmp
     (needed by proot; the script unsets it so the commands never see a build path).
     SCRIPT is envd's ``set -euo pipefail\n<cmd1>\n<cmd2>\n``; its first line also unsets
     PROOT_TMP_DIR, exports ``LD_*`` variables (so they reach the commands, not the host's
     proot) and, for bash, sets an ERR trap writing $LINENO to fd 99 so the failing command
     can be named; command N keeps envd's line number N+1. With /bin/sh (the image has no
     bash) the line is ``set -eu`` plus ``set -o pipefail`` only where the shell knows it
     (busybox ash yes, dash no); the failing command is then named only for one-command
     groups or from the shell's "line N" message.
  3. Before exec the child enters new user, network and PID namespaces (uid/gid mapped to
     themselves, loopback up as in Nix's sandbox) when the kernel allows it: a run outside
     the Nix sandbox is offline too (inside it Nix's namespace already has no network), and
     the shell is PID 1 as in a Docker RUN, so when it exits the kernel kills whatever it
     left running (daemons, `cmd &`) instead of proot waiting for them forever.
     It then installs a seccomp filter making the syscalls Debian's proot 5.1 does not
     translate (statx, faccessat2, openat2, execveat, io_uring, clone3, the new mount API,
     anything newer) fail with ENOSYS: without it they reach the host's paths; with it libc
     and tools fall back to calls proot translates. proot itself works in Nix's sandbox
     without PROOT_NO_SECCOMP.
  ``-0`` fakes root: uid/gid 0, chown to 0 works, setuid chmods "succeed" without effect,
  and chmod keeps owner r/w. chown to any other id fails (EINVAL: Nix's sandbox maps one
  uid). No host /etc/resolv.conf or /etc/hosts is bound: name lookups and connections fail
  at once. /sys is not bound.

Output (see README.md, "Package tree format"), the diff of the rootfs after vs before:
  - new or changed files, directories and symlinks under $out/root, every parent directory
    listed with its mode/owner from the image;
  - a deleted path whose parent directory remains becomes an empty file ``.wh.<name>`` in
    that parent (a deleted directory gives one whiteout, nothing for its contents); a path
    that changes type is written as its new self (no whiteout);
  - excluded, with no entries and no whiteouts: /tmp /var/tmp /proc /sys /dev /run
    /root/.cache and everything below them; ``*.pyc`` files the commands created or changed
    (their bytes embed mtimes); a new ``__pycache__`` directory that ends up empty;
  - fifos, sockets and devices the commands made are skipped (a meta.json note);
  - modes: an entry whose mode on disk did not change keeps the image's mode/owner (so
    setuid bits and 0444 files survive); a changed one gets its new mode; owners are the
    image's for existing paths and 0:0 for new ones (chown to another id fails with EINVAL in
    Nix's one-uid sandbox; proot -0 cannot record it).
  $out/meta.json is {"kind": "run", "name", "version", "modes", "notes"?}.

A path counts as unchanged when its inode, size, mtime, ctime and mode are what the assembly
left (the run starts only after the coarse clock has ticked, so any later write moves ctime);
a file with other metadata is compared by content with the store file it was copied from.

Failure: the last ~20 lines of the commands' output go to stderr ("  | " prefixed), then
ONE line ``envnix-builder: run: command failed (exit N): <command>``, or, when the output
shows a network attempt, ``envnix-builder: run(): "<command>" needs the network, which builds
do not have; use <declarative replacement>`` (pip -> install.python_packages, apt-get ->
install.apt_packages, conda -> install.conda_packages, curl/wget -> io.http or io.copy).
The work dir is removed only on success (Nix deletes it anyway; --keep-failed keeps it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Collection

import _builder as B
import _treewrite as T
from _rootfs import HOST_MACHINES, Rootfs, elf_machine, is_executable, remove
from _runadvice import fail
from _rundiff import Change, diff, snapshot, write_changes
from _sandbox import run_group

# Defaults the commands see unless `env` overrides them. Why each one:
# - SOURCE_DATE_EPOCH: tools that stamp outputs use it; 1980-01-01 because zip (wheels,
#   bdist_wheel) cannot store earlier times and would fail with 0.
# - PYTHONDONTWRITEBYTECODE, PIP_NO_COMPILE: .pyc files embed source mtimes (they are also
#   dropped from the diff); PYTHONHASHSEED: set/dict order in generated files.
# - PIP_NO_CACHE_DIR, PIP_DISABLE_PIP_VERSION_CHECK, PIP_RETRIES=0, PIP_NO_INPUT: no cache
#   writes, no version-check request, fail at the first network error instead of retrying.
# - PIP_BREAK_SYSTEM_PACKAGES, PIP_ROOT_USER_ACTION: Debian's pip refuses system installs
#   (PEP 668) and warns as root; envd users run `pip install` as root and expect it to work.
DEFAULT_ENV: dict[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "SOURCE_DATE_EPOCH": "315532800",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    "PIP_NO_COMPILE": "1",
    "PIP_NO_CACHE_DIR": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_RETRIES": "0",
    "PIP_NO_INPUT": "1",
    "PIP_BREAK_SYSTEM_PACKAGES": "1",
    "PIP_ROOT_USER_ACTION": "ignore",
}

DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2"}


# ------------------------------------------------------------------------------ inputs


def json_input(name: str, opener: str, default: str | None = None) -> object:
    """The env var ``name`` as JSON, inline or from the file it names."""
    return B.json_input(B.getenv(name, default), name, opener)


def load_trees() -> list[str]:
    trees = json_input("trees", "[")
    if not isinstance(trees, list) or not all(isinstance(t, str) and t for t in trees):
        raise B.BuilderError("trees: must be a JSON list of package-tree paths")
    for t in trees:
        if not os.path.isdir(os.path.join(t, "root")) or not os.path.isfile(
                os.path.join(t, "meta.json")):
            raise B.BuilderError(f"trees: {t} is not a package tree (root/ + meta.json)")
    return trees


def load_commands() -> list[str]:
    cmds = json_input("commands", "[")
    if not isinstance(cmds, list) or not all(isinstance(c, str) for c in cmds):
        raise B.BuilderError("commands: must be a JSON list of strings")
    if not cmds:
        raise B.BuilderError("commands: the run() group is empty")
    if any("\0" in c for c in cmds):
        raise B.BuilderError("commands: a command contains a NUL byte")
    return cmds


def load_env() -> dict[str, str]:
    given = json_input("env", "{", "{}")
    if not isinstance(given, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in given.items()):
        raise B.BuilderError("env: must be a JSON object of strings")
    for k, v in given.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) or "\0" in v:
            raise B.BuilderError(f"env: bad variable {k!r}")
    return {**DEFAULT_ENV, **given}


def image_path(value: str, what: str) -> str:
    """``/a/b`` -> ``a/b`` (``..`` and relative paths are errors)."""
    if not value.startswith("/"):
        raise B.BuilderError(f"{what} {value!r} must be an absolute image path")
    return T.safe_relpath(value[1:] or ".", what)

# ------------------------------------------------------------------------------ main


def _prepare_dev(rootfs: Rootfs) -> None:
    """Mount points and /dev links for proot's binds (dev/ is excluded from the diff)."""
    dev = rootfs.abs("dev")
    if os.path.lexists(dev) and not (os.path.isdir(dev) and not os.path.islink(dev)):
        remove(dev)
    if not os.path.lexists(dev):
        os.mkdir(dev, 0o755)
    for name, target in DEV_LINKS.items():
        if not os.path.lexists(os.path.join(dev, name)):
            os.symlink(target, os.path.join(dev, name))
    shm = os.path.join(dev, "shm")
    if not os.path.lexists(shm):
        os.mkdir(shm)
        os.chmod(shm, 0o1777)


def _make_workdir(rootfs: Rootfs, workdir: str) -> str:
    """The workdir resolved inside the image, created (0755, root) if missing."""
    image_path(workdir, "workdir")
    rel, missing = rootfs.resolve(workdir)
    if not missing and not os.path.isdir(rootfs.abs(rel)):
        raise B.BuilderError(f"workdir {workdir} is not a directory in the image")
    for comp in missing:
        rel = f"{rel}/{comp}" if rel else comp
        os.mkdir(rootfs.abs(rel), 0o755)
        os.chmod(rootfs.abs(rel), 0o755)
    return "/" + rel


def _scratch_copy(source: str, dest: str) -> str:
    """A writable copy of ``source`` (a store path: read-only) for the commands to see; links
    are copied as links, never followed."""
    if not os.path.isdir(source):
        raise B.BuilderError(f"mount {source!r} is not a directory")
    shutil.copytree(source, dest, symlinks=True)
    for dirpath, _, filenames in os.walk(dest):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, (os.lstat(path).st_mode & 0o777) | 0o600)
    return dest


def _wait_for_clock_tick() -> None:
    """Let the coarse clock (file timestamps) advance past the assembly's last write, so a
    later write by the commands always changes ctime."""
    res = time.clock_getres(getattr(time, "CLOCK_REALTIME_COARSE", 5))  # Linux's id
    time.sleep(max(0.01, 2 * res))


def execute(out: str, trees: list[str], commands_for: Callable[[Rootfs], list[str]],
            env: dict[str, str], workdir: str, proot: str, loader: object, shell_given: str,
            name: str, version: str, notes: list[str] | None = None,
            keep_pyc: bool = False, qemu: str = "", mount: str = "",
            skip: Collection[str] = ()) -> None:
    """Assemble the root from ``trees``, run the commands ``commands_for`` picks from it
    through proot, and write the changes as a package tree in ``out`` (also the entry point
    of triggers.py, which picks the image's own cache tools). No commands: an empty tree.
    ``notes`` (meta.json) may be appended to by ``commands_for``. ``qemu``: for an image of
    another platform, the qemu-user program proot runs its programs with (``proot -q``).
    ``skip``: directories (image paths without the leading /) assembled empty, for
    triggers.py's tools, which never read them (users' commands get every file)."""
    if not os.path.isabs(proot) or not os.access(proot, os.X_OK):
        raise B.BuilderError(f"proot {proot!r} is not an executable file")
    if qemu and (not os.path.isabs(qemu) or not os.access(qemu, os.X_OK)):
        raise B.BuilderError(f"qemu {qemu!r} is not an executable file")
    if not isinstance(loader, list) or not all(isinstance(a, str) for a in loader):
        raise B.BuilderError(f"prootLoader {loader!r} is not a JSON list of strings")
    image_path(workdir, "workdir")

    top = os.environ.get("NIX_BUILD_TOP") or os.environ.get("TMPDIR") or os.getcwd()
    work = tempfile.mkdtemp(prefix="envnix-run-", dir=top)
    rootfs = Rootfs(os.path.join(work, "rootfs"))
    for tree in trees:
        rootfs.add_tree(tree, skip)
    notes = notes if notes is not None else []
    commands = commands_for(rootfs)
    changes: list[Change] = []
    after_meta: dict[str, tuple[int, int, int]] = {}
    if commands:
        shell = shell_given or "/usr/bin/bash"
        if not is_executable(rootfs, shell):
            if shell_given or not is_executable(rootfs, "/bin/sh"):
                raise B.BuilderError(f"the image has no executable {shell}"
                                     + ("" if shell_given else " or /bin/sh"))
            shell = "/bin/sh"
        bash = os.path.basename(shell) == "bash"
        machine = elf_machine(rootfs, shell)
        if not qemu and machine is not None and machine not in HOST_MACHINES:
            # proot would start it natively and spin: another platform needs its qemu-user
            raise B.BuilderError(f"the image's {shell} is a program for ELF machine "
                                 f"{machine}, not this builder's x86_64; an image of another "
                                 "platform needs qemu (image.nix passes it for --platform)")

        _prepare_dev(rootfs)
        before = snapshot(rootfs.root)
        cwd = _make_workdir(rootfs, workdir)  # after the snapshot: a created workdir is a change
        _wait_for_clock_tick()

        launcher = [*loader, proot, *(["-q", qemu] if qemu else [])]
        if mount and ":" in cwd:  # proot's -b HOST:GUEST would split it
            raise B.BuilderError(f"workdir {cwd} contains ':', where run(mount_host=True) "
                                 "cannot show the build context")
        binds = ((_scratch_copy(mount, os.path.join(work, "mount")), cwd),) if mount else ()
        result = run_group(rootfs, work, launcher, shell, cwd, commands, env, bash, binds)
        if result.code != 0:
            fail(commands, result)

        after = snapshot(rootfs.root)
        changes, after_meta = diff(rootfs, before, after, notes, keep_pyc)
    os.makedirs(out, exist_ok=True)
    writer = write_changes(os.path.join(out, "root"), rootfs, changes, after_meta)
    B.write_meta(out, "run", name, version, writer.modes, notes + writer.notes)
    remove(work)


def main() -> None:
    out = B.getenv("out")
    trees = load_trees()
    commands = load_commands()
    env = load_env()
    B.set_context("run")
    execute(out, trees, lambda _rootfs: commands, env, B.getenv("workdir"), B.getenv("proot"),
            json.loads(B.getenv("prootLoader", "[]")), B.getenv("shell", ""),
            B.getenv("pkgName", "run"), B.getenv("pkgVersion", "0"), qemu=B.getenv("qemu", ""),
            mount=B.getenv("mount", ""))

if __name__ == "__main__":
    B.main_wrapper(main, "run")
    sys.exit(0)

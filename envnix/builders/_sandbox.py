"""Running one run() group: the shell script envd would run, and proot started in new
user/network/PID namespaces under a seccomp filter for the syscalls proot 5.1 does not
translate (run_steps.py's docstring, "How the group runs", says why each piece is there).

Why a module of its own: the launcher is the one place that touches the kernel (ctypes,
namespaces, seccomp); the root composer and the diff never need it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shlex
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import _builder as B
from _rootfs import Rootfs

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
ERR_FD = 99


def script_for(commands: list[str], env: dict[str, str], bash: bool) -> str:
    """envd's script: a first line (envd's ``set -euo pipefail`` plus our bookkeeping), then
    one line per command, so command N keeps line N+1 as under envd."""
    first = ["unset PROOT_TMP_DIR"]
    first += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())
              if k.startswith("LD_")]
    if bash:  # record only failures that errexit acts on (not ones under `set +e`)
        first += [f"trap 'case $- in *e*) echo \"$LINENO\" >&{ERR_FD};; esac' ERR",
                  "set -euo pipefail"]
    else:
        first += ["set -eu", "if (set -o pipefail) 2>/dev/null; then set -o pipefail; fi"]
    return "; ".join(first) + "\n" + "".join(c + "\n" for c in commands)


def command_at_line(commands: list[str], line: int) -> int | None:
    """Index of the command holding script line ``line`` (commands start at line 2)."""
    start = 2
    for i, c in enumerate(commands):
        end = start + c.count("\n")
        if start <= line <= end:
            return i
        start = end + 1
    return None


# proot 5.1 (Debian's) predates these x86_64 syscalls and passes them through untranslated, so
# they would act on the *host's* paths (seen: statx, faccessat2 and openat2 reached the host
# root). The filter makes them fail with ENOSYS, and libc/coreutils/Python/Rust/libuv fall
# back to the older calls proot translates (as on a pre-4.11 kernel). Also denied: io_uring
# (its path ops bypass ptrace), clone3 (glibc falls back to clone, which proot follows), the
# new mount API, x32 syscalls and every number past the newest one known here.
_DENY_X86_64 = (322, 332, 425, 426, 427, 428, 429, 430, 431, 432, 433, 435, 437, 439, 442, 452,
                463, 464, 465, 466, 467, 468, 469)
_DENY_I386 = (358, 383, *_DENY_X86_64[2:])
_FIRST_UNKNOWN = 470
_AUDIT_ARCH_X86_64 = 0xC000003E
_AUDIT_ARCH_I386 = 0x40000003
_X32_BIT = 0x40000000


def seccomp_program() -> bytes:
    """The classic-BPF seccomp program (struct sock_filter[]) denying the calls above."""
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | errno.ENOSYS  # SECCOMP_RET_ALLOW, RET_ERRNO
    # A label (str) or (code, k, jump-if-true label, jump-if-false label).
    Insn = tuple[int, int, str | None, str | None]
    prog: list[str | Insn] = [
        (ld_abs, 4, None, None),                      # seccomp_data.arch
        (jeq, _AUDIT_ARCH_X86_64, None, "i386"),
        (ld_abs, 0, None, None),                      # seccomp_data.nr
        (jge, _X32_BIT, "deny", None),
        *[(jeq, nr, "deny", None) for nr in _DENY_X86_64],
        (jge, _FIRST_UNKNOWN, "deny", None),
        (ret, allow, None, None),
        "i386",
        (jeq, _AUDIT_ARCH_I386, None, "allow"),
        (ld_abs, 0, None, None),
        *[(jeq, nr, "deny", None) for nr in _DENY_I386],
        (jge, _FIRST_UNKNOWN, "deny", None),
        "allow",
        (ret, allow, None, None),
        "deny",
        (ret, deny, None, None),
    ]
    labels: dict[str, int] = {}
    insns: list[Insn] = []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out = b""
    for i, (code, k, jt, jf) in enumerate(insns):
        t = labels[jt] - i - 1 if jt else 0
        f = labels[jf] - i - 1 if jf else 0
        out += struct.pack("=HBBI", code, t, f, k)
    return out


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc: ctypes.CDLL | None = None
_PROGRAM = ctypes.create_string_buffer(seccomp_program())
_FPROG = _SockFprog(len(_PROGRAM.raw) // 8, ctypes.addressof(_PROGRAM))


def _libc_handle() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _enter_namespaces() -> None:
    """New user + network + PID namespaces (uid/gid mapped to themselves), loopback up as in
    Nix's sandbox: only this run's own loopback is reachable, and proot's first child (the
    shell) is PID 1, whose exit kills everything it left behind."""
    libc = _libc_handle()
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(0x10000000 | 0x40000000 | 0x20000000) != 0:  # USER | NET | PID
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWPID)")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = 0x1 | 0x8 | 0x40  # IFF_UP | IFF_LOOPBACK | IFF_RUNNING
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags))  # SIOCSIFFLAGS


def _install_seccomp() -> None:
    libc = _libc_handle()
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(22, 2, ctypes.byref(_FPROG), 0, 0) != 0:  # PR_SET_SECCOMP, MODE_FILTER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def namespaces_available() -> bool:
    """Whether this kernel lets us create the namespaces (probed in a throwaway child)."""
    _libc_handle()
    pid = os.fork()
    if pid == 0:
        try:
            _enter_namespaces()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _child_setup(isolate: bool) -> Callable[[], None]:
    def setup() -> None:
        os.setsid()
        os.umask(0o022)
        if isolate:
            _enter_namespaces()
        _install_seccomp()
    return setup


@dataclass(frozen=True)
class RunResult:
    code: int
    log: str  # path of the combined output
    err_lines: list[int]
    isolated: bool


def run_group(rootfs: Rootfs, work: str, proot: list[str], shell: str, workdir: str,
              commands: list[str], env: dict[str, str], bash: bool,
              binds: tuple[tuple[str, str], ...] = ()) -> RunResult:
    """Run the group's script through proot; ``binds``: (host directory, image path) pairs
    shown inside for this run only (run(mount_host=True)'s context)."""
    tmp = os.path.join(work, "proot-tmp")
    os.mkdir(tmp, 0o700)
    log = os.path.join(work, "output.log")
    errfile = os.path.join(work, "err-lines")
    argv = [*proot, "-0", "-r", rootfs.root, "-w", workdir, "-b", "/proc"]
    argv += [arg for n in DEV_NODES if os.path.exists(f"/dev/{n}") for arg in ("-b", f"/dev/{n}")]
    argv += [arg for host, guest in binds for arg in ("-b", f"{host}:{guest}")]
    argv += [shell, "-c", script_for(commands, env, bash)]
    proc_env = {k: v for k, v in env.items() if not k.startswith("LD_")}
    proc_env["PROOT_TMP_DIR"] = tmp
    isolated = namespaces_available()
    if not isolated:
        sys.stderr.write("envnix run: note: no user/network namespace available here; "
                         "relying on the Nix sandbox for network isolation\n")
    fd = os.open(errfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.dup2(fd, ERR_FD, inheritable=False)
    os.close(fd)
    try:
        with open(log, "wb") as out:
            proc = subprocess.run(argv, env=proc_env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, cwd=work, pass_fds=(ERR_FD,),
                                  preexec_fn=_child_setup(isolated), check=False)
    except subprocess.SubprocessError as exc:
        raise B.BuilderError(f"could not set up proot's namespaces/seccomp filter: {exc}",
                             what="run") from None
    finally:
        os.close(ERR_FD)
    with open(errfile, encoding="ascii", errors="replace") as f:
        lines = [int(x) for x in f.read().split() if x.isdigit()]
    return RunResult(proc.returncode, log, lines, isolated)

"""An image on a distribution base is a Debian system: the Essential set, alternatives in auto
mode, dpkg's database and the base system files, all from the lock, no maintainer script run.

The lock tests use the machine's Debian mirror; the image test builds a real image with Nix
and runs its programs under podman; the reference test compares with mmdebstrap of the same
packages from the same mirror when mmdebstrap is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from _cli import Built, build, envnix
from _mmdebstrap import mmdebstrap
from _podman import podman

from envnix.lock.apt import lock_apt
from envnix.lock.apt.sources import machine_apt_sources

ESSENTIAL_TOOLS = ("grep", "sed", "findutils", "gzip", "diffutils", "libc-bin", "util-linux",
                   "base-passwd", "login", "hostname", "ncurses-bin", "bsdutils",
                   "sysvinit-utils", "dpkg", "tar", "debianutils", "perl-base")
BASE_ROOTS = ["base-files", "libc6", "dash", "ca-certificates"]


@pytest.mark.network
def test_bookworm_essential_closure_from_the_mirror() -> None:
    sources = machine_apt_sources("bookworm")
    _, with_essential = lock_apt(sources, BASE_ROOTS, essential=True)
    _, minimal = lock_apt(sources, BASE_ROOTS)
    names = {p.name for p in with_essential}
    assert set(ESSENTIAL_TOOLS) <= names
    assert "mawk" in names  # base-files pre-depends on awk
    assert {p.name for p in minimal} < names
    assert "grep" not in {p.name for p in minimal}


def write_context(root: Path, packages: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    quoted = ", ".join(json.dumps(p) for p in packages)
    (root / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        f"    install.apt_packages(name=[{quoted}])\n")
    return root


@pytest.mark.network
def test_minimal_profile_is_asked_for_and_recorded(tmp_path: Path) -> None:
    context = write_context(tmp_path / "serve", ["python3"])
    env = {**os.environ, "ENVNIX_APT_PROFILE": "minimal"}
    envnix("lock", str(context), env=env)
    lock = json.loads((context / "envnix.lock").read_text())
    assert lock["inputs"]["apt"]["profile"] == "minimal"
    names = {p["name"] for p in lock["apt"]["packages"]}
    assert "python3" in names and "grep" not in names and "findutils" not in names
    # The same lock without the setting is stale: the profile never changes by accident.
    env.pop("ENVNIX_APT_PROFILE")
    proc = envnix("build", str(context), "--locked", env=env, check=False)
    assert proc.returncode != 0 and "envnix.lock is stale" in proc.stderr
    bad = envnix("lock", str(context), env={**env, "ENVNIX_APT_PROFILE": "tiny"}, check=False)
    assert bad.returncode == 2 and "ENVNIX_APT_PROFILE='tiny'" in bad.stderr


@pytest.fixture(scope="module")
def numpy_image(tmp_path_factory: pytest.TempPathFactory) -> Built:
    context = write_context(tmp_path_factory.mktemp("ess") / "numpy",
                            ["python3-numpy", "less", "fakeroot", "dbus", "libpam-cap",
                             "libpam-tmpdir"])
    return build(context, "-t", "ess:dev")


SCRIPT = r"""
set -e
grep --version | head -1
echo abc | sed s/b/X/
find /etc/alternatives -maxdepth 0
echo 'x y' | awk '{print $2}'
which which
readlink /etc/alternatives/awk /etc/alternatives/pager
readlink /etc/alternatives/libblas.so.3-x86_64-linux-gnu
update-alternatives --display awk | head -3
dpkg -S /usr/bin/mawk
dpkg -S /bin/grep
dpkg -l | grep -c '^ii'
dpkg -V mawk grep && echo verified
getent passwd daemon
test -f /etc/profile && test -f /root/.bashrc && grep -qx /bin/bash /etc/shells
test -d /var/mail && test -d /media && test -L /usr/local/man && echo base-files
python3 -c "import numpy; print(numpy.__version__)"
ldconfig -p | head -1
python3 -c "import ctypes; ctypes.CDLL('libfakeroot-0.so'); print('found by the cache')"
getent passwd _apt
dpkg-divert --list | sort
readlink /bin/sh /usr/share/man/man1/sh.1.gz
python3 -v -c "import numpy, json" > /tmp/v.log 2>&1
grep -c "^# code object from '/usr/lib/python3.*/__pycache__/" /tmp/v.log
grep -c "bytecode is stale" /tmp/v.log || true
"""
# As root (the image's default user is envd): the shadow files, su, and useradd.
ROOT_SCRIPT = r"""
set -e
getent shadow nobody | cut -d: -f1-2
su -s /bin/sh nobody -c id
useradd -m tester && su tester -c 'id -un; echo $HOME'
"""


@pytest.mark.network
@pytest.mark.slow
def test_programs_alternatives_and_dpkg_run(numpy_image: Built, podman_environ: dict) -> None:
    out = podman("run", "--rm", f"oci:{numpy_image.layout}", "/bin/bash", "-c", SCRIPT,
                 env=podman_environ).stdout.splitlines()
    lock = json.loads((numpy_image.context / "envnix.lock").read_text())
    installed = len(lock["apt"]["packages"])
    numpy = next(p["version"] for p in lock["apt"]["packages"] if p["name"] == "python3-numpy")
    print("\n".join(out))
    assert out[0].startswith("grep (GNU grep)")
    assert out[1:5] == ["aXc", "/etc/alternatives", "y", "/usr/bin/which"]
    assert out[5:7] == ["/usr/bin/mawk", "/usr/bin/less"]
    assert out[7] == "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"
    assert out[8:10] == ["awk - auto mode", "  link best version is /usr/bin/mawk"]
    assert out[11:13] == ["mawk: /usr/bin/mawk", "grep: /bin/grep"]
    assert int(out[13]) == installed
    assert out[14] == "verified"
    assert out[15].startswith("daemon:x:1:1:")
    assert out[16] == "base-files"
    assert numpy.split(":")[-1].startswith(out[17])
    # ldconfig's cache: `ldconfig -p` reads it, and dlopen finds libfakeroot-0.so in the
    # directory only /etc/ld.so.conf.d/fakeroot-x86_64-linux-gnu.conf names
    assert out[18].endswith(" libs found in cache `/etc/ld.so.cache'")
    assert out[19] == "found by the cache"
    assert out[20] == "_apt:x:42:65534::/nonexistent:/usr/sbin/nologin"
    # dash's diversions, as dpkg-divert lists them, and the links its postinst makes
    assert out[21:23] == ["diversion of /bin/sh to /bin/sh.distrib by dash",
                          "diversion of /usr/share/man/man1/sh.1.gz to "
                          "/usr/share/man/man1/sh.distrib.1.gz by dash"]
    assert out[23:25] == ["dash", "dash.1.gz"]
    # the byte code the postinsts compile is there and valid (hash-checked) for a user who
    # could not write it: numpy's and the stdlib's modules load from it
    assert int(out[25]) > 100 and out[26] == "0"
    # accounts: a shadow entry per user, so su and useradd work
    out = podman("run", "--rm", "--user", "root", f"oci:{numpy_image.layout}", "/bin/bash",
                 "-c", ROOT_SCRIPT, env=podman_environ).stdout.splitlines()
    print("\n".join(out))
    assert out[0] == "nobody:*"
    assert out[1] == "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"
    assert out[2:4] == ["tester", "/home/tester"]


def _paths(root: Path) -> set[str]:
    """Every path under root, merged-/usr spelling, without the mount points' contents."""
    out = set()
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if rel.split("/")[0] in ("proc", "sys", "dev"):
            continue
        head, _, rest = rel.partition("/")
        if head in ("bin", "sbin", "lib", "lib64") and rest:
            rel = f"usr/{rel}"
        out.add(rel)
    return out


def _entries(root: Path, top: str) -> dict[str, object]:
    """Path -> link target, file bytes or None (a directory) of everything under root/top."""
    if not (root / top).exists():
        return {}
    return {p.relative_to(root).as_posix(): (os.readlink(p) if p.is_symlink() else
                                              p.read_bytes() if p.is_file() else None)
            for p in (root / top).rglob("*")}


# What mmdebstrap's root has and an envnix image does not, on purpose (docs/debian.md):
ACCEPTED_MISSING = (
    # logs, caches and byte code a postinst compiles (py3compile); Python writes its own
    "var/log/", "var/cache/", "__pycache__",
    # apt's downloaded lists; the image's sources are in
    # sources.list.d/envnix.sources instead of mmdebstrap's sources.list
    "var/lib/apt/lists/", "etc/apt/sources.list",
    # backups dpkg and the shadow tools leave after a change, and the bootstrap tool's own
    # settings
    "var/lib/dpkg/status-old", "var/lib/dpkg/diversions-old", "etc/passwd-", "etc/group-",
    "etc/shadow-", "etc/gshadow-", "etc/dpkg/dpkg.cfg.d/",
    # the machine's identity and mounts, written by the runtime or a booted system
    "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/fstab", "etc/machine-id",
    "etc/mtab", "run/", "var/lib/sudo",
    # useradd -D's defaults file, written only when a script calls useradd
    "etc/default/useradd")


def _against_mmdebstrap(built: Built, tag: str, tmp_path: Path) -> tuple[Path, Path]:
    """(the image's root, mmdebstrap's root of the same packages from the same mirror), after
    checking that nothing of the reference is missing but what ACCEPTED_MISSING explains."""
    lock = json.loads((built.context / "envnix.lock").read_text())
    ref = mmdebstrap(lock["inputs"]["apt"]["packages"], tmp_path / "ref")
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{built.layout}:{tag}", str(bundle)],
                   check=True, capture_output=True)
    image = bundle / "rootfs"
    ours, theirs = _paths(image), _paths(ref)
    missing = sorted(p for p in theirs - ours
                     if not any(p.startswith(a) or a in p for a in ACCEPTED_MISSING)
                     and not p.startswith(("usr/share/doc/", "usr/share/man/")))
    why = Counter(next((a for a in (*ACCEPTED_MISSING, "usr/share/doc/", "usr/share/man/")
                        if p.startswith(a) or a in p), "unexplained") for p in theirs - ours)
    print(f"mmdebstrap: {len(theirs)} paths, envnix: {len(ours)}, "
          f"missing: {len(theirs - ours)}, unexplained: {len(missing)}: {missing}\n"
          f"missing by reason: {sorted(why.items(), key=lambda x: -x[1])}")
    assert missing == []
    return image, ref


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap is not installed")
def test_quickstart_lacks_nothing_of_mmdebstraps_root(quickstart: Built, tmp_path: Path) -> None:
    image, ref = _against_mmdebstrap(quickstart, "dev", tmp_path)
    # apt's extended_states: the same packages marked as automatically installed
    marked = re.compile(r"^Package: (\S+)$", re.M)
    assert sorted(marked.findall((image / "var/lib/apt/extended_states").read_text())) == \
        sorted(marked.findall((ref / "var/lib/apt/extended_states").read_text()))
    for rel in ("etc/ld.so.cache", "etc/ca-certificates.conf", "var/lib/dpkg/diversions",
                "etc/pam.d/common-auth", "etc/pam.d/common-session"):
        assert (image / rel).read_bytes() == (ref / rel).read_bytes(), rel


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap is not installed")
def test_no_program_library_or_link_of_mmdebstrap_is_missing(numpy_image: Built,
                                                             tmp_path: Path) -> None:
    image, ref = _against_mmdebstrap(numpy_image, "dev", tmp_path)
    # ldconfig's cache: the same bytes as the one libc-bin's trigger wrote in the reference
    assert (image / "etc/ld.so.cache").read_bytes() == (ref / "etc/ld.so.cache").read_bytes()
    # dash's diversions as dpkg wrote them
    assert (image / "var/lib/dpkg/diversions").read_bytes() == \
        (ref / "var/lib/dpkg/diversions").read_bytes()
    # every account of the reference, the same (the image may add its own users); shadow
    # lines equal except the last-change day, which the reference takes from the clock and
    # envnix leaves empty (docs/debian.md)
    assert any(ln.startswith("messagebus:") for ln in (ref / "etc/passwd").read_text()
               .splitlines())  # dbus' adduser --system --group, in both
    for name in ("passwd", "group", "gshadow"):
        theirs_lines = set((ref / "etc" / name).read_text().splitlines())
        assert theirs_lines - set((image / "etc" / name).read_text().splitlines()) == set()
    shadow = [ln.split(":") for ln in (image / "etc/shadow").read_text().splitlines()]
    ref_shadow = [ln.split(":") for ln in (ref / "etc/shadow").read_text().splitlines()]
    assert {":".join(f[:2] + f[3:]) for f in ref_shadow} <= \
        {":".join(f[:2] + f[3:]) for f in shadow}
    assert {f[2] for f in shadow} == {""} and all(f[2].isdigit() for f in ref_shadow)
    # what services.py writes: the same rc and systemd links, state files and certificate list
    for top in ("etc/rcS.d", "etc/rc2.d", "etc/rc0.d", "etc/systemd/system",
                "var/lib/systemd/deb-systemd-helper-enabled"):
        theirs_tree, ours_tree = _entries(ref, top), _entries(image, top)
        assert theirs_tree.items() <= ours_tree.items(), top
    assert (image / "etc/ca-certificates.conf").read_bytes() == \
        (ref / "etc/ca-certificates.conf").read_bytes()
    # pam-auth-update's files, with more than one profile (libpam-cap, libpam-tmpdir)
    for name in ("auth", "account", "password", "session", "session-noninteractive"):
        assert (image / f"etc/pam.d/common-{name}").read_text() == \
            (ref / f"etc/pam.d/common-{name}").read_text(), name
    assert _entries(image, "var/lib/pam") == _entries(ref, "var/lib/pam")
    # dbus' stat override: the database line, and the launch helper setuid, group messagebus
    assert (image / "var/lib/dpkg/statoverride").read_bytes() == \
        (ref / "var/lib/dpkg/statoverride").read_bytes()
    helper = "usr/lib/dbus-1.0/dbus-daemon-launch-helper"
    mine, theirs_stat = (image / helper).stat(), (ref / helper).stat()
    assert (mine.st_mode, mine.st_uid, mine.st_gid) == \
        (theirs_stat.st_mode, theirs_stat.st_uid, theirs_stat.st_gid)

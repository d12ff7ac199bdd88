"""The offline tests of tests/integration/test_builders_dpkgdb.py (no network, no program started).

The dpkg database and alternatives mkmeta writes, read back by the host's real dpkg-query
and update-alternatives (pointed at the tree with --admindir/--altdir).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None
                                or shutil.which("update-alternatives") is None,
                                reason="needs dpkg's tools to read the database back")


# ------------------------------------------------------------------------------ ld.so.cache


def builder_module(name: str):
    import importlib
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "envnix" / "builders"))
    return importlib.import_module(name)


def test_libcmp_orders_versions_numerically() -> None:
    ldcache = builder_module("ldcache")
    assert ldcache.libcmp("libfoo.so.10", "libfoo.so.9") > 0
    assert ldcache.libcmp("libfoo.so.1", "libfoo.so") > 0
    assert ldcache.libcmp("libfoo.so.1", "libfoo.so.1") == 0
    assert ldcache.libcmp("libz.so", "liba.so") > 0
    assert ldcache.libcmp("lib2.so", "libx.so") > 0  # a digit sorts after a letter


# --------------------------------------------------------------------------------------------
# services.py: rc links, systemd enablement and the files scripts create (plain data; the image
# comparison with mmdebstrap is tests/integration/test_essential.py and bench/debian_parity.py)
# --------------------------------------------------------------------------------------------

INIT_SCRIPT = """#!/bin/sh
### BEGIN INIT INFO
# Provides:          demo
# Default-Start:     S
# Default-Stop:      0 6
### END INIT INFO
"""
TIMER_UNIT = """[Unit]
Description=demo
[Timer]
OnCalendar=daily
[Install]
WantedBy=timers.target
Also=demo-extra.service
"""
EXTRA_UNIT = "[Service]\nExecStart=/bin/true\n[Install]\nRequiredBy=multi-user.target\n" \
             "Alias=demo-alias.service\n"
POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
    update-rc.d demo defaults >/dev/null
    update-rc.d "$NAME" defaults
    if deb-systemd-helper --quiet was-enabled 'demo.timer'; then
        deb-systemd-helper enable 'demo.timer' >/dev/null || true
    else
        deb-systemd-helper update-state 'demo.timer' >/dev/null || true
    fi
fi
"""


def _services_fixture(tmp_path: Path):
    dpkgdb, services = builder_module("dpkgdb"), builder_module("services")
    trees = builder_module("trees")
    files = {"etc/init.d/demo": INIT_SCRIPT, "lib/systemd/system/demo.timer": TIMER_UNIT,
             "lib/systemd/system/demo-extra.service": EXTRA_UNIT}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)

    def find(rel: str) -> str | None:
        for shipped in files:
            if trees.canonical(shipped) == rel or shipped == rel:
                return str(tmp_path / shipped)
        return None

    listing = "".join(f"/{rel}\n" for rel in files).encode()
    demo = dpkgdb.DebInfo(str(tmp_path), "demo", "amd64", "",
                          {"postinst": POSTINST.encode(), "list": listing})
    return services, find, [demo]


def test_rc_links_follow_the_lsb_header(tmp_path: Path) -> None:
    services, find, debs = _services_fixture(tmp_path)
    notes: list[str] = []
    assert services.sysv_links(debs, find, notes) == {
        "etc/rcS.d/S01demo": "../init.d/demo", "etc/rc0.d/K01demo": "../init.d/demo",
        "etc/rc6.d/K01demo": "../init.d/demo"}
    assert notes == ["demo: update-rc.d call with shell variables skipped"]


def test_systemd_enable_links_targets_aliases_and_also(tmp_path: Path) -> None:
    services, find, debs = _services_fixture(tmp_path)
    links, state = services.systemd_links(debs, find, [])
    assert links == {
        "etc/systemd/system/timers.target.wants/demo.timer": "/lib/systemd/system/demo.timer",
        "etc/systemd/system/multi-user.target.requires/demo-extra.service":
            "/lib/systemd/system/demo-extra.service",
        "etc/systemd/system/demo-alias.service": "/lib/systemd/system/demo-extra.service"}
    helper = "var/lib/systemd/deb-systemd-helper-enabled"
    assert state[f"{helper}/demo.timer.dsh-also"] == \
        b"/etc/systemd/system/timers.target.wants/demo.timer\n"
    assert state[f"{helper}/timers.target.wants/demo.timer"] == b""
    assert state[f"{helper}/demo-extra.service.dsh-also"] == (
        b"/etc/systemd/system/multi-user.target.requires/demo-extra.service\n"
        b"/etc/systemd/system/demo-alias.service\n")


def test_state_files_by_package(tmp_path: Path) -> None:
    dpkgdb, services = builder_module("dpkgdb"), builder_module("services")
    debs = [dpkgdb.DebInfo("", n, "amd64", "") for n in
            ("dpkg", "passwd", "python3.11-minimal", "python3", "ca-certificates")]
    out = services.state_files(debs, lambda rel: None, ["mozilla/b.crt", "mozilla/B.crt"])
    assert out["var/lib/dpkg/lock"] == (b"", 0o640)
    assert out["etc/subuid"] == (b"", 0o644) and out["etc/.pwd.lock"] == (b"", 0o600)
    assert "var/lib/python/python3.11_installed" in out
    assert out["etc/python3/debian_config"][0].startswith(b"[DEFAULT]\n")
    conf = out["etc/ca-certificates.conf"][0].decode()
    assert conf.endswith("#\nmozilla/B.crt\nmozilla/b.crt\n")  # sort(1) in the C locale
    # a file a package ships is never replaced
    assert "etc/subuid" not in services.state_files(
        debs, lambda rel: "/x" if rel == "etc/subuid" else None, [])


def test_stat_overrides_fill_in_top_level_variables() -> None:
    dpkgdb, services = builder_module("dpkgdb"), builder_module("services")
    script = b"""#!/bin/sh
MESSAGEUSER=messagebus
LAUNCHER=/usr/lib/dbus-1.0/dbus-daemon-launch-helper
if [ "$1" = configure ]; then
    if ! dpkg-statoverride --list "$LAUNCHER" >/dev/null; then
        dpkg-statoverride --update --add root "$MESSAGEUSER" 4754 "$LAUNCHER"
    fi
    dpkg-statoverride --remove /usr/bin/old || true
    dpkg-statoverride --add root "$UNKNOWN" 0755 /usr/bin/x
fi
"""
    notes: list[str] = []
    info = dpkgdb.DebInfo("", "dbus", "amd64", "", {"postinst": script})
    got = services.stat_overrides([info], notes)
    assert [o.line for o in got] == [
        "root messagebus 4754 /usr/lib/dbus-1.0/dbus-daemon-launch-helper\n"]
    assert notes == ["dbus: dpkg-statoverride call with shell variables skipped"]
PAM_TEMPLATE = """# head
# here are the per-package modules (the "Primary" block)
$x_primary
# here's the fallback if no module succeeds
{t}\trequisite\t\t\tpam_deny.so
# and here are more per-package modules (the "Additional" block)
$x_additional
# end of pam-auth-update config
"""


def test_pam_auth_update_orders_profiles_and_counts_jumps() -> None:
    pamconfig = builder_module("pamconfig")
    read = {f"usr/share/pam/common-{t}": PAM_TEMPLATE.format(t=t.split("-")[0])
            for t in pamconfig.TYPES}
    read["usr/share/pam-configs/unix"] = (
        "Name: Unix\nDefault: yes\nPriority: 256\nAuth-Type: Primary\nAuth:\n"
        "\t[success=end default=ignore]\tpam_unix.so nullok try_first_pass\n"
        "Auth-Initial:\n\t[success=end default=ignore]\tpam_unix.so nullok\n")
    read["usr/share/pam-configs/sss"] = (
        "Name: SSS\nDefault: yes\nPriority: 128\nAuth-Type: Primary\nAuth:\n"
        "\t[success=end default=ignore]\tpam_sss.so use_first_pass\n")
    read["usr/share/pam-configs/tmpdir"] = (
        "Name: tmpdir\nDefault: yes\nPriority: 0\nSession-Interactive-Only: yes\n"
        "Session-Type: Additional\nSession:\n\toptional\tpam_tmpdir.so\n")
    read["usr/share/pam-configs/off"] = "Name: off\nDefault: no\nPriority: 999\n"
    notes: list[str] = []
    out = {k: v.decode() for k, v in pamconfig.pam_files(read, notes).items()}
    auth = out["etc/pam.d/common-auth"].splitlines()
    # the first Primary module takes its -Initial lines; jumps count the lines left
    assert auth[2:4] == ["auth\t[success=2 default=ignore]\tpam_unix.so nullok",
                         "auth\t[success=1 default=ignore]\tpam_sss.so use_first_pass"]
    session = out["etc/pam.d/common-session"].splitlines()
    assert session[2] == "session\t[default=1]\t\t\tpam_permit.so"  # no Primary module
    assert "session\toptional\tpam_tmpdir.so " in session
    assert "pam_tmpdir" not in out["etc/pam.d/common-session-noninteractive"]
    assert out["var/lib/pam/seen"] == "off\nunix\nsss\ntmpdir\n"
    assert out["var/lib/pam/auth"] == (
        "Module: unix\n[success=end default=ignore]\tpam_unix.so nullok\n"
        "Module: sss\n[success=end default=ignore]\tpam_sss.so use_first_pass\n")
    assert notes == []

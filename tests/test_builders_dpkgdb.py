"""The dpkg database and alternatives mkmeta writes, read back by the host's real dpkg-query
and update-alternatives (pointed at the tree with --admindir/--altdir).

Crafted .debs go through the real unpack_deb.py and mkmeta.py builders, run as Nix runs them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_builders_unpack import ar_archive, assert_ok, run_builder, tar_bytes

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None
                                or shutil.which("update-alternatives") is None,
                                reason="needs dpkg's tools to read the database back")

CONF = b"setting = 1\n"
PROG = b"#!/bin/sh\necho prog\n"


def deb(path: Path, control: str, data: list, **control_files: bytes) -> Path:
    ctl = [("dir", "./"), ("file", "./control", control.encode())]
    ctl += [("file", f"./{name}", body, 0o755 if name.endswith("inst") else 0o644)
            for name, body in control_files.items()]
    path.write_bytes(ar_archive([("debian-binary", b"2.0\n"), ("control.tar.xz", tar_bytes(ctl)),
                                 ("data.tar.xz", tar_bytes(data))]))
    return path


def unpacked(tmp: Path, name: str, deb_path: Path) -> Path:
    out = tmp / f"tree-{name}"
    assert_ok(run_builder("unpack_deb.py", {"src": str(deb_path), "out": str(out)},
                          tmp / "build"))
    return out


POSTINST_A = rb"""#!/bin/sh
set -e
if [ "$1" = configure ]; then
    update-alternatives --install /usr/bin/tool tool /usr/bin/tool-a 20 \
        --slave /usr/share/man/man1/tool.1.gz tool.1.gz /usr/share/man/man1/tool-a.1.gz
    update-alternatives --install /usr/bin/other other "$OTHER" 5
fi
"""
POSTINST_B = b"#!/bin/sh\nupdate-alternatives --quiet --install /bin/tool tool /bin/tool-b 50\n"


@pytest.fixture
def meta_root(tmp_path: Path) -> Path:
    a = deb(tmp_path / "a.deb",
            "Package: tool-a\nVersion: 1.0\nArchitecture: amd64\nMulti-Arch: same\n"
            "Description: a\n",
            [("dir", "./"), ("dir", "./etc"), ("file", "./etc/tool.conf", CONF),
             ("dir", "./usr"), ("dir", "./usr/bin"), ("file", "./usr/bin/tool-a", PROG, 0o755),
             ("dir", "./usr/share"), ("dir", "./usr/share/man"), ("dir", "./usr/share/man/man1"),
             ("file", "./usr/share/man/man1/tool-a.1.gz", b"man")],
            postinst=POSTINST_A, conffiles=b"/etc/tool.conf\n",
            md5sums=f"{hashlib.md5(PROG).hexdigest()}  usr/bin/tool-a\n".encode(),
            triggers=b"interest-noawait /usr/share/tool\n")
    b = deb(tmp_path / "b.deb",
            "Package: tool-b\nVersion: 2.0\nArchitecture: amd64\nDescription: b\n",
            [("dir", "./"), ("dir", "./bin"), ("file", "./bin/tool-b", PROG, 0o755)],
            postinst=POSTINST_B)
    trees = [str(unpacked(tmp_path, "a", a)), str(unpacked(tmp_path, "b", b))]
    out = tmp_path / "meta"
    assert_ok(run_builder("mkmeta.py", {"out": str(out), "trees": json.dumps(trees)},
                          tmp_path / "build"))
    root = out / "root"
    (root / "var/lib/dpkg/updates").mkdir(exist_ok=True)  # dpkg's own package ships it
    return root


def dpkg(root: Path, *args: str) -> str:
    return subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", *args],
                          check=True, capture_output=True, text=True).stdout


def test_status_lists_and_conffiles_read_back(meta_root: Path, tmp_path: Path) -> None:
    assert (tmp_path / "tree-b/dpkg/list").read_text() == "/.\n/bin\n/bin/tool-b\n"
    listed = dpkg(meta_root, "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n")
    assert listed.splitlines() == ["tool-a 1.0 ii ", "tool-b 2.0 ii "]
    # Multi-Arch: same is tool-a:amd64 in the database, and the shipped path answers -S
    assert dpkg(meta_root, "-S", "/usr/bin/tool-a") == "tool-a:amd64: /usr/bin/tool-a\n"
    assert dpkg(meta_root, "-S", "/bin/tool-b") == "tool-b: /bin/tool-b\n"
    conf = dpkg(meta_root, "-W", "-f", "${Conffiles}\n", "tool-a")
    assert conf.split() == ["/etc/tool.conf", hashlib.md5(CONF).hexdigest()]
    info = meta_root / "var/lib/dpkg/info"
    assert (info / "tool-a:amd64.postinst").read_bytes() == POSTINST_A
    assert (info / "tool-a:amd64.postinst").stat().st_mode & 0o777 == 0o755
    assert (meta_root / "var/lib/dpkg/triggers/File").read_text() == \
        "/usr/share/tool tool-a:amd64/noawait\n"


def test_alternatives_auto_mode_highest_priority(meta_root: Path, tmp_path: Path) -> None:
    # tool-b's 50 beats tool-a's 20; its /bin path is written as given, the link lands in usr/
    assert (meta_root / "etc/alternatives/tool").readlink() == Path("/bin/tool-b")
    assert (meta_root / "usr/bin/tool").readlink() == Path("/etc/alternatives/tool")
    # the slave belongs to tool-a only: with tool-b chosen it gets no link
    assert not (meta_root / "etc/alternatives/tool.1.gz").exists()
    # a call whose path is a shell variable cannot be read without running the script
    assert not (meta_root / "etc/alternatives/other").exists()
    notes = json.loads((meta_root.parent / "meta.json").read_text())["notes"]
    assert any("shell variables" in n for n in notes)
    shown = subprocess.run(
        ["update-alternatives", "--admindir", str(meta_root / "var/lib/dpkg/alternatives"),
         "--altdir", str(meta_root / "etc/alternatives"), "--display", "tool"],
        check=True, capture_output=True, text=True).stdout.splitlines()
    # (which choice is "best" it judges by the host's files: the podman test reads that)
    assert shown[0] == "tool - auto mode"
    assert "  link currently points to /bin/tool-b" in shown
    assert "  slave tool.1.gz is /usr/share/man/man1/tool.1.gz" in shown
    db = (meta_root / "var/lib/dpkg/alternatives/tool").read_text()
    assert db == ("auto\n/bin/tool\ntool.1.gz\n/usr/share/man/man1/tool.1.gz\n\n"
                  "/bin/tool-b\n50\n\n/usr/bin/tool-a\n20\n/usr/share/man/man1/tool-a.1.gz\n\n")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="compares with openssl")
def test_certificate_hash_links_match_openssl() -> None:
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "envnix" / "builders"))
    import cacerts

    paths = sorted(Path("/usr/share/ca-certificates").rglob("*.crt"))
    assert len(paths) > 100, "the host's ca-certificates package is needed"
    certs = {p.relative_to("/usr/share/ca-certificates").as_posix(): p.read_bytes()
             for p in paths}
    links, notes = cacerts.links(certs)
    assert notes == []
    hashed = {rel.rsplit("/", 1)[1]: target for rel, target in links if rel[-2] == "."}
    for p in paths[::10]:  # openssl once per tenth certificate keeps this under a second
        expected = subprocess.run(["openssl", "x509", "-noout", "-subject_hash", "-in", str(p)],
                                  check=True, capture_output=True, text=True).stdout.strip()
        assert hashed.get(f"{expected}.0") == p.stem + ".pem" or \
            f"{expected}.1" in hashed, p.name


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="read back with apt-get")
def test_lock_apt_sources_become_the_images_sources(tmp_path: Path) -> None:
    apt = deb(tmp_path / "apt.deb", "Package: apt\nVersion: 1\nArchitecture: amd64\n"
              "Description: apt\n",
              [("dir", "./"), ("dir", "./usr"), ("dir", "./usr/bin"),
               ("file", "./usr/bin/apt-get", PROG, 0o755), ("dir", "./usr/share"),
               ("dir", "./usr/share/keyrings"),
               ("file", "./usr/share/keyrings/debian-archive-keyring.gpg", b"k")])
    sources = [{"uri": "http://mirror.invalid/debian", "suite": "bookworm",
                "components": ["main", "contrib"]},
               {"uri": "http://mirror.invalid/flat", "suite": "./", "components": []}]
    out = tmp_path / "meta"
    assert_ok(run_builder("mkmeta.py", {"out": str(out),
                                        "trees": json.dumps([str(unpacked(tmp_path, "apt", apt))]),
                                        "aptSources": json.dumps(sources)}, tmp_path / "build"))
    parts = out / "root/etc/apt/sources.list.d"
    text = (parts / "envnix.sources").read_text()
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n" in text
    uris = subprocess.run(["apt-get", "-o", "Dir::Etc::SourceList=/dev/null", "-o",
                           f"Dir::Etc::SourceParts={parts}", "--print-uris", "update"],
                          check=True, capture_output=True, text=True).stdout
    assert "'http://mirror.invalid/debian/dists/bookworm/contrib/binary-amd64/Packages.xz'" in uris
    assert "'http://mirror.invalid/flat/./Packages.xz'" in uris
    bad = run_builder("mkmeta.py", {"out": str(tmp_path / "bad"), "trees": json.dumps(
        [str(tmp_path / "tree-apt")]), "aptSources": json.dumps(
        [{"uri": "http://x\nTypes: deb-src", "suite": "s"}])}, tmp_path / "build")
    assert bad.returncode != 0 and "aptSources: bad source" in bad.stderr


# ------------------------------------------------------------------------------ ld.so.cache

HOST_LIBS = Path("/lib/x86_64-linux-gnu")


def builder_module(name: str):
    import importlib
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "envnix" / "builders"))
    return importlib.import_module(name)


def dir_view(root: Path):
    """An ldcache.View of a plain directory tree (what ldconfig -r ROOT reads)."""
    import os
    import stat
    ldcache = builder_module("ldcache")

    def node(rel: str):
        path = root / rel
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return ldcache.Node("link", os.readlink(path))
        kind = "dir" if stat.S_ISDIR(st.st_mode) else \
            "file" if stat.S_ISREG(st.st_mode) else "other"
        return ldcache.Node(kind, str(path))

    return ldcache.View(node, lambda rel: sorted(os.listdir(root / rel)))


@pytest.mark.skipif(shutil.which("ldconfig") is None or not (HOST_LIBS / "libc.so.6").exists(),
                    reason="compares with the host's glibc ldconfig")
def test_ld_cache_is_byte_identical_to_ldconfigs_for_the_host(tmp_path: Path) -> None:
    ldcache = builder_module("ldcache")
    notes: list[str] = []
    entries, _links = ldcache.scan(dir_view(Path("/")), notes)
    ldconfig = Path(shutil.which("ldconfig") or "").resolve()
    ours = ldcache.cache_bytes(entries, ldcache.generator(ldconfig.read_bytes()))
    subprocess.run(["ldconfig", "-X", "-C", str(tmp_path / "ref.cache")], check=True,
                   capture_output=True)
    ref = (tmp_path / "ref.cache").read_bytes()
    assert len(entries) > 20 and notes == []
    assert ours == ref
    (tmp_path / "ours.cache").write_bytes(ours)
    listed = subprocess.run(["ldconfig", "-p", "-C", str(tmp_path / "ours.cache")], check=True,
                            capture_output=True, text=True).stdout.splitlines()
    assert listed[0] == f"{len(entries)} libs found in cache `{tmp_path / 'ours.cache'}'"
    assert any(line.strip().startswith("libc.so.6 (libc6,x86-64) => ") for line in listed)


def test_libcmp_orders_versions_numerically() -> None:
    ldcache = builder_module("ldcache")
    assert ldcache.libcmp("libfoo.so.10", "libfoo.so.9") > 0
    assert ldcache.libcmp("libfoo.so.1", "libfoo.so") > 0
    assert ldcache.libcmp("libfoo.so.1", "libfoo.so.1") == 0
    assert ldcache.libcmp("libz.so", "liba.so") > 0
    assert ldcache.libcmp("lib2.so", "libx.so") > 0  # a digit sorts after a letter


@pytest.fixture
def ld_trees(tmp_path: Path) -> list[str]:
    """libc-bin (the host's ldconfig, its ld.so.conf), a zlib whose SONAME link is missing,
    and a library in a directory only /etc/ld.so.conf.d names."""
    libc_bin = deb(tmp_path / "libc-bin.deb",
                   "Package: libc-bin\nVersion: 1\nArchitecture: amd64\nDescription: l\n",
                   [("dir", "./"), ("dir", "./sbin"),
                    ("file", "./sbin/ldconfig", Path("/sbin/ldconfig").read_bytes(), 0o755),
                    ("dir", "./etc"), ("dir", "./etc/ld.so.conf.d"),
                    ("file", "./etc/ld.so.conf", b"include /etc/ld.so.conf.d/*.conf\n\n"),
                    ("file", "./etc/ld.so.conf.d/libc.conf", b"# libc default\n/usr/local/lib\n"),
                    ("file", "./etc/ld.so.conf.d/x86_64-linux-gnu.conf",
                     b"/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n"
                     b"/usr/lib/x86_64-linux-gnu\n")])
    zlib = deb(tmp_path / "zlib.deb",
               "Package: zlib1g\nVersion: 1\nArchitecture: amd64\nDescription: z\n",
               [("dir", "./"), ("dir", "./lib"), ("dir", "./lib/x86_64-linux-gnu"),
                ("file", "./lib/x86_64-linux-gnu/libz.so.1.2.13",
                 (HOST_LIBS / "libz.so.1.2.13").read_bytes()),
                ("dir", "./usr"), ("dir", "./usr/lib"), ("dir", "./usr/lib/x86_64-linux-gnu"),
                ("file", "./usr/lib/x86_64-linux-gnu/libdl.so.2",
                 (HOST_LIBS / "libdl.so.2").read_bytes()),
                ("sym", "./usr/lib/x86_64-linux-gnu/libz.so", "libz.so.1.2.13"),
                ("file", "./usr/lib/x86_64-linux-gnu/libc.so", b"/* GNU ld script */\n")])
    extra = deb(tmp_path / "extra.deb",
                "Package: extra\nVersion: 1\nArchitecture: amd64\nDescription: e\n",
                [("dir", "./"), ("dir", "./etc"), ("dir", "./etc/ld.so.conf.d"),
                 ("file", "./etc/ld.so.conf.d/extra.conf", b"/opt/extra/lib/\n"),
                 ("dir", "./opt"), ("dir", "./opt/extra"), ("dir", "./opt/extra/lib"),
                 ("file", "./opt/extra/lib/librt.so.1", (HOST_LIBS / "librt.so.1").read_bytes()),
                 ("sym", "./opt/extra/lib/libutil.so.1", "/usr/lib/x86_64-linux-gnu/libdl.so.2")])
    return [str(unpacked(tmp_path, n, d)) for n, d in
            (("libc-bin", libc_bin), ("zlib", zlib), ("extra", extra))]


def merged_root(trees: list[str], meta: Path, dest: Path) -> Path:
    """The image's root as its layers stack up: the merged-/usr links, the trees, the meta."""
    dest.mkdir()
    for name in ("bin", "sbin", "lib", "lib64"):
        (dest / name).symlink_to(f"usr/{name}")
    for tree in [*trees, str(meta)]:
        shutil.copytree(Path(tree) / "root", dest, symlinks=True, dirs_exist_ok=True)
    return dest


@pytest.mark.skipif(shutil.which("ldconfig") is None, reason="compares with glibc's ldconfig")
def test_ld_cache_of_the_meta_tree(ld_trees: list[str], tmp_path: Path) -> None:
    out = tmp_path / "meta"
    assert_ok(run_builder("mkmeta.py", {"out": str(out), "trees": json.dumps(ld_trees)},
                          tmp_path / "build"))
    cache = out / "root/etc/ld.so.cache"
    assert cache.stat().st_mode & 0o777 == 0o644
    # ldconfig adds the SONAME link the package did not ship
    assert (out / "root/usr/lib/x86_64-linux-gnu/libz.so.1").readlink() == Path("libz.so.1.2.13")
    listed = subprocess.run(["ldconfig", "-p", "-C", str(cache)], check=True,
                            capture_output=True, text=True).stdout
    assert "\tlibrt.so.1 (libc6,x86-64) => /opt/extra/lib/librt.so.1\n" in listed
    assert "\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n" in listed
    assert "\tlibz.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so\n" in listed
    assert "libc.so " not in listed  # a linker script is no library
    root = merged_root(ld_trees, out, tmp_path / "image")
    (root / "etc/ld.so.cache").unlink()
    (root / "usr/lib/x86_64-linux-gnu/libz.so.1").unlink()
    if os.geteuid() != 0:
        pytest.skip("ldconfig -r needs root")
    subprocess.run(["ldconfig", "-r", str(root)], check=True, capture_output=True)
    assert (root / "etc/ld.so.cache").read_bytes() == cache.read_bytes()
    assert (root / "usr/lib/x86_64-linux-gnu/libz.so.1").readlink() == Path("libz.so.1.2.13")


# ------------------------------------------------------------------------------ accounts

SH = b"#!/bin/sh\nexit 0\n"
SVC_POSTINST = rb"""#!/bin/sh
set -e
if [ "$1" = configure ]; then
    adduser --system --home /var/lib/svc --shell /bin/false svc >/dev/null
    addgroup --system svcgrp
    adduser --quiet svc svcgrp
    adduser --system --home /home/$UNKNOWN x || true
fi
"""
BUS_POSTINST = rb"""#!/bin/sh
set -e
MESSAGEUSER=messagebus
in_sysroot () { "$@"; }
if [ "$1" = configure ]; then
    in_sysroot adduser --system \
            --quiet \
            --home /nonexistent \
            --no-create-home \
            --disabled-password \
            --group "$MESSAGEUSER"
fi
if [ "$1" = configure ] && ! getent passwd _apt >/dev/null; then
    adduser --force-badname --system --home /nonexistent --no-create-home --quiet _apt || true
fi
"""
ZZ_POSTINST = rb"""#!/bin/sh
groupadd -g 42 shadow || (echo "gid 42 is taken"; exit 1)
useradd -r -d /var/lib/zz -s /usr/sbin/nologin zz
groupadd -r zzgrp
"""


@pytest.fixture
def account_trees(tmp_path: Path) -> list[str]:
    """base-passwd's real masters, adduser and passwd (stand-in programs: only their
    presence counts) and three packages whose scripts add accounts."""
    master = Path("/usr/share/base-passwd")
    debs = {
        "base-passwd": ([("dir", "./usr/share"), ("dir", "./usr/share/base-passwd")]
                        + [("file", f"./usr/share/base-passwd/{n}.master",
                            (master / f"{n}.master").read_bytes()) for n in ("passwd", "group")],
                        {}),
        "adduser": ([("dir", "./usr/sbin"), ("file", "./usr/sbin/adduser", SH, 0o755),
                     ("sym", "./usr/sbin/addgroup", "adduser")], {}),
        "passwd": ([("dir", "./usr/sbin")] + [("file", f"./usr/sbin/{n}", SH, 0o755)
                                               for n in ("useradd", "groupadd", "pwconv")], {}),
        "aaa-svc": ([], {"postinst": SVC_POSTINST}),
        "dbus-like": ([], {"postinst": BUS_POSTINST}),
        "zz-useradd": ([], {"preinst": ZZ_POSTINST}),
    }
    trees = []
    for name, (data, scripts) in debs.items():
        path = deb(tmp_path / f"{name}.deb",
                   f"Package: {name}\nVersion: 1\nArchitecture: all\nDescription: d\n",
                   [("dir", "./"), ("dir", "./usr"), *data], **scripts)
        trees.append(str(unpacked(tmp_path, name, path)))
    return trees


@pytest.mark.skipif(not Path("/usr/share/base-passwd/passwd.master").exists(),
                    reason="uses the host's base-passwd masters")
def test_system_accounts_from_maintainer_scripts(account_trees: list[str],
                                                 tmp_path: Path) -> None:
    out = tmp_path / "meta"
    users = [["envd", 1000, 1000, "/home/envd", "/bin/sh"]]
    assert_ok(run_builder("mkmeta.py", {"out": str(out), "trees": json.dumps(account_trees),
                                        "users": json.dumps(users)}, tmp_path / "build"))
    root = out / "root"
    passwd = {ln.split(":")[0]: ln for ln in (root / "etc/passwd").read_text().splitlines()}
    group = {ln.split(":")[0]: ln for ln in (root / "etc/group").read_text().splitlines()}
    # adduser --system: first free uid from 100, nogroup unless --group; groups from 100
    # (users has 100); useradd -r and groupadd -r count down from 999
    assert passwd["svc"] == "svc:x:100:65534::/var/lib/svc:/bin/false"
    assert group["svcgrp"] == "svcgrp:x:101:svc"
    assert passwd["messagebus"] == "messagebus:x:101:102::/nonexistent:/usr/sbin/nologin"
    assert group["messagebus"] == "messagebus:x:102:"
    assert passwd["zz"] == "zz:x:999:999::/var/lib/zz:/usr/sbin/nologin"
    assert group["zz"] == "zz:x:999:" and group["zzgrp"] == "zzgrp:x:998:"
    assert group["shadow"] == "shadow:x:42:"  # base-passwd has it: groupadd is not needed
    assert passwd["_apt"].startswith("_apt:x:42:65534:")  # from the master, not adduser
    assert passwd["envd"] == "envd:x:1000:1000::/home/envd:/bin/sh"
    assert "x" not in passwd
    home = root / "var/lib/svc"
    assert home.is_dir() and not (root / "var/lib/zz").exists()  # useradd without -m
    modes = json.loads((out / "meta.json").read_text())
    notes = modes["notes"]
    assert any("adduser call with shell variables skipped" in n for n in notes)
    shadow = (root / "etc/shadow").read_text().splitlines()
    assert [ln.split(":")[0] for ln in shadow] == list(passwd)
    assert "root:*::0:99999:7:::" in shadow and "messagebus:!:::::::" in shadow
    gshadow = (root / "etc/gshadow").read_text().splitlines()
    assert "svcgrp:!::svc" in gshadow and "root:*::" in gshadow
    if os.geteuid() == 0 and shutil.which("pwck"):
        # shadow's own checkers agree that the four files are consistent
        for tool in ("pwck", "grpck"):
            checked = subprocess.run([tool, "-r", "-R", str(root)], capture_output=True,
                                     text=True)
            assert checked.returncode in (0, 2), checked.stderr  # 2: homes of base users
            assert "no matching" not in checked.stdout + checked.stderr


# ------------------------------------------------------------------------------ diversions

DASH_POSTINST = Path("/var/lib/dpkg/info/dash.postinst")
WRAPPER = b"#!/bin/sh\nexec /usr/bin/tool.real \"$@\"\n"


@pytest.mark.skipif(not DASH_POSTINST.exists(), reason="reads the host's real dash postinst")
def test_diversions_and_their_renames(tmp_path: Path) -> None:
    dash = deb(tmp_path / "dash.deb",
               "Package: dash\nVersion: 1\nArchitecture: amd64\nDescription: d\n",
               [("dir", "./"), ("dir", "./bin"), ("file", "./bin/dash", PROG, 0o755),
                ("dir", "./usr"), ("dir", "./usr/share"), ("dir", "./usr/share/man"),
                ("dir", "./usr/share/man/man1"),
                ("file", "./usr/share/man/man1/dash.1.gz", b"man")],
               postinst=DASH_POSTINST.read_bytes())
    orig = deb(tmp_path / "orig.deb",
               "Package: tool-orig\nVersion: 1\nArchitecture: amd64\nDescription: o\n",
               [("dir", "./"), ("dir", "./usr"), ("dir", "./usr/bin"),
                ("file", "./usr/bin/tool", PROG, 0o755)])
    div = deb(tmp_path / "div.deb",
              "Package: tool-div\nVersion: 1\nArchitecture: amd64\nDescription: w\n",
              [("dir", "./"), ("dir", "./usr"), ("dir", "./usr/bin"),
               ("file", "./usr/bin/tool", WRAPPER, 0o755)],
              preinst=b"#!/bin/sh\nset -e\nif [ \"$1\" = install ]; then\n"
                      b"  dpkg-divert --package tool-div --rename \\\n"
                      b"    --divert /usr/bin/tool.real --add /usr/bin/tool\nfi\n")
    trees = [str(unpacked(tmp_path, n, d)) for n, d in
             (("dash", dash), ("orig", orig), ("div", div))]
    out = tmp_path / "meta"
    assert_ok(run_builder("mkmeta.py", {"out": str(out), "trees": json.dumps(trees)},
                          tmp_path / "build"))
    root = out / "root"
    assert (root / "var/lib/dpkg/diversions").read_text() == (
        "/usr/bin/tool\n/usr/bin/tool.real\ntool-div\n"
        "/usr/share/man/man1/sh.1.gz\n/usr/share/man/man1/sh.distrib.1.gz\ndash\n"
        "/bin/sh\n/bin/sh.distrib\ndash\n")
    admin = ["dpkg-divert", "--admindir", str(root / "var/lib/dpkg")]
    listed = subprocess.run([*admin, "--list"], check=True, capture_output=True,
                            text=True).stdout.splitlines()
    assert "diversion of /bin/sh to /bin/sh.distrib by dash" in listed
    assert len(listed) == 3
    truename = subprocess.run([*admin, "--truename", "/usr/bin/tool"], check=True,
                              capture_output=True, text=True).stdout
    assert truename == "/usr/bin/tool.real\n"
    # dash's claim_binsh links /bin/sh and its man page; the rename moved tool-orig's file
    assert (root / "usr/bin/sh").readlink() == Path("dash")
    assert (root / "usr/share/man/man1/sh.1.gz").readlink() == Path("dash.1.gz")
    assert (root / "usr/bin/tool.real").read_bytes() == PROG
    assert (root / "usr/bin/tool").read_bytes() == WRAPPER
    # the dpkg-divert calls inside dash's helpers are read through claim_binsh: no notes
    assert json.loads((out / "meta.json").read_text()).get("notes", []) == []


SYSUSERS_DIR = Path("/usr/lib/sysusers.d")
ZZ_SYSUSERS = b'g zzdata -\nu zzsvc - "ZZ service" /var/lib/zz\nm zzsvc adm\nm zzsvc zzdata\n'


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None
                    or not (SYSUSERS_DIR / "basic.conf").exists()
                    or not Path("/usr/share/base-passwd/passwd.master").exists(),
                    reason="compares with the host's systemd-sysusers")
def test_sysusers_calls_match_systemd_sysusers(tmp_path: Path) -> None:
    confs = sorted(p.name for p in SYSUSERS_DIR.glob("*.conf"))
    master = Path("/usr/share/base-passwd")
    systemd = deb(tmp_path / "systemd.deb",
                  "Package: systemd\nVersion: 1\nArchitecture: amd64\nDescription: s\n",
                  [("dir", "./"), ("dir", "./usr"), ("dir", "./usr/bin"),
                   ("file", "./usr/bin/systemd-sysusers", SH, 0o755), ("dir", "./usr/lib"),
                   ("dir", "./usr/lib/sysusers.d"), ("dir", "./usr/share"),
                   ("dir", "./usr/share/base-passwd"), ("dir", "./usr/sbin"),
                   ("file", "./usr/sbin/pwconv", SH, 0o755)]
                  + [("file", f"./usr/lib/sysusers.d/{n}", (SYSUSERS_DIR / n).read_bytes())
                     for n in confs]
                  + [("file", f"./usr/share/base-passwd/{n}.master",
                      (master / f"{n}.master").read_bytes()) for n in ("passwd", "group")],
                  postinst=b'#!/bin/sh\nsystemd-sysusers ${DPKG_ROOT:+--root="$DPKG_ROOT"} '
                           + " ".join(confs).encode() + b"\n")
    zz = deb(tmp_path / "zz.deb",
             "Package: zz-sys\nVersion: 1\nArchitecture: all\nDescription: z\n",
             [("dir", "./"), ("dir", "./usr"), ("dir", "./usr/lib"),
              ("dir", "./usr/lib/sysusers.d"), ("file", "./usr/lib/sysusers.d/zz.conf",
                                                ZZ_SYSUSERS)],
             postinst=b"#!/bin/sh\nsystemd-sysusers zz.conf\n")
    trees = [str(unpacked(tmp_path, n, d)) for n, d in (("systemd", systemd), ("zz", zz))]
    out = tmp_path / "meta"
    assert_ok(run_builder("mkmeta.py", {"out": str(out), "trees": json.dumps(trees)},
                          tmp_path / "build"))
    ours = out / "root/etc"
    # the reference: the real systemd-sysusers over base-passwd's files, in the same order
    ref = tmp_path / "ref"
    (ref / "etc").mkdir(parents=True)
    shutil.copytree(Path(trees[0]) / "root/usr", ref / "usr", symlinks=True)
    shutil.copy(Path(trees[1]) / "root/usr/lib/sysusers.d/zz.conf", ref / "usr/lib/sysusers.d")
    for name in ("passwd", "group"):
        text = (master / f"{name}.master").read_text()
        (ref / "etc" / name).write_text(
            "".join(ln.replace(":*:", ":x:", 1) + "\n" for ln in text.splitlines()))
    for args in (confs, ["zz.conf"]):
        subprocess.run(["systemd-sysusers", f"--root={ref}", *args], check=True,
                       capture_output=True)
    for name in ("passwd", "group"):
        assert sorted((ours / name).read_text().splitlines()) == \
            sorted((ref / "etc" / name).read_text().splitlines()), name
    created = {ln.split(":")[0] for ln in (ref / "etc/shadow").read_text().splitlines()}
    assert {"zzsvc", "systemd-network"} <= created
    # sysusers' own entries: "!*", the last-change day left empty (see docs/debian.md)
    ref_shadow = {":".join(f[:2] + f[3:]) for ln in (ref / "etc/shadow").read_text()
                  .splitlines() if (f := ln.split(":"))}
    our_shadow = {":".join(f[:2] + f[3:]) for ln in (ours / "shadow").read_text()
                  .splitlines() if (f := ln.split(":"))}
    assert ref_shadow <= our_shadow
    ref_gshadow = set((ref / "etc/gshadow").read_text().splitlines())
    assert ref_gshadow <= set((ours / "gshadow").read_text().splitlines())


# --------------------------------------------------------------------------------------------
# services.py: rc links, systemd enablement and the files scripts create (plain data; the
# image comparison with mmdebstrap is tests/test_essential.py and bench/debian_parity.py)
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

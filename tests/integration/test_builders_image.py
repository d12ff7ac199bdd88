"""Tests for the layer and image builders (mklayer.py, mkimage.py, _tarwrite.py, _gzip.py).

The builders run as Nix would run them: a fresh process, only the documented environment
variables (`env -i` semantics), the host's /usr/bin/python3. Package trees are made by hand
(a busybox tree from the host's busybox-static, and a skeleton tree that exercises every tar
corner: long names, non-ASCII names, setuid, sticky dirs, owners, long link targets), with
store-like read-only modes, since the layer must not depend on them. The tests marked slow
check the result with the strict consumers: umoci (diffIDs), podman, skopeo, GNU tar.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _jsonschema_subset import Validator
from _podman import have_podman, podman, private_podman
from test_builders_image_offline import sha

from envnix.oci.layout import DIGESTS_SCHEMA, read_digests

REPO = Path(__file__).resolve().parents[2]
BUILDERS = REPO / "envnix" / "builders"
HOST_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
BUSYBOX = Path("/bin/busybox")
TAG = "envnix-test/quickstart:dev"
DIGESTS_SCHEMA_JSON = Validator(json.loads((REPO / "docs/schemas/digests.schema.json").read_text()))

sys.path.insert(0, str(BUILDERS))  # the builders import their siblings as top-level modules

# Skeleton tree paths that exercise the tar header corner cases.
LONG_DIR = (
    "opt/a-directory-name-that-is-long-enough-to-matter-0123456789"
    "/another-quite-long-directory-name-abcdefghijklmnopqrstuvwxyz"
)  # > 100 bytes, fits the ustar prefix/name split
LONG_FILE = LONG_DIR + "/" + "f" * 120 + ".txt"  # a 124-byte component: needs a pax `path`
NON_ASCII = "etc/motd.d/grüße-日本-🙂.txt"
LONG_TARGET = "/" + LONG_DIR + "/target"  # > 100 bytes: needs a pax `linkpath`

# Golden digests of the skeleton layer (fully defined by this file, no host data). A change
# here changes every envnix image: only accept one on purpose, with a reason in the commit.
SKELETON_DIFF_ID = "sha256:a77ebc6604f908049d98a3ab212786b3875a34c3aea2722c09f66d0d17912226"
SKELETON_DIGEST_ZLIB_1_2_13 = (
    "sha256:4c41b60b4ea2fccd5bbdea0045e9783a57d1d5dc2354b6bd20c50406ffa75920"
)


# ---------------------------------------------------------------------------------------------
# helpers


def write_tree(base: Path, name: str, files: dict[str, object], modes: dict[str, list[int]],
               *, readonly: bool = True, hardlinks: list[list[str]] | None = None) -> Path:
    """A package tree: `files` maps a root-relative path to bytes (file), ("x", bytes)
    (executable), ("l", target) (symlink) or None (directory); `hardlinks` goes to meta.json
    as given."""
    tree = base / name
    root = tree / "root"
    root.mkdir(parents=True)
    for rel, spec in sorted(files.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if spec is None:
            p.mkdir(exist_ok=True)
        elif isinstance(spec, bytes):
            p.write_bytes(spec)
        elif isinstance(spec, tuple) and spec[0] == "x":
            p.write_bytes(spec[1])
            p.chmod(0o755)
        elif isinstance(spec, tuple) and spec[0] == "l":
            os.symlink(spec[1], p)
        else:
            raise AssertionError(spec)
    meta: dict[str, object] = {"kind": "meta", "name": name, "version": "1", "modes": modes}
    if hardlinks is not None:
        meta |= {"format": 2, "hardlinks": hardlinks}
    (tree / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    if readonly:
        store_modes(tree)
    return tree


def store_modes(tree: Path) -> None:
    """What the Nix store does: 0444 files, 0555 executables and directories."""
    for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
        for n in filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o555 if os.stat(p).st_mode & 0o111 else 0o444)
        for n in dirnames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o555)
    os.chmod(tree, 0o555)


def skeleton_tree(base: Path, name: str = "skeleton") -> Path:
    files: dict[str, object] = {
        "bin": ("l", "usr/bin"),
        "usr/bin/suidtool": ("x", b"#!/bin/sh\necho suid\n"),
        "usr/bin/hello.sh": ("x", b"#!/bin/sh\necho hello\n"),
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nenvd:x:1000:1000::/home/envd:/bin/sh\n",
        "etc/empty": b"",
        NON_ASCII: "grüße\n".encode(),
        "tmp": None,
        "home/envd": None,
        LONG_FILE: b"long\n",
        "opt/longlink": ("l", LONG_TARGET),
        LONG_DIR + "/target": b"target\n",
    }
    modes = {"tmp": [0o1777, 0, 0], "usr/bin/suidtool": [0o4755, 0, 0],
             "home/envd": [0o750, 1000, 1000]}
    return write_tree(base, name, files, modes)


def busybox_tree(base: Path, name: str = "busybox") -> Path:
    files: dict[str, object] = {
        "usr/bin/busybox": ("x", BUSYBOX.read_bytes()),
        "usr/bin/sh": ("l", "busybox"),
        "usr/bin/echo": ("l", "busybox"),
        "usr/bin/stat": ("l", "busybox"),
    }
    return write_tree(base, name, files, {})


def run_builder(script: str, env: dict[str, str], python: str = HOST_PYTHON,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Like Nix: `env -i <attrs> python3 builders/<script>` (no inherited environment)."""
    return subprocess.run(
        [python, str(BUILDERS / script)], env=env, cwd=cwd or "/", capture_output=True,
        text=True, check=False,
    )


def mklayer(out: Path, trees: list[Path], python: str = HOST_PYTHON, **extra: str) -> dict:
    proc = run_builder("mklayer.py", {"out": str(out), "trees": json.dumps([str(t) for t in trees]),
                                      **extra}, python)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return json.loads((out / "layer.json").read_text())


def mkimage(out: Path, layers: list[Path], config: Path, **extra: str) -> dict:
    env = {"out": str(out), "layers": json.dumps([str(p) for p in layers]),
           "config": str(config), **extra}
    proc = run_builder("mkimage.py", env)
    assert proc.returncode == 0, proc.stderr
    digests = read_digests(out / "digests.json")  # what envnix reads back, checked
    assert digests["schema"] == DIGESTS_SCHEMA
    assert DIGESTS_SCHEMA_JSON.errors(digests) == []  # and what docs/schemas/ says it is
    return digests


def config_template(path: Path) -> Path:
    path.write_text(json.dumps({"schema": 1, "template": {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"], "WorkingDir": "/",
                   "Labels": {"ai.tensorchord.envd.build.digest": "x"}, "Cmd": ["/bin/sh"]},
        "history_comment": "built by envnix tests",
    }}), encoding="utf-8")
    return path


def readonly(path: Path) -> None:
    """The store makes outputs read-only; consumers must cope (and must not write)."""
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames + dirnames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, stat.S_IMODE(os.lstat(p).st_mode) & ~0o222)
    os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) & ~0o222)


@dataclass(frozen=True)
class Built:
    """One complete build in a store-like directory (everything a sibling of everything)."""

    store: Path
    skeleton: Path
    busybox: Path
    layer_skel: Path
    layer_bb: Path
    image: Path


def build_all(store: Path) -> Built:
    store.mkdir(parents=True)
    skel, bb = skeleton_tree(store), busybox_tree(store)
    l1, l2 = store / "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-layer-skeleton", store / "layer-busybox"
    mklayer(l1, [skel])
    mklayer(l2, [bb])
    cfg = config_template(store / "config.json")
    image = store / "image"
    mkimage(image, [l1, l2], cfg, tag=TAG, archive="1")
    for p in (l1, l2, image):
        readonly(p)
    return Built(store, skel, bb, l1, l2, image)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if not BUSYBOX.exists():
        pytest.skip("needs /bin/busybox (Debian busybox-static)")
    return build_all(tmp_path_factory.mktemp("store1") / "store")


def tar_members(layer: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(layer / "layer.tar.gz", "r:gz") as tf:
        return {m.name: m for m in tf.getmembers()}


def blob(image: Path, digest: str) -> bytes:
    return (image / "oci" / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def need(*tools: str) -> None:
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"needs {t}")


# ---------------------------------------------------------------------------------------------
# mklayer


def test_layer_json_describes_the_bytes(built: Built) -> None:
    for layer in (built.layer_skel, built.layer_bb):
        meta = json.loads((layer / "layer.json").read_text())
        gz = (layer / "layer.tar.gz").read_bytes()
        raw = gzip.decompress(gz)
        assert meta == {"diff_id": sha(raw), "digest": sha(gz), "size": len(gz),
                        "tar_size": len(raw), "paths": len(tar_members(layer))}
        assert gz[:10] == bytes.fromhex("1f8b08000000000000ff")
        assert sorted(os.listdir(layer)) == ["layer.json", "layer.tar.gz"]


def test_layer_members_modes_and_order(built: Built) -> None:
    members = tar_members(built.layer_skel)
    names = list(members)
    assert names == sorted(names, key=lambda n: n.encode().split(b"/"))
    for name in names:  # explicit parents, each before its children
        parent = name.rsplit("/", 1)[0] if "/" in name else None
        assert parent is None or names.index(parent) < names.index(name)
    m = members
    assert m["bin"].issym() and m["bin"].linkname == "usr/bin" and m["bin"].mode == 0o777
    assert m["tmp"].isdir() and m["tmp"].mode == 0o1777
    assert m["usr/bin/suidtool"].mode == 0o4755
    assert m["usr/bin/hello.sh"].mode == 0o755
    assert m["etc/passwd"].mode == 0o644 and m["etc"].mode == 0o755
    assert (m["home/envd"].mode, m["home/envd"].uid, m["home/envd"].gid) == (0o750, 1000, 1000)
    assert m["home/envd"].uname == "" and m["etc"].uname == "root" and m["etc"].gname == "root"
    assert m[LONG_FILE].size == 5 and m[LONG_FILE].pax_headers == {"path": LONG_FILE}
    assert m[LONG_DIR].isdir() and m[LONG_DIR].pax_headers == {}  # prefix/name split
    assert m[NON_ASCII].pax_headers == {"path": NON_ASCII}
    assert m["opt/longlink"].linkname == LONG_TARGET
    assert {x.mtime for x in m.values()} == {0}
    assert "" not in m and "." not in m and "./" not in m


def test_layer_readable_by_gnu_tar(built: Built, tmp_path: Path) -> None:
    need("tar")
    env = {"LC_ALL": "C.UTF-8", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    listing = subprocess.run(
        ["tar", "--quoting-style=literal", "-tvzf", str(built.layer_skel / "layer.tar.gz")],
        env=env, capture_output=True, check=True,
    )
    text = listing.stdout.decode("utf-8")
    assert not listing.stderr
    assert f" {LONG_FILE}\n" in text and f" {NON_ASCII}\n" in text
    assert "-rwsr-xr-x root/root" in text and "drwxrwxrwt root/root" in text
    assert f"opt/longlink -> {LONG_TARGET}\n" in text
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "-xpzf", str(built.layer_skel / "layer.tar.gz"), "-C", str(dest)],
                   env=env, check=True)
    assert (dest / LONG_FILE).read_bytes() == b"long\n"
    assert (dest / NON_ASCII).read_text(encoding="utf-8") == "grüße\n"
    if os.geteuid() == 0:
        assert stat.S_IMODE((dest / "usr/bin/suidtool").stat().st_mode) == 0o4755
        assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777


def test_layer_golden_digests(tmp_path: Path) -> None:
    """The skeleton layer's bytes are pinned (nothing in it comes from the host)."""
    meta = mklayer(tmp_path / "layer", [skeleton_tree(tmp_path)])
    assert meta["diff_id"] == SKELETON_DIFF_ID
    if zlib.ZLIB_RUNTIME_VERSION == "1.2.13":
        assert meta["digest"] == SKELETON_DIGEST_ZLIB_1_2_13


def test_layer_independent_of_tree_location_and_file_times(tmp_path: Path) -> None:
    a = mklayer(tmp_path / "la", [skeleton_tree(tmp_path / "one", "skeleton")])
    tree = skeleton_tree(tmp_path / "two" / "deeper", "skeleton")
    for dirpath, _, filenames in os.walk(tree):
        for n in filenames:
            os.utime(os.path.join(dirpath, n), (1234567890, 1234567890), follow_symlinks=False)
    b = mklayer(tmp_path / "lb", [tree])
    assert a == b
    gz_a, gz_b = (tmp_path / "la/layer.tar.gz").read_bytes(), (tmp_path / "lb/layer.tar.gz")
    assert gz_a == gz_b.read_bytes()


def test_layer_mtime_parameter(tmp_path: Path) -> None:
    tree = skeleton_tree(tmp_path)
    zero = mklayer(tmp_path / "l0", [tree])
    sde = mklayer(tmp_path / "l1", [tree], mtime="1700000000")
    assert zero["diff_id"] != sde["diff_id"]
    assert {m.mtime for m in tar_members(tmp_path / "l1").values()} == {1700000000}


def test_trees_from_a_file_and_merge_of_two_trees(tmp_path: Path) -> None:
    skel, other = skeleton_tree(tmp_path), write_tree(tmp_path, "other", {
        "usr/bin/other": b"other\n",  # usr, usr/bin: directories in both trees, same mode
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nenvd:x:1000:1000::/home/envd:/bin/sh\n",
        "bin": ("l", "usr/bin"),  # same symlink in both
        "tmp": None,
    }, {"tmp": [0o1777, 0, 0]})
    listing = tmp_path / "trees.json"
    listing.write_text(json.dumps([str(skel), str(other)]))
    proc = run_builder("mklayer.py", {"out": str(tmp_path / "l"), "trees": str(listing)})
    assert proc.returncode == 0, proc.stderr
    members = tar_members(tmp_path / "l")
    assert "usr/bin/other" in members and "usr/bin/suidtool" in members
    assert [n for n in members if n == "etc/passwd"] == ["etc/passwd"]


@pytest.mark.parametrize(("a", "b", "a_modes", "b_modes", "message"), [
    ({"usr/bin/x": b"a"}, {"usr/bin/x": b"b"}, {}, {},
     "/usr/bin/x is provided by both tree-a and tree-b"),
    ({"usr/bin/x": b"a"}, {"usr/bin/x": ("x", b"a")}, {}, {},
     "/usr/bin/x is provided by both tree-a and tree-b"),
    ({"usr/bin/x": ("l", "y")}, {"usr/bin/x": ("l", "z")}, {}, {},
     "/usr/bin/x is provided by both tree-a and tree-b"),
    ({"usr/bin/x": ("l", "y")}, {"usr/bin/x": b"y"}, {}, {},
     "/usr/bin/x is provided by both tree-a and tree-b"),
    ({"usr/bin": ("l", "y")}, {"usr/bin/x": b"y"}, {}, {},
     "/usr/bin is provided by both tree-a and tree-b"),
    ({"tmp": None}, {"tmp": None}, {"tmp": [0o1777, 0, 0]}, {},
     "/tmp is provided by both tree-a and tree-b with different modes (1777 0:0 vs 0755 0:0)"),
])
def test_conflicts_are_one_line_errors(tmp_path: Path, a: dict, b: dict, a_modes: dict,
                                       b_modes: dict, message: str) -> None:
    ta = write_tree(tmp_path, "tree-a", a, a_modes)
    tb = write_tree(tmp_path, "tree-b", b, b_modes)
    proc = run_builder("mklayer.py", {"out": str(tmp_path / "l"),
                                      "trees": json.dumps([str(ta), str(tb)])})
    assert proc.returncode == 1
    assert proc.stderr == f"envnix-builder: layer: {message}\n"


@pytest.mark.parametrize(("env", "files", "modes", "message"), [
    ({"out": None, "trees": None}, {}, {}, "the environment must set out and trees"),
    ({"trees": "[1]"}, {}, {}, "trees must be a JSON list of paths"),
    ({"trees": "/nonexistent/list"}, {}, {}, "cannot read trees from /nonexistent/list"),
    ({"mtime": "soon"}, {"a": b""}, {}, "mtime='soon' is not an integer"),
    ({}, {"a": b""}, {"b": [0o644, 0, 0]}, "t: meta.json modes names /b, which is not in root/"),
    ({}, {"a": b""}, {"a": [0o644, 0]}, "t: meta.json modes['a'] must be [mode, uid, gid]"),
])
def test_bad_input_is_one_line(tmp_path: Path, env: dict, files: dict, modes: dict,
                               message: str) -> None:
    """`env` overrides the good environment; a None value removes that variable."""
    tree = write_tree(tmp_path, "t", files, modes)
    full = {"out": str(tmp_path / "l"), "trees": json.dumps([str(tree)]), **env}
    proc = run_builder("mklayer.py", {k: v for k, v in full.items() if v is not None})
    assert proc.returncode == 1
    line = proc.stderr
    assert line.count("\n") == 1 and line.startswith("envnix-builder: layer: ")
    assert message in line


def test_store_hard_links_stay_regular_files(tmp_path: Path) -> None:
    """`nix-store --optimise` hard-links identical files; that must not change the layer."""
    plain = write_tree(tmp_path / "p", "t", {"a": b"same\n", "b": b"same\n"}, {})
    linked = write_tree(tmp_path / "h", "t", {"a": b"same\n"}, {}, readonly=False)
    os.link(linked / "root/a", linked / "root/b")
    store_modes(linked)
    assert mklayer(tmp_path / "lp", [plain]) == mklayer(tmp_path / "lh", [linked])


def test_package_hard_links_become_tar_hard_links(tmp_path: Path) -> None:
    """meta.json `hardlinks` (a .deb's hard links, which the store cannot hold) are restored:
    the first name in archive order holds the content, the others link to it; a name whose
    mode differs from the group's stays a file of its own."""
    need("tar")
    data = b"\x7fELF driver" * 1000
    files = {"usr/lib/dri/z_dri.so": data, "usr/lib/dri/a_dri.so": data, "usr/lib/m": data,
             "usr/bin/ro": b"r", "usr/bin/rw": b"r"}
    tree = write_tree(tmp_path, "t", files, {"usr/bin/ro": [0o444, 0, 0]}, hardlinks=[
        ["usr/lib/m", "usr/lib/dri/z_dri.so", "usr/lib/dri/a_dri.so"],
        ["usr/bin/ro", "usr/bin/rw"]])
    layer = mklayer(tmp_path / "l", [tree])
    members = tar_members(tmp_path / "l")
    first = members["usr/lib/dri/a_dri.so"]
    assert first.isreg() and first.size == len(data)
    for name in ("usr/lib/dri/z_dri.so", "usr/lib/m"):
        assert members[name].islnk() and members[name].linkname == "usr/lib/dri/a_dri.so"
        assert members[name].mode == 0o644
    assert members["usr/bin/ro"].isreg() and members["usr/bin/rw"].isreg()
    assert layer["tar_size"] < 2 * len(data)

    root = tmp_path / "x"
    root.mkdir()
    subprocess.run(["tar", "-xzf", str(tmp_path / "l/layer.tar.gz"), "-C", str(root)],
                   check=True)
    inodes = {(root / n).stat().st_ino for n in ("usr/lib/dri/a_dri.so",
                                                 "usr/lib/dri/z_dri.so", "usr/lib/m")}
    assert len(inodes) == 1 and (root / "usr/lib/m").read_bytes() == data

    # The group's order in meta.json does not matter; without the groups, the same files
    # under usr/ are found by content and give the same layer.
    same = write_tree(tmp_path / "o", "t", files, {"usr/bin/ro": [0o444, 0, 0]}, hardlinks=[
        ["usr/bin/rw", "usr/bin/ro"],
        ["usr/lib/dri/a_dri.so", "usr/lib/m", "usr/lib/dri/z_dri.so"]])
    assert mklayer(tmp_path / "lo", [same]) == layer
    plain = write_tree(tmp_path / "p", "t", files, {"usr/bin/ro": [0o444, 0, 0]})
    assert mklayer(tmp_path / "lp", [plain]) == layer


def test_the_same_file_twice_under_usr_is_stored_once(tmp_path: Path) -> None:
    """Content dedupe: under usr/ a file equal in content, mode and owner to an earlier one is
    a hard link to it; a different mode, an empty file, or a path outside usr/ (/etc, /root:
    edited in place) keeps its own copy."""
    text = b"Apache License 2.0\n" * 500
    files = {"usr/share/doc/b/LICENSE": text, "usr/share/doc/a/LICENSE": text,
             "usr/lib/python3/x/LICENSE": text, "usr/bin/tool": text,
             "usr/share/e1": b"", "usr/share/e2": b"",
             "etc/skel/.bashrc": text, "root/.bashrc": text}
    tree = write_tree(tmp_path, "t", files, {"usr/bin/tool": [0o755, 0, 0]})
    mklayer(tmp_path / "l", [tree])
    members = tar_members(tmp_path / "l")
    links = {n: m.linkname for n, m in members.items() if m.islnk()}
    assert links == {"usr/share/doc/a/LICENSE": "usr/lib/python3/x/LICENSE",
                     "usr/share/doc/b/LICENSE": "usr/lib/python3/x/LICENSE"}
    assert all(members[n].isreg() for n in ("usr/bin/tool", "usr/share/e1", "usr/share/e2",
                                            "etc/skel/.bashrc", "root/.bashrc"))


def test_hard_link_groups_of_two_trees_that_share_a_name_are_one(tmp_path: Path) -> None:
    ta = write_tree(tmp_path, "a", {"x": b"s", "y": b"s"}, {}, hardlinks=[["x", "y"]])
    tb = write_tree(tmp_path, "b", {"y": b"s", "z": b"s"}, {}, hardlinks=[["y", "z"]])
    mklayer(tmp_path / "l", [ta, tb])
    members = tar_members(tmp_path / "l")
    assert members["x"].isreg()
    assert [(members[n].islnk(), members[n].linkname) for n in ("y", "z")] == [(True, "x")] * 2


@pytest.mark.parametrize(("hardlinks", "message"), [
    ({"a": "b"}, "t: meta.json hardlinks must be a list"),
    ([["a"]], "t: meta.json hardlinks: ['a'] is not a list of names"),
    ([["a", "missing"]], "t: meta.json hardlinks names /missing, which is not a regular file"),
    ([["a", "s"]], "t: meta.json hardlinks names /s, which is not a regular file"),
    ([["a", "b"]], "t: meta.json hardlinks: /b and /a differ in content"),
])
def test_bad_hard_link_groups_are_one_line(tmp_path: Path, hardlinks: object,
                                           message: str) -> None:
    tree = write_tree(tmp_path, "t", {"a": b"x", "b": b"y", "s": ("l", "a")}, {},
                      hardlinks=hardlinks)  # type: ignore[arg-type]
    proc = run_builder("mklayer.py", {"out": str(tmp_path / "l"), "trees": json.dumps([str(tree)])})
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"envnix-builder: layer: {message}"), proc.stderr
    assert proc.stderr.count("\n") == 1


def _interpreters() -> list[str]:
    """Host python3 (what Nix runs), the venv's (another 3.11 build), and any newer CPython."""
    found = [HOST_PYTHON, "/tmp/venv/bin/python", sys.executable]
    found += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[1-9]*/bin/python3")))
    seen, result = set(), []
    for p in found:
        if os.path.exists(p) and os.path.realpath(p) not in seen:
            seen.add(os.path.realpath(p))
            result.append(p)
    return result


@pytest.mark.parametrize("python", _interpreters())
def test_same_bytes_with_other_pythons(tmp_path: Path, python: str) -> None:
    if not BUSYBOX.exists():
        pytest.skip("needs /bin/busybox")
    trees = [skeleton_tree(tmp_path), busybox_tree(tmp_path)]
    ref = mklayer(tmp_path / "ref", trees)
    other = mklayer(tmp_path / "other", trees, python=python)
    assert other["diff_id"] == ref["diff_id"]
    zlib_of = [subprocess.run([p, "-c", "import zlib; print(zlib.ZLIB_RUNTIME_VERSION)"],
                              capture_output=True, text=True, check=True).stdout
               for p in (HOST_PYTHON, python)]
    if zlib_of[0] == zlib_of[1]:  # the deflate bytes are zlib's, not Python's
        assert other == ref


# ---------------------------------------------------------------------------------------------
# mkimage


def test_image_layout_json(built: Built) -> None:
    oci, image = built.image / "oci", built.image
    digests = json.loads((image / "digests.json").read_text())
    assert (oci / "oci-layout").read_bytes() == b'{"imageLayoutVersion":"1.0.0"}'
    index_bytes = (oci / "index.json").read_bytes()
    index = json.loads(index_bytes)
    desc = index["manifests"][0]
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert len(index["manifests"]) == 1 and desc["digest"] == digests["manifest"]
    assert desc["annotations"] == {"io.containerd.image.name": TAG,
                                   "org.opencontainers.image.ref.name": "dev"}
    manifest_bytes = blob(image, digests["manifest"])
    manifest = json.loads(manifest_bytes)
    assert desc["size"] == len(manifest_bytes) and sha(manifest_bytes) == digests["manifest"]
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    config_bytes = blob(image, manifest["config"]["digest"])
    assert manifest["config"]["digest"] == digests["config"] == sha(config_bytes)
    config = json.loads(config_bytes)
    layer_metas = [json.loads((p / "layer.json").read_text())
                   for p in (built.layer_skel, built.layer_bb)]
    assert config["rootfs"] == {"type": "layers",
                                "diff_ids": [m["diff_id"] for m in layer_metas]}
    assert manifest["layers"] == [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": m["digest"],
         "size": m["size"]} for m in layer_metas]
    assert digests["layers"] == [m["digest"] for m in layer_metas]
    assert config["history"] == [
        {"created": "1970-01-01T00:00:00Z", "created_by": f"envnix {n}",
         "comment": "built by envnix tests"} for n in ("layer-skeleton", "layer-busybox")]
    assert "history_comment" not in config and config["config"]["Cmd"] == ["/bin/sh"]
    for raw in (index_bytes, manifest_bytes, config_bytes, (image / "digests.json").read_bytes()):
        canon = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False).encode()
        assert raw == canon
    for m in layer_metas:  # every blob (read through its link) has the digest it is named by
        assert sha(blob(image, m["digest"])) == m["digest"]


def test_layer_blobs_are_relative_symlinks_next_to_the_store(built: Built) -> None:
    blobs = built.image / "oci" / "blobs" / "sha256"
    for layer in (built.layer_skel, built.layer_bb):
        digest = json.loads((layer / "layer.json").read_text())["digest"]
        link = blobs / digest.removeprefix("sha256:")
        assert link.is_symlink()
        assert os.readlink(link) == f"../../../../{layer.name}/layer.tar.gz"
        assert link.resolve() == (layer / "layer.tar.gz").resolve()


def test_blobs_copy_and_absolute_links(built: Built, tmp_path: Path) -> None:
    cfg = config_template(tmp_path / "c.json")
    layers = [built.layer_skel, built.layer_bb]
    ref = json.loads((built.image / "digests.json").read_text())
    assert mkimage(tmp_path / "copied", layers, cfg, tag=TAG, blobs="copy") == ref
    assert mkimage(tmp_path / "linked", layers, cfg, tag=TAG) == ref
    for digest in ref["layers"]:
        copied = tmp_path / "copied/oci/blobs/sha256" / digest.removeprefix("sha256:")
        linked = tmp_path / "linked/oci/blobs/sha256" / digest.removeprefix("sha256:")
        assert not copied.is_symlink() and sha(copied.read_bytes()) == digest
        assert os.path.isabs(os.readlink(linked)) and sha(linked.read_bytes()) == digest


def test_image_tar_members(built: Built) -> None:
    digests = json.loads((built.image / "digests.json").read_text())
    with tarfile.open(built.image / "image.tar") as tf:
        members = {m.name: m for m in tf.getmembers()}
        files = {n: tf.extractfile(m).read()  # type: ignore[union-attr]
                 for n, m in members.items() if m.isfile()}
    hexes = sorted(d.removeprefix("sha256:") for d in
                   [digests["config"], digests["manifest"], *digests["layers"]])
    assert list(members) == ["blobs", "blobs/sha256", *[f"blobs/sha256/{h}" for h in hexes],
                             "index.json", "manifest.json", "oci-layout"]
    assert files["index.json"] == (built.image / "oci/index.json").read_bytes()
    for name, data in files.items():
        if name.startswith("blobs/"):
            assert sha(data) == "sha256:" + name.rsplit("/", 1)[1]
    assert json.loads(files["manifest.json"]) == [{
        "Config": "blobs/sha256/" + digests["config"].removeprefix("sha256:"),
        "RepoTags": [TAG],
        "Layers": ["blobs/sha256/" + d.removeprefix("sha256:") for d in digests["layers"]],
    }]


def test_build_twice_is_byte_identical(built: Built, tmp_path_factory: pytest.TempPathFactory
                                       ) -> None:
    again = build_all(tmp_path_factory.mktemp("store2") / "elsewhere" / "store")
    for rel in ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-layer-skeleton/layer.tar.gz",
                "layer-busybox/layer.tar.gz", "image/digests.json", "image/image.tar",
                "image/oci/index.json"):
        assert (built.store / rel).read_bytes() == (again.store / rel).read_bytes(), rel
    digests = json.loads((again.image / "digests.json").read_text())
    for d in (digests["config"], digests["manifest"]):
        assert blob(built.image, d) == blob(again.image, d)


@pytest.mark.parametrize(("env", "message"), [
    ({"tag": "Bad Tag"}, "tag 'Bad Tag' is not a valid image reference"),
    ({"layers": "[]"}, "layers is empty"),
    ({"archive": "yes"}, "archive='yes': use 1 or leave it unset"),
    ({"config": "/nonexistent.json"}, "cannot read config /nonexistent.json"),
])
def test_image_bad_input_is_one_line(built: Built, tmp_path: Path, env: dict, message: str
                                     ) -> None:
    full = {"out": str(tmp_path / "img"), "layers": json.dumps([str(built.layer_skel)]),
            "config": str(config_template(tmp_path / "c.json")), **env}
    proc = run_builder("mkimage.py", full)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("envnix-builder: image: ")
    assert message in proc.stderr


def test_history_names_the_layer_by_its_layer_name(built: Built, tmp_path: Path) -> None:
    """image.nix names layer derivations "z-envnix-layer-<name>" (so Nix schedules them after
    the trees) and passes layerName "envnix-layer-<name>": the history keeps that name."""
    named = tmp_path / ("b" * 32 + "-z-envnix-layer-skeleton")
    meta = mklayer(named, [built.skeleton], layerName="envnix-layer-skeleton")
    plain = json.loads((built.layer_skel / "layer.json").read_text())
    assert meta == {**plain, "name": "envnix-layer-skeleton"}
    mkimage(tmp_path / "img", [named, built.layer_bb], config_template(tmp_path / "c.json"))
    digests = json.loads((tmp_path / "img/digests.json").read_text())
    config = json.loads(blob(tmp_path / "img", digests["config"]))
    assert [h["created_by"] for h in config["history"]] == [
        "envnix envnix-layer-skeleton", "envnix layer-busybox"]
    bad = tmp_path / "layer-bad"
    shutil.copytree(named, bad)
    (bad / "layer.json").write_text(json.dumps({**meta, "name": "a/b"}))
    proc = run_builder("mkimage.py", {"out": str(tmp_path / "img2"), "layers": json.dumps(
        [str(bad)]), "config": str(config_template(tmp_path / "c2.json"))})
    assert proc.returncode == 1 and "name 'a/b' is not a store path name" in proc.stderr


def test_tag_without_tag_part_means_latest(built: Built, tmp_path: Path) -> None:
    mkimage(tmp_path / "img", [built.layer_skel], config_template(tmp_path / "c.json"),
            tag="localhost:5000/team/app")
    index = json.loads((tmp_path / "img/oci/index.json").read_text())
    assert index["manifests"][0]["annotations"] == {
        "io.containerd.image.name": "localhost:5000/team/app:latest",
        "org.opencontainers.image.ref.name": "latest"}


def test_empty_layer_is_left_out(built: Built, tmp_path: Path) -> None:
    """A layer with no member (a triggers or run() layer that found nothing to do) changes no
    file: the image is the one without it, byte for byte."""
    empty_tree = write_tree(tmp_path, "empty", {}, {})
    empty = tmp_path / "layer-empty"
    assert mklayer(empty, [empty_tree])["paths"] == 0
    cfg = config_template(tmp_path / "c.json")
    with_empty = mkimage(tmp_path / "a", [built.layer_skel, empty, built.layer_bb], cfg)
    without = mkimage(tmp_path / "b", [built.layer_skel, built.layer_bb], cfg)
    assert with_empty == without
    proc = run_builder("mkimage.py", {"out": str(tmp_path / "c"), "layers": json.dumps(
        [str(empty)]), "config": str(cfg)})
    assert proc.returncode != 0 and "every layer is empty" in proc.stderr


# ---------------------------------------------------------------------------------------------
# real consumers (slow)


@pytest.mark.slow
def test_umoci_unpack_checks_diffids_and_keeps_modes(built: Built, tmp_path: Path) -> None:
    need("umoci")
    bundle = tmp_path / "bundle"
    proc = subprocess.run(["umoci", "unpack", "--image", f"{built.image}/oci:dev", str(bundle)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    rootfs = bundle / "rootfs"
    assert os.readlink(rootfs / "bin") == "usr/bin"
    assert os.readlink(rootfs / "usr/bin/sh") == "busybox"
    assert os.readlink(rootfs / "opt/longlink") == LONG_TARGET
    assert (rootfs / "usr/bin/busybox").read_bytes() == BUSYBOX.read_bytes()
    assert (rootfs / LONG_FILE).read_bytes() == b"long\n"
    assert (rootfs / NON_ASCII).read_text(encoding="utf-8") == "grüße\n"

    def mode(rel: str) -> int:
        return stat.S_IMODE((rootfs / rel).lstat().st_mode)

    assert mode("usr/bin/suidtool") == 0o4755 and mode("tmp") == 0o1777
    assert mode("usr/bin/busybox") == 0o755 and mode("etc/passwd") == 0o644
    st = (rootfs / "home/envd").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 1000, 1000)


@pytest.fixture(scope="module")
def podman_environ(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not have_podman():
        pytest.skip("needs podman and runc")
    with private_podman(tmp_path_factory.mktemp("podman")) as env:
        yield env


@pytest.mark.slow
def test_podman_runs_the_oci_layout(built: Built, podman_environ: dict[str, str]) -> None:
    out = podman("run", "--rm", f"oci:{built.image}/oci:dev", "/usr/bin/sh", "-c",
                 "echo hi; stat -c '%a %u:%g' /tmp /usr/bin/suidtool /home/envd",
                 env=podman_environ)
    assert out.stdout == "hi\n1777 0:0\n4755 0:0\n750 1000:1000\n"


@pytest.mark.slow
def test_podman_load_and_skopeo_read_image_tar(built: Built,
                                               podman_environ: dict[str, str]) -> None:
    need("skopeo")
    archive = built.image / "image.tar"
    digests = json.loads((built.image / "digests.json").read_text())
    loaded = podman("load", "-i", str(archive), env=podman_environ)
    assert f"localhost/{TAG}" in loaded.stdout
    run = podman("run", "--rm", f"localhost/{TAG}", "/usr/bin/echo", "loaded", env=podman_environ)
    assert run.stdout == "loaded\n"
    image_digest = podman("image", "inspect", "--format", "{{.Digest}}", f"localhost/{TAG}",
                          env=podman_environ)
    assert image_digest.stdout.strip() == digests["manifest"]  # loaded as OCI, digest kept

    def inspect(ref: str) -> dict:
        proc = subprocess.run(["skopeo", "inspect", ref], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    assert inspect(f"oci-archive:{archive}")["Digest"] == digests["manifest"]
    assert inspect(f"oci-archive:{archive}")["Layers"] == digests["layers"]
    as_docker = inspect(f"docker-archive:{archive}")  # layers keyed by diffID there
    config = json.loads(blob(built.image, digests["config"]))
    assert as_docker["Layers"] == config["rootfs"]["diff_ids"]

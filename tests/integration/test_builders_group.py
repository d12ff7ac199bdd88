"""unpack_deb.py's group mode (one derivation per layer's .debs) and build_sdist.py's refusal
of archives that try to leave their root, run as Nix runs the builders (empty environment,
``python3 -E -s -B``), on crafted .debs and sdists.

A group must give, for each .deb, exactly the package tree the one-.deb mode gives (the
layers, and so the digests, are made from those trees), and a bad .deb in a group is the
same one error line naming that package.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

from test_builders_unpack import (
    assert_one_line_error,
    make_deb,
    run_builder,
    tree_listing,
)

ENTRIES = {
    "alpha": [("dir", "./usr/"), ("dir", "./usr/bin/"), ("file", "./usr/bin/alpha", b"a\n", 0o755),
              ("hard", "./usr/bin/alpha2", "./usr/bin/alpha")],
    "beta": [("dir", "./etc/"), ("file", "./etc/beta.conf", b"b\n"),
             ("dir", "./bin/"), ("sym", "./bin/beta", "../usr/bin/alpha")],
    "gamma": [("dir", "./usr/"), ("dir", "./usr/share/"), ("file", "./usr/share/g", b"g\n")],
}


def test_a_group_gives_each_deb_the_tree_it_gets_alone(tmp_path: Path) -> None:
    debs = {n: make_deb(tmp_path / f"{n}.deb", e) for n, e in ENTRIES.items()}
    for name, deb in debs.items():
        r = run_builder("unpack_deb.py", {"src": str(deb), "out": str(tmp_path / "one" / name),
                                          "pkgName": name, "pkgVersion": "1.0-1"},
                        tmp_path / f"build-{name}")
        assert r.returncode == 0, r.stderr
    jobs = [{"src": str(d), "name": n, "version": "1.0-1", "dir": f"{n}_1.0-1_amd64.deb"}
            for n, d in debs.items()]
    group = tmp_path / "group"
    r = run_builder("unpack_deb.py", {"out": str(group), "debs": json.dumps(jobs),
                                      "NIX_BUILD_CORES": "2"}, tmp_path / "build-group")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in group.iterdir()) == sorted(j["dir"] for j in jobs)
    for job in jobs:
        assert tree_listing(group / job["dir"]) == tree_listing(tmp_path / "one" / job["name"])


def test_a_bad_deb_in_a_group_is_one_line_naming_it(tmp_path: Path) -> None:
    good = make_deb(tmp_path / "good.deb", ENTRIES["gamma"])
    bad = make_deb(tmp_path / "bad.deb", [("file", "../escape", b"x")])
    jobs = [{"src": str(good), "name": "good", "version": "1", "dir": "good.deb"},
            {"src": str(bad), "name": "evil", "version": "6.6", "dir": "bad.deb"}]
    out = tmp_path / "group"
    r = run_builder("unpack_deb.py", {"out": str(out), "debs": json.dumps(jobs)},
                    tmp_path / "build")
    assert_one_line_error(r, out, "deb evil 6.6")
    assert not (tmp_path / "escape").exists()
    for dirs in (["a", "a"], ["../x", "y"], [".", "y"]):
        same = [{**jobs[0], "dir": dirs[0]}, {**jobs[0], "dir": dirs[1]}]
        r = run_builder("unpack_deb.py", {"out": str(tmp_path / "o2"), "debs": json.dumps(same)},
                        tmp_path / "build2")
        assert_one_line_error(r, tmp_path / "o2", "each dir must be a distinct plain file name")


def _sdist(path: Path, members: list[tuple[str, bytes]]) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


def test_an_sdist_that_leaves_its_root_is_refused_before_anything_runs(tmp_path: Path) -> None:
    cases = {
        "dotdot": ([("p-1/setup.py", b""), ("p-1/../../escape", b"x")], "escapes the root"),
        "absolute": ([("p-1/setup.py", b""), ("/tmp/abs-escape", b"x")], "absolute"),
        "two tops": ([("p-1/setup.py", b""), ("q-1/setup.py", b"")], "2 top-level entries"),
    }
    for label, (members, needle) in cases.items():
        src = _sdist(tmp_path / f"{label.replace(' ', '-')}.tar.gz", members)
        out = tmp_path / f"out-{label.replace(' ', '-')}"
        r = run_builder("build_sdist.py", {
            "out": str(out), "src": str(src), "trees": "[]", "pkgName": "p", "pkgVersion": "1",
            "interpreter": "/usr/bin/python3", "backend": "setuptools.build_meta",
            "proot": "/usr/bin/proot"}, tmp_path / f"build-{label.replace(' ', '-')}")
        line = assert_one_line_error(r, out, "build p 1 from its sdist")
        assert needle in line, (label, line)
        assert not out.exists()
    assert not (tmp_path / "escape").exists() and not Path("/tmp/abs-escape").exists()

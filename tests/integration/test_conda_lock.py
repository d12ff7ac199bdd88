"""Locking conda packages with py-rattler against a real channel served over loopback HTTP.

The channel (tests/_conda_channel.py) is built once per session; canonical channel URLs use
the reserved ``.invalid`` domain, so a test passes only if every byte came from the mirrors.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _conda_channel import (
    PLACEHOLDER,
    ChannelInfo,
    ChannelServer,
    build_channel,
    dead_url,
    gcc_available,
    python_available,
    serve,
)
from test_conda_lock_offline import GLIBC

from envnix.core.errors import FetchError, LockError, PackageNotFoundError
from envnix.frontend.envyaml import ChannelLocation, parse_condarc, resolve_channels
from envnix.lock.conda import LOCK_KEYS, default_cache_dir, lock_conda


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """The download cache of one test (shadows pytest's own ``cache``, as the unit half does)."""
    return tmp_path / "cache"


CANONICAL = "https://conda.invalid/fixture"
needs_python = pytest.mark.skipif(not python_available(), reason="needs Debian's python3.11")
needs_gcc = pytest.mark.skipif(not gcc_available(), reason="needs gcc")


@pytest.fixture(scope="session")
def channel(tmp_path_factory: pytest.TempPathFactory) -> ChannelInfo:
    return build_channel(tmp_path_factory.mktemp("conda-channel") / "fixture")


@pytest.fixture(scope="module")
def server(channel: ChannelInfo) -> Iterator[ChannelServer]:
    with serve(channel.root, prefixes=("mirror-a/fixture", "mirror-b/fixture")) as srv:
        yield srv


def location(*urls: str, canonical: str = CANONICAL) -> ChannelLocation:
    return ChannelLocation("fixture", canonical, tuple(urls))


def by_name(entries: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(e["name"]): e for e in entries}


# -- the fixture channel itself --------------------------------------------------------------


def test_fixture_repodata_matches_archives(channel: ChannelInfo) -> None:
    seen_formats = set()
    for subdir in ("linux-64", "noarch"):
        repodata = json.loads((channel.root / subdir / "repodata.json").read_text())
        assert repodata["info"]["subdir"] == subdir
        for section in ("packages", "packages.conda"):
            for fn, record in repodata[section].items():
                data = (channel.root / subdir / fn).read_bytes()
                seen_formats.add(section)
                assert record["size"] == len(data)
                assert record["md5"] == hashlib.md5(data).hexdigest()
                if fn.startswith("nosha-"):
                    assert "sha256" not in record
                else:
                    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert seen_formats == {"packages", "packages.conda"}
    assert len(channel.packages) >= 30


def test_fixture_channel_solves_with_rattler_directly(channel: ChannelInfo) -> None:
    from rattler import (
        BuildString,
        Channel,
        GenericVirtualPackage,
        MatchSpec,
        PackageName,
        SparseRepoData,
        Version,
        solve_with_sparse_repodata,
    )

    url = channel.root.as_uri()
    sparse = [SparseRepoData(Channel(url), s, str(channel.root / s / "repodata.json"))
              for s in ("linux-64", "noarch")]
    vps = [GenericVirtualPackage(PackageName(n), Version(v), BuildString("0"))
           for n, v in (("__unix", "0"), ("__linux", "5.10"), ("__glibc", GLIBC))]
    records = asyncio.run(solve_with_sparse_repodata(
        [MatchSpec(s, strict=False) for s in ("pkg-a", "many-00")], sparse,
        virtual_packages=vps))
    names = {r.name.normalized for r in records}
    assert {"pkg-a", "pkg-b", "many-00", "many-19"} <= names


@needs_python
@needs_gcc
def test_fixture_packages_install_and_run_with_rattler(channel: ChannelInfo,
                                                       tmp_path: Path) -> None:
    """An independent installer (rattler's) links the fixture packages into a working env."""
    from rattler import (
        BuildString,
        Channel,
        GenericVirtualPackage,
        MatchSpec,
        PackageName,
        SparseRepoData,
        Version,
        install,
        solve_with_sparse_repodata,
    )

    url = channel.root.as_uri()
    sparse = [SparseRepoData(Channel(url), s, str(channel.root / s / "repodata.json"))
              for s in ("linux-64", "noarch")]
    vps = [GenericVirtualPackage(PackageName("__glibc"), Version(GLIBC), BuildString("0"))]
    prefix = tmp_path / "env"

    async def go() -> None:
        records = await solve_with_sparse_repodata(
            [MatchSpec(s, strict=False) for s in ("python=3.11", "pyhello", "hellobin")],
            sparse, virtual_packages=vps)
        await install(records, prefix, cache_dir=tmp_path / "pkgs", show_progress=False,
                      execute_link_scripts=False)

    asyncio.run(go())
    clean = {"PATH": "/usr/bin:/bin"}

    def run(*cmd: str | Path) -> str:
        return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                              check=True, env=clean).stdout

    out = run(prefix / "bin/python", "-c", "import sys, sysconfig, json; print(json.dumps("
              "[sys.prefix, sys.exec_prefix, sys.path, sysconfig.get_paths()['purelib']]))")
    sys_prefix, exec_prefix, sys_path, purelib = json.loads(out)
    site_packages = f"{prefix}/lib/python3.11/site-packages"
    assert sys_prefix == exec_prefix == str(prefix)  # getpath found the landmarks, no PYTHONHOME
    assert site_packages in sys_path and purelib == site_packages
    # .pth files inside site-packages are processed too (site.addsitedir, not a bare append).
    Path(site_packages, "extra.pth").write_text(f"{tmp_path}/extra\n")
    (tmp_path / "extra").mkdir()
    assert f"{tmp_path}/extra" in run(prefix / "bin/python3", "-c", "import sys; print(sys.path)")
    assert run(prefix / "bin/pyhello").strip() == "hello from pyhello 1.0 (python 3.11)"
    assert run(prefix / "bin/hellobin").splitlines() == [
        str(prefix), f"data={prefix}/share/hellobin/prefix.txt"]
    assert (prefix / "share/hellobin/prefix.txt").read_text() == f"prefix={prefix}\n"
    assert PLACEHOLDER.encode() not in (prefix / "bin/hellobin").read_bytes()
    assert len(PLACEHOLDER) == 255


# -- locking ---------------------------------------------------------------------------------


@needs_python
@needs_gcc
def test_lock_with_lenient_specs(server: ChannelServer, channel: ChannelInfo,
                                 cache: Path) -> None:
    mirror_a, mirror_b = server.urls
    specs = ["python=3.11", "pyhello=1.0=pyh_0", "hellobin==1.0=h0_0", "pkg-a",
             "pkg-b>=1.0,<3", "libzlibish 1.*"]
    entries = lock_conda(specs, [location(mirror_a, mirror_b)], glibc=GLIBC, cache_dir=cache)
    names = [e["name"] for e in entries]
    assert names == sorted(names)
    assert names == ["hellobin", "libzlibish", "pkg-a", "pkg-b", "pyhello", "python"]
    for entry in entries:
        assert tuple(entry) == LOCK_KEYS  # sorted, stable keys
        assert entry["kind"] == "conda" and entry["channel"] == CANONICAL
        assert str(entry["url"]).startswith(CANONICAL + "/")
        built = channel.get(str(entry["name"]), str(entry["version"]),
                            ext=".conda" if str(entry["fn"]).endswith(".conda") else ".tar.bz2")
        assert entry["url"] == f"{CANONICAL}/{built.path}"
        assert entry["mirrors"] == [f"{mirror_a}/{built.path}", f"{mirror_b}/{built.path}"]
        assert (entry["sha256"], entry["md5"], entry["size"]) == (built.sha256, built.md5,
                                                                  built.size)
    e = by_name(entries)
    assert e["pkg-b"]["version"] == "1.2"  # pkg-a needs >=1.1,<2
    assert e["hellobin"]["fn"] == "hellobin-1.0-h0_0.conda"  # .conda preferred over .tar.bz2
    assert e["hellobin"]["depends"] == ["__glibc >=2.17,<3.0.a0", "libzlibish >=1.0"]
    assert (e["pyhello"]["noarch"], e["pkg-a"]["noarch"], e["python"]["noarch"]) == (
        "python", "generic", None)
    assert e["python"]["version"] == channel.python_version
    assert e["python"]["subdir"] == "linux-64" and e["pyhello"]["subdir"] == "noarch"
    assert e["python"]["timestamp"] == 1_700_000_000_000
    assert e["python"]["license"] == "PSF-2.0"
    assert all(isinstance(json.dumps(x), str) for x in entries)


def test_constrains_limit_versions(server: ChannelServer, cache: Path) -> None:
    loc = location(server.urls[0])
    assert by_name(lock_conda(["pkg-b"], [loc], glibc=GLIBC, cache_dir=cache))["pkg-b"][
        "version"] == "2.0"
    both = by_name(lock_conda(["pkg-b", "pkg-c"], [loc], glibc=GLIBC, cache_dir=cache))
    assert both["pkg-b"]["version"] == "1.2" and both["pkg-c"]["constrains"] == ["pkg-b <2"]


def test_glibc_comes_from_the_target_not_the_host(server: ChannelServer, cache: Path) -> None:
    loc = location(server.urls[0])
    with pytest.raises(LockError) as info:
        lock_conda(["needsnewglibc"], [loc], glibc=GLIBC, cache_dir=cache)
    message = str(info.value)
    assert message.startswith("conda: cannot satisfy the request (linux-64, __glibc 2.36")
    assert "needsnewglibc" in message.splitlines()[0]
    assert "__glibc >=2.99, for which no candidates were found" in message  # solver's words
    assert info.value.hint and "2.36" in info.value.hint
    # A (hypothetical) newer target solves it on this very host: nothing was detected.
    entries = lock_conda(["needsnewglibc"], [loc], glibc="2.99", cache_dir=cache)
    assert [e["name"] for e in entries] == ["needsnewglibc"]


def test_cuda_only_when_requested(server: ChannelServer, cache: Path) -> None:
    loc = location(server.urls[0])
    with pytest.raises(LockError) as info:
        lock_conda(["cudapkg"], [loc], glibc=GLIBC, cache_dir=cache)
    assert "__cuda >=11.8" in str(info.value) and "no __cuda" in str(info.value)
    assert info.value.hint and "CUDA" in info.value.hint
    with pytest.raises(LockError, match=r"__cuda >=11\.8"):
        lock_conda(["cudapkg"], [loc], glibc=GLIBC, cuda="11.2", cache_dir=cache)
    entries = lock_conda(["cudapkg"], [loc], glibc=GLIBC, cuda="12.1", cache_dir=cache)
    assert entries[0]["build"] == "cuda118_0"


def test_conflict_shows_solver_tree(server: ChannelServer, cache: Path) -> None:
    with pytest.raises(LockError) as info:
        lock_conda(["pkg-a", "pkg-b 2.*"], [location(server.urls[0])], glibc=GLIBC,
                   cache_dir=cache)
    lines = str(info.value).splitlines()
    assert "The following packages are incompatible" in lines[0]
    assert any("pkg-b >=1.1,<2" in line for line in lines[1:])


def test_unknown_package_and_unknown_version(server: ChannelServer, cache: Path) -> None:
    loc = location(server.urls[0])
    with pytest.raises(PackageNotFoundError, match="'nothere' is not in any of the channels"):
        lock_conda(["nothere", "pkg-a"], [loc], glibc=GLIBC, cache_dir=cache)
    with pytest.raises(LockError) as info:
        lock_conda(["pkg-b>=5"], [loc], glibc=GLIBC, cache_dir=cache)
    assert not isinstance(info.value, PackageNotFoundError)
    assert "no pkg-b package matches 'pkg-b >=5'" in str(info.value)
    assert str(info.value).endswith("the channels have pkg-b 1.0, 1.2, 2.0")


def test_mirror_fallback_records_canonical_and_mirrors(server: ChannelServer,
                                                       cache: Path) -> None:
    dead = dead_url("down/fixture")
    live = server.urls[1]
    before = len(server.hits("mirror-b/fixture"))
    entries = lock_conda(["pkg-a"], [location(dead, live)], glibc=GLIBC, cache_dir=cache)
    assert len(server.hits("mirror-b/fixture")) > before
    pkg_a = by_name(entries)["pkg-a"]
    assert pkg_a["url"] == f"{CANONICAL}/noarch/pkg-a-1.0-0.tar.bz2"
    assert pkg_a["mirrors"] == [f"{dead}/noarch/pkg-a-1.0-0.tar.bz2",
                                f"{live}/noarch/pkg-a-1.0-0.tar.bz2"]


def test_mirror_without_the_channel_is_skipped(channel: ChannelInfo, cache: Path) -> None:
    with serve(channel.root, prefixes=("a/fixture", "b/fixture")) as srv:
        srv.missing.add("/a/fixture")
        entries = lock_conda(["pkg-b"], [location(*srv.urls)], glibc=GLIBC, cache_dir=cache)
        assert entries[0]["version"] == "2.0"
        assert srv.hits("a/fixture") and srv.hits("b/fixture")
        srv.missing.add("/b/fixture")
        with pytest.raises(FetchError, match="is not a conda channel"):
            lock_conda(["pkg-b"], [location(*srv.urls)], glibc=GLIBC, cache_dir=cache)


def test_unreachable_channel_names_channel_and_mirrors(channel: ChannelInfo,
                                                       cache: Path) -> None:
    with serve(channel.root, prefixes=("only/fixture",)) as srv:
        urls = (dead_url("first/fixture"), srv.urls[0])
        srv.stop()
        with pytest.raises(FetchError) as info:
            lock_conda(["pkg-a"], [location(*urls)], glibc=GLIBC, cache_dir=cache)
    message = str(info.value)
    assert f"conda channel 'fixture' ({CANONICAL}) is unreachable" in message
    assert f"{urls[0]} (connection refused)" in message
    assert f"{urls[1]} (connection refused)" in message


def test_package_without_sha256_is_hashed_at_lock_time(channel: ChannelInfo,
                                                       tmp_path: Path, cache: Path) -> None:
    built = channel.get("nosha")
    assert not built.sha256_in_repodata
    # The first mirror serves a corrupted copy (its md5 differs from repodata): skipped.
    bad = tmp_path / "bad"
    shutil.copytree(channel.root / "noarch", bad / "noarch")
    shutil.copytree(channel.root / "linux-64", bad / "linux-64")
    (bad / built.path).write_bytes(b"not the package")
    with serve({"bad/fixture": bad, "good/fixture": channel.root}) as srv:
        loc = location(*srv.urls)
        entry = by_name(lock_conda(["nosha"], [loc], glibc=GLIBC, cache_dir=cache))["nosha"]
        assert (entry["sha256"], entry["size"]) == (built.sha256, built.size)
        assert srv.hits("good/fixture").count(f"/good/fixture/{built.path}") == 1
        # Relocking uses the cached hash: the archive is not downloaded again.
        again = lock_conda(["nosha"], [loc], glibc=GLIBC, cache_dir=cache)
        assert again[0] == entry
        assert srv.hits("good/fixture").count(f"/good/fixture/{built.path}") == 1
        # A damaged cached hash (wrong type, short sha256) is not trusted: hashed again.
        for damaged in ("[1, 2]", '{"sha256": "abc", "size": 1}', '{"sha256": null}', "\xff"):
            for key_file in (cache / "hashes").glob("*.json"):
                key_file.write_text(damaged)
            assert lock_conda(["nosha"], [loc], glibc=GLIBC, cache_dir=cache)[0] == entry
        assert srv.hits("good/fixture").count(f"/good/fixture/{built.path}") == 5


def test_lock_is_deterministic(server: ChannelServer, tmp_path: Path) -> None:
    specs = ["pkg-a", "many-00", "nosha", "libzlibish"]
    loc = location(*server.urls)
    first = lock_conda(specs, [loc], glibc=GLIBC, cache_dir=tmp_path / "c1")
    second = lock_conda(specs, [loc], glibc=GLIBC, cache_dir=tmp_path / "c2")
    warm = lock_conda(list(reversed(specs)), [loc], glibc=GLIBC, cache_dir=tmp_path / "c1")
    dump = json.dumps(first, sort_keys=True)
    assert dump == json.dumps(second, sort_keys=True) == json.dumps(warm, sort_keys=True)


def test_channel_specific_specs(channel: ChannelInfo, tmp_path: Path, cache: Path) -> None:
    import _conda_channel as cc

    second_root = tmp_path / "second"
    cc.build_channel(second_root, packages=[cc.trivial("pkg-b", "3.0")])
    with serve({"one/fixture": channel.root, "two/second": second_root}) as srv:
        one = location(srv.url("one/fixture"))
        two = ChannelLocation("second", "https://conda.invalid/second", (srv.url("two/second"),))
        # Strict priority: pkg-b comes from the first channel that has the name...
        assert lock_conda(["pkg-b"], [one, two], glibc=GLIBC, cache_dir=cache)[0][
            "version"] == "2.0"
        # ...unless a spec names the channel: by name, canonical URL or mirror URL.
        for spec in ("second::pkg-b", "https://conda.invalid/second::pkg-b",
                     f"{srv.url('two/second')}/noarch::pkg-b"):
            entry = lock_conda([spec], [one, two], glibc=GLIBC, cache_dir=cache)[0]
            assert (entry["version"], entry["channel"]) == ("3.0", "https://conda.invalid/second")
        with pytest.raises(LockError, match="names channel 'elsewhere'"):
            lock_conda(["elsewhere::pkg-b"], [one, two], glibc=GLIBC, cache_dir=cache)


def test_channel_with_only_noarch(channel: ChannelInfo, tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "noarch-only"
    shutil.copytree(channel.root / "noarch", root / "noarch")
    with serve(root, prefixes=("n/fixture",)) as srv:
        entries = lock_conda(["pkg-a"], [location(*srv.urls)], glibc=GLIBC, cache_dir=cache)
    assert [e["name"] for e in entries] == ["pkg-a", "pkg-b"]


def test_named_channel_through_condarc_mirror(server: ChannelServer, cache: Path) -> None:
    """config.conda_channel pointing a named channel at the loopback mirror."""
    mirror_root = server.urls[0].rsplit("/", 1)[0]  # .../mirror-a
    condarc = parse_condarc(f"""
        channel_alias: https://conda.invalid
        channels: [fixture]
        custom_channels:
          fixture: {mirror_root}
        """, "build.envd")
    locs = resolve_channels(["fixture"], condarc)
    entries = lock_conda(["pkg-a"], locs, glibc=GLIBC, cache_dir=cache)
    assert entries[0]["url"] == f"{CANONICAL}/noarch/pkg-a-1.0-0.tar.bz2"
    assert entries[0]["mirrors"] == [f"{server.urls[0]}/noarch/pkg-a-1.0-0.tar.bz2"]


def test_repodata_cache_location_and_revalidation(server: ChannelServer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "envnix" / "conda"
    loc = location(server.urls[0])
    lock_conda(["pkg-a"], [loc], glibc=GLIBC)
    cached = sorted((default_cache_dir() / "repodata").glob("*.json"))
    assert len(cached) == 4  # linux-64 (from .zst) and noarch, each with its meta file
    assert not list((default_cache_dir() / "repodata").glob(".*"))  # no temp files left
    mtimes = [p.stat().st_mtime_ns for p in cached]
    lock_conda(["pkg-a"], [loc], glibc=GLIBC)  # 304 Not Modified: files are not rewritten
    assert [p.stat().st_mtime_ns for p in cached] == mtimes
    for meta in (default_cache_dir() / "repodata").glob("*.meta.json"):
        meta.write_bytes(b'["not", "a", "mapping"]')  # damaged: fetched again, no traceback
    assert lock_conda(["pkg-a"], [loc], glibc=GLIBC)[0]["name"] == "pkg-a"


@needs_python
@needs_gcc
def test_bench_lock_30_packages(server: ChannelServer, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """Lock an env of ~30 packages, cold and warm; the figures are printed for the record."""
    specs = ["python=3.11", "pyhello", "hellobin", "pkg-a", "pkg-c", "many-00", "nosha"]
    loc = location(*server.urls)
    cold_cache = tmp_path / "cold"
    started = time.monotonic()
    entries = lock_conda(specs, [loc], glibc=GLIBC, cache_dir=cold_cache)
    cold = time.monotonic() - started
    started = time.monotonic()
    again = lock_conda(specs, [loc], glibc=GLIBC, cache_dir=cold_cache)
    warm = time.monotonic() - started
    assert again == entries and len(entries) == 30
    with capsys.disabled():
        print(f"\n[bench] conda lock of {len(entries)} packages: cold {cold:.3f}s, "
              f"warm {warm:.3f}s ({os.cpu_count()} cpus)")

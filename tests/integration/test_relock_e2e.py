"""Minimal re-locking (issue 18, item 4): upstream moves between two locks, and the second
lock keeps every pin that still fits.

Each installer gets an index served on loopback whose contents the test changes between
locks, so "upstream published a newer release" (or "deleted the old one") is real and
repeatable: a PEP 503 index of real wheels built here (tests/_pip_index.py), a signed flat apt
repository of real .debs (tests/_nvidia_apt_repo.py's builders) and a conda channel
(tests/_conda_channel.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from _apt_signing import KEYRING
from _cli import envnix
from _conda_channel import ChannelServer, build_channel, serve, trivial
from _nvidia_apt_repo import _packages, build_deb
from _pip_index import Dist, PipIndex, serve_index
from test_builders_unpack import make_wheel

from envnix.frontend.envyaml import ChannelLocation
from envnix.lock.apt import lock_apt
from envnix.lock.apt.index import DebPackage
from envnix.lock.conda import lock_conda
from envnix.lock.pip import lock_pip
from envnix.spec import PipRequest
from envnix.spec.apt import AptSource

# -- pip, through the CLI --------------------------------------------------------------------


def wheel(where: Path, name: str, version: str, *requires: str) -> Dist:
    """A real (pure-Python) wheel of ``name`` ``version`` requiring ``requires``."""
    meta = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode()
    dist = f"{name}-{version}"
    path = make_wheel(where / f"{dist}-py3-none-any.whl",
                      {f"{name}.py": b"", f"{dist}.dist-info/METADATA": meta}, dist=dist)
    return Dist(name, path)


@pytest.fixture
def pip_index(tmp_path: Path) -> Iterator[tuple[PipIndex, list[Dist]]]:
    """An index with six 1.16.0, tick 1.0 and tock 1.0; the second list is what upstream
    publishes next (six 1.17.0, tick 1.1, tock 1.1)."""
    where = tmp_path / "wheels"
    where.mkdir()
    first = [wheel(where, "six", "1.16.0"), wheel(where, "tick", "1.0", "six>=1.5"),
             wheel(where, "tock", "1.0")]
    newer = [wheel(where, "six", "1.17.0"), wheel(where, "tick", "1.1", "six>=1.5"),
             wheel(where, "tock", "1.1")]
    with serve_index(first, "json") as index:
        yield index, [*first, *newer]


def write_spec(context: Path, index: PipIndex, *packages: str) -> None:
    context.mkdir(exist_ok=True)
    (context / "build.envd").write_text(
        "def build():\n"
        '    base(os="debian12", language="python3.11")\n'
        f'    config.pip_index(url="{index.url}")\n'
        f"    install.python_packages(name={list(packages)!r})\n")


def pins(context: Path) -> dict[str, str]:
    lock = json.loads((context / "envnix.lock").read_text())
    return {w["name"]: w["version"] for w in lock["pip"]["wheels"]}


@pytest.mark.network  # the image's Debian packages come from this machine's apt sources
def test_pip_relock_moves_only_what_changed(pip_index: tuple[PipIndex, list[Dist]],
                                            tmp_path: Path) -> None:
    index, published = pip_index
    context = tmp_path / "ctx"
    write_spec(context, index, "six", "tick")
    envnix("lock", str(context))
    assert pins(context) == {"six": "1.16.0", "tick": "1.0"}
    before = (context / "envnix.lock").read_bytes()

    index.publish(published)  # upstream moved: six 1.17.0, tick 1.1, tock 1.1
    proc = envnix("lock", str(context))
    assert " unchanged: " in proc.stdout
    assert (context / "envnix.lock").read_bytes() == before
    assert "lock: no pin moved" in proc.stderr.splitlines()
    fresh = lock_pip(PipRequest(packages=["six", "tick"], index_url=index.url), tmp_path,
                     "3.11", "2.36")  # what a lock without the old pins gets now
    assert {w.name: w.version for w in fresh} == {"six": "1.17.0", "tick": "1.1"}

    # A package added: only it resolves, in a stale lock's re-lock by render/build too.
    write_spec(context, index, "six", "tick", "tock")
    proc = envnix("render", str(context))
    assert pins(context) == {"six": "1.16.0", "tick": "1.0", "tock": "1.1"}
    assert "lock: + tock 1.1" in proc.stderr.splitlines()

    proc = envnix("lock", "--upgrade-package", "six", str(context))
    assert pins(context) == {"six": "1.17.0", "tick": "1.0", "tock": "1.1"}
    assert "lock: ~ six 1.16.0 -> 1.17.0" in proc.stderr.splitlines()

    write_spec(context, index, "six", "tick>=1.1", "tock")  # a constraint changed
    envnix("lock", str(context))
    assert pins(context) == {"six": "1.17.0", "tick": "1.1", "tock": "1.1"}

    write_spec(context, index, "six", "tick", "tock")
    index.publish([d for d in published if d.path.name != "tick-1.1-py3-none-any.whl"])
    envnix("lock", str(context))  # tick 1.1 deleted upstream: the newest left
    assert pins(context) == {"six": "1.17.0", "tick": "1.0", "tock": "1.1"}

    index.publish(published)
    envnix("lock", "--upgrade", str(context))
    assert pins(context) == {"six": "1.17.0", "tick": "1.1", "tock": "1.1"}

    proc = envnix("lock", "-P", "sixx", str(context), check=False)
    assert proc.returncode != 0
    assert "--upgrade-package sixx: envnix.lock pins no package of that name" in proc.stderr


# -- apt: the Debian resolver against a signed flat repository -------------------------------


def publish_debs(root: Path, *debs: tuple[str, str, str]) -> None:
    """Write the flat repository at ``root`` with (name, version, depends) .debs only."""
    root.mkdir(parents=True, exist_ok=True)
    built = []
    for name, version, depends in debs:
        fields = {"Package": name, "Version": version, "Architecture": "all",
                  "Priority": "optional", "Section": "misc",
                  "Maintainer": "envnix tests <tests@envnix.invalid>",
                  **({"Depends": depends} if depends else {}),
                  "Description": f"{name} (envnix re-lock fixture)"}
        built.append(build_deb(fields, {f"usr/share/doc/{name}/VERSION":
                                        f"{version}\n".encode()}))
    _packages(root, built)


def versions(packages: Sequence[DebPackage]) -> dict[str, str]:
    return {p.name: p.version for p in packages}


def test_apt_relock_keeps_pins_the_index_still_has(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    old = [("hello", "1.0-1", "libhello (>= 1.0)"), ("libhello", "1.0-1", ""),
           ("tool", "1.0-1", "")]
    new = [("hello", "2.0-1", "libhello (>= 2.0)"), ("libhello", "2.0-1", ""),
           ("tool", "2.0-1", "")]
    publish_debs(root, *old)
    with serve(root, prefixes=("debian",)) as server:
        source = AptSource(server.url("debian"), "/", (), keyring=str(KEYRING))
        cache = tmp_path / "cache"
        roots = ["libhello", "hello", "tool"]
        _, first = lock_apt([source], roots, cache)
        assert versions(first) == {"hello": "1.0-1", "libhello": "1.0-1", "tool": "1.0-1"}
        kept = versions(first)

        publish_debs(root, *old, *new)  # upstream published 2.0 next to 1.0
        _, again = lock_apt([source], roots, cache, preferred=kept)
        assert again == first
        _, fresh = lock_apt([source], roots, cache)
        assert set(versions(fresh).values()) == {"2.0-1"}

        # --upgrade-package hello: hello moves, and libhello with it (hello 2.0 needs it,
        # although libhello was selected first, as a root), tool stays.
        lines: list[str] = []
        _, moved = lock_apt([source], roots, cache, lines.append,
                            preferred={k: v for k, v in kept.items() if k != "hello"})
        assert versions(moved) == {"hello": "2.0-1", "libhello": "2.0-1", "tool": "1.0-1"}
        assert not any("no longer has" in line for line in lines)

        publish_debs(root, *new)  # the archive deleted the superseded .debs
        lines = []
        _, gone = lock_apt([source], roots, cache, lines.append, preferred=kept)
        assert versions(gone) == versions(fresh)
        assert [line for line in lines if "no longer has" in line] == [
            "apt: the index no longer has hello 1.0-1 (took 2.0-1), libhello 1.0-1 (took "
            "2.0-1), tool 1.0-1 (took 2.0-1)"]


# -- conda: rattler's locked packages ---------------------------------------------------------


def conda_lock(server: ChannelServer, cache: Path, lines: list[str] | None = None,
               preferred: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    loc = ChannelLocation("fixture", "https://conda.invalid/relock", (server.url("relock"),))
    return lock_conda(["pkg-a", "pkg-c"], [loc], glibc="2.36", cache_dir=cache,
                      progress=lines.append if lines is not None else None,
                      preferred=preferred or ())


def conda_versions(entries: Sequence[dict[str, Any]]) -> dict[str, str]:
    return {str(e["name"]): str(e["version"]) for e in entries}


def test_conda_relock_keeps_locked_packages(tmp_path: Path) -> None:
    root = tmp_path / "channel"
    old = [trivial("pkg-a", "1.0", depends=["pkg-b >=1.0"]), trivial("pkg-b", "1.0"),
           trivial("pkg-c", "1.0")]
    new = [trivial("pkg-a", "1.1", depends=["pkg-b >=1.2"]), trivial("pkg-b", "1.2"),
           trivial("pkg-c", "2.0")]
    build_channel(root, old)
    cache = tmp_path / "cache"
    with serve(root, prefixes=("relock",)) as server:
        first = conda_lock(server, cache)
        assert conda_versions(first) == {"pkg-a": "1.0", "pkg-b": "1.0", "pkg-c": "1.0"}

        build_channel(root, [*old, *new])  # upstream published newer releases
        assert conda_lock(server, cache, preferred=first) == first
        # --upgrade-package pkg-a: pkg-a moves, pkg-b with it (pkg-a 1.1 needs it), pkg-c stays
        upgraded = conda_lock(server, cache, preferred=[e for e in first
                                                        if e["name"] != "pkg-a"])
        assert conda_versions(upgraded) == {"pkg-a": "1.1", "pkg-b": "1.2", "pkg-c": "1.0"}
        assert conda_versions(conda_lock(server, cache)) == {
            "pkg-a": "1.1", "pkg-b": "1.2", "pkg-c": "2.0"}

        build_channel(root, [*old[:2], *new])  # pkg-c 1.0 deleted from the channel
        lines: list[str] = []
        assert conda_versions(conda_lock(server, cache, lines, preferred=first)) == {
            "pkg-a": "1.0", "pkg-b": "1.0", "pkg-c": "2.0"}
        assert "conda: the channels no longer have pkg-c 1.0-0" in lines


@pytest.mark.network  # the image's Debian packages come from this machine's apt sources
def test_conda_relock_through_the_cli(tmp_path: Path) -> None:
    """The same through ``envnix lock``: pins kept, -P moves one package and what it needs."""
    root = tmp_path / "channel"
    python = trivial("python", "3.11.2")  # only solved here, never run
    old = [python, trivial("pkg-a", "1.0", depends=["pkg-b >=1.0"]), trivial("pkg-b", "1.0"),
           trivial("pkg-c", "1.0")]
    new = [trivial("pkg-a", "1.1", depends=["pkg-b >=1.2"]), trivial("pkg-b", "1.2"),
           trivial("pkg-c", "2.0")]
    build_channel(root, old)
    with serve(root, prefixes=("relock",)) as server:
        context = tmp_path / "ctx"
        context.mkdir()
        (context / "build.envd").write_text(
            "def build():\n"
            '    base(os="debian12", language="python3.11")\n'
            f'    install.conda_packages(name=["pkg-a", "pkg-c"], '
            f'channel=["{server.url("relock")}"])\n')

        def locked(*args: str) -> dict[str, str]:
            envnix("lock", *args, str(context))
            lock = json.loads((context / "envnix.lock").read_text())
            return {p["name"]: p["version"] for p in lock["conda"]["packages"]
                    if p["name"] != "python"}

        assert locked() == {"pkg-a": "1.0", "pkg-b": "1.0", "pkg-c": "1.0"}
        build_channel(root, [*old, *new])
        assert locked() == {"pkg-a": "1.0", "pkg-b": "1.0", "pkg-c": "1.0"}
        assert locked("-P", "pkg-a") == {"pkg-a": "1.1", "pkg-b": "1.2", "pkg-c": "1.0"}
        assert locked("--upgrade") == {"pkg-a": "1.1", "pkg-b": "1.2", "pkg-c": "2.0"}

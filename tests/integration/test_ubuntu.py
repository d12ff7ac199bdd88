"""Ubuntu bases (envd's default): apt sources for focal/jammy, snapshot pinning, and an image
built end to end from an archive in Ubuntu's layout.

Offline tests cover how sources are chosen (mirror, snapshot, the machine's apt sources) and
the tolerance for components a pocket lacks. The end-to-end tests build a real archive from
real Debian .debs (tests/_ubuntu_archive.py), serve it on loopback at ``/ubuntu`` and
``/ubuntu/<snapshot>``, and build envd's default setup from it: an Ubuntu 22.04 base with
Python from conda (the conda fixture channel), run under podman.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _apt_signing import KEYRING, fingerprint, public_keyring
from _cli import Built, build, envnix
from _conda_channel import ChannelInfo, ChannelServer
from _podman import podman
from _ubuntu_archive import (
    CODENAME,
    KEYRING_PACKAGE,
    SNAPSHOT,
    UNIVERSE_ONLY,
    UPDATED,
    UbuntuArchive,
    build_archive,
    read_ar,
    serve_archive,
    write_suite,
)
from test_ubuntu_offline import JAMMY, MU

from envnix.core.errors import LockError
from envnix.frontend import load_spec
from envnix.lock import apt_sources
from envnix.lock.apt import lock_apt
from envnix.lock.apt.anchors import ANCHORS
from envnix.lock.apt.fetch import load_index
from envnix.lock.apt.sources import DEFAULT_KEYRINGS, machine_apt_sources, sources_for_mirror
from envnix.spec import release_for
from envnix.spec.apt import AptSource

# ------------------------------------------------------------------------------------------
# components a pocket lacks (offline, an index-only archive on file://)
# ------------------------------------------------------------------------------------------


def _stanza(name: str, version: str, component: str = "main") -> str:
    return (f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
            f"Filename: pool/{component}/{name[0]}/{name}/{name}_{version}_amd64.deb\n"
            f"Size: 10\nSHA256: {'0' * 64}\nDescription: {name}\n")


def test_missing_component_in_a_pocket_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "ubuntu"
    write_suite(root, "jammy", {"main": [_stanza("hello", "1.0")],
                                "universe": [_stanza("cowsay", "3.0", "universe")]})
    write_suite(root, "jammy-updates", {"main": [_stanza("hello", "1.1")]})
    write_suite(root, "jammy-security", {"main": []})
    sources = sources_for_mirror(root.as_uri(), "jammy", distro="ubuntu", components=MU)
    messages: list[str] = []
    snapshots, pkgs = lock_apt(sources, ["hello", "cowsay"], tmp_path / "cache",
                               messages.append)
    assert [(s.suite, s.component) for s in snapshots] == [
        ("jammy", "main"), ("jammy", "universe"), ("jammy-updates", "main"),
        ("jammy-security", "main")]
    assert "apt: jammy-updates has no universe component; skipped" in messages
    assert {(p.name, p.version, p.source_suite) for p in pkgs} == {
        ("hello", "1.1", "jammy-updates"), ("cowsay", "3.0", "jammy")}
    assert all(p.url.startswith(root.as_uri() + "/pool/") for p in pkgs)


def test_component_in_no_pocket_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "ubuntu"
    for suite in ("jammy", "jammy-updates", "jammy-security"):
        write_suite(root, suite, {"main": [_stanza("hello", "1.0")]})
    sources = sources_for_mirror(root.as_uri(), "jammy", distro="ubuntu", components=MU)
    with pytest.raises(LockError, match=r"has the universe component; point --apt-mirror"):
        load_index(sources, tmp_path / "cache")


def test_listed_component_without_index_is_still_an_error(tmp_path: Path) -> None:
    root = tmp_path / "ubuntu"
    write_suite(root, "jammy", {"main": [_stanza("hello", "1.0")]}, components=MU)
    with pytest.raises(LockError, match=r"lists no universe/binary-amd64/Packages\.xz"):
        load_index([AptSource(root.as_uri(), "jammy", MU, keyring=str(KEYRING))],
                   tmp_path / "cache")


def test_debian_mirror_for_ubuntu_release_names_missing_suite(tmp_path: Path) -> None:
    root = tmp_path / "debian"
    write_suite(root, "bookworm", {"main": [_stanza("hello", "1.0")]})
    sources = sources_for_mirror(root.as_uri(), "jammy", distro="ubuntu", components=MU)
    with pytest.raises(LockError) as info:
        load_index(sources, tmp_path / "cache")
    assert str(info.value).startswith(f"cannot fetch {root.as_uri()}/dists/jammy/Release")
    assert "carry the jammy suite" in str(info.value)


# ------------------------------------------------------------------------------------------
# the CLI without a mirror
# ------------------------------------------------------------------------------------------


@pytest.mark.network
def test_ubuntus_keys_come_from_the_archive_trusted_by_fingerprint(
        archive: tuple[UbuntuArchive, ChannelServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With Ubuntu's keyring missing (a Debian machine), envnix takes the keys from the
    archive's own ubuntu-keyring .deb and accepts an InRelease only when gpgv reports a good
    signature by a pinned fingerprint. The stand-in archive is signed with the session's test
    key, so it is refused as not Ubuntu's; with the test key's fingerprint pinned instead
    (Ubuntu's private key being out of reach), the same archive verifies and locks."""
    if Path(DEFAULT_KEYRINGS["ubuntu"]).exists():
        pytest.skip("this machine has Ubuntu's keyring: the keys are not fetched")
    _, server = archive
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("ENVNIX_APT_KEYRING", "ENVNIX_UBUNTU_KEYRING", "ENVNIX_APT_MIRROR"):
        monkeypatch.delenv(name, raising=False)
    sources = sources_for_mirror(server.url("ubuntu"), CODENAME, distro="ubuntu",
                                 components=MU)
    assert {s.anchor for s in sources} == {"ubuntu"}
    with pytest.raises(LockError, match=r"InRelease: not signed by Ubuntu's archive's keys"):
        load_index(sources, tmp_path / "apt")

    pinned = dataclasses.replace(ANCHORS["ubuntu"], fingerprints=frozenset({fingerprint()}))
    monkeypatch.setitem(ANCHORS, "ubuntu", pinned)
    snapshots, index = load_index(sources, tmp_path / "apt")
    assert (snapshots[0].suite, snapshots[0].component) == (CODENAME, "main")
    assert UPDATED in index.names()
    cached = list((tmp_path / "cache" / "envnix" / "keys").iterdir())
    assert [c.read_bytes() for c in cached] == [public_keyring()]


@pytest.mark.network
def test_cli_refuses_an_ubuntu_mirror_signed_by_another_key(
        archive: tuple[UbuntuArchive, ChannelServer], tmp_path: Path) -> None:
    """The same refusal through the CLI: one line, exit 4, no lock written."""
    if Path(DEFAULT_KEYRINGS["ubuntu"]).exists():
        pytest.skip("this machine has Ubuntu's keyring: the keys are not fetched")
    _, server = archive
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(os="ubuntu22.04", language="python3.11")\n'
        '    install.apt_packages(name=["figlet"])\n')
    env = {k: v for k, v in os.environ.items()
           if k not in ("ENVNIX_APT_KEYRING", "ENVNIX_UBUNTU_KEYRING", "ENVNIX_APT_MIRROR")}
    env.update(ENVNIX_UBUNTU_MIRROR=server.url("ubuntu"), XDG_CACHE_HOME=str(tmp_path / "c"))
    proc = envnix("lock", str(tmp_path), env=env, check=False)
    assert proc.returncode == 4, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("envnix:")]
    assert len(errors) == 1 and "not signed by Ubuntu's archive's keys" in errors[0]
    assert not (tmp_path / "envnix.lock").exists() and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------
# end to end: a real archive in Ubuntu's layout + the conda fixture channel
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UbuntuArchive,
                                                                        ChannelServer]]:
    try:
        machine_apt_sources("bookworm")
    except LockError as e:
        pytest.fail(f"the fixture archive is built from this machine's Debian mirror: {e}")
    # Whatever the image asks of the OS (a v0 image is a dev image: sudo, a shell, ...)
    # must be in the archive; the channel URL does not change that.
    probe = write_context(tmp_path_factory.mktemp("probe"), "http://127.0.0.1:9/conda")
    roots = load_spec(probe, "build.envd:build").apt_roots()
    built = build_archive(tmp_path_factory.mktemp("archive") / "ubuntu", roots)
    with serve_archive(built.root) as server:
        yield built, server


def write_context(root: Path, channel_url: str) -> Path:
    context = root / "ubuntudemo"
    context.mkdir()
    (context / "build.envd").write_text(f'''
def build():
    base(os="ubuntu22.04", language="python3.11")
    install.apt_packages(name=["{UNIVERSE_ONLY}", "{UPDATED}"])
    install.conda_packages(name=["pyhello"], channel=["{channel_url}"])
''')
    return context


@pytest.fixture(scope="module")
def locked(archive: tuple[UbuntuArchive, ChannelServer],
           channel: tuple[ChannelInfo, ChannelServer],
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A context locked with ``--apt-mirror <fixture>/ubuntu/<snapshot>``; (context, stderr)."""
    _, server = archive
    context = write_context(tmp_path_factory.mktemp("ubuntu"), channel[1].url("conda/fixture"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVNIX_APT_")
           or k == "ENVNIX_APT_KEYRING"}
    proc = envnix("lock", str(context), "--apt-mirror", server.url(f"ubuntu/{SNAPSHOT}"),
                  env=env)
    return context, proc.stderr


@pytest.fixture(scope="module")
def ubuntu_image(locked: tuple[Path, str]) -> Built:
    return build(locked[0], "--locked", "-t", "ubuntudemo:dev")


def lock_of(context: Path) -> dict:
    return json.loads((context / "envnix.lock").read_text())


@pytest.mark.network
def test_fixture_archive_is_ubuntu_shaped(archive: tuple[UbuntuArchive,
                                                         ChannelServer]) -> None:
    built, _ = archive
    root = built.root
    for suite, comps in (("jammy", MU), ("jammy-updates", MU), ("jammy-security", ("main",))):
        release = (root / "dists" / suite / "InRelease").read_text()
        assert f"Components: {' '.join(comps)}" in release and "Origin: Ubuntu" in release
        for comp in comps:
            assert (root / "dists" / suite / comp / "binary-amd64" / "Packages.xz").is_file()
    assert built.names("jammy", "universe") == {UNIVERSE_ONLY}
    assert built.get(UNIVERSE_ONLY).filename.startswith("pool/universe/f/figlet/")
    new, old = built.get(UPDATED, "jammy-updates"), built.get(UPDATED)
    assert new.version.startswith(old.version) and new.version != old.version
    deb = (root / new.filename).read_bytes()
    assert [name for name, _ in read_ar(deb)] == ["debian-binary", "control.tar.xz",
                                                  "data.tar.xz"]
    info = subprocess.run(["dpkg-deb", "--field", str(root / new.filename), "Version"],
                          capture_output=True, text=True, check=True)
    assert info.stdout.strip() == new.version


@pytest.mark.network
def test_lock_pins_suites_components_snapshot_and_newest(
        locked: tuple[Path, str], archive: tuple[UbuntuArchive, ChannelServer]) -> None:
    context, stderr = locked
    built, server = archive
    base = server.url(f"ubuntu/{SNAPSHOT}")
    lock = lock_of(context)
    assert lock["apt"]["sources"] == [
        {"uri": base, "suite": s, "components": list(MU), "snapshot": SNAPSHOT}
        for s in ("jammy", "jammy-updates", "jammy-security")]
    assert [(i["suite"], i["component"]) for i in lock["apt"]["indexes"]] == [
        ("jammy", "main"), ("jammy", "universe"), ("jammy-updates", "main"),
        ("jammy-updates", "universe"), ("jammy-security", "main")]
    assert all("/by-hash/SHA256/" in i["url"] for i in lock["apt"]["indexes"])
    assert "apt: jammy-security has no universe component; skipped" in stderr
    assert "/ubuntu/20260101T000000Z/dists/jammy/InRelease" in server.hits(f"ubuntu/{SNAPSHOT}")
    packages = {p["name"]: p for p in lock["apt"]["packages"]}
    assert set(packages) == built.names("jammy") - {KEYRING_PACKAGE}  # the archive's keys, unasked
    for p in packages.values():
        assert p["url"] == f"{base}/{p['filename']}"
        assert p["filename"].startswith(("pool/main/", "pool/universe/"))
    figlet = packages[UNIVERSE_ONLY]
    assert figlet["filename"] == built.get(UNIVERSE_ONLY).filename
    assert figlet["sha256"] == built.get(UNIVERSE_ONLY).sha256
    newest = built.get(UPDATED, "jammy-updates")
    assert (packages[UPDATED]["version"], packages[UPDATED]["source_suite"]) == (
        newest.version, "jammy-updates")
    assert packages[UPDATED]["sha256"] == newest.sha256
    assert f"Version: {newest.version}\n" in packages[UPDATED]["control"]
    assert lock["inputs"]["apt"]["release"] == "jammy"
    assert lock["inputs"]["conda"]["glibc"] == JAMMY.glibc


@pytest.mark.network
def test_snapshot_env_gives_the_same_apt_lock(
        locked: tuple[Path, str], archive: tuple[UbuntuArchive, ChannelServer],
        tmp_path: Path) -> None:
    context, _ = locked
    _, server = archive
    again = tmp_path / context.name
    again.mkdir()
    (again / "build.envd").write_text((context / "build.envd").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVNIX_APT_")
           or k == "ENVNIX_APT_KEYRING"}
    env |= {"ENVNIX_APT_MIRROR": server.url("ubuntu"), "ENVNIX_APT_SNAPSHOT": SNAPSHOT}
    envnix("lock", str(again), env=env)
    assert lock_of(again)["apt"] == lock_of(context)["apt"]
    check = envnix("lock", "--check", str(context), env=env)
    assert "up to date" in check.stdout


@pytest.mark.network
def test_ubuntu_mirror_setting_locks_ubuntu_and_leaves_debian_alone(
        locked: tuple[Path, str], archive: tuple[UbuntuArchive, ChannelServer],
        tmp_path: Path) -> None:
    """ENVNIX_UBUNTU_MIRROR + ENVNIX_UBUNTU_KEYRING (as a config.toml would set them) give the
    --apt-mirror lock; a Debian release still reads this machine's apt sources."""
    context, _ = locked
    _, server = archive
    again = tmp_path / context.name
    again.mkdir()
    (again / "build.envd").write_text((context / "build.envd").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVNIX_APT_")}
    env |= {"ENVNIX_UBUNTU_MIRROR": server.url("ubuntu"), "ENVNIX_APT_SNAPSHOT": SNAPSHOT,
            "ENVNIX_UBUNTU_KEYRING": str(KEYRING)}
    envnix("lock", str(again), env=env)
    assert lock_of(again)["apt"] == lock_of(context)["apt"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENVNIX_UBUNTU_MIRROR", server.url("ubuntu"))
        mp.delenv("ENVNIX_APT_MIRROR", raising=False)
        assert apt_sources(release_for("debian12")) == machine_apt_sources("bookworm")


@pytest.mark.network
@pytest.mark.slow
def test_ubuntu_image_runs_conda_python_and_universe_package(
        ubuntu_image: Built, podman_environ: dict) -> None:
    def run(*cmd: str) -> str:
        return podman("run", "--rm", f"oci:{ubuntu_image.layout}", *cmd,
                      env=podman_environ).stdout

    out = run("python", "-c", "import sys, pyhello, pyexpat; print(sys.prefix)")
    assert out.strip() == "/opt/conda/envs/envd"
    assert run("pyhello").strip()
    # figlet's banner, from the universe component; /usr/bin/figlet is the alternative its
    # postinst registers, made by envnix in auto mode
    assert "|" in run("figlet", "envnix")
    assert "link currently points to /usr/bin/figlet-figlet" in run(
        "update-alternatives", "--display", "figlet")
    # Ubuntu's Essential set is there, as in every Ubuntu image: a shell user's tools work
    assert run("sh", "-c", "echo envnix | grep -c env | sed s/1/one/").strip() == "one"
    assert run("find", "/usr/bin/figlet-figlet", "-type", "f").strip() == "/usr/bin/figlet-figlet"
    assert run("awk", "BEGIN { print 6 * 7 }").strip() == "42"
    assert run("dpkg", "-S", "/usr/bin/figlet-figlet").startswith("figlet:")
    installed = {line.split()[1].split(":")[0] for line in run("dpkg", "-l").splitlines()
                 if line.startswith("ii ")}
    assert installed == {p["name"] for p in lock_of(ubuntu_image.context)["apt"]["packages"]}
    status = run("python", "-c", "print(open('/var/lib/dpkg/status').read())")
    stanza = status.split(f"Package: {UPDATED}\n", 1)[1].split("\n\n", 1)[0]
    newest = lock_of(ubuntu_image.context)["apt"]["packages"]
    version = next(p["version"] for p in newest if p["name"] == UPDATED)
    assert f"Version: {version}\n" in stanza and "ubuntu" in version

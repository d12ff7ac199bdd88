"""The offline tests of tests/integration/test_ubuntu.py (no network, no program started).

Ubuntu bases (envd's default): apt sources for focal/jammy, snapshot pinning, and an image
built end to end from an archive in Ubuntu's layout.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _ubuntu_archive import (
    SNAPSHOT,
    rewrite_stanza,
)

from envnix.core.errors import LockError, UsageError
from envnix.lock import apt_sources
from envnix.lock.apt.fetch import parse_release, release_lacks
from envnix.lock.apt.sources import (
    UBUNTU_ARCHIVE,
    UBUNTU_SNAPSHOTS,
    at_snapshot,
    check_snapshot,
    machine_apt_sources,
    sources_for_mirror,
)
from envnix.spec import KNOWN_RELEASES
from envnix.spec.apt import AptSource, snapshot_of

JAMMY = KNOWN_RELEASES["ubuntu22.04"]
FOCAL = KNOWN_RELEASES["ubuntu20.04"]
BOOKWORM = KNOWN_RELEASES["debian12"]
MU = ("main", "universe")


@pytest.fixture
def no_apt_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ENVNIX_APT_MIRROR", "ENVNIX_APT_SECURITY_MIRROR", "ENVNIX_APT_SNAPSHOT",
                 "ENVNIX_UBUNTU_MIRROR"):
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------------------------------
# sources (offline)
# ------------------------------------------------------------------------------------------


def test_ubuntu_mirror_gives_three_pockets_with_main_and_universe() -> None:
    assert sources_for_mirror("http://m.test/ubuntu/", "jammy", distro="ubuntu",
                              components=MU) == [
        AptSource("http://m.test/ubuntu", "jammy", MU),
        AptSource("http://m.test/ubuntu", "jammy-updates", MU),
        AptSource("http://m.test/ubuntu", "jammy-security", MU),
    ]
    split = sources_for_mirror("http://m.test/ubuntu", "focal", distro="ubuntu",
                               components=MU, security_mirror="http://sec.test/ubuntu")
    assert [(s.uri, s.suite) for s in split] == [
        ("http://m.test/ubuntu", "focal"), ("http://m.test/ubuntu", "focal-updates"),
        ("http://sec.test/ubuntu", "focal-security")]


def test_debian_mirror_sources_unchanged() -> None:
    assert sources_for_mirror("http://m.test/debian", "bookworm") == [
        AptSource("http://m.test/debian", "bookworm"),
        AptSource("http://m.test/debian", "bookworm-updates"),
    ]


def test_snapshot_in_url_or_appended_is_recorded() -> None:
    url = f"http://snap.test/ubuntu/{SNAPSHOT}/"
    (src, *_) = sources_for_mirror(url, "jammy", distro="ubuntu", components=MU)
    assert src.uri == f"http://snap.test/ubuntu/{SNAPSHOT}"
    assert src.snapshot == SNAPSHOT
    assert src.to_lock_dict() == {"uri": src.uri, "suite": "jammy", "components": list(MU),
                                  "snapshot": SNAPSHOT}
    appended = sources_for_mirror("http://snap.test/ubuntu", "jammy", distro="ubuntu",
                                  components=MU, snapshot=SNAPSHOT,
                                  security_mirror="http://snap.test/ubuntu-sec")
    assert {s.snapshot for s in appended} == {SNAPSHOT}
    assert appended[-1].uri == f"http://snap.test/ubuntu-sec/{SNAPSHOT}"
    # a plain mirror's lock entry keeps the old shape (no snapshot key), so old locks stay
    plain = AptSource("http://m.test/debian", "bookworm")
    assert plain.snapshot is None and "snapshot" not in plain.to_lock_dict()
    assert snapshot_of("http://snapshot.test/archive/debian/20250520T000000Z") == (
        "20250520T000000Z")


def test_snapshot_validation() -> None:
    assert check_snapshot("20260101T000000Z") == "20260101T000000Z"
    for bad in ("2026-01-01", "20261301T000000Z", "20260101T000000", "latest"):
        with pytest.raises(UsageError, match="YYYYMMDDTHHMMSSZ"):
            check_snapshot(bad)
    assert at_snapshot(f"http://s.test/ubuntu/{SNAPSHOT}", SNAPSHOT).endswith(f"/{SNAPSHOT}")
    with pytest.raises(UsageError, match="already names snapshot 20250101T000000Z"):
        at_snapshot("http://s.test/ubuntu/20250101T000000Z", SNAPSHOT)


def test_machine_sources_for_ubuntu(tmp_path: Path) -> None:
    deb822 = tmp_path / "ubuntu.sources"
    deb822.write_text(
        "Types: deb\n"
        "URIs: http://mirror.test/ubuntu/\n"
        "Suites: jammy jammy-updates jammy-backports\n"
        "Components: main restricted\n"
        "\n"
        "Types: deb\n"
        "URIs: http://security.test/ubuntu\n"
        "Suites: jammy-security\n"
        "Components: main restricted universe multiverse\n"
        "\n"
        "Types: deb\n"
        "URIs: http://ports.test/ubuntu-ports\n"
        "Suites: jammy\n"
        "Components: main\n"
    )
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "deb http://ppa.example.test/deadsnakes/ppa/ubuntu jammy main\n"
        "deb https://private-ppa.example.test/owner/name/ubuntu jammy main\n"
        "deb http://mirror.test/debian bookworm main\n"
        "deb [arch=amd64] http://snap.test/ubuntu/20260101T000000Z/ jammy universe\n"
        "deb http://mirror.test/ubuntu focal main\n"
    )
    sources = machine_apt_sources("jammy", paths=[deb822, one_line], distro="ubuntu",
                                  components=MU)
    assert sources == [
        AptSource("http://mirror.test/ubuntu", "jammy", MU),
        AptSource("http://snap.test/ubuntu/20260101T000000Z", "jammy", MU),
        AptSource("http://mirror.test/ubuntu", "jammy-updates", MU),
        AptSource("http://security.test/ubuntu", "jammy-security", MU),
    ]
    # the machine's own components when none are imposed (Debian's behaviour)
    mine = machine_apt_sources("jammy", paths=[deb822], distro="ubuntu")
    assert mine[0].components == ("main", "restricted")
    # Ubuntu entries are not Debian archives and vice versa
    with pytest.raises(LockError, match="no Debian jammy apt source"):
        machine_apt_sources("jammy", paths=[deb822, one_line])


def test_machine_without_ubuntu_source_takes_ubuntus_archive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Debian machine names no Ubuntu mirror: an Ubuntu release then locks from Ubuntu's
    own archive, as apt inside an Ubuntu image would, checked against Ubuntu's pinned key
    fingerprints (its keyring, which Debian lacks, comes from the archive)."""
    monkeypatch.delenv("ENVNIX_UBUNTU_KEYRING", raising=False)
    monkeypatch.delenv("ENVNIX_APT_KEYRING", raising=False)
    debian_only = tmp_path / "debian.sources"
    debian_only.write_text("Types: deb\nURIs: http://m.test/debian\nSuites: jammy\n"
                           "Components: main\n")
    sources = machine_apt_sources("jammy", paths=[debian_only], distro="ubuntu", components=MU)
    assert [(s.uri, s.suite, s.components) for s in sources] == [
        (UBUNTU_ARCHIVE, "jammy", MU), (UBUNTU_ARCHIVE, "jammy-updates", MU),
        (UBUNTU_ARCHIVE, "jammy-security", MU)]
    assert {(s.anchor, s.keyring) for s in sources} == {
        ("ubuntu", "/usr/share/keyrings/ubuntu-archive-keyring.gpg")}
    assert "ENVNIX_UBUNTU_MIRROR" in sources[0].setting
    # a keyring the user names is checked as it is: no anchor
    monkeypatch.setenv("ENVNIX_UBUNTU_KEYRING", "/keys/ubuntu.gpg")
    assert {s.anchor for s in machine_apt_sources("jammy", paths=[debian_only],
                                                  distro="ubuntu")} == {""}


def test_snapshot_without_mirror_takes_ubuntus_snapshot_service(
        monkeypatch: pytest.MonkeyPatch, no_apt_env: None) -> None:
    monkeypatch.setenv("ENVNIX_APT_SNAPSHOT", SNAPSHOT)
    sources = apt_sources(JAMMY)
    assert {s.uri for s in sources} == {f"{UBUNTU_SNAPSHOTS}/{SNAPSHOT}"}
    assert [s.suite for s in sources] == ["jammy", "jammy-updates", "jammy-security"]
    assert sources[0].to_lock_dict()["snapshot"] == SNAPSHOT


def test_ubuntu_mirror_setting_serves_ubuntu_releases_only(monkeypatch: pytest.MonkeyPatch,
                                                          no_apt_env: None) -> None:
    """ENVNIX_UBUNTU_MIRROR: where Ubuntu images lock from, checked with ENVNIX_UBUNTU_KEYRING
    (tests/integration/test_ubuntu.py: a Debian image is not sent there)."""
    monkeypatch.setenv("ENVNIX_UBUNTU_MIRROR", "http://m.test/ubuntu")
    monkeypatch.setenv("ENVNIX_UBUNTU_KEYRING", "/keys/ubuntu.gpg")
    monkeypatch.delenv("ENVNIX_APT_KEYRING", raising=False)
    sources = apt_sources(FOCAL)
    assert [(s.uri, s.suite) for s in sources] == [
        ("http://m.test/ubuntu", "focal"), ("http://m.test/ubuntu", "focal-updates"),
        ("http://m.test/ubuntu", "focal-security")]
    assert {s.keyring for s in sources} == {"/keys/ubuntu.gpg"}


def test_apt_sources_reads_release_and_environment(monkeypatch: pytest.MonkeyPatch,
                                                   no_apt_env: None) -> None:
    sources = apt_sources(FOCAL, "http://m.test/ubuntu")
    assert [s.suite for s in sources] == ["focal", "focal-updates", "focal-security"]
    assert {s.components for s in sources} == {MU}
    assert [s.suite for s in apt_sources(BOOKWORM, "http://m.test/debian")] == [
        "bookworm", "bookworm-updates"]
    monkeypatch.setenv("ENVNIX_APT_MIRROR", "http://snap.test/ubuntu")
    monkeypatch.setenv("ENVNIX_APT_SNAPSHOT", SNAPSHOT)
    sources = apt_sources(JAMMY)
    assert {s.uri for s in sources} == {f"http://snap.test/ubuntu/{SNAPSHOT}"}
    assert sources[0].to_lock_dict()["snapshot"] == SNAPSHOT
    monkeypatch.delenv("ENVNIX_APT_MIRROR")
    with pytest.raises(UsageError, match="ENVNIX_APT_SNAPSHOT=20260101T000000Z needs"):
        apt_sources(BOOKWORM)  # Debian: this machine's sources, which no time applies to


# ------------------------------------------------------------------------------------------
# components a pocket lacks (offline, an index-only archive on file://)
# ------------------------------------------------------------------------------------------


def test_release_components_field_decides_absence() -> None:
    ubuntu = parse_release("Components: main\nSHA256:\n")
    assert release_lacks(ubuntu, "universe") and not release_lacks(ubuntu, "main")
    # Debian's security archive lists "updates/main" for what lives at main/binary-amd64/
    security = parse_release("Components: updates/main updates/contrib\nSHA256:\n")
    assert not release_lacks(security, "main") and release_lacks(security, "universe")
    assert not release_lacks(parse_release("SHA256:\n"), "universe")  # no field: unknown


def test_rewrite_stanza_keeps_order_and_continuations() -> None:
    text = "Package: a\nVersion: 1\nTag: x,\n y\nSHA1: 00\nSize: 1\n"
    assert rewrite_stanza(text, {"Size": "2", "SHA256": "ab"}, drop=("SHA1",)) == (
        "Package: a\nVersion: 1\nTag: x,\n y\nSize: 2\nSHA256: ab\n")

"""The tests of tests/unit/test_debian_resolver.py that start programs or use the network.

Tests for envnix.lock.apt: version order, relations, sources, index fetching, resolution.
"""

from __future__ import annotations

import base64
import hashlib
import json
import lzma
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from _apt_signing import KEYRING, clearsign, detach_sign
from test_debian_resolver import names, stanza

from envnix.core.errors import FetchError, LockError, PackageNotFoundError
from envnix.lock.apt import lock_apt
from envnix.lock.apt.fetch import fetch_index, fetch_release, load_index
from envnix.lock.apt.index import DebIndex, IndexSnapshot
from envnix.lock.apt.resolver import resolve
from envnix.lock.apt.sources import sources_for_mirror
from envnix.lock.apt.version import version_compare
from envnix.spec.apt import AptSource

# ------------------------------------------------------------------------------------------
# Debian version comparison
# ------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg not installed")
def test_version_compare_agrees_with_dpkg() -> None:
    """Cross-check every pair of a tricky set against dpkg itself."""
    tricky = [
        "1.0~rc1", "1.0", "1:0.1", "2.0", "1.0-1", "1.0-1+deb12u1", "2.36-9+deb12u10",
        "2.36-9+deb12u9", "1.0~", "1.0~~", "1.0a", "1.0+", "1.0.", "0", "1.0-1~bpo1",
        "1.0.0", "1.00", "1.0-01", "1.2.3-4ubuntu0.1", "1.2.3-4+b1", "7.88.1-10+deb12u8",
    ]
    for i, a in enumerate(tricky):
        for b in tricky[i + 1:]:
            lt = subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0
            eq = subprocess.run(["dpkg", "--compare-versions", a, "eq", b]).returncode == 0
            expected = -1 if lt else 0 if eq else 1
            assert version_compare(a, b) == expected, (a, b)


# ------------------------------------------------------------------------------------------
# Release parsing and fetching from a file:// mirror
# ------------------------------------------------------------------------------------------


def write_mirror(root: Path, packages_text: str, *, by_hash: bool, signed: bool) -> str:
    """Lay out <root>/debian/dists/bookworm as a mirror would; return the mirror URI."""
    dist = root / "debian" / "dists" / "bookworm"
    binary = dist / "main" / "binary-amd64"
    binary.mkdir(parents=True)
    xz = lzma.compress(packages_text.encode())
    sha = hashlib.sha256(xz).hexdigest()
    if by_hash:
        (binary / "by-hash" / "SHA256").mkdir(parents=True)
        (binary / "by-hash" / "SHA256" / sha).write_bytes(xz)
    else:
        (binary / "Packages.xz").write_bytes(xz)
    release = (f"Codename: bookworm\nAcquire-By-Hash: yes\nSHA256:\n {sha} {len(xz)} "
               "main/binary-amd64/Packages.xz\n")
    if signed:  # InRelease, clearsigned (a dash-escaped line inside, as gpg writes them)
        (dist / "InRelease").write_text(clearsign(release + "-escaped: line\n"))
    else:  # the older layout: Release + its detached Release.gpg
        (dist / "Release").write_text(release)
        (dist / "Release.gpg").write_bytes(detach_sign(release))
    return (root / "debian").as_uri()


def signed_source(uri: str, suite: str = "bookworm") -> AptSource:
    """A source whose indexes must be signed by the test archive key."""
    return AptSource(uri, suite, keyring=str(KEYRING))


def test_fetch_index_release_fallback_plain_path_and_cache(tmp_path: Path) -> None:
    text = stanza("hello", "2.10-3") + "\n"
    uri = write_mirror(tmp_path / "m", text, by_hash=False, signed=False)
    cache = tmp_path / "cache"
    messages: list[str] = []
    snap, got = fetch_index(signed_source(uri, "bookworm"), "main", cache, messages.append)
    assert got == text
    assert snap.url == f"{uri}/dists/bookworm/main/binary-amd64/Packages.xz"
    assert snap.uri == uri and snap.suite == "bookworm" and snap.component == "main"
    assert (cache / f"{snap.sha256}.xz").is_file()
    assert messages == ["apt: fetching bookworm main index (0.3 kB)"]
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    # the second fetch must not need the Packages.xz on the mirror any more
    (tmp_path / "m/debian/dists/bookworm/main/binary-amd64/Packages.xz").unlink()
    messages.clear()
    snap2, got2 = fetch_index(signed_source(uri, "bookworm"), "main", cache, messages.append)
    assert (snap2.sha256, got2) == (snap.sha256, text)
    assert messages == ["apt: using cached bookworm main index (0.3 kB)"]


def test_fetch_index_by_hash_and_lock_apt(tmp_path: Path) -> None:
    text = "\n\n".join([stanza("hello", Depends="libc6"), stanza("libc6", "2.36-9")]) + "\n"
    uri = write_mirror(tmp_path / "m", text, by_hash=True, signed=True)
    messages: list[str] = []
    snaps, pkgs = lock_apt([signed_source(uri, "bookworm")], ["hello"], tmp_path / "c",
                           messages.append)
    assert snaps[0].url.endswith(f"/binary-amd64/by-hash/SHA256/{snaps[0].sha256}")
    assert names(pkgs) == ["hello", "libc6"]
    assert pkgs[0].url.startswith(uri + "/pool/main/h/hello/")
    assert messages[-1].startswith("apt: resolved 2 packages (0.2 kB)")


def test_fetch_index_detects_corrupt_index(tmp_path: Path) -> None:
    uri = write_mirror(tmp_path / "m", stanza("hello") + "\n", by_hash=False, signed=False)
    (tmp_path / "m/debian/dists/bookworm/main/binary-amd64/Packages.xz").write_bytes(b"junk")
    with pytest.raises(FetchError, match="does not match its Release entry"):
        fetch_index(signed_source(uri, "bookworm"), "main", tmp_path / "c")


def test_fetch_index_missing_suite_and_component(tmp_path: Path) -> None:
    uri = write_mirror(tmp_path / "m", stanza("hello") + "\n", by_hash=False, signed=False)
    with pytest.raises(LockError, match=r"dists/trixie/Release") as missing:
        fetch_index(signed_source(uri, "trixie"), "main", tmp_path / "c")
    assert missing.value.exit_code == 4  # the mirror answered: a setting to fix, not a retry
    with pytest.raises(LockError, match=r"lists no contrib/binary-amd64/Packages\.xz"):
        fetch_index(signed_source(uri, "bookworm"), "contrib", tmp_path / "c")


def test_unreachable_mirror_is_one_line_fetch_error(tmp_path: Path) -> None:
    sources = sources_for_mirror("http://127.0.0.1:9/debian", "bookworm")
    with pytest.raises(FetchError) as info:
        lock_apt(sources, ["dash"], cache_dir=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("cannot reach http://127.0.0.1:9/debian/dists/bookworm/InRelease: ")
    assert msg.endswith("check --apt-mirror")


# ------------------------------------------------------------------------------------------
# Real Debian mirror (from this machine's apt sources)
# ------------------------------------------------------------------------------------------

REAL_ROOTS = ["python3", "libgl1", "libglib2.0-0", "ca-certificates", "dash"]


@pytest.fixture(scope="session")
def real_index(
    real_sources: list[AptSource], tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[IndexSnapshot], DebIndex, Path, list[str]]:
    cache = tmp_path_factory.mktemp("apt-cache")
    messages: list[str] = []
    snapshots, index = load_index(real_sources, cache, messages.append)
    return snapshots, index, cache, messages


@pytest.mark.network
def test_real_closure(real_index: tuple[list[IndexSnapshot], DebIndex, Path, list[str]]) -> None:
    snapshots, index, _, messages = real_index
    assert len(index) > 60_000
    assert any(m.startswith("apt: fetching bookworm main index (") for m in messages)
    main = snapshots[0]
    assert (main.suite, main.component) == ("bookworm", "main")
    assert main.size > 1_000_000 and len(main.sha256) == 64
    pkgs = resolve(index, REAL_ROOTS)
    by_name = {p.name: p for p in pkgs}
    for name in ("libc6", "libgl1", "python3.11", "libglib2.0-0", "ca-certificates", "dash"):
        assert name in by_name, name
    assert names(pkgs) == sorted(names(pkgs))
    for p in pkgs:
        assert len(p.sha256) == 64 and int(p.sha256, 16) >= 0
        assert p.size > 0
        assert p.url.endswith("/" + p.filename) and p.filename.endswith(".deb")
        assert p.arch in ("amd64", "all")
        assert p.control.startswith(f"Package: {p.name}\n")
    # apt's own choice for python3.11's "media-types | mime-support"
    assert "media-types" in by_name and "mime-support" not in by_name
    # deterministic, down to the serialized lock entries
    again = resolve(index, REAL_ROOTS)
    assert again == pkgs
    assert json.dumps([p.to_lock_dict() for p in again]) == json.dumps(
        [p.to_lock_dict() for p in pkgs]
    )


@pytest.mark.network
def test_real_essential_awk_choice(
    real_index: tuple[list[IndexSnapshot], DebIndex, Path, list[str]],
) -> None:
    _, index, _, _ = real_index
    pkgs = {p.name for p in resolve(index, ["base-files"])}
    assert "mawk" in pkgs and "gawk" not in pkgs  # Priority: required wins among awk providers


@pytest.mark.network
def test_real_unknown_package_suggests(
    real_index: tuple[list[IndexSnapshot], DebIndex, Path, list[str]],
) -> None:
    _, index, _, _ = real_index
    t0 = time.perf_counter()
    with pytest.raises(PackageNotFoundError) as info:
        resolve(index, ["python3", "libgl"])
    assert time.perf_counter() - t0 < 2
    assert "libgl1" in str(info.value)
    assert str(info.value).startswith("apt package 'libgl' not found in bookworm (amd64)")


@pytest.mark.network
def test_real_warm_cache_refetches_only_inrelease(
    real_sources: list[AptSource],
    real_index: tuple[list[IndexSnapshot], DebIndex, Path, list[str]],
) -> None:
    snapshots, _, cache, _ = real_index
    messages: list[str] = []
    snapshots2, index2 = load_index(real_sources, cache, messages.append)
    assert messages and all(m.startswith("apt: using cached ") for m in messages)
    assert snapshots2 == snapshots
    assert "libgl1" in index2


@pytest.mark.network
def test_real_smallest_deb_matches_its_pin(
    real_index: tuple[list[IndexSnapshot], DebIndex, Path, list[str]],
) -> None:
    _, index, _, _ = real_index
    smallest = min(resolve(index, REAL_ROOTS), key=lambda p: (p.size, p.name))
    with urllib.request.urlopen(smallest.url, timeout=30) as response:
        data = response.read()
    assert len(data) == smallest.size
    assert hashlib.sha256(data).hexdigest() == smallest.sha256
    assert data.startswith(b"!<arch>\ndebian-binary")


# ------------------------------------------------------------------------------------------
# Signatures: nothing of an index is used unless gpgv finds it signed by the source's keys
# ------------------------------------------------------------------------------------------


def test_tampered_inrelease_is_refused(tmp_path: Path) -> None:
    uri = write_mirror(tmp_path / "m", stanza("hello") + "\n", by_hash=True, signed=True)
    inrelease = tmp_path / "m/debian/dists/bookworm/InRelease"
    inrelease.write_text(inrelease.read_text().replace("Acquire-By-Hash: yes",
                                                       "Acquire-By-Hash: no"))
    with pytest.raises(LockError) as info:
        lock_apt([signed_source(uri)], ["hello"], tmp_path / "c")
    assert str(info.value).startswith(f"{uri}/dists/bookworm/InRelease: signature check failed")
    assert "BAD signature" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").iterdir())


def test_text_outside_the_signature_is_never_read(tmp_path: Path) -> None:
    """Only what gpgv says was signed counts: lines prepended outside the signed block (an
    attacker pointing Packages.xz elsewhere) are not parsed."""
    uri = write_mirror(tmp_path / "m", stanza("hello") + "\n", by_hash=False, signed=True)
    inrelease = tmp_path / "m/debian/dists/bookworm/InRelease"
    inrelease.write_text("Codename: evil\n" + inrelease.read_text())
    assert fetch_release(signed_source(uri)).fields["Codename"] == "bookworm"


def test_other_keyring_and_missing_keyring_are_one_line(tmp_path: Path) -> None:
    uri = write_mirror(tmp_path / "m", stanza("hello") + "\n", by_hash=False, signed=True)
    other = AptSource(uri, "bookworm", keyring="/usr/share/keyrings/debian-archive-keyring.gpg")
    with pytest.raises(LockError, match=r"signature check failed against "
                                         r"/usr/share/keyrings/debian-archive-keyring\.gpg: "
                                         r"Can't check signature: No public key") as info:
        fetch_index(other, "main", tmp_path / "c")
    assert info.value.hint and "ENVNIX_APT_KEYRING" in info.value.hint
    with pytest.raises(LockError, match=r"cannot verify .*: no keyring is known"):
        fetch_index(AptSource(uri, "bookworm"), "main", tmp_path / "c")
    missing = AptSource(uri, "bookworm", keyring=str(tmp_path / "nope.gpg"))
    with pytest.raises(LockError, match=r"keyring .*nope\.gpg does not exist"):
        fetch_index(missing, "main", tmp_path / "c")


def test_unsigned_release_needs_an_explicit_opt_out(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    uri = write_mirror(tmp_path / "m", stanza("hello") + "\n", by_hash=False, signed=False)
    (tmp_path / "m/debian/dists/bookworm/Release.gpg").unlink()
    with pytest.raises(LockError, match=r"Release is not signed \(no Release\.gpg either\)"):
        fetch_index(signed_source(uri), "main", tmp_path / "c")
    monkeypatch.setenv("ENVNIX_APT_UNVERIFIED", "1")
    _, text = fetch_index(AptSource(uri, "bookworm"), "main", tmp_path / "c")
    assert "Package: hello" in text


def test_armored_keyring_is_accepted(tmp_path: Path) -> None:
    """Vendors publish keys armored (.asc); gpgv reads binary keyrings only."""
    uri = write_mirror(tmp_path / "m", stanza("hello") + "\n", by_hash=False, signed=True)
    armored = tmp_path / "archive.asc"
    armored.write_bytes(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n"
                        + base64.encodebytes(KEYRING.read_bytes())
                        + b"-----END PGP PUBLIC KEY BLOCK-----\n")
    _, text = fetch_index(AptSource(uri, "bookworm", keyring=str(armored)), "main",
                          tmp_path / "c")
    assert "Package: hello" in text

"""Pinned archive keys (envnix.lock.apt.anchors) on plain data: what gpgv's status lines
count as a good signature by a pinned key, and reading one file out of a .deb. The fetch and
the whole check run against loopback archives in tests/integration/test_ubuntu.py and
test_cuda_apt_e2e.py."""

from __future__ import annotations

import pytest
from _ubuntu_archive import keyring_deb

from envnix.core.errors import LockError
from envnix.lock.apt.anchors import ANCHORS, check_signers, good_signers
from envnix.lock.apt.debfile import deb_file
from envnix.spec.apt import AptSource

UBUNTU_2018 = "F6ECB3762474EDA9D21B7022871920D1991BC93C"
SUBKEY = "0123456789ABCDEF0123456789ABCDEF01234567"


def validsig(signing: str, primary: str | None) -> str:
    tail = f" {primary}" if primary else ""
    return (f"[GNUPG:] VALIDSIG {signing} 2024-01-01 1704067200 0 4 0 1 10 01{tail}\n")


def test_good_signers_are_the_primary_keys_of_validsig_lines() -> None:
    status = ("[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 871920D1991BC93C Ubuntu\n"
              + validsig(SUBKEY, UBUNTU_2018) + "[GNUPG:] BADSIG 0000 other\n")
    assert good_signers(status) == {UBUNTU_2018}
    assert good_signers(validsig(SUBKEY.lower(), None)) == {SUBKEY}  # no primary named
    assert good_signers("[GNUPG:] ERRSIG 871920D1991BC93C 1 10 01 1704067200 9\n") == set()


def test_a_signature_by_another_key_is_refused() -> None:
    source = AptSource("http://mirror.test/ubuntu", "jammy", anchor="ubuntu")
    check_signers(source, "http://mirror.test/ubuntu/dists/jammy/InRelease",
                  validsig(UBUNTU_2018, UBUNTU_2018))
    with pytest.raises(LockError) as info:
        check_signers(source, "http://mirror.test/ubuntu/dists/jammy/InRelease",
                      validsig(SUBKEY, SUBKEY))
    assert str(info.value).startswith("http://mirror.test/ubuntu/dists/jammy/InRelease: not "
                                      "signed by Ubuntu's archive's keys (good signatures from "
                                      f"{SUBKEY}; envnix trusts ")
    assert UBUNTU_2018 in ANCHORS["ubuntu"].fingerprints


def test_deb_file_reads_one_member_and_tolerates_damage() -> None:
    deb = keyring_deb(b"KEYS")
    assert deb_file(deb, "usr/share/keyrings/ubuntu-archive-keyring.gpg", 1 << 20) == b"KEYS"
    assert deb_file(deb, "usr/share/keyrings/ubuntu-archive-keyring.gpg", 2) == b"KE"
    assert deb_file(deb, "etc/missing", 1 << 20) is None
    assert deb_file(deb[:200], "usr/share/keyrings/ubuntu-archive-keyring.gpg", 10) is None
    assert deb_file(b"not an ar archive", "x", 10) is None

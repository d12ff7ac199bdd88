"""Tests for envnix.lock.apt: version order, relations, sources, index fetching, resolution.

Offline tests use hand-written Packages/Release texts and a file:// mirror in tmp_path.
Tests marked ``network`` use the Debian mirror from this machine's own apt sources.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from envnix.core.errors import LockError, PackageNotFoundError, UsageError
from envnix.lock.apt.fetch import parse_release
from envnix.lock.apt.index import DebIndex, DebPackage, IndexSnapshot
from envnix.lock.apt.relations import Relation, parse_relations
from envnix.lock.apt.resolver import auto_installed, resolve
from envnix.lock.apt.sources import machine_apt_sources, sources_for_mirror
from envnix.lock.apt.version import version_compare, version_key
from envnix.spec.apt import AptSource

# A URI that no test ever fetches from: hand-written indexes only need a base for pin URLs.
FAKE_URI = "file:///nonexistent/debian"

# ------------------------------------------------------------------------------------------
# Debian version comparison
# ------------------------------------------------------------------------------------------

ASCENDING = [
    ("1.0~rc1", "1.0"),
    ("2.0", "1:0.1"),
    ("1.0-1", "1.0-1+deb12u1"),
    ("2.36-9+deb12u9", "2.36-9+deb12u10"),
    ("1.0~~", "1.0~"),
    ("1.0~", "1.0"),
    ("1.0~~a", "1.0~"),
    ("1.0", "1.0a"),
    ("1.0a", "1.0+"),  # letters sort before non-letters
    ("1.0", "1.0.1"),
    ("1.0", "1.0+b1"),
    ("1.0-1~bpo12+1", "1.0-1"),
    ("9", "10"),
    ("1.9", "1.10"),
    ("3.11.2-6+deb12u7", "3.11.2-6+deb12u8"),
    ("1:1.2.13.dfsg-1", "1:1.3.dfsg-3"),
    ("0.9", "1:0.1"),
    ("1.0-1", "1.0-1.1"),
    ("1.0-9", "1.0-10"),
    ("2.0-1", "2.0a-1"),
]

EQUAL = [("1.0", "1.0-0"), ("1.0", "0:1.0"), ("01", "1"), ("1.00", "1.0"), ("0", "")]


@pytest.mark.parametrize(("older", "newer"), ASCENDING)
def test_version_order(older: str, newer: str) -> None:
    assert version_compare(older, newer) == -1
    assert version_compare(newer, older) == 1
    assert version_key(older) < version_key(newer)


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_version_equal(a: str, b: str) -> None:
    assert version_compare(a, b) == 0
    assert version_key(a) == version_key(b)


def test_version_sort_key_orders_a_list() -> None:
    versions = ["1.0", "1:0.1", "1.0~rc1", "1.0-1", "1.0~beta", "0.9", "1.0+b1", "1.0-1+deb12u1"]
    assert sorted(versions, key=version_key) == [
        "0.9", "1.0~beta", "1.0~rc1", "1.0", "1.0-1", "1.0-1+deb12u1", "1.0+b1", "1:0.1",
    ]


# ------------------------------------------------------------------------------------------
# Relation parsing
# ------------------------------------------------------------------------------------------


def test_parse_relations_full_grammar() -> None:
    groups = parse_relations("a (>= 1.0) | b:any, c [amd64] <!nocheck>, d [i386], e:native (<< 2~)")
    assert groups == [
        (Relation("a", ">=", "1.0"), Relation("b")),
        (Relation("c"),),
        (Relation("e", "<<", "2~"),),
    ]


@pytest.mark.parametrize("op", ["<<", "<=", "=", ">=", ">>"])
def test_parse_relations_ops(op: str) -> None:
    assert parse_relations(f"libc6 ({op} 2.36)") == [(Relation("libc6", op, "2.36"),)]


def test_parse_relations_legacy_ops_and_spacing() -> None:
    assert parse_relations("x (<1), y(>2),z (>=3)") == [
        (Relation("x", "<=", "1"),), (Relation("y", ">=", "2"),), (Relation("z", ">=", "3"),),
    ]


def test_parse_relations_arch_restrictions() -> None:
    assert parse_relations("a [!i386 !arm64], b [!amd64], c [linux-any], d [any-amd64]") == [
        (Relation("a"),), (Relation("c"),), (Relation("d"),),
    ]
    # a group whose alternatives are all for other architectures disappears
    assert parse_relations("x [i386] | y [arm64], z") == [(Relation("z"),)]


def test_parse_relations_empty_and_bad() -> None:
    assert parse_relations("") == []
    assert parse_relations(" , ") == []
    with pytest.raises(LockError, match="cannot parse"):
        parse_relations("foo (>= )")


def test_relation_satisfied_by() -> None:
    assert Relation("a", ">=", "1.0").satisfied_by("1.0")
    assert not Relation("a", ">>", "1.0").satisfied_by("1.0")
    assert Relation("a", "<<", "1.0").satisfied_by("1.0~rc1")
    assert Relation("a").satisfied_by("anything")
    assert str(Relation("a", ">=", "1")) == "a (>= 1)"


# ------------------------------------------------------------------------------------------
# Resolver on hand-written indexes
# ------------------------------------------------------------------------------------------


def stanza(name: str, version: str = "1.0", arch: str = "amd64", **fields: str) -> str:
    """A Packages stanza; keyword names use _ for - (Pre_Depends -> Pre-Depends)."""
    lines = [f"Package: {name}", f"Version: {version}", f"Architecture: {arch}"]
    fields.setdefault("Priority", "optional")
    for key, value in fields.items():
        lines.append(f"{key.replace('_', '-')}: {value}")
    safe = name.replace("+", "p")
    lines += [
        "Maintainer: Test <test@invalid>",
        f"Description: the {name} package\n more description lines\n .\n end",
        f"Filename: pool/main/{safe[0]}/{safe}/{safe}_{version.replace(':', '%3a')}_{arch}.deb",
        f"Size: {100 + len(name)}",
        f"SHA256: {hashlib.sha256(f'{name} {version}'.encode()).hexdigest()}",
    ]
    return "\n".join(lines)


def make_index(*stanzas: str, suite: str = "bookworm") -> DebIndex:
    return DebIndex.from_packages_text("\n\n".join(stanzas) + "\n", FAKE_URI, suite)


def names(pkgs: list[DebPackage]) -> list[str]:
    return [p.name for p in pkgs]


def test_resolve_walks_pre_depends_and_depends_not_recommends() -> None:
    index = make_index(
        stanza("app", Depends="liba", Pre_Depends="libpre", Recommends="extra"),
        stanza("liba", Depends="libc6 (>= 2.36)"),
        stanza("libpre", Depends="libc6"),
        stanza("libc6", "2.36-9+deb12u10"),
        stanza("extra"),
        stanza("unrelated"),
    )
    assert names(resolve(index, ["app"])) == ["app", "liba", "libc6", "libpre"]


def test_resolve_alternatives() -> None:
    index = make_index(
        stanza("app", Depends="missing | second, third | fourth"),
        stanza("second"),
        stanza("third"),
        stanza("fourth"),
    )
    # first alternative with a candidate wins; an absent one is skipped
    assert names(resolve(index, ["app"])) == ["app", "second", "third"]
    # an OR-group already met by a selected package (here: a root) adds nothing
    assert names(resolve(index, ["fourth", "app"])) == ["app", "fourth", "second"]


def test_resolve_states_the_merged_usr_layout_instead_of_converting() -> None:
    """bookworm's init-system-helpers: ``usrmerge | usr-is-merged``. The image is merged-/usr
    by construction, so the marker package is taken, not the converter and its perl."""
    index = make_index(
        stanza("init-system-helpers", Essential="yes", Depends="usrmerge | usr-is-merged"),
        stanza("usrmerge", Depends="perl:any", Provides="usr-is-merged"),
        stanza("perl"),
        stanza("usr-is-merged"),
    )
    assert names(resolve(index, [], essential=True)) == ["init-system-helpers", "usr-is-merged"]
    # asked for by name, usrmerge is installed (and then meets the group itself)
    assert names(resolve(index, ["usrmerge"], essential=True)) == [
        "init-system-helpers", "perl", "usrmerge"]


def test_resolve_versioned_alternative_skips_too_old() -> None:
    index = make_index(
        stanza("app", Depends="a (>= 2) | b"),
        stanza("a", "1.5"),
        stanza("b"),
    )
    assert names(resolve(index, ["app"])) == ["app", "b"]


def test_resolve_newest_version_and_versioned_choice() -> None:
    index = make_index(
        stanza("lib", "1.0"),
        stanza("lib", "2.0"),
        stanza("lib", "1:0.5"),
        stanza("old-user", Depends="lib (<< 1:0)"),
        stanza("new-user", Depends="lib"),
    )
    assert [p.version for p in resolve(index, ["new-user"]) if p.name == "lib"] == ["1:0.5"]
    assert [p.version for p in resolve(index, ["old-user"]) if p.name == "lib"] == ["2.0"]
    assert index.versions("lib") == ["1:0.5", "2.0", "1.0"]


def test_resolve_provides_priority_tie_break() -> None:
    index = make_index(
        stanza("base", Pre_Depends="awk", Priority="required"),
        stanza("gawk", Provides="awk", Priority="optional"),
        stanza("mawk", Provides="awk", Priority="required"),
        stanza("original-awk", Provides="awk", Priority="optional"),
    )
    assert names(resolve(index, ["base"])) == ["base", "mawk"]


def test_resolve_provides_name_tie_break_and_real_package_first() -> None:
    index = make_index(
        stanza("app", Depends="mta"),
        stanza("zmailer", Provides="mta", Priority="extra"),
        stanza("postfix", Provides="mta"),
        stanza("exim4", Provides="mta"),
        stanza("user", Depends="editor"),
        stanza("editor"),
        stanza("vim", Provides="editor", Priority="required"),
    )
    assert names(resolve(index, ["app"])) == ["app", "exim4"]
    assert names(resolve(index, ["user"])) == ["editor", "user"]


def test_resolve_versioned_provides() -> None:
    index = make_index(
        stanza("app", Depends="abi (>= 2)"),
        stanza("impl-a", Provides="abi"),  # unversioned: cannot satisfy a versioned relation
        stanza("impl-b", Provides="abi (= 1)"),
        stanza("impl-c", Provides="abi (= 2), other"),
    )
    assert names(resolve(index, ["app"])) == ["app", "impl-c"]


def test_resolve_already_provided_satisfies() -> None:
    index = make_index(
        stanza("app", Depends="abi (>= 1), plain"),
        stanza("impl", Provides="abi (= 3), plain"),
        stanza("abi", "0.5"),  # real package too old: the provider already selected counts
        stanza("plain", "1.0"),
    )
    assert names(resolve(index, ["impl", "app"])) == ["app", "impl"]


def test_resolve_unsatisfiable_names_the_chain() -> None:
    index = make_index(
        stanza("app", Depends="libfoo"),
        stanza("libfoo", Depends="libbar (>= 2)"),
        stanza("libbar", "1.0"),
    )
    with pytest.raises(LockError) as info:
        resolve(index, ["app"])
    msg = str(info.value)
    assert "libfoo 1.0 depends on libbar (>= 2), but the index has only libbar 1.0" in msg
    assert "app -> libfoo" in msg
    assert "\n" not in msg


def test_resolve_unsatisfiable_missing_and_conflicting_pin() -> None:
    index = make_index(
        stanza("app", Depends="ghost | phantom"),
        stanza("pinned", "1.0"),
        stanza("pinned", "2.0"),
        stanza("wants-new", Depends="pinned (>= 2)"),
    )
    with pytest.raises(LockError, match="ghost is not in the index; phantom is not in the index"):
        resolve(index, ["app"])
    with pytest.raises(LockError, match=r"pinned 1\.0 is already selected"):
        resolve(index, ["pinned=1.0", "wants-new"])
    assert [p.version for p in resolve(index, ["pinned=1.0"])] == ["1.0"]


def test_resolve_unknown_root_suggests_names() -> None:
    index = make_index(stanza("libgl1"), stanza("libglu1"), stanza("zlib1g"))
    with pytest.raises(PackageNotFoundError) as info:
        resolve(index, ["libgl"])
    assert str(info.value).startswith("apt package 'libgl' not found in bookworm (amd64)")
    assert "did you mean: libgl1" in str(info.value)
    with pytest.raises(PackageNotFoundError, match=r"available versions: 1\.0"):
        resolve(index, ["libgl1=9.9"])


def test_resolve_virtual_root_and_arch_filter() -> None:
    index = make_index(
        stanza("mawk", Provides="awk", Priority="required"),
        stanza("armonly", arch="arm64"),
        stanza("indep", arch="all", Depends="x [i386], mawk [amd64]"),
    )
    assert names(resolve(index, ["awk"])) == ["mawk"]
    assert names(resolve(index, ["indep"])) == ["indep", "mawk"]
    with pytest.raises(PackageNotFoundError):
        resolve(index, ["armonly"])


def test_resolve_reports_conflicts() -> None:
    index = make_index(
        stanza("a", Breaks="b (<< 2)"),
        stanza("b", "1.0"),
        stanza("mta1", Provides="mta", Conflicts="mta"),  # self-conflict idiom is fine
        stanza("mta2", Provides="mta", Conflicts="mta"),
    )
    assert names(resolve(index, ["mta1"])) == ["mta1"]
    with pytest.raises(LockError, match=r"a 1\.0 breaks b \(<< 2\), and b 1\.0 was selected"):
        resolve(index, ["a", "b"])
    with pytest.raises(LockError, match=r"conflicts mta, and mta2 \(provides mta\)"):
        resolve(index, ["mta1", "mta2"])


def test_resolve_prefers_kept_pins_while_they_fit() -> None:
    """A re-lock keeps the old lock's versions; what they block moves, nothing else."""
    index = make_index(
        stanza("app", "2.0", Depends="lib (>= 2)"), stanza("app", "1.0", Depends="lib"),
        stanza("lib", "2.0"), stanza("lib", "1.0"),
        stanza("tool", "2.0", Breaks="old (<< 2)"), stanza("tool", "1.0"),
        stanza("old", "2.0"), stanza("old", "1.0"),
    )
    kept = {"app": "1.0", "lib": "1.0", "tool": "1.0", "old": "1.0", "gone": "0.1"}
    got = resolve(index, ["lib", "app", "tool", "old"], preferred=kept)
    assert {p.name: p.version for p in got} == {"app": "1.0", "lib": "1.0", "tool": "1.0",
                                                "old": "1.0"}
    # app moves: lib (selected first, as a root, at its kept 1.0) must follow; tool stays
    moved = resolve(index, ["lib", "app", "tool"], preferred={"lib": "1.0", "tool": "1.0"})
    assert {p.name: p.version for p in moved} == {"app": "2.0", "lib": "2.0", "tool": "1.0"}
    # tool moves: the kept old 1.0 it breaks moves too
    broke = resolve(index, ["old", "tool"], preferred={"old": "1.0"})
    assert {p.name: p.version for p in broke} == {"old": "2.0", "tool": "2.0"}
    # an explicit version in the spec wins over the kept one
    pinned = resolve(index, ["lib=2.0"], preferred={"lib": "1.0"})
    assert [(p.name, p.version) for p in pinned] == [("lib", "2.0")]


def test_malformed_index_fields() -> None:
    index = make_index(
        stanza("app", Depends="broken (>= )"),
        stanza("odd", Provides="((("),  # ignored: it only stops odd from providing anything
        stanza("fine", Depends="odd"),
    )
    with pytest.raises(LockError, match=r"Depends of app 1\.0: cannot parse"):
        resolve(index, ["app"])
    assert names(resolve(index, ["fine"])) == ["fine", "odd"]


def test_multiple_suites_newest_wins_and_pins() -> None:
    index = DebIndex("bookworm")
    index.add_packages_text(
        stanza("libc6", "2.36-9+deb12u9") + "\n\n" + stanza("tzdata", "2024a-0+deb12u1"),
        FAKE_URI, "bookworm",
    )
    index.add_packages_text(stanza("libc6", "2.36-9+deb12u10"), FAKE_URI + "-security/",
                            "bookworm-security")
    index.add_packages_text(stanza("tzdata", "2024a-0+deb12u1"), FAKE_URI, "bookworm-updates")
    pkgs = {p.name: p for p in resolve(index, ["libc6", "tzdata"])}
    assert pkgs["libc6"].version == "2.36-9+deb12u10"
    assert pkgs["libc6"].source_suite == "bookworm-security"
    assert pkgs["libc6"].url == (
        FAKE_URI + "-security/pool/main/l/libc6/libc6_2.36-9+deb12u10_amd64.deb"
    )
    assert pkgs["tzdata"].source_suite == "bookworm"  # same version: first suite wins
    assert len(index) == 3


def test_deb_package_fields_control_and_lock_roundtrip() -> None:
    index = make_index(
        stanza("dash", "0.5.12-2", Essential="yes", Priority="required", Section="shells",
               Pre_Depends="libc6 (>= 2.34)", Multi_Arch="foreign", Installed_Size="198",
               Tag="role::program,\n shell"),
        stanza("libc6", "2.36-9"),
    )
    pkgs = resolve(index, ["dash"])
    assert names(pkgs) == ["dash", "libc6"]
    dash = pkgs[0]
    assert dash.essential and dash.priority == "required" and dash.arch == "amd64"
    assert dash.size == 104 and len(dash.sha256) == 64
    assert dash.filename == "pool/main/d/dash/dash_0.5.12-2_amd64.deb"
    assert dash.url == f"{FAKE_URI}/{dash.filename}"
    assert dash.control.splitlines() == [
        "Package: dash",
        "Essential: yes",
        "Priority: required",
        "Section: shells",
        "Installed-Size: 198",
        "Maintainer: Test <test@invalid>",
        "Architecture: amd64",
        "Multi-Arch: foreign",
        "Version: 0.5.12-2",
        "Pre-Depends: libc6 (>= 2.34)",
        "Description: the dash package",
    ]
    d = dash.to_lock_dict()
    assert list(d) == sorted(d)
    assert json.loads(json.dumps(d)) == d
    assert DebPackage.from_lock_dict(d) == dash
    with pytest.raises(LockError, match="malformed"):
        DebPackage.from_lock_dict({k: v for k, v in d.items() if k != "sha256"})


def test_index_snapshot_lock_roundtrip() -> None:
    snap = IndexSnapshot(FAKE_URI, "bookworm", "main", FAKE_URI + "/x", "ab" * 32, 10)
    d = snap.to_lock_dict()
    assert list(d) == sorted(d)
    assert IndexSnapshot.from_lock_dict(d) == snap


def test_parse_speed_on_a_large_synthetic_index() -> None:
    """~63k stanzas (the size of bookworm main) must parse in a few seconds."""
    body = "\n\n".join(
        stanza(f"pkg{i}", f"1.{i % 7}-{i % 3}", Depends=f"pkg{i + 1} (>= 1.0) | alt{i}",
               Provides=f"virt{i % 50}")
        for i in range(63_000)
    )
    t0 = time.perf_counter()
    index = make_index(body)
    elapsed = time.perf_counter() - t0
    assert len(index) == 63_000
    assert elapsed < 5, f"parsing took {elapsed:.1f} s"
    t0 = time.perf_counter()
    with pytest.raises(PackageNotFoundError, match="did you mean: pkg1"):
        resolve(index, ["pkg1x"])
    assert time.perf_counter() - t0 < 2


# ------------------------------------------------------------------------------------------
# apt sources
# ------------------------------------------------------------------------------------------


def test_machine_apt_sources_deb822_and_one_line(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb deb-src\n"
        "# a comment inside the paragraph\n"
        "URIs: http://mirror.test/debian/\n"
        "Suites: bookworm-updates bookworm\n"
        "Components: main contrib\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.test/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "Enabled: no\n"
        "URIs: http://disabled.test/debian\n"
        "Suites: bookworm\n"
        "\n"
        "Types: deb\n"
        "URIs: https://thirdparty.test/node_20.x\n"
        "Suites: bookworm\n"
        "Components: main\n"
    )
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "# deb http://commented.test/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://other.test/debian bookworm main non-free\n"
        "deb [arch=arm64] http://armonly.test/debian bookworm main\n"
        "deb-src http://src.test/debian bookworm main\n"
        "deb http://other.test/debian trixie main\n"
        "deb https://packages.example.test/apt cloud-sdk-bookworm main\n"
    )
    sources = machine_apt_sources("bookworm", paths=[deb822, one_line, tmp_path / "missing"])
    assert sources == [
        AptSource("http://mirror.test/debian", "bookworm", ("main", "contrib")),
        AptSource("http://other.test/debian", "bookworm", ("main", "non-free")),
        AptSource("http://mirror.test/debian", "bookworm-updates", ("main", "contrib")),
        AptSource("http://mirror.test/debian-security", "bookworm-security", ("main",)),
    ]


def test_machine_apt_sources_none_found(tmp_path: Path) -> None:
    empty = tmp_path / "sources.list"
    empty.write_text("deb https://thirdparty.test/apt bookworm main\n")
    with pytest.raises(LockError, match="no Debian bookworm apt source found") as info:
        machine_apt_sources("bookworm", paths=[empty])
    assert "pass --apt-mirror URL" in (info.value.hint or "")


def test_debian_keyring_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENVNIX_DEBIAN_KEYRING (envnix's flake sets its pinned copy) stands for Debian's keyring
    where a source names none or names it at its standard path; another Signed-By and
    ENVNIX_APT_KEYRING still win. Unset: the standard path, as before."""
    standard = "/usr/share/keyrings/debian-archive-keyring.gpg"
    listed = tmp_path / "sources.list"
    listed.write_text(f"deb [signed-by={standard}] http://m.test/debian bookworm main\n"
                      "deb http://m.test/debian bookworm-updates main\n"
                      "deb [signed-by=/own.gpg] http://m.test/debian-security bookworm-security "
                      "main\n")
    monkeypatch.delenv("ENVNIX_DEBIAN_KEYRING", raising=False)
    monkeypatch.delenv("ENVNIX_APT_KEYRING", raising=False)
    keyrings = [s.keyring for s in machine_apt_sources("bookworm", paths=[listed])]
    assert keyrings == [standard, standard, "/own.gpg"]
    assert sources_for_mirror("http://m.test/debian", "bookworm")[0].keyring == standard
    monkeypatch.setenv("ENVNIX_DEBIAN_KEYRING", "/pinned.gpg")
    keyrings = [s.keyring for s in machine_apt_sources("bookworm", paths=[listed])]
    assert keyrings == ["/pinned.gpg", "/pinned.gpg", "/own.gpg"]
    assert sources_for_mirror("http://m.test/debian", "bookworm")[0].keyring == "/pinned.gpg"
    assert sources_for_mirror("http://m.test/ubuntu", "jammy", distro="ubuntu")[0].keyring == (
        "/usr/share/keyrings/ubuntu-archive-keyring.gpg")
    monkeypatch.setenv("ENVNIX_APT_KEYRING", "/user.gpg")
    assert sources_for_mirror("http://m.test/debian", "bookworm")[0].keyring == "/user.gpg"


def test_sources_for_mirror() -> None:
    assert sources_for_mirror("http://m.test/debian/", "bookworm") == [
        AptSource("http://m.test/debian", "bookworm"),
        AptSource("http://m.test/debian", "bookworm-updates"),
    ]
    with_security = sources_for_mirror("http://m.test/debian", "bookworm",
                                       security_mirror="http://m.test/debian-security")
    assert with_security[-1] == AptSource("http://m.test/debian-security", "bookworm-security")
    with pytest.raises(UsageError):
        sources_for_mirror("m.test/debian", "bookworm")


# ------------------------------------------------------------------------------------------
# Release parsing and fetching from a file:// mirror
# ------------------------------------------------------------------------------------------

SIGNED = """-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

Origin: Debian
Codename: bookworm
Acquire-By-Hash: yes
MD5Sum:
 00000000000000000000000000000000  123 main/binary-amd64/Packages.xz
SHA256:
 {sha} {size} main/binary-amd64/Packages.xz
 {sha2}  77 main/binary-arm64/Packages.xz
- -escaped: line
-----BEGIN PGP SIGNATURE-----

iQIzBAEBCAAdFiEE
-----END PGP SIGNATURE-----
"""


def test_parse_release_clearsigned() -> None:
    text = SIGNED.format(sha="A" * 64, size=123, sha2="b" * 64)
    release = parse_release(text)
    assert release.by_hash
    assert release.fields["Codename"] == "bookworm"
    assert release.sha256 == {
        "main/binary-amd64/Packages.xz": ("a" * 64, 123),
        "main/binary-arm64/Packages.xz": ("b" * 64, 77),
    }
    assert release.fields["-escaped"] == "line"


# ------------------------------------------------------------------------------------------
# Real Debian mirror (from this machine's apt sources)
# ------------------------------------------------------------------------------------------


def test_real_sources_order(real_sources: list[AptSource]) -> None:
    assert real_sources[0].suite == "bookworm"
    assert all(re.search(r"/debian(-security)?(/\d{8}T\d{6}Z)?$", s.uri) for s in real_sources)


# ------------------------------------------------------------------------------------------
# Signatures: nothing of an index is used unless gpgv finds it signed by the source's keys
# ------------------------------------------------------------------------------------------


def test_auto_installed_is_what_the_roots_pulled_in_beyond_the_base() -> None:
    """apt's extended_states after a bootstrap: the Essential set and apt (with what they
    need) are the base, the roots were asked for, the rest came in as dependencies."""
    def pkg(name: str, depends: str = "", essential: bool = False, provides: str = "") -> dict:
        control = f"Package: {name}\nDepends: {depends}\nProvides: {provides}\n"
        return {"name": name, "essential": essential, "control": control}

    packages = [pkg("grep", "libpcre", essential=True), pkg("libpcre"),
                pkg("apt", "libapt (>= 2)"), pkg("libapt"),
                pkg("python3", "libpython | python-runtime, mime-support"),
                pkg("libpython"), pkg("media-types", provides="mime-support"),
                pkg("sudo")]
    assert auto_installed(packages, ["python3", "sudo"]) == ["libpython", "media-types"]


# ------------------------------------------------------------------------------------------
# apt on a base(image=...): the base's dpkg status as installed packages
# ------------------------------------------------------------------------------------------


def _status(*entries: tuple[str, str, str]) -> str:
    """A dpkg status file: (name, version, extra field lines) with Status: installed."""
    return "\n\n".join(f"Package: {n}\nStatus: install ok installed\nArchitecture: amd64\n"
                       f"Version: {v}\n{extra}".rstrip("\n") for n, v, extra in entries) + "\n"


def test_installed_packages_meet_relations_and_are_not_pinned() -> None:
    from envnix.lock.apt.index import installed_entries

    index = make_index(
        stanza("jq", "1.6", Depends="libjq1 (= 1.6), libc6 (>= 2.34)"),
        stanza("libjq1", "1.6", Depends="libonig5, libc6"),
        stanza("libonig5", "6.9"),
        stanza("libc6", "2.36-9"),
        stanza("tool", "2.0", Depends="libc6 (>= 2.40) | nothing"),
        stanza("libc6", "2.41"),
        stanza("mailer", "1.0", Depends="mail-transport-agent"),
        stanza("exim", "4.0", Provides="mail-transport-agent"),
    )
    status = _status(("libc6", "2.36-9", ""), ("libonig5", "6.9", ""),
                     ("postfix", "3.7", "Provides: mail-transport-agent\n"),
                     ("removed", "1.0", ""))
    status = status.replace("Package: removed\nStatus: install ok installed",
                            "Package: removed\nStatus: deinstall ok config-files")
    installed = installed_entries(status)
    assert sorted(e.name for e in installed) == ["libc6", "libonig5", "postfix"]
    got = resolve(index, ["jq", "libonig5", "mailer"], installed=installed)
    # what the base has is met (by name, or through its Provides) and never pinned again
    assert [p.name for p in got] == ["jq", "libjq1", "mailer"]
    # a relation the installed version fails takes a newer one from the index (an upgrade)
    got = resolve(index, ["tool"], installed=installed)
    assert [(p.name, p.version) for p in got] == [("libc6", "2.41"), ("tool", "2.0")]
    # a root naming another version than the installed one is installed at that version
    assert [(p.name, p.version) for p in resolve(index, ["libc6=2.41"], installed=installed)
            ] == [("libc6", "2.41")]

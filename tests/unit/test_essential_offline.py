"""The offline tests of tests/integration/test_essential.py (no network, no program started).

An image on a distribution base is a Debian system: the Essential set, alternatives in auto
mode, dpkg's database and the base system files, all from the lock, no maintainer script run.
"""

from __future__ import annotations

from envnix.lock.apt.index import DebIndex, essential_names
from envnix.lock.apt.resolver import resolve


def stanza(name: str, version: str = "1.0", **fields: str) -> str:
    lines = [f"Package: {name}", f"Version: {version}", "Architecture: amd64",
             f"Filename: pool/{name}_{version}_amd64.deb", "Size: 1", "SHA256: " + "0" * 64]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def test_essential_packages_are_roots_after_the_callers() -> None:
    index = DebIndex.from_packages_text("\n".join([
        stanza("app", Depends="libx"),
        stanza("libx"),
        stanza("grep", Essential="yes", Depends="libpcre"),
        stanza("libpcre", "2.0"),
        stanza("libpcre", "1.0"),
        stanza("sed", Essential="no"),
    ]), "http://mirror.invalid/debian", "bookworm")
    assert essential_names(index) == ["grep"]
    plain = [p.name for p in resolve(index, ["app"])]
    assert plain == ["app", "libx"]
    full = resolve(index, ["app", "libpcre=1.0"], essential=True)
    assert [(p.name, p.version) for p in full] == [
        ("app", "1.0"), ("grep", "1.0"), ("libpcre", "1.0"), ("libx", "1.0")]
    assert next(p for p in full if p.name == "grep").essential

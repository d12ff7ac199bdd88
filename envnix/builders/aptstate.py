"""apt's state in the image, with apt in the trees: the lock's sources, which packages came in
as dependencies and the download directories owned by _apt.

Not a builder itself: mkmeta.py imports it (standard library only).
"""

from __future__ import annotations

import re

import _builder as B
import _treewrite as T
from accounts import User
from trees import Find

PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,127}$")
KEYRINGS = ("usr/share/keyrings/debian-archive-keyring.gpg",
            "usr/share/keyrings/ubuntu-archive-keyring.gpg")
SOURCE_WORD_RE = re.compile(r"^[A-Za-z0-9./][A-Za-z0-9._~:/?&=+%@!,;*-]*$")


def apt_sources_text(raw: str, find: Find) -> bytes | None:
    """deb822 sources for the lock's apt sources (``aptSources``: JSON list of {uri, suite,
    components, snapshot?}), so apt-get in the image reads the archive the image was locked
    from; None for an empty list. A snapshot's Release files have expired long ago: apt
    must not check Valid-Until for it."""
    given = B.json_input(raw, "aptSources")
    if not isinstance(given, list):
        raise B.BuilderError("aptSources: must be a JSON list")
    keyring = next((k for k in KEYRINGS if find(k) is not None), None)
    stanzas = []
    for src in given:
        if not isinstance(src, dict):
            raise B.BuilderError(f"aptSources: {src!r} is not an object")
        uri, suite = src.get("uri"), src.get("suite")
        comps = src.get("components", [])
        words = [uri, suite, *comps] if isinstance(comps, list) else [None]
        if not all(isinstance(w, str) and SOURCE_WORD_RE.match(w) for w in words):
            raise B.BuilderError(f"aptSources: bad source {src!r}")
        lines = ["Types: deb", f"URIs: {uri}", f"Suites: {suite}"]
        if comps:
            lines.append(f"Components: {' '.join(comps)}")
        if keyring and not suite.endswith("/"):
            lines.append(f"Signed-By: /{keyring}")
        if src.get("snapshot"):
            lines.append("Check-Valid-Until: no")
        stanzas.append("\n".join(lines) + "\n")
    return "\n".join(stanzas).encode("utf-8") if stanzas else None


# apt runs its download methods as _apt and makes these its own (0700) on first use, as a
# Debian system that ran apt has them (apt's .deb ships them root:root 0755).
APT_PARTIAL_DIRS = ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial")


def apt_state(users: list[User], find: Find, writer: T.TreeWriter) -> None:
    """With apt in the trees: its sources (the ``aptSources`` env), which packages came in
    as dependencies (``aptAuto``: extended_states) and the download directories owned by
    _apt (the user base-passwd lists and apt's postinst would add)."""
    if find("usr/bin/apt-get") is None:
        return
    raw = B.getenv("aptSources", "").strip()
    text = apt_sources_text(raw, find) if raw else None
    if text is not None:
        writer.add_file("etc/apt/sources.list.d/envnix.sources", text, 0o644)
    auto = B.json_input(B.getenv("aptAuto", "").strip() or "[]", "aptAuto")
    if not isinstance(auto, list) or not all(isinstance(n, str) and PACKAGE_RE.match(n)
                                             for n in auto):
        raise B.BuilderError("aptAuto: must be a JSON list of package names")
    if auto:  # as apt writes it, with the native architecture for every package
        writer.add_file("var/lib/apt/extended_states", "".join(
            f"Package: {n}\nArchitecture: {B.target_arch()}\nAuto-Installed: 1\n\n"
            for n in sorted(auto)).encode(), 0o644)
    apt_user = next((u for u in users if u.name == "_apt"), None)
    if apt_user is not None:
        for rel in APT_PARTIAL_DIRS:
            if find(rel) is not None:
                writer.add_dir(rel, 0o700, apt_user.uid, 0)

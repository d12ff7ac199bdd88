"""An npm registry on loopback: package documents and .tgz tarballs as the registry serves them.

The real registry is reachable from these machines and tests/integration/test_tools_e2e.py
builds the real codex from it; this stand-in serves what the real one will not (a tarball that
does not match its integrity, a release without a Linux build, an old single-tarball layout),
from files written under a directory and served by tests/_conda_channel.py's ChannelServer.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import urllib.parse
from pathlib import Path


def npm_tarball(files: dict[str, bytes], executables: frozenset[str] = frozenset(),
                links: dict[str, str] | None = None) -> bytes:
    """A package tarball as npm packs one: every member under ``package/``, gzip'd."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tf:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"package/{name}")
            info.size, info.mode, info.mtime = len(data), \
                0o755 if name in executables else 0o644, 499162500
            tf.addfile(info, io.BytesIO(data))
        for name, target in sorted((links or {}).items()):
            info = tarfile.TarInfo(f"package/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return raw.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def publish(root: Path, base: str, name: str, releases: dict[str, bytes],
            latest: str | None = None, *, wrong_integrity: frozenset[str] = frozenset()
            ) -> str:
    """Write package ``name``'s document and tarballs under ``root`` as a registry at ``base``
    serves them; returns the registry's URL. ``wrong_integrity`` names versions whose
    document states another tarball's sha512."""
    short = name.rsplit("/", 1)[-1]
    versions = {}
    for version, data in releases.items():
        filename = f"{short}-{version}.tgz"
        (root / name / "-").mkdir(parents=True, exist_ok=True)
        (root / name / "-" / filename).write_bytes(data)
        stated = data + b"other" if version in wrong_integrity else data
        versions[version] = {
            "name": name, "version": version, "_id": f"{name}@{version}",
            "dist": {"tarball": f"{base}/{name}/-/{filename}", "integrity": integrity(stated),
                     "shasum": hashlib.sha1(stated).hexdigest()}}
    document = {"name": name, "versions": versions,
                "dist-tags": {"latest": latest or max(releases)}}
    (root / urllib.parse.quote(name, safe="@")).write_text(json.dumps(document))
    return base

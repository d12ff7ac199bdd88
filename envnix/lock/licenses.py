"""The license each artifact declares, read from the artifact itself, for envnix sbom.

Why a module: three sources, three formats, one rule: report what the artifact says, as an SPDX
expression when it is one, as its own text when it is not, and nothing when it says nothing.
Wheels say it in METADATA (PEP 639's License-Expression, License, classifiers); a .deb in
``usr/share/doc/PKG/copyright`` when that file is machine-readable (DEP-5), in Debian's short
names (``GPL-2+``, ``Expat``), which are mapped to SPDX identifiers where the meaning is one.
Artifacts are read as streams, never unpacked to disk.
"""

from __future__ import annotations

import lzma
import re
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import zstandard

from envnix.lock.apt.debfile import read_deb_file
from envnix.lock.spdx_ids import EXCEPTIONS, LICENSES

__all__ = ["deb_license", "dep5_license", "spdx_expression", "wheel_license"]

# Trove classifiers that name exactly one SPDX license (most name a family, e.g. "BSD License").
_CLASSIFIERS = {
    "MIT License": "MIT", "MIT No Attribution License (MIT-0)": "MIT-0",
    "ISC License (ISCL)": "ISC", "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0", "The Unlicense (Unlicense)": "Unlicense",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0", "zlib/libpng License": "Zlib",
    "Apache Software License 2.0": "Apache-2.0",
}
_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def spdx_expression(text: str | None) -> str | None:
    """``text`` when it is an SPDX license expression of known identifiers, else None."""
    if not text or len(text) > 1000:
        return None
    tokens = _TOKEN.findall(text)
    depth, want_id, after_with = 0, True, False
    for token in tokens:
        if token == "(":
            if not want_id:
                return None
            depth += 1
        elif token == ")":
            depth -= 1
            if depth < 0 or want_id:
                return None
        elif token in ("AND", "OR", "WITH"):
            if want_id:
                return None
            want_id, after_with = True, token == "WITH"
        else:
            if not want_id:
                return None
            known = (token in EXCEPTIONS if after_with
                     else token.removesuffix("+") in LICENSES or token.startswith("LicenseRef-"))
            if not known:
                return None
            want_id, after_with = False, False
    return " ".join(tokens).replace("( ", "(").replace(" )", ")") \
        if tokens and depth == 0 and not want_id else None


def wheel_license(path: Path) -> str | None:
    """The license a wheel declares in its METADATA: License-Expression (PEP 639), else a
    one-line License field, else the one license its classifiers name; None when none says.
    Reads one member of the zip, never the whole wheel."""
    try:
        with zipfile.ZipFile(path) as wheel:
            name = next((n for n in wheel.namelist()
                         if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
            if name is None:
                return None
            raw = wheel.read(name)
    except (OSError, zipfile.BadZipFile):
        return None
    meta = HeaderParser().parsestr(raw.decode("utf-8", "replace"))
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    field = (meta.get("License") or "").strip()
    if field and "\n" not in field and len(field) <= 100 and spdx_expression(field):
        return field
    named = sorted({c.split(" :: ")[-1] for c in meta.get_all("Classifier") or []
                    if c.startswith("License :: ")})
    spdx_named = {_CLASSIFIERS.get(n) for n in named}
    if len(named) == 1 and None not in spdx_named:
        return spdx_named.pop()
    if field and "\n" not in field and len(field) <= 100 and field.upper() != "UNKNOWN":
        return field
    return "; ".join(named) or None


# Debian's short license names (copyright-format 1.0, "License specification") whose meaning
# is one SPDX identifier; a "+" means "or any later version".
_DEBIAN = {
    "Expat": "MIT", "Apache-2.0": "Apache-2.0", "Artistic": "Artistic-1.0",
    "Artistic-2.0": "Artistic-2.0", "BSD-2-clause": "BSD-2-Clause",
    "BSD-3-clause": "BSD-3-Clause", "BSD-4-clause": "BSD-4-Clause", "ISC": "ISC",
    "CC0-1.0": "CC0-1.0", "MPL-1.1": "MPL-1.1", "MPL-2.0": "MPL-2.0", "Zlib": "Zlib",
    "zlib": "Zlib", "PSF-2": "PSF-2.0", "X11": "X11", "MIT": "MIT", "OpenSSL": "OpenSSL",
    "BSL-1.0": "BSL-1.0", "curl": "curl", "Unicode-DFS-2016": "Unicode-DFS-2016",
}
for _family, _spdx in (("GPL", "GPL"), ("LGPL", "LGPL"), ("AGPL", "AGPL"), ("GFDL", "GFDL")):
    for _v in ("1", "2", "2.1", "3", "1.1", "1.2", "1.3"):
        _id = f"{_spdx}-{_v if '.' in _v else _v + '.0'}"
        if f"{_id}-only" in LICENSES:
            _DEBIAN[f"{_family}-{_v}"] = f"{_id}-only"
            _DEBIAN[f"{_family}-{_v}+"] = f"{_id}-or-later"
_DEP5_OPS = re.compile(r",?\s+(or|and)\s+", re.I)
MAX_COPYRIGHT = 1 << 20


def dep5_license(text: str) -> str | None:
    """The license of ``Files: *`` in a machine-readable debian/copyright (else the header's),
    as SPDX when every name in it maps, else as written; None for a free-text file."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    if not paragraphs or not re.match(r"Format:\s*\S*copyright-format", paragraphs[0]):
        return None
    header = _license_field(paragraphs[0])
    for paragraph in paragraphs[1:]:
        files = re.search(r"^Files:\s*(.*)$", paragraph, re.M)
        if files and "*" in files[1].split():
            return _debian_to_spdx(_license_field(paragraph)) or None
    return _debian_to_spdx(header) or None


def _license_field(paragraph: str) -> str:
    m = re.search(r"^License:[ \t]*(.*)$", paragraph, re.M)
    return m[1].strip() if m else ""


def _debian_to_spdx(names: str) -> str:
    if not names:
        return ""
    parts = _DEP5_OPS.split(names)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part.upper())
            continue
        base, _, exception = part.partition(" with ")
        spdx = _DEBIAN.get(base.strip()) or (base.strip() if base.strip() in LICENSES else None)
        if spdx is None or exception:
            return names  # not every name maps: keep Debian's words
        out.append(spdx)
    return spdx_expression(" ".join(out)) or names


def deb_license(path: Path, package: str) -> str | None:
    """What ``package``'s .deb says in ``usr/share/doc/PACKAGE/copyright`` (DEP-5 only).
    Streams data.tar until that member; None when it is missing, a link or free text."""
    try:
        with open(path, "rb") as f:
            raw = read_deb_file(f, f"usr/share/doc/{package}/copyright", MAX_COPYRIGHT)
    except (OSError, EOFError, lzma.LZMAError, tarfile.TarError, zstandard.ZstdError):
        return None
    return dep5_license(raw.decode("utf-8", "replace")) if raw else None

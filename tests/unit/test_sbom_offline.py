"""envnix sbom, offline: SBOMs of the committed quickstart lock (plus conda and base-image
entries) checked by the official validators, purls, licenses, and byte-for-byte determinism.

The validators are the formats' own: spdx-tools (SPDX 2.3) and cyclonedx-python-lib's JSON
schema validator (CycloneDX 1.5), from the [test] extra. The integration half runs the CLI."""

from __future__ import annotations

import copy
import io
import json
import lzma
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from envnix.lock.licenses import deb_license, dep5_license, spdx_expression, wheel_license
from envnix.lock.model import Lock
from envnix.lock.sbom import components, cyclonedx, spdx

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART_LOCK = ROOT / "examples" / "quickstart" / "envnix.lock"
DIGEST = "sha256:" + "ab" * 32


def spdx_problems(doc: dict[str, Any]) -> list[str]:
    """What spdx-tools says is wrong with an SPDX 2.3 JSON document (empty: valid)."""
    parsed = JsonLikeDictParser().parse(json.loads(json.dumps(doc)))
    return [m.validation_message for m in validate_full_spdx_document(parsed, "SPDX-2.3")]


def cyclonedx_problem(doc: dict[str, Any]) -> str | None:
    """What cyclonedx-python-lib's validator says is wrong with a CycloneDX 1.5 BOM."""
    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(json.dumps(doc))
    return None if error is None else str(error)


def quickstart_lock() -> Lock:
    return Lock.loads(QUICKSTART_LOCK.read_bytes(), origin=str(QUICKSTART_LOCK))


def with_conda_and_base() -> Lock:
    """The quickstart lock plus one conda package and a base image, as a conda / base(image=)
    lock records them (field shapes from envnix/lock/model.py)."""
    lock = quickstart_lock()
    lock.conda_channels = [{"name": "conda-forge", "url": "https://conda.example/conda-forge",
                            "mirrors": []}]
    lock.conda_packages = [{
        "kind": "conda", "name": "zlib", "version": "1.3.1", "build": "hb9d3cd8_2",
        "build_number": 2, "subdir": "linux-64", "fn": "zlib-1.3.1-hb9d3cd8_2.conda",
        "url": "https://conda.example/conda-forge/linux-64/zlib-1.3.1-hb9d3cd8_2.conda",
        "mirrors": [], "channel": "https://conda.example/conda-forge", "sha256": "cd" * 32,
        "md5": None, "size": 1, "depends": [], "constrains": [], "noarch": None,
        "license": "Zlib", "timestamp": None}]
    lock.base = {"ref": "registry.example:5000/team/base:1", "digest": "sha256:" + "ef" * 32,
                 "manifest": {"mediaType": "x", "layers": []},
                 "config": {"digest": "sha256:" + "01" * 32, "diff_ids": []}, "blob_urls": []}
    return lock


def write_wheel(path: Path, headers: str) -> Path:
    """A real wheel (a zip with a .dist-info/METADATA), as pip and Nix fetch them."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("probe/__init__.py", "")
        z.writestr("probe-1.0.dist-info/METADATA",
                   f"Metadata-Version: 2.4\nName: probe\nVersion: 1.0\n{headers}\n\nbody\n")
    return path


@pytest.mark.parametrize("make", [spdx, cyclonedx])
def test_quickstart_sbom_is_valid_and_lists_every_artifact(make) -> None:  # type: ignore[no-untyped-def]
    lock = quickstart_lock()
    doc = make(lock, "quickstart:dev", DIGEST)
    if make is spdx:
        assert spdx_problems(doc) == []
        artifacts = doc["packages"][1:]
        sums = {p["checksums"][0]["checksumValue"] for p in artifacts}
        assert doc["creationInfo"]["created"] == "1970-01-01T00:00:00Z"
        assert doc["packages"][0]["checksums"][0]["checksumValue"] == "ab" * 32
    else:
        assert cyclonedx_problem(doc) is None
        artifacts = doc["components"]
        sums = {c["hashes"][0]["content"] for c in artifacts}
        assert doc["metadata"]["component"]["version"] == DIGEST
    assert len(artifacts) == len(lock.artifacts()) == 159
    assert sums == {a["sha256"] for a in lock.artifacts()}


def test_purls_follow_each_ecosystem() -> None:
    purls = {c.name: c.purl for c in components(with_conda_and_base())}
    assert purls["adduser"] == "pkg:deb/debian/adduser@3.134?arch=all"
    assert purls["apt"] == "pkg:deb/debian/apt@2.6.2?arch=amd64"
    assert purls["opencv-python"] == "pkg:pypi/opencv-python@5.1.0.95"
    assert purls["zlib"] == ("pkg:conda/zlib@1.3.1?build=hb9d3cd8_2&channel=conda-forge"
                             "&subdir=linux-64&type=conda")
    jammy = quickstart_lock()
    jammy.inputs["apt"]["release"] = "jammy"  # an Ubuntu archive's packages
    assert components(jammy)[0].purl == "pkg:deb/ubuntu/adduser@3.134?arch=all"
    epoch = next(c for c in components(quickstart_lock()) if ":" in c.version)
    assert f"@{epoch.version.replace(':', '%3A').replace('+', '%2B')}?" in epoch.purl


@pytest.mark.parametrize("make", [spdx, cyclonedx])
def test_conda_license_and_base_image_are_described(make) -> None:  # type: ignore[no-untyped-def]
    doc = make(with_conda_and_base(), "app:1")
    if make is spdx:
        assert spdx_problems(doc) == []
        by_name = {p["name"]: p for p in doc["packages"]}
        assert by_name["zlib"]["licenseDeclared"] == "Zlib"
        assert by_name["registry.example:5000/team/base"]["versionInfo"] == "sha256:" + "ef" * 32
        assert by_name["adduser"]["licenseDeclared"] == "NOASSERTION"  # a .deb declares none
        assert "versionInfo" not in doc["packages"][0]  # no image digest given
    else:
        assert cyclonedx_problem(doc) is None
        by_name = {c["name"]: c for c in doc["components"]}
        assert by_name["zlib"]["licenses"] == [{"expression": "Zlib"}]
        assert by_name["registry.example:5000/team/base"]["type"] == "container"


def test_output_is_deterministic() -> None:
    for make in (spdx, cyclonedx):
        first = json.dumps(make(with_conda_and_base(), "app:1", DIGEST), sort_keys=True)
        assert json.dumps(make(with_conda_and_base(), "app:1", DIGEST), sort_keys=True) == first
    # ... and its identity follows the lock: another lock, another namespace / serial number.
    other = with_conda_and_base()
    other.pip_wheels = other.pip_wheels[:1]
    assert spdx(other, "app:1")["documentNamespace"] != \
        spdx(with_conda_and_base(), "app:1")["documentNamespace"]


@pytest.mark.parametrize(("headers", "declared"), [
    ("License-Expression: BSD-3-Clause AND MIT", "BSD-3-Clause AND MIT"),
    ("License: MIT\nClassifier: License :: OSI Approved :: MIT License", "MIT"),
    ("License: Apache 2.0\nClassifier: License :: OSI Approved :: Apache Software License",
     "Apache 2.0"),
    ("Classifier: License :: OSI Approved :: ISC License (ISCL)", "ISC"),
    ("License: Copyright (c) someone\n  all rights\n  reserved", None),
    ("", None),
])
def test_wheel_license_from_metadata(tmp_path: Path, headers: str, declared: str | None) -> None:
    assert wheel_license(write_wheel(tmp_path / "probe-1.0-py3-none-any.whl", headers)) == \
        declared


def test_wheel_licenses_reach_both_formats(tmp_path: Path) -> None:
    """A declared license that is not an SPDX expression stays as written: a LicenseRef with
    the text in SPDX, a license name in CycloneDX; both still validate."""
    lock = quickstart_lock()
    files = {"numpy": write_wheel(tmp_path / "a.whl", "License-Expression: BSD-3-Clause"),
             "six": write_wheel(tmp_path / "b.whl", "License: Apache 2.0")}
    doc = spdx(lock, "q:dev", None, lambda w: files.get(w["name"]))
    assert spdx_problems(doc) == []
    declared = {p["name"]: p["licenseDeclared"] for p in doc["packages"]}
    assert declared["numpy"] == "BSD-3-Clause"
    assert declared["six"].startswith("LicenseRef-")
    assert doc["hasExtractedLicensingInfos"] == [
        {"licenseId": declared["six"], "name": "Apache 2.0", "extractedText": "Apache 2.0"}]
    assert declared["opencv-python"] == "NOASSERTION"  # no wheel file: nothing is guessed
    bom = cyclonedx(lock, "q:dev", None, lambda w: files.get(w["name"]))
    assert cyclonedx_problem(bom) is None
    licenses = {c["name"]: c.get("licenses") for c in bom["components"]}
    assert licenses["six"] == [{"license": {"name": "Apache 2.0"}}]
    assert licenses["opencv-python"] is None


def test_validators_refuse_a_broken_sbom() -> None:
    """The checks above mean something: the same validators refuse a damaged document."""
    doc = spdx(quickstart_lock(), "q:dev")
    broken = copy.deepcopy(doc)
    broken["packages"][1]["licenseDeclared"] = "Not-A-License"
    assert spdx_problems(broken)
    bom = cyclonedx(quickstart_lock(), "q:dev")
    del bom["components"][0]["name"]
    assert cyclonedx_problem(bom)


@pytest.mark.parametrize(("text", "expression"), [
    ("MIT", "MIT"), ("GPL-2.0-or-later WITH GCC-exception-3.1",
                     "GPL-2.0-or-later WITH GCC-exception-3.1"),
    ("(MIT OR Apache-2.0) AND Zlib", "(MIT OR Apache-2.0) AND Zlib"),
    ("BSD", None), ("MIT OR", None), ("(MIT", None), ("MIT WITH Zlib", None),
    ("Apache 2.0", None), ("", None), (None, None),
])
def test_spdx_expression(text: str | None, expression: str | None) -> None:
    assert spdx_expression(text) == expression


def write_deb(path: Path, package: str, copyright_text: str | None) -> Path:
    """A real .deb (ar: debian-binary, control.tar.xz, data.tar.xz) as dpkg-deb lays it out."""
    def tar_xz(files: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        return lzma.compress(buf.getvalue())

    data = {f"./usr/bin/{package}": b"\x7fELF"}
    if copyright_text is not None:
        data[f"./usr/share/doc/{package}/copyright"] = copyright_text.encode()
    members = [("debian-binary", b"2.0\n"),
               ("control.tar.xz", tar_xz({"./control": f"Package: {package}\n".encode()})),
               ("data.tar.xz", tar_xz(data))]
    out = bytearray(b"!<arch>\n")
    for name, body in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(body):<10}`\n".encode()
        out += body + (b"\n" if len(body) % 2 else b"")
    path.write_bytes(bytes(out))
    return path


DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: probe
License: GPL-2+

Files: *
Copyright: 2024 someone
License: {license}

Files: debian/*
License: GPL-2+
"""


@pytest.mark.parametrize(("declared", "expected"), [
    ("GPL-2+", "GPL-2.0-or-later"), ("Expat", "MIT"), ("LGPL-2.1", "LGPL-2.1-only"),
    ("BSD-3-clause or GPL-2", "BSD-3-Clause OR GPL-2.0-only"),
    ("GPL-1+ or Artistic", "GPL-1.0-or-later OR Artistic-1.0"),
    ("Sleepycat, and BSD-3-clause", "Sleepycat AND BSD-3-Clause"),
    ("public-domain", "public-domain"),  # Debian's words, kept: not an SPDX identifier
    ("GPL-2+ with OpenSSL exception", "GPL-2+ with OpenSSL exception"),
])
def test_dep5_license(declared: str, expected: str) -> None:
    assert dep5_license(DEP5.format(license=declared)) == expected


def test_free_text_copyright_declares_nothing() -> None:
    assert dep5_license("This is the Debian prepackaged version of the GNU C Library.\n") is None


def test_deb_license_reads_the_copyright_file_in_the_deb(tmp_path: Path) -> None:
    deb = write_deb(tmp_path / "probe.deb", "probe", DEP5.format(license="Expat"))
    assert deb_license(deb, "probe") == "MIT"
    assert deb_license(deb, "other") is None  # another package's doc dir: not declared
    assert deb_license(write_deb(tmp_path / "bare.deb", "probe", None), "probe") is None
    assert deb_license(write_deb(tmp_path / "free.deb", "probe", "GPL, see above\n"),
                       "probe") is None
    (tmp_path / "junk.deb").write_bytes(b"!<arch>\nnonsense")
    assert deb_license(tmp_path / "junk.deb", "probe") is None


def test_deb_licenses_reach_both_formats(tmp_path: Path) -> None:
    lock = quickstart_lock()
    deb = write_deb(tmp_path / "sudo.deb", "sudo", DEP5.format(license="ISC"))

    def local(artifact: dict[str, Any]) -> Path | None:
        return deb if artifact["name"] == "sudo" else None

    doc = spdx(lock, "q:dev", None, local)
    assert spdx_problems(doc) == []
    assert {p["name"]: p["licenseDeclared"] for p in doc["packages"]}["sudo"] == "ISC"
    bom = cyclonedx(lock, "q:dev", None, local)
    assert cyclonedx_problem(bom) is None
    assert {c["name"]: c.get("licenses") for c in bom["components"]}["sudo"] == \
        [{"expression": "ISC"}]

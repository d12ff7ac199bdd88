"""envnix sbom and envnix diff as a user runs them: on the committed quickstart lock, and on two
tiny images envnix builds (one wheel served on loopback, then a file and a variable more),
compared from their OCI layouts and through a real registry on loopback (skopeo copy)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from _cli import EXAMPLES, Built, build, envnix
from _registry import Registry, have_registry_tools
from _tiny import TINY_ENVD, Server, tiny_context, wheel
from test_sbom_offline import DEP5, cyclonedx_problem, spdx_problems, write_deb

QUICKSTART = EXAMPLES / "quickstart"
EXPECTED = json.loads((QUICKSTART / "expected-digests.json").read_text())


def probe_wheel() -> bytes:
    """A real, installable wheel that declares its license the PEP 639 way."""
    files = {
        "envnixprobe/__init__.py": b"VALUE = 1\n",
        "envnixprobe-1.0.dist-info/METADATA":
            b"Metadata-Version: 2.4\nName: envnixprobe\nVersion: 1.0\n"
            b"License-Expression: MIT\n\n",
        "envnixprobe-1.0.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in files.items()) + "envnixprobe-1.0.dist-info/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
        z.writestr(zipfile.ZipInfo("envnixprobe-1.0.dist-info/RECORD", (1980, 1, 1, 0, 0, 0)),
                   record)
    return buf.getvalue()


@dataclass
class Pair:
    a: Built
    b: Built


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """Two tiny images: A has one wheel; B has none, but a file (io.copy) and a variable."""
    data = probe_wheel()
    root = tmp_path_factory.mktemp("supply")
    with Server(data).running() as server:
        entry = wheel(f"{server.url}/envnixprobe-1.0-py3-none-any.whl", data)
        a = tiny_context(root / "a", wheels=[entry])
        (root / "b" / "tiny").mkdir(parents=True)
        (root / "b" / "tiny" / "hello.txt").write_text("hello\n")
        b = tiny_context(root / "b", envd=TINY_ENVD + (
            '    io.copy(host_path="hello.txt", envd_path="/opt/hello.txt")\n'
            '    runtime.environ(env={"GREETING": "hi"})\n'))
        return Pair(build(a, "--locked", "-t", "tiny:dev"), build(b, "--locked", "-t", "tiny:dev"))


def test_sbom_of_the_quickstart_lock_validates() -> None:
    """The committed lock, as is: 159 artifacts, both formats valid, the same bytes twice."""
    missing = envnix("sbom", str(QUICKSTART), "--image", "oci:/nonexistent", check=False)
    assert missing.returncode == 2 and missing.stdout == ""  # an error, not a digest-less SBOM
    out = envnix("sbom", str(QUICKSTART), "--format", "spdx-json").stdout
    doc = json.loads(out)
    assert spdx_problems(doc) == []
    assert len(doc["packages"]) == 1 + 159
    assert envnix("sbom", str(QUICKSTART), "--format", "spdx-json").stdout == out
    bom = json.loads(envnix("sbom", str(QUICKSTART), "--format", "cyclonedx-json").stdout)
    assert cyclonedx_problem(bom) is None
    purls = {c["purl"] for c in bom["components"]}
    assert "pkg:pypi/numpy@2.4.6" in purls and "pkg:deb/debian/sudo@" not in purls
    assert any(p.startswith("pkg:deb/debian/sudo@") for p in purls)


def test_sbom_of_a_built_image_names_its_digest_and_wheel_license(pair: Pair,
                                                                 tmp_path: Path) -> None:
    context = pair.a.context
    out = tmp_path / "a.spdx.json"
    proc = envnix("sbom", str(context), "-o", str(out))
    assert f"wrote {out}" in proc.stderr
    doc = json.loads(out.read_text())
    assert spdx_problems(doc) == []
    image, probe = doc["packages"][0], doc["packages"][1]
    assert image["versionInfo"] == pair.a.manifest  # the last build, made from this lock
    assert probe["name"] == "envnixprobe" and probe["licenseDeclared"] == "MIT"
    bom = json.loads(envnix("sbom", str(context), "--format", "cyclonedx-json", "--image",
                            f"oci:{pair.a.layout}").stdout)
    assert cyclonedx_problem(bom) is None
    assert bom["metadata"]["component"]["version"] == pair.a.manifest
    assert bom["components"][0]["licenses"] == [{"expression": "MIT"}]
    # An image built from another lock is refused, not described.
    wrong = envnix("sbom", str(context), "--image", f"oci:{pair.b.layout}", check=False)
    assert wrong.returncode == 2 and "was not built from" in wrong.stderr


def test_sbom_deb_licenses_from_a_deb_in_the_nix_store(tmp_path: Path) -> None:
    """--deb-licenses reads the copyright file of a .deb Nix holds at the path a build of the
    lock fetches it to (added here with nix-store --add-fixed, as builtin:fetchurl would)."""
    context = tmp_path / "ctx"
    shutil.copytree(QUICKSTART, context, ignore=shutil.ignore_patterns(".envnix"))
    lock = json.loads((context / "envnix.lock").read_text())
    deb = write_deb(tmp_path / "sudo_0.0-envnixtest_amd64.deb", "sudo",
                    DEP5.format(license="ISC"))
    sudo = next(p for p in lock["apt"]["packages"] if p["name"] == "sudo")
    sudo.update(sha256=hashlib.sha256(deb.read_bytes()).hexdigest(), size=deb.stat().st_size,
                url=sudo["url"].rsplit("/", 1)[0] + "/" + deb.name)
    (context / "envnix.lock").write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    added = subprocess.run(["nix-store", "--add-fixed", "sha256", str(deb)], check=True,
                           capture_output=True, text=True).stdout.strip()
    assert added.endswith(deb.name)

    def sudo_license(*flags: str) -> str:
        doc = json.loads(envnix("sbom", str(context), *flags).stdout)
        assert spdx_problems(doc) == []
        return next(p["licenseDeclared"] for p in doc["packages"] if p["name"] == "sudo")

    assert sudo_license() == "NOASSERTION"  # off by default: no data.tar is opened
    assert sudo_license("--deb-licenses") == "ISC"


def test_diff_of_two_images_names_layers_and_files(pair: Pair) -> None:
    a, b = f"oci:{pair.a.layout}", f"oci:{pair.b.layout}"
    data = json.loads(envnix("diff", a, b, "--json").stdout)
    assert data["manifest"] == {"from": pair.a.manifest, "to": pair.b.manifest}
    assert "/opt/hello.txt" in data["files"]["added"]
    assert "/usr/local/lib/python3.11/dist-packages/envnixprobe/__init__.py" in \
        data["files"]["removed"]
    assert any(c.startswith("config.Env") for c in data["config"]["changed"])
    assert data["layers"]["added"] and data["layers"]["unchanged"] >= 1
    text = envnix("diff", a, b).stdout
    assert "  + /opt/hello.txt" in text and text.startswith("manifest: ")
    assert envnix("diff", a, b, "--exit-code", check=False).returncode == 1
    same = envnix("diff", a, a, "--exit-code")
    assert same.stdout.startswith("no differences")


def test_diff_reads_an_image_from_a_registry(pair: Pair, tmp_path: Path) -> None:
    if not have_registry_tools():
        pytest.fail("docker-registry, htpasswd or openssl missing: run ./scripts/setup")
    reg = Registry(tmp_path / "reg", tls=True, auth=("alice", "s3cret")).start()
    try:
        dest = f"{reg.host}/team/tiny:b"
        envnix("push", "-p", str(pair.b.context), dest, "--creds", "alice:s3cret",
               "--cert-dir", str(reg.cert_dir))
        remote = json.loads(envnix("diff", f"oci:{pair.a.layout}", f"docker://{dest}",
                                   "--json", "--creds", "alice:s3cret",
                                   "--cert-dir", str(reg.cert_dir)).stdout)
        local = json.loads(envnix("diff", f"oci:{pair.a.layout}", f"oci:{pair.b.layout}",
                                  "--json").stdout)
        assert remote == local
        refused = envnix("diff", f"oci:{pair.a.layout}", f"docker://{dest}",
                         "--cert-dir", str(reg.cert_dir), check=False)
        assert refused.returncode == 7 and "requires credentials" in refused.stderr
    finally:
        reg.stop()


def test_diff_of_two_locks(tmp_path: Path) -> None:
    """A re-lock that moved one wheel, as a reviewer sees it; contexts and files both work."""
    old = tmp_path / "old"
    shutil.copytree(QUICKSTART, old, ignore=shutil.ignore_patterns(".envnix"))
    lock = json.loads((old / "envnix.lock").read_text())
    six = next(w for w in lock["pip"]["wheels"] if w["name"] == "six")
    six.update(version="1.16.0", sha256="44" * 32,
               filename="six-1.16.0-py2.py3-none-any.whl",
               url=six["url"].replace("1.17.0", "1.16.0"))
    new = tmp_path / "new.lock"
    new.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    text = envnix("diff", str(old), str(new)).stdout
    assert text.splitlines() == ["pip: 0 added, 0 removed, 1 changed",
                                 "  ~ six 1.17.0 -> 1.16.0"]
    data = json.loads(envnix("diff", str(new), str(old / "envnix.lock"), "--json").stdout)
    assert data["pip"]["changed"] == [{"name": "six", "from": "1.16.0", "to": "1.17.0"}]
    assert data["differ"] is True and data["apt"]["changed"] == []
    assert envnix("diff", str(old), str(new), "--exit-code", check=False).returncode == 1
    assert envnix("diff", str(old), str(old), "--exit-code").stdout == "no differences\n"
    mixed = envnix("diff", str(old), "oci:/nowhere", check=False)
    assert mixed.returncode == 2 and "two locks or two images" in mixed.stderr


def test_sbom_attached_to_a_pushed_image_as_an_oci_artifact(pair: Pair, tmp_path: Path) -> None:
    """`envnix sbom --attach DEST`: the SBOM (naming the image digest) becomes an artifact
    whose subject is the image, tagged sha256-<hex>.sbom as cosign tags it; a tag serving
    another image is refused before anything is pushed."""
    if not have_registry_tools():
        pytest.fail("docker-registry, htpasswd or openssl missing: run ./scripts/setup")
    reg = Registry(tmp_path / "reg", tls=True, auth=("alice", "s3cret")).start()
    auth = ["--creds", "alice:s3cret", "--cert-dir", str(reg.cert_dir)]
    try:
        dest = f"{reg.host}/team/tiny:a"
        envnix("push", "-p", str(pair.a.context), dest, *auth)
        proc = envnix("sbom", str(pair.a.context), "--attach", dest, *auth)
        tagged = f"{reg.host}/team/tiny:{pair.a.manifest.replace(':', '-')}.sbom"
        assert proc.stdout.startswith(f"{tagged}: spdx-json attached as sha256:")
        artifact = proc.stdout.split()[-1]
        out = tmp_path / "artifact"
        subprocess.run(["skopeo", "--insecure-policy", "copy", "--preserve-digests",
                        "--src-creds", "alice:s3cret", "--src-cert-dir", str(reg.cert_dir),
                        f"docker://{tagged}", f"oci:{out}:sbom"], check=True,
                       capture_output=True)
        manifest = json.loads((out / "blobs/sha256" / artifact[7:]).read_bytes())
        assert manifest["artifactType"] == "application/spdx+json"
        assert manifest["subject"]["digest"] == pair.a.manifest
        sbom = json.loads((out / "blobs/sha256" / manifest["layers"][0]["digest"][7:])
                          .read_bytes())
        assert spdx_problems(sbom) == []
        assert pair.a.manifest in json.dumps(sbom)
        # B's lock, A's image at the tag: refused, nothing attached
        wrong = envnix("sbom", str(pair.b.context), "--attach", dest, *auth, check=False)
        assert wrong.returncode == 7, wrong.stderr
        assert f"serves {pair.a.manifest}, not the image built from this lock" in wrong.stderr
    finally:
        reg.stop()

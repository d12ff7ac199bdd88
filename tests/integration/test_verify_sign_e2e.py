"""envnix verify and signed pushes as a user runs them, against a real registry on loopback
(TLS + password): a tiny image envnix built is pushed and verified by rebuilding its lock; a
different image (its io.copy file changed) pushed under that tag is refused, naming the layer
and the file. A real GPG key made in a temporary home signs a push into a file:// lookaside,
and skopeo, under a policy that requires that key, copies the signed image and refuses an
unsigned one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _cli import Built, build, envnix
from _registry import Registry, have_registry_tools
from _tiny import TINY_ENVD, tiny_context

USER, PASSWORD = "alice", "s3cret-verify"
PASSPHRASE = "gpg-passphrase-5d1f"
COPY_ENVD = TINY_ENVD + '    io.copy(host_path="hello.txt", envd_path="/opt/hello.txt")\n'


@dataclass
class Setup:
    reg: Registry
    a: Built       # the context verify rebuilds
    b: Built       # the same build.envd, another hello.txt

    def auth(self) -> list[str]:
        return ["--creds", f"{USER}:{PASSWORD}", "--cert-dir", str(self.reg.cert_dir)]


def _context(root: Path, text: str) -> Path:
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "hello.txt").write_text(text)
    return tiny_context(root, envd=COPY_ENVD)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    if not have_registry_tools():
        pytest.fail("docker-registry, htpasswd or openssl missing: run ./scripts/setup")
    root = tmp_path_factory.mktemp("verify")
    a = build(_context(root / "a", "hello\n"), "--locked", "--no-load", "-t", "tiny:dev")
    b = build(_context(root / "b", "hello, changed\n"), "--locked", "--no-load", "-t", "tiny:dev")
    assert a.manifest != b.manifest
    reg = Registry(root / "reg", tls=True, auth=(USER, PASSWORD)).start()
    try:
        yield Setup(reg, a, b)
    finally:
        reg.stop()


@pytest.mark.slow
def test_verify_rebuilds_and_matches_then_names_the_changed_file(setup: Setup) -> None:
    dest = f"{setup.reg.host}/team/tiny:1"
    envnix("push", "-p", str(setup.a.context), dest, *setup.auth())
    ok = envnix("verify", str(setup.a.context), dest, *setup.auth())
    assert ok.stdout.splitlines() == [f"verified {setup.a.manifest}"], ok.stdout
    # the rebuild went to a private directory: the context's last build is still A's
    assert os.readlink(setup.a.context / ".envnix" / "result") == str(setup.a.store_path)

    envnix("push", "-p", str(setup.b.context), dest, *setup.auth())  # another image, same tag
    bad = envnix("verify", str(setup.a.context), f"docker://{dest}", *setup.auth(), check=False)
    assert bad.returncode == 1, bad.stderr
    assert not bad.stdout.startswith("verified")
    assert f"serves {setup.b.manifest}" in bad.stdout
    assert f"lock builds {setup.a.manifest}" in bad.stdout
    assert "first differing layer: #" in bad.stdout
    assert "~ /opt/hello.txt (size, content)" in bad.stdout, bad.stdout

    data = json.loads(envnix("verify", str(setup.a.context), dest, "--json", *setup.auth(),
                             check=False).stdout)
    assert data["verified"] is False
    assert (data["built"], data["served"]) == (setup.a.manifest, setup.b.manifest)
    layer = data["layer"]
    assert layer["from"]["digest"] != layer["to"]["digest"]
    assert layer["files"] == {"added": [], "removed": [], "changed": [
        {"path": "/opt/hello.txt", "what": ["size", "content"]}]}
    assert envnix("verify", str(setup.b.context), dest, "--json",
                  *setup.auth()).stdout.count('"verified": true') == 1


@pytest.mark.slow
def test_verify_names_an_index_and_compares_this_platforms_image(setup: Setup,
                                                                 tmp_path: Path) -> None:
    """A tag that serves an image index (several platforms) is not the image a lock builds;
    verify says so and compares the image skopeo picks from it for this machine."""
    layout = tmp_path / "index-layout"
    shutil.copytree(setup.b.layout, layout)
    layout.chmod(0o755)
    (layout / "index.json").chmod(0o644)
    (layout / "blobs" / "sha256").chmod(0o755)
    manifest = json.loads((layout / "index.json").read_text())["manifests"][0]
    entry = {k: manifest[k] for k in ("mediaType", "digest", "size")} | {
        "platform": {"architecture": "amd64", "os": "linux"}}
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [entry]}).encode()
    digest = hashlib.sha256(index).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(index)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{digest}",
        "size": len(index), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))
    dest = f"{setup.reg.host}/team/multi:1"
    subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", "--dest-creds",
                    f"{USER}:{PASSWORD}", "--dest-cert-dir", str(setup.reg.cert_dir),
                    f"oci:{layout}:multi", f"docker://{dest}"], check=True, capture_output=True)
    proc = envnix("verify", str(setup.a.context), dest, *setup.auth(), check=False)
    assert proc.returncode == 1, proc.stderr
    assert f"is an image index; its image for this platform is {setup.b.manifest}" in proc.stdout
    assert "~ /opt/hello.txt (size, content)" in proc.stdout


@pytest.mark.slow
def test_verify_errors_are_one_line(setup: Setup) -> None:
    dest = f"{setup.reg.host}/team/tiny:missing"
    gone = envnix("verify", str(setup.a.context), dest, *setup.auth(), check=False)
    assert gone.returncode == 7 and "has no image" in gone.stderr, gone.stderr
    anon = envnix("verify", str(setup.a.context), dest, "--cert-dir", str(setup.reg.cert_dir),
                  check=False)
    assert anon.returncode == 7 and "requires credentials" in anon.stderr, anon.stderr
    assert PASSWORD not in gone.stderr + gone.stdout
    # a stale lock is not re-locked: verify builds what the lock says or nothing
    stale = setup.a.context.parent / "stale"
    shutil.copytree(setup.a.context, stale, ignore=shutil.ignore_patterns(".envnix"))
    (stale / "build.envd").write_text(COPY_ENVD + '    install.python_packages(name=["six"])\n')
    lock = (stale / "envnix.lock").read_bytes()
    refused = envnix("verify", str(stale), f"{setup.reg.host}/team/tiny:1", *setup.auth(),
                     check=False)
    assert refused.returncode == 5, refused.stderr
    assert (stale / "envnix.lock").read_bytes() == lock


# --- signing -----------------------------------------------------------------------------


@dataclass
class Gpg:
    home: Path
    fingerprint: str
    public_key: Path

    @property
    def env(self) -> dict[str, str]:
        return os.environ | {"GNUPGHOME": str(self.home)}


@pytest.fixture
def gpg(tmp_path: Path) -> Iterator[Gpg]:
    """A real GPG key with a passphrase, in a temporary GNUPGHOME (short: the agent's socket
    lives there), its agent stopped afterwards."""
    if not shutil.which("gpg"):
        pytest.fail("gpg missing: run ./scripts/setup")
    home = Path(tempfile.mkdtemp(prefix="gpg-"))
    env = os.environ | {"GNUPGHOME": str(home)}
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    try:
        subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase",
                        PASSPHRASE, "--quick-gen-key", "envnix test <test@envnix.invalid>",
                        "rsa2048", "sign", "1d"], env=env, check=True, capture_output=True)
        listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"],
                                 env=env, check=True, capture_output=True, text=True).stdout
        fpr = next(line.split(":")[9] for line in listing.splitlines()
                   if line.startswith("fpr:"))
        public = tmp_path / "signer.gpg"
        subprocess.run(["gpg", "--batch", "--export", "--output", str(public), fpr], env=env,
                       check=True, capture_output=True)
        yield Gpg(home, fpr, public)
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False,
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _pull(reg: Registry, ref: str, policy: Path, registries_d: Path, dest: Path
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", "--policy", str(policy), "--registries.d", str(registries_d), "copy",
         "--src-creds", f"{USER}:{PASSWORD}", "--src-cert-dir", str(reg.cert_dir),
         f"docker://{ref}", f"dir:{dest}"], capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_a_signed_push_passes_a_policy_that_refuses_an_unsigned_image(
        setup: Setup, gpg: Gpg, tmp_path: Path) -> None:
    lookaside = tmp_path / "signatures"
    registries_d = tmp_path / "registries.d"
    registries_d.mkdir()
    (registries_d / "test.yaml").write_text(
        f"docker:\n  {setup.reg.host}:\n    lookaside: file://{lookaside}\n"
        f"    lookaside-staging: file://{lookaside}\n")
    passphrase = tmp_path / "private" / "passphrase"
    passphrase.parent.mkdir(mode=0o700)
    passphrase.write_text(PASSPHRASE + "\n")
    signed, unsigned = f"{setup.reg.host}/team/signed:1", f"{setup.reg.host}/team/unsigned:1"

    wrong = tmp_path / "private" / "wrong"
    wrong.write_text("not-the-passphrase\n")
    failed = envnix("push", "-p", str(setup.a.context), signed, *setup.auth(),
                    "--sign-by", gpg.fingerprint, "--sign-passphrase-file", str(wrong),
                    "--registries.d", str(registries_d), env=gpg.env, check=False)
    assert failed.returncode == 7 and "nothing was pushed" in failed.stderr, failed.stderr
    assert setup.reg.manifest_digest("team/signed", "1") is None  # no unsigned tag left
    assert "not-the-passphrase" not in failed.stderr + failed.stdout

    pushed = envnix("push", "-p", str(setup.a.context), signed, *setup.auth(), "--json",
                    "--sign-by", gpg.fingerprint, "--sign-passphrase-file", str(passphrase),
                    "--registries.d", str(registries_d), env=gpg.env)
    assert json.loads(pushed.stdout)["signed"] is True
    assert PASSPHRASE not in pushed.stdout + pushed.stderr
    assert list(lookaside.rglob("signature-1")), "no signature in the lookaside store"
    envnix("push", "-p", str(setup.b.context), unsigned, *setup.auth())

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {f"{setup.reg.host}/team": [
            {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(gpg.public_key)}]}}}))
    ok = _pull(setup.reg, signed, policy, registries_d, tmp_path / "pulled")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "pulled" / "signature-1").is_file()  # the signature came along
    refused = _pull(setup.reg, unsigned, policy, registries_d, tmp_path / "refused")
    assert refused.returncode != 0
    assert "a signature was required" in refused.stderr.lower(), refused.stderr


@pytest.mark.slow
def test_sigstore_key_flags_reach_skopeo_and_secrets_stay_out(setup: Setup,
                                                              tmp_path: Path) -> None:
    """Debian's skopeo 1.9 takes the flag but is built with sigstore disabled, and nothing
    here makes a sigstore key: the push must fail as a signing error that names neither the
    passphrase nor the password (skopeo signs after writing the manifest, so the tag is
    there: the README says so)."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    key, passphrase = private / "cosign.key", private / "passphrase"
    key.write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n"
                   "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    passphrase.write_text("sigstore-passphrase-77\n")
    proc = envnix("push", "-p", str(setup.a.context), f"{setup.reg.host}/team/sigstore:1",
                  *setup.auth(), "--sign-by-sigstore-private-key", str(key),
                  "--sign-passphrase-file", str(passphrase), check=False)
    assert proc.returncode == 7 and "signing" in proc.stderr, proc.stderr
    assert "sigstore-passphrase-77" not in proc.stderr + proc.stdout
    assert PASSWORD not in proc.stderr + proc.stdout
    both = envnix("push", "-p", str(setup.a.context), f"{setup.reg.host}/team/sigstore:1",
                  "--sign-by", "ABCD", "--sign-by-sigstore-private-key", str(key), check=False)
    assert both.returncode == 2 and "not both" in both.stderr


@pytest.mark.slow
def test_the_quickstart_pushed_as_ci_pushes_it_verifies(setup: Setup, tmp_path: Path) -> None:
    """Issue 18's yardstick: the committed quickstart, built --locked and pushed as the CI
    recipe pushes it, then `envnix verify` from a fresh checkout of the same files."""
    examples = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
    expected = json.loads((examples / "expected-digests.json").read_text())
    ci = tmp_path / "ci" / "quickstart"
    shutil.copytree(examples, ci, ignore=shutil.ignore_patterns(".envnix"))
    built = build(ci, "--locked", "--no-load", "-t", "quickstart:dev")
    assert built.manifest == expected["manifest"]
    dest = f"{setup.reg.host}/team/quickstart:ci"
    envnix("push", "-p", str(ci), dest, *setup.auth())
    reviewer = tmp_path / "reviewer" / "quickstart"
    shutil.copytree(examples, reviewer, ignore=shutil.ignore_patterns(".envnix"))
    proc = envnix("verify", str(reviewer), dest, *setup.auth())
    assert proc.stdout.splitlines() == [f"verified {expected['manifest']}"], proc.stdout

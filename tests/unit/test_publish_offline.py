"""The offline tests of tests/integration/test_publish.py (no network, no program started).

Publishing, all real: skopeo pushes to Debian's docker-registry on 127.0.0.1, podman pulls and
runs what came back, umoci validates it, podman/docker load the archive.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from envnix.core.errors import UsageError
from envnix.oci.output import parse_output
from envnix.oci.registry import (
    RegistryOptions,
    SignOptions,
    is_registry_ref,
    parse_destination,
    private_authfile,
    scrub,
)

USER, PASSWORD = "alice", "pw-Zq7-SECRET"


# --------------------------------------------------------------------------------------------
# parsing (no network)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "message"), [
    (["type=oci,dest=a.tar", "type=docker,dest=b.tar"], "only one output type is supported"),
    (["dest=a.tar"], "--output requires type=<type>"),
    (["type=oci,output=a.tar"], "output=a.tar not supported for --output, you meant dest=a.tar?"),
    (["type=local"], "output directory is required for local exporter"),
    (["type=image,dest=x"], "output x is not supported by image exporter"),
    (["type=oci,foo"], "invalid value foo"),
    (["type=image,push=maybe"], "invalid value push=maybe: expected true or false"),
    (["type=image,compression=zstd"], "compression=zstd"),
    (["type=nope"], "unknown output type 'nope'"),
])
def test_output_errors_use_envds_words(values: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_output(values, stdout_isatty=lambda: False)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("kind", ["oci", "docker", "tar"])
def test_output_refuses_to_write_an_archive_to_a_terminal(kind: str) -> None:
    for value in (f"type={kind}", f"type={kind},dest=-"):
        with pytest.raises(UsageError) as info:
            parse_output([value], stdout_isatty=lambda: True)
        assert str(info.value) == (
            f"output file is required for {kind} exporter. refusing to write to console")
    assert parse_output([f"type={kind},dest=-"], stdout_isatty=lambda: False).to_stdout


def test_output_image_push_names_and_tags(tmp_path: Path) -> None:
    spec = parse_output(['type=image,"name=r.example:5000/a:1,r.example:5000/b:2",push=true,'
                         "registry.insecure=true"])
    assert spec is not None and spec.push and spec.insecure
    assert spec.names == ("r.example:5000/a:1", "r.example:5000/b:2")
    assert spec.build_tag(None, "ctx:dev") == "r.example:5000/a:1"
    assert spec.build_tag("r.example:5000/c:3", "ctx:dev") == "r.example:5000/c:3"
    registry = parse_output(["type=registry,name=r.example/x:1"])
    assert registry is not None and registry.push and registry.type == "image"
    with pytest.raises(UsageError, match="does not name a registry"):
        parse_output(["type=image,push=true"]).build_tag(None, "ctx:dev")  # type: ignore[union-attr]
    out = parse_output([f"type=oci,dest={tmp_path / 'x.tar'},name=a:1"])
    assert out is not None and not out.to_stdout and out.build_tag(None, "ctx:dev") == "a:1"
    with pytest.raises(UsageError, match="differs from -t"):
        out.build_tag("b:2", "ctx:dev")
    with pytest.raises(UsageError, match="destination file is a directory"):
        parse_output([f"type=docker,dest={tmp_path}"])
    assert parse_output([]) is None


def test_destinations() -> None:
    d = parse_destination("docker://127.0.0.1:5000/team/app", "dev")
    assert (d.domain, d.path, d.tag, str(d)) == ("127.0.0.1:5000", "team/app", "dev",
                                                "127.0.0.1:5000/team/app:dev")
    assert d.transport == "docker://127.0.0.1:5000/team/app:dev"
    assert str(parse_destination("localhost/x:1", "dev")) == "localhost/x:1"
    assert str(parse_destination("registry.example.com/t/q:1.0", "dev")) == \
        "registry.example.com/t/q:1.0"
    for bad in ("quickstart:dev", "team/app:1", "r.example/A:1", "r.example/a@sha256:00"):
        assert not is_registry_ref(bad) or "@" in bad
        with pytest.raises(UsageError):
            parse_destination(bad, "dev")


def test_credentials_go_to_a_private_file_and_are_scrubbed() -> None:
    opts = RegistryOptions(creds=f"{USER}:{PASSWORD}")
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    text = f"x {PASSWORD} y {token} z {USER}:{PASSWORD}"
    assert PASSWORD not in scrub(text, opts.secrets()) and token not in scrub(text, opts.secrets())
    with private_authfile(opts, ["h.example:5000"]) as path:
        assert path is not None
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent.stat().st_mode & 0o777 == 0o700
        assert json.loads(path.read_text()) == {"auths": {"h.example:5000": {"auth": token}}}
    assert not path.exists() and not path.parent.exists()
    with pytest.raises(UsageError):
        RegistryOptions(creds="nopassword")


def test_sign_options_pass_paths_never_the_passphrase(tmp_path: Path) -> None:
    """skopeo gets the passphrase file's path only; its text is among the secrets scrubbed."""
    passphrase, key = tmp_path / "passphrase", tmp_path / "cosign.key"
    passphrase.write_text("horse-battery-9\n")
    key.write_text("not read by envnix")
    gpg = SignOptions(sign_by="0A1B2C3D", passphrase_file=passphrase, registries_d=tmp_path)
    args = gpg.global_args() + gpg.copy_args()
    assert args == [f"--registries.d={tmp_path}", "--sign-by=0A1B2C3D",
                    f"--sign-passphrase-file={passphrase}"]
    assert not any("horse-battery-9" in a for a in args)
    assert scrub("gpg: bad passphrase horse-battery-9", gpg.secrets()) == \
        "gpg: bad passphrase ***"
    sigstore = SignOptions(sigstore_key=key)
    assert sigstore.signing and sigstore.copy_args() == [
        f"--sign-by-sigstore-private-key={key}"]
    assert not SignOptions().signing and SignOptions().copy_args() == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sign_by": "ABCD", "sigstore_key": "KEY"}, "not both"),
    ({"passphrase_file": "PASS"}, "needs --sign-by"),
    ({"sign_by": "--evil"}, "not a key fingerprint"),
    ({"sigstore_key": "missing"}, "is not a file"),
    ({"registries_d": "missing"}, "is not a directory"),
])
def test_sign_options_refuse(tmp_path: Path, kwargs: dict[str, str], message: str) -> None:
    (tmp_path / "KEY").write_text("k")
    (tmp_path / "PASS").write_text("p")
    paths = {k: (v if k == "sign_by" else tmp_path / v) for k, v in kwargs.items()}
    with pytest.raises(UsageError, match=message):
        SignOptions(**paths)  # type: ignore[arg-type]

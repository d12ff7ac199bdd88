"""Publishing, all real: skopeo pushes to Debian's docker-registry on 127.0.0.1, podman pulls and
runs what came back, umoci validates it, podman/docker load the archive.

One small image (Debian 12 + python3.11, no pip packages; ~25 MB, 3 layers) is built once per
session with envnix itself; tests that need another build copy its context (with its lock).
What a push uploaded is read from the registry's access log (a finished blob upload is a
`PUT .../blobs/uploads/...?digest=` answered 201), not from envnix's own progress lines.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from _podman import podman
from _registry import Registry, have_registry_tools
from conftest import Built, build, envnix

from envnix.core.errors import UsageError
from envnix.oci.output import parse_output
from envnix.oci.registry import (
    RegistryOptions,
    is_registry_ref,
    parse_destination,
    private_authfile,
    scrub,
)

SMALL_ENVD = 'def build():\n    base(os="debian12", language="python3.11")\n'
USER, PASSWORD = "alice", "pw-Zq7-SECRET"


# --------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The small image, locked and built once (envnix build, as a user runs it)."""
    context = tmp_path_factory.mktemp("pub") / "small"
    context.mkdir()
    (context / "build.envd").write_text(SMALL_ENVD)
    return build(context, "-t", "small:dev")


def clone(small: Built, dest: Path) -> Path:
    """A copy of the small context with its lock (so a rebuild does not re-resolve)."""
    target = dest / "small"
    shutil.copytree(small.context, target, ignore=shutil.ignore_patterns(".envnix"))
    return target


@pytest.fixture
def registries(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Start registries on free loopback ports; all are stopped after the test."""
    if not have_registry_tools():
        pytest.fail("docker-registry, htpasswd or openssl missing: run ./scripts/setup")
    started: list[Registry] = []

    def make(**kwargs: object) -> Registry:
        reg = Registry(tmp_path / f"reg{len(started)}", **kwargs).start()  # type: ignore[arg-type]
        started.append(reg)
        return reg

    yield make
    for reg in started:
        reg.stop()


def _envnix_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "envnix", *args]


def push(context: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return envnix("push", "-p", str(context), *args, env=env, check=False)


def blob_set(built: Built) -> set[str]:
    """Layer and config digests of a built image."""
    layout = built.layout
    manifest = json.loads((layout / "blobs/sha256" / built.manifest[7:]).read_text())
    return {layer["digest"] for layer in manifest["layers"]} | {manifest["config"]["digest"]}


def assert_one_line_failure(proc: subprocess.CompletedProcess[str], host: str, *needles: str,
                            code: int = 7) -> str:
    """Non-zero exit, exactly one `envnix:` line naming the registry, no credentials."""
    assert proc.returncode == code, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("envnix:")]
    assert len(errors) == 1, proc.stderr
    assert host in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and "level=fatal" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    for secret in (PASSWORD, "wrong-" + PASSWORD, base64.b64encode(
            f"{USER}:{PASSWORD}".encode()).decode()):
        assert secret not in proc.stdout + proc.stderr
    return errors[0]


def skopeo_raw_digest(ref: str, *flags: str) -> str:
    raw = subprocess.run(["skopeo", "inspect", "--raw", *flags, ref], check=True,
                         capture_output=True).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


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


# --------------------------------------------------------------------------------------------
# push: round trip, re-push, one-package change
# --------------------------------------------------------------------------------------------


@pytest.mark.network
@pytest.mark.slow
def test_push_pull_run_and_validate(small: Built, registries, podman_environ: dict,  # type: ignore[no-untyped-def]
                                    tmp_path: Path) -> None:
    reg = registries()
    proc = push(small.context, f"{reg.host}/team/small:1", "--tls-verify=false")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{reg.host}/team/small:1@{small.manifest}\n"
    # The registry serves exactly the built manifest, and received every blob once.
    assert reg.manifest_digest("team/small", "1") == small.manifest
    assert skopeo_raw_digest(f"docker://{reg.host}/team/small:1", "--tls-verify=false") == \
        small.manifest
    assert sorted(reg.blob_uploads()) == sorted(blob_set(small))
    assert proc.stderr.count(" uploaded\n") == len(blob_set(small))
    # Strict validation of what comes back: copy to a layout, umoci checks digests + diffIDs.
    back = tmp_path / "back"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                    f"docker://{reg.host}/team/small:1", f"oci:{back}:1"],
                   check=True, capture_output=True)
    index = json.loads((back / "index.json").read_text())
    assert index["manifests"][0]["digest"] == small.manifest
    subprocess.run(["umoci", "unpack", "--image", f"{back}:1", str(tmp_path / "bundle")],
                   check=True, capture_output=True)
    assert (tmp_path / "bundle/rootfs/usr/bin/python3.11").is_file()
    # podman pulls it from the registry and runs it.
    out = podman("run", "--rm", "--tls-verify=false", f"{reg.host}/team/small:1", "python3",
                 "-c", "import sys; print(sys.version_info[:2])", env=podman_environ)
    assert out.stdout == "(3, 11)\n"


@pytest.mark.network
def test_repush_and_multi_tag_upload_no_blobs(small: Built, registries) -> None:  # type: ignore[no-untyped-def]
    reg = registries()
    first = push(small.context, f"{reg.host}/team/small:1", "--tls-verify=false")
    assert first.returncode == 0, first.stderr
    mark = reg.mark()
    again = push(small.context, f"{reg.host}/team/small:1", f"docker://{reg.host}/team/small:2",
                 f"{reg.host}/team/small", "--tls-verify=false")
    assert again.returncode == 0, again.stderr
    assert reg.blob_uploads(mark) == []
    assert reg.requests("PATCH", mark) == [] and reg.requests("POST", mark) == []
    assert again.stdout.splitlines() == [
        f"{reg.host}/team/small:{t}@{small.manifest}" for t in ("1", "2", "dev")]
    for tag in ("1", "2", "dev"):
        assert reg.manifest_digest("team/small", tag) == small.manifest
    assert " uploaded\n" not in again.stderr
    assert again.stderr.count("already in the registry\n") == 3 * len(blob_set(small))
    layers = len(blob_set(small)) - 1  # minus the config blob
    assert f"0 of {layers} layer(s) uploaded (0 B)" in again.stderr


@pytest.mark.network
@pytest.mark.slow
def test_one_package_change_uploads_only_the_changed_layers(small: Built, registries,  # type: ignore[no-untyped-def]
                                                            tmp_path: Path) -> None:
    reg = registries()
    assert push(small.context, f"{reg.host}/team/app:1", "--tls-verify=false").returncode == 0
    context = clone(small, tmp_path)
    (context / "build.envd").write_text(
        SMALL_ENVD + '    install.python_packages(name=["six"])\n')
    changed = build(context, "-t", "small:dev")
    assert changed.manifest != small.manifest
    new_blobs = blob_set(changed) - blob_set(small)
    assert 0 < len(new_blobs) < len(blob_set(changed))  # some layers are shared
    mark = reg.mark()
    proc = push(context, f"{reg.host}/team/app:2", "--tls-verify=false")
    assert proc.returncode == 0, proc.stderr
    assert sorted(reg.blob_uploads(mark)) == sorted(new_blobs)
    assert proc.stderr.count(" uploaded\n") == len(new_blobs)
    assert reg.manifest_digest("team/app", "2") == changed.manifest
    assert reg.manifest_digest("team/app", "1") == small.manifest


# --------------------------------------------------------------------------------------------
# credentials and TLS
# --------------------------------------------------------------------------------------------


@pytest.mark.network
def test_tls_and_creds_push_without_leaking(small: Built, registries) -> None:  # type: ignore[no-untyped-def]
    reg = registries(tls=True, auth=(USER, PASSWORD))
    proc = push(small.context, f"{reg.host}/team/s:1", f"--creds={USER}:{PASSWORD}",
                f"--cert-dir={reg.cert_dir}", "-v")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{reg.host}/team/s:1@{small.manifest}\n"
    assert PASSWORD not in proc.stdout + proc.stderr
    assert reg.authenticated_users() == {USER}
    # Credentials from the environment (the CI way), and nowhere in the context afterwards.
    env = dict(os.environ, ENVNIX_REGISTRY_CREDS=f"{USER}:{PASSWORD}",
               ENVNIX_REGISTRY_CERT_DIR=str(reg.cert_dir))
    proc = push(small.context, f"{reg.host}/team/s:2", env=env)
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    for path in small.context.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert PASSWORD.encode() not in path.read_bytes(), path


@pytest.mark.network
def test_authfiles_the_user_already_has(small: Built, registries, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--authfile, REGISTRY_AUTH_FILE, a podman login (XDG_RUNTIME_DIR) and a docker config."""
    reg = registries(tls=True, auth=(USER, PASSWORD))
    auth = {"auths": {reg.host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode())
                                 .decode()}}}
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    home.mkdir()
    xdg.mkdir(mode=0o700)
    base = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(xdg))
    base.pop("REGISTRY_AUTH_FILE", None)
    cert = f"--cert-dir={reg.cert_dir}"

    no_login = push(small.context, f"{reg.host}/t/a:1", cert, env=base)
    assert_one_line_failure(no_login, reg.host, "requires credentials", "--creds/--authfile")

    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps(auth))
    assert push(small.context, f"{reg.host}/t/a:1", cert, f"--authfile={authfile}",
                env=base).returncode == 0
    assert push(small.context, f"{reg.host}/t/a:2", cert,
                env=dict(base, REGISTRY_AUTH_FILE=str(authfile))).returncode == 0

    login = subprocess.run(["podman", "login", "--cert-dir", str(reg.cert_dir), "-u", USER,
                            "--password-stdin", reg.host], input=PASSWORD, env=base,
                           capture_output=True, text=True, check=False)
    assert login.returncode == 0, login.stderr
    assert (xdg / "containers/auth.json").exists()  # podman's (and skopeo's) login file
    assert push(small.context, f"{reg.host}/t/a:3", cert, env=base).returncode == 0
    (xdg / "containers/auth.json").unlink()

    (home / ".docker").mkdir()
    (home / ".docker/config.json").write_text(json.dumps(auth))
    proc = push(small.context, f"{reg.host}/t/a:4", cert, env=base)
    assert proc.returncode == 0, proc.stderr
    assert reg.manifest_digest("t/a", "4") == small.manifest


# --------------------------------------------------------------------------------------------
# faults: one readable line, non-zero exit, never the password
# --------------------------------------------------------------------------------------------


@pytest.mark.network
def test_fault_wrong_password(small: Built, registries) -> None:  # type: ignore[no-untyped-def]
    reg = registries(tls=True, auth=(USER, PASSWORD))
    proc = push(small.context, f"{reg.host}/t/x:1", f"--creds={USER}:wrong-{PASSWORD}",
                f"--cert-dir={reg.cert_dir}")
    line = assert_one_line_failure(proc, reg.host, "check --creds/--authfile")
    assert "rejected the credentials" in line


@pytest.mark.network
def test_fault_unknown_ca(small: Built, registries) -> None:  # type: ignore[no-untyped-def]
    reg = registries(tls=True, auth=(USER, PASSWORD))
    proc = push(small.context, f"{reg.host}/t/x:1", f"--creds={USER}:{PASSWORD}")
    line = assert_one_line_failure(proc, reg.host, "--cert-dir", "--tls-verify=false")
    assert "unknown authority" in line


@pytest.mark.network
def test_fault_plain_http_without_tls_verify_false(small: Built, registries) -> None:  # type: ignore[no-untyped-def]
    reg = registries()
    proc = push(small.context, f"{reg.host}/t/x:1")
    line = assert_one_line_failure(proc, reg.host, "--tls-verify=false")
    assert "plain HTTP" in line
    assert reg.manifest_digest("t/x", "1") is None


@pytest.mark.network
def test_fault_registry_not_listening(small: Built, registries) -> None:  # type: ignore[no-untyped-def]
    reg = registries()
    host = reg.host
    reg.stop()
    proc = push(small.context, f"{host}/t/x:1", "--tls-verify=false")
    line = assert_one_line_failure(proc, host)
    assert "not listening" in line


@pytest.mark.network
def test_fault_registry_killed_mid_push_then_rerun(small: Built, registries) -> None:  # type: ignore[no-untyped-def]
    reg = registries()
    dest = f"{reg.host}/t/crash:1"
    mark = reg.mark()
    proc = subprocess.Popen(
        _envnix_cmd("push", "-p", str(small.context), dest, "--tls-verify=false"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not reg.requests("POST", mark, "/blobs/uploads/"):  # first upload started
        assert proc.poll() is None and time.monotonic() < deadline, "push ended early"
        time.sleep(0.002)
    reg.pause()                   # freeze mid-upload: the manifest PUT cannot have happened
    time.sleep(0.3)
    reg.kill()
    stdout, stderr = proc.communicate(timeout=120)
    failed = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert_one_line_failure(failed, reg.host, "re-run")
    assert not reg.requests("PUT", mark, "/manifests/")
    reg.start()                   # same port, same data directory
    assert reg.manifest("t/crash", "1")[0] == 404  # no tag, so never a partial image
    rerun = push(small.context, dest, "--tls-verify=false")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout == f"{dest}@{small.manifest}\n"
    assert skopeo_raw_digest(f"docker://{dest}", "--tls-verify=false") == small.manifest


@pytest.mark.network
def test_fault_registry_disk_full(small: Built, registries, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tiny)],
                           capture_output=True, text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a 1 MB tmpfs to fill up: {mount.stderr.strip()}")
    reg: Registry | None = None
    try:
        reg = registries(data_dir=tiny)
        proc = push(small.context, f"{reg.host}/t/full:1", "--tls-verify=false")
        # skopeo sees either the registry's 500 or, when the registry answers while the body
        # is still streaming, a reset connection; envnix then checks the registry is still up.
        line = assert_one_line_failure(proc, reg.host, "disk space")
        assert "HTTP 500" in line or "aborted a blob upload" in line
        assert "no space left on device" in reg.log_text()
        assert reg.manifest("t/full", "1")[0] == 404
    finally:
        if reg is not None:
            reg.stop()  # it holds files on the mount
        subprocess.run(["umount", str(tiny)], check=False)


def test_push_before_any_build(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(SMALL_ENVD)
    proc = envnix("push", "-p", str(tmp_path), "127.0.0.1:1/x:1", check=False)
    assert proc.returncode == 2
    assert "run envnix build first" in proc.stderr


# --------------------------------------------------------------------------------------------
# build --output
# --------------------------------------------------------------------------------------------


@pytest.mark.network
@pytest.mark.slow
def test_build_output_image_push(small: Built, registries, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    reg = registries()
    context = clone(small, tmp_path)
    proc = envnix("build", str(context), "-t", f"{reg.host}/team/out:1",
                  "--output", "type=image,push=true,registry.insecure=true")
    assert f"pushed:   {reg.host}/team/out:1@{small.manifest}\n" in proc.stdout
    proc = envnix("build", str(context), "-o",
                  f'type=image,"name={reg.host}/a/x:1,{reg.host}/b/y:2",push=true,'
                  "registry.insecure=true")
    assert reg.manifest_digest("a/x", "1") == reg.manifest_digest("b/y", "2") == small.manifest


@pytest.mark.network
@pytest.mark.slow
def test_build_output_archives(small: Built, tmp_path: Path) -> None:
    context = clone(small, tmp_path)
    oci_tar, docker_tar = tmp_path / "oci.tar", tmp_path / "docker.tar"
    envnix("build", str(context), "--output", f"type=oci,dest={oci_tar}")
    assert skopeo_raw_digest(f"oci-archive:{oci_tar}:dev") == small.manifest
    # dest=- writes the tar to stdout (a file here), the build summary moves to stderr.
    with open(docker_tar, "wb") as out:
        proc = subprocess.run(_envnix_cmd("build", str(context), "-o", "type=docker,dest=-"),
                              stdout=out, stderr=subprocess.PIPE, text=False, check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"manifest: " + small.manifest.encode() in proc.stderr
    with tarfile.open(docker_tar) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == ["small:dev"]
    inspect = subprocess.run(["skopeo", "inspect", "--config", "--raw",
                              f"docker-archive:{docker_tar}"], capture_output=True, check=True)
    assert "sha256:" + hashlib.sha256(inspect.stdout).hexdigest() == small.config
    # type=tar: the flattened root filesystem.
    rootfs = tmp_path / "rootfs.tar"
    envnix("build", str(context), "-o", f"type=tar,dest={rootfs}")
    with tarfile.open(rootfs) as tf:
        names = tf.getnames()
        assert len(names) == len(set(names))
        assert tf.getmember("usr/bin/python3.11").isreg()
        assert tf.getmember("bin").issym()


@pytest.mark.network
def test_build_output_refuses_a_terminal(small: Built) -> None:
    """envd's exact refusal when the archive would go to a terminal (stdout is a pty here)."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(_envnix_cmd("build", str(small.context), "-o", "type=oci"),
                              stdout=terminal, stderr=subprocess.PIPE, text=True, check=False,
                              timeout=120)
    finally:
        os.close(terminal)
        os.close(controller)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        "envnix: output file is required for oci exporter. refusing to write to console")


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------


@pytest.mark.network
@pytest.mark.slow
def test_load_into_podman(small: Built, podman_environ: dict) -> None:
    env = dict(podman_environ, DOCKER_HOST="unix:///nonexistent/docker.sock")
    proc = envnix("load", str(small.context), env=env)
    assert proc.stdout == "podman: localhost/small:dev\n"
    inspect = podman("image", "inspect", "--format", "{{.ID}} {{.Digest}}", "small:dev",
                     env=podman_environ)
    assert inspect.stdout.split() == [small.config[7:], small.manifest]
    out = podman("run", "--rm", "small:dev", "python3", "-c", "print(6 * 7)", env=podman_environ)
    assert out.stdout == "42\n"


@pytest.mark.network
@pytest.mark.slow
def test_load_into_docker(small: Built, podman_environ: dict, tmp_path: Path) -> None:
    """The docker CLI against a Docker-compatible API (podman's service: no dockerd here)."""
    if not shutil.which("docker"):
        pytest.skip("the docker CLI is not installed")
    sock = tmp_path / "docker.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                               env=podman_environ, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        env = dict(podman_environ, DOCKER_HOST=f"unix://{sock}")
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "info"], env=env, capture_output=True,
                             check=False).returncode != 0:
            assert time.monotonic() < deadline, "podman's API socket did not come up"
            time.sleep(0.2)
        proc = envnix("load", str(small.context), env=env)  # auto: a daemon answers -> docker
        assert proc.stdout.startswith("docker: "), proc.stderr
        run = subprocess.run(["docker", "run", "--rm", "--network=none", "small:dev", "python3",
                              "-c", "print(6 * 7)"], env=env, capture_output=True, text=True,
                             check=False)
        assert run.stdout == "42\n", run.stderr
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(30)


@pytest.mark.network
def test_load_without_an_engine(small: Built, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nix-build").symlink_to(shutil.which("nix-build") or "/usr/bin/nix-build")
    proc = envnix("load", str(small.context), env=dict(os.environ, PATH=str(bin_dir)),
                  check=False)
    assert proc.returncode == 127
    assert "neither podman nor docker" in proc.stderr
    if shutil.which("docker"):
        (bin_dir / "docker").symlink_to(shutil.which("docker"))  # type: ignore[arg-type]
        env = dict(os.environ, PATH=str(bin_dir), DOCKER_HOST="unix:///nonexistent/d.sock")
        proc = envnix("load", str(small.context), env=env, check=False)
        assert proc.returncode == 7
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("envnix:")]
        assert len(errors) == 1 and "docker has no daemon" in errors[0]

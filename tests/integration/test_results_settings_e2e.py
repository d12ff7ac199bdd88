"""Results for tools and settings, for real: a tiny image built by Nix with --iidfile,
--metadata-file, -q and --json; push --json and a config file's registry settings against a
loopback registry; click's completion scripts, run by a real bash."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _cli import envnix
from _podman import podman
from _registry import Registry, have_registry_tools
from _tiny import dead_port, tiny_context


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny context (seconds, offline), built once with both result files."""
    context = tiny_context(tmp_path_factory.mktemp("results"))
    out = context.parent
    envnix("build", str(context), "--locked", "-t", "tiny:ci", "--iidfile", str(out / "iid"),
           "--metadata-file", str(out / "meta.json"))
    return context


def metadata(tiny: Path) -> dict[str, object]:
    return json.loads((tiny.parent / "meta.json").read_text())


def test_iidfile_is_the_config_digest_as_docker_writes_it(tiny: Path) -> None:
    meta = metadata(tiny)
    iid = (tiny.parent / "iid").read_text()
    assert iid == meta["containerimage.config.digest"]       # no newline, as docker's
    layout = Path(str(meta["envnix.oci.layout"]).removeprefix("oci:"))
    config = layout / "blobs" / "sha256" / iid.removeprefix("sha256:")
    assert "sha256:" + hashlib.sha256(config.read_bytes()).hexdigest() == iid


def test_metadata_has_buildx_keys_and_envnix_own(tiny: Path) -> None:
    meta = metadata(tiny)
    layout = Path(str(meta["envnix.oci.layout"]).removeprefix("oci:"))
    index = json.loads((layout / "index.json").read_text())
    descriptor = index["manifests"][0]
    assert meta["containerimage.digest"] == descriptor["digest"]
    assert meta["containerimage.descriptor"] == {k: descriptor[k]
                                                 for k in ("mediaType", "digest", "size")}
    assert meta["image.name"] == "tiny:ci"
    assert meta["envnix.store.path"] == os.readlink(tiny / ".envnix" / "result")
    lock_bytes = (tiny / "envnix.lock").read_bytes()
    assert meta["envnix.lock.digest"] == "sha256:" + hashlib.sha256(lock_bytes).hexdigest()


def test_quiet_prints_only_the_image_id(tiny: Path) -> None:
    proc = envnix("build", str(tiny), "--locked", "-t", "tiny:ci", "-q")
    assert proc.stdout == metadata(tiny)["containerimage.config.digest"] + "\n"
    assert "build:" not in proc.stderr  # progress is off


def test_json_is_the_metadata(tiny: Path) -> None:
    proc = envnix("build", str(tiny), "--locked", "-t", "tiny:ci", "--json")
    assert json.loads(proc.stdout) == metadata(tiny)
    assert "manifest:" in proc.stderr  # the summary moved to stderr
    check = envnix("lock", str(tiny), "--check", "--json")
    assert json.loads(check.stdout) == {"lock": str(tiny / "envnix.lock"), "up_to_date": True}


def test_a_failed_build_leaves_no_old_image_id(tiny: Path, tmp_path: Path) -> None:
    iid = tmp_path / "iid"
    iid.write_text("sha256:" + "0" * 64)
    envd = tiny / "build.envd"
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "build.envd").write_text(envd.read_text() + '    install.python_packages('
                                      'name=["six"])\n')
    (stale / "envnix.lock").write_bytes((tiny / "envnix.lock").read_bytes())
    proc = envnix("build", str(stale), "--locked", "--iidfile", str(iid), check=False)
    assert proc.returncode == 5, proc.stderr
    assert not iid.exists()
    missing = envnix("build", str(tiny), "--locked", "--iidfile", str(tmp_path / "no" / "iid"),
                     check=False)
    assert missing.returncode == 2 and "its directory does not exist" in missing.stderr


def test_push_json_and_tls_verify_from_the_user_config(tiny: Path, tmp_path: Path) -> None:
    if not have_registry_tools():
        pytest.fail("docker-registry, htpasswd or openssl missing: run ./scripts/setup")
    with Registry(tmp_path / "reg").start() as reg:
        env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
        env.pop("ENVNIX_REGISTRY_TLS_VERIFY", None)
        dest = f"{reg.host}/team/tiny:1"
        refused = envnix("push", "-p", str(tiny), dest, env=env, check=False)
        assert refused.returncode == 7 and "plain HTTP" in refused.stderr
        (tmp_path / "xdg" / "envnix").mkdir(parents=True)
        (tmp_path / "xdg" / "envnix" / "config.toml").write_text(
            "[registry]\ntls-verify = false\n")
        proc = envnix("push", "-p", str(tiny), dest, "--json", env=env)
        manifest = metadata(tiny)["containerimage.digest"]
        assert json.loads(proc.stdout) == {
            "image": "tiny:ci", "config": metadata(tiny)["containerimage.config.digest"],
            "pushed": [{"name": dest, "digest": manifest}], "signed": False}
        assert reg.manifest_digest("team/tiny", "1") == manifest
        # the same key in the context's envnix.toml is refused: a context does not choose trust
        (tiny / "envnix.toml").write_text("[registry]\ntls-verify = false\n")
        try:
            bad = envnix("push", "-p", str(tiny), dest, env=env, check=False)
        finally:
            (tiny / "envnix.toml").unlink()
        assert bad.returncode == 2
        assert f"{tiny / 'envnix.toml'}:2:1: registry.tls-verify is read only" in bad.stderr


def test_substituters_from_the_context_file_reach_nix(tiny: Path, tmp_path: Path) -> None:
    """nix.substituters in envnix.toml is --substituters: nix is handed it (this one answers
    nothing, so envnix leaves it out and says so); ENVNIX_SUBSTITUTERS beats the file."""
    port = dead_port()
    (tiny / "envnix.toml").write_text(f'[nix]\nsubstituters = ["http://127.0.0.1:{port}"]\n')
    try:
        proc = envnix("build", str(tiny), "--locked", "-t", "tiny:ci")
        env = {**os.environ, "ENVNIX_SUBSTITUTERS": ""}
        overridden = envnix("build", str(tiny), "--locked", "-t", "tiny:ci", env=env)
    finally:
        (tiny / "envnix.toml").unlink()
    assert f"substituter http://127.0.0.1:{port}/ does not answer" in proc.stderr \
        or f"substituter http://127.0.0.1:{port} does not answer" in proc.stderr, proc.stderr
    assert f"127.0.0.1:{port}" not in overridden.stderr


@pytest.mark.parametrize("shell, marker", [
    ("bash", "complete -o nosort -F _envnix_completion envnix"),
    ("zsh", "#compdef envnix"),
    ("fish", "complete --no-files --command envnix"),
])
def test_completion_script_for_each_shell(shell: str, marker: str) -> None:
    """`_ENVNIX_COMPLETE=<shell>_source envnix`, here under `python -m envnix` (whose program
    name click would otherwise take as `python -m envnix`)."""
    proc = envnix(env={**os.environ, "_ENVNIX_COMPLETE": f"{shell}_source"})
    assert marker in proc.stdout


def test_bash_completes_commands_and_choices(tmp_path: Path) -> None:
    """The bash script, sourced by a real bash, fills COMPREPLY as the shell would."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "envnix").write_text(f"#!/bin/sh\nexec {sys.executable} -m envnix \"$@\"\n")
    (bindir / "envnix").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}

    def complete(line: str) -> list[str]:
        script = ('eval "$(_ENVNIX_COMPLETE=bash_source envnix)"\n'
                  f"COMP_WORDS=({line}); COMP_CWORD={len(line.split()) - 1}\n"
                  "_envnix_completion envnix\n"  # bash passes the command name
                  'printf "%s\\n" "${COMPREPLY[@]}"\n')
        return subprocess.run(["bash", "--norc", "-c", script], env=env, capture_output=True,
                              text=True, check=True).stdout.split()

    assert complete("envnix bu") == ["build"]
    assert complete("envnix build --toolchain ''") == ["pinned", "host", "nixpkgs"]
    assert "--metadata-file" in complete("envnix build --me")


# --- load after build (the default; the suite itself runs with ENVNIX_LOAD=0) ---------------


def engine_env(podman_environ: dict[str, str]) -> dict[str, str]:
    """podman's private storage, no docker daemon, and the default (no ENVNIX_LOAD)."""
    env = dict(podman_environ, DOCKER_HOST="unix:///nonexistent/docker.sock")
    env.pop("ENVNIX_LOAD", None)
    return env


def layers(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return [layer["digest"] for layer in manifest["layers"]]


def test_build_loads_into_podman_reusing_its_layers(tiny: Path, tmp_path: Path,
                                                    podman_environ: dict[str, str]) -> None:
    env = engine_env(podman_environ)
    first = envnix("build", str(tiny), "--locked", "-t", "tiny:ci", "--metadata-file",
                   str(tmp_path / "meta.json"), env=env)
    assert "loaded:   podman localhost/tiny:ci\n" in first.stdout
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["envnix.loaded"] == {"engine": "podman", "names": ["localhost/tiny:ci"]}
    got = podman("image", "inspect", "--format", "{{.ID}}", "tiny:ci", env=podman_environ)
    assert "sha256:" + got.stdout.strip() == meta["containerimage.config.digest"]
    # One change to the config and one layer: podman is sent only what it lacks.
    other = tiny_context(tmp_path, "other", envd=(tiny / "build.envd").read_text()
                         + '    runtime.environ(env={"A": "1"})\n')
    second = envnix("build", str(other), "--locked", "-t", "tiny:other", env=env)
    old = layers(Path(meta["envnix.oci.layout"].removeprefix("oci:")))
    new = layers(Path(os.readlink(other / ".envnix" / "result")) / "oci")
    shared = [d for d in new if d in old]
    assert shared and len(shared) < len(new)
    assert second.stderr.count(" already in podman\n") == len(shared), second.stderr
    assert (f"{len(new) - len(shared)} of {len(new)} layer(s) stored, {len(shared)} already "
            "in podman") in second.stderr


def test_no_engine_skips_the_load_unless_asked(tiny: Path, tmp_path: Path) -> None:
    nix_dir = Path(subprocess.run(["sh", "-c", "command -v nix-build"], capture_output=True,
                                  text=True, check=True).stdout.strip()).parent
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in nix_dir.glob("nix*"):
        (bin_dir / tool.name).symlink_to(tool)
    env = {**os.environ, "PATH": str(bin_dir)}
    env.pop("ENVNIX_LOAD", None)
    proc = envnix("build", str(tiny), "--locked", "-t", "tiny:ci", env=env)
    assert "load: skipped, no container engine to load into" in proc.stderr
    assert "loaded:" not in proc.stdout
    asked = envnix("build", str(tiny), "--locked", "-t", "tiny:ci", "--load", env=env,
                   check=False)
    assert asked.returncode == 127, asked.stderr
    assert "neither podman nor docker" in asked.stderr
    off = envnix("build", str(tiny), "--locked", "-t", "tiny:ci", "--no-load",
                 env={**env, "ENVNIX_LOAD": "1"})  # the flag beats the variable
    assert "load:" not in off.stderr


def test_a_failed_default_load_is_a_warning(tiny: Path, tmp_path: Path,
                                           podman_environ: dict[str, str]) -> None:
    """The build succeeded: a load nobody asked for that fails does not fail it; --load does."""
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "nosuchdriver"\ngraphroot = "{tmp_path}/g"\n'
                    f'runroot = "{tmp_path}/r"\n')
    env = dict(engine_env(podman_environ), CONTAINERS_STORAGE_CONF=str(conf))
    proc = envnix("build", str(tiny), "--locked", "-t", "tiny:ci", env=env)
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("envnix: warning:")]
    assert len(warnings) == 1 and "loading it into podman failed" in warnings[0], proc.stderr
    asked = envnix("build", str(tiny), "--locked", "-t", "tiny:ci", "--load", env=env,
                   check=False)
    assert asked.returncode == 7, asked.stderr
    assert [ln for ln in asked.stderr.splitlines() if ln.startswith("envnix:")] == [
        ln for ln in asked.stderr.splitlines() if "loading into podman failed" in ln]


@pytest.mark.network
@pytest.mark.slow
def test_build_then_podman_run_with_nothing_in_between(tmp_path: Path,
                                                       podman_environ: dict[str, str]) -> None:
    """The issue's promise: envnix build, then podman run the tag (and lock --json first)."""
    context = tmp_path / "app"
    context.mkdir()
    (context / "build.envd").write_text('def build():\n    base(os="debian12", '
                                        'language="python3.11")\n')
    locked = json.loads(envnix("lock", str(context), "--json").stdout)
    lock_bytes = (context / "envnix.lock").read_bytes()
    assert locked["lock"] == str(context / "envnix.lock") and locked["changed"] is True
    assert locked["digest"] == "sha256:" + hashlib.sha256(lock_bytes).hexdigest()
    assert locked["debs"] > 0 and locked["wheels"] == locked["conda"] == 0
    envnix("build", str(context), "-t", "app:dev", env=engine_env(podman_environ))
    out = podman("run", "--rm", "app:dev", "python3", "-c", "print(6 * 7)", env=podman_environ)
    assert out.stdout == "42\n"

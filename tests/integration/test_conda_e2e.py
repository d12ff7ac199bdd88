"""conda end to end: a real channel (built by the fixture, served on loopback like a mirror)
named through config.conda_channel, env.yaml with a pip: section, locked with py-rattler,
installed by Nix without conda, and run under podman."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from _cli import Built, build, envnix
from _conda_channel import ChannelInfo, ChannelServer
from _podman import podman

from envnix.lock.conda import default_channel_alias

pytestmark = [pytest.mark.network, pytest.mark.slow]

PREFIX = "/opt/conda/envs/envd"



def write_context(root: Path, server: ChannelServer, *, env_extra: str = "") -> Path:
    context = root / "condademo"
    context.mkdir()
    mirror = server.url("mirror-a")
    # The seed's shape: a helper sets a multi-line condarc whose custom_channels point a named
    # channel at a mirror; env.yaml lists that channel and a pip: section.
    (context / "build.envd").write_text(f'''
def build():
    mirror_config()
    base(os="debian12", language="python3.11")
    install.apt_packages(name=["libexpat1"])
    install.conda_packages(name=["hellobin"], channel=["fixture"], env_file="env.yaml")

def mirror_config():
    config.conda_channel(channel="""
    channels:
      - fixture
    custom_channels:
      fixture: {mirror}
    """)
''')
    (context / "env.yaml").write_text(f'''name: demo
channels:
  - fixture
dependencies:
  - python=3.11
  - pyhello
  - pip:
    - six==1.17.0
{env_extra}prefix: C:\\ProgramData\\Anaconda3\\envs\\demo
''')
    return context


@pytest.fixture(scope="module")
def conda_image(channel: tuple[ChannelInfo, ChannelServer],
                tmp_path_factory: pytest.TempPathFactory) -> Built:
    _, server = channel
    context = write_context(tmp_path_factory.mktemp("conda"), server)
    return build(context, "-t", "condademo:dev")


def run(image: Built, env: dict, *cmd: str) -> str:
    return podman("run", "--rm", f"oci:{image.layout}", *cmd, env=env).stdout


def test_lock_records_conda_packages_with_hashes(conda_image: Built,
                                                 channel: tuple[ChannelInfo, ChannelServer]
                                                 ) -> None:
    info, server = channel
    lock = json.loads((conda_image.context / "envnix.lock").read_text())
    packages = {p["name"]: p for p in lock["conda"]["packages"]}
    assert {"python", "pyhello", "hellobin"} <= set(packages)
    for name in ("python", "pyhello", "hellobin"):
        entry = packages[name]
        built = next(b for b in info.packages if b.fn == entry["fn"])
        assert entry["sha256"] == built.sha256 and entry["size"] == built.size
        # No channel_alias: the configured mirror is the canonical URL itself.
        assert entry["url"].startswith(server.url("mirror-a") + "/")
    assert [w["name"] for w in lock["pip"]["wheels"]] == ["six"]
    assert lock["inputs"]["conda"]["glibc"] == "2.36"


def test_conda_python_entry_point_and_pip_wheel_run(conda_image: Built,
                                                    podman_environ: dict) -> None:
    out = run(conda_image, podman_environ, "python", "-c",
              "import sys, pyhello, six; print(sys.prefix, six.__version__)")
    assert out.split() == [PREFIX, "1.17.0"]
    out = run(conda_image, podman_environ, "pyhello")
    assert out.strip()
    # The image has no coreutils (only what was asked for): read files with its python.
    script = run(conda_image, podman_environ, "python", "-c",
                 f"print(open('{PREFIX}/bin/pyhello').readline())")
    assert script.strip() == f"#!{PREFIX}/bin/python3.11"


def test_binary_prefix_was_replaced(conda_image: Built, podman_environ: dict,
                                    channel: tuple[ChannelInfo, ChannelServer]) -> None:
    out = run(conda_image, podman_environ, "hellobin")
    assert PREFIX in out and channel[0].placeholder not in out
    text = run(conda_image, podman_environ, "python", "-c",
               f"print(open('{PREFIX}/share/hellobin/prefix.txt').read())")
    assert PREFIX in text and "placehold" not in text


def test_conda_meta_lists_packages_without_host_paths(conda_image: Built,
                                                      podman_environ: dict) -> None:
    listing = run(conda_image, podman_environ, "python", "-c",
                  f"import os; print(*sorted(os.listdir('{PREFIX}/conda-meta')))")
    names = {line.rsplit("-", 2)[0] for line in listing.split() if line.endswith(".json")}
    assert {"python", "pyhello", "hellobin"} <= names
    record = run(conda_image, podman_environ, "python", "-c",
                 "import glob; print(open(glob.glob("
                 f"'{PREFIX}/conda-meta/pyhello-*.json')[0]).read())")
    assert "/nix/store" not in record and json.loads(record)["name"] == "pyhello"


def test_env_path_as_envd_sets_it(conda_image: Built) -> None:
    layout = conda_image.layout
    config = json.loads((layout / "blobs/sha256" / conda_image.config[7:]).read_text())
    path = next(e for e in config["config"]["Env"] if e.startswith("PATH="))
    assert path.startswith(f"PATH={PREFIX}/bin:/opt/conda/bin:")


def test_unsatisfiable_spec_prints_solver_explanation(channel: tuple[ChannelInfo,
                                                                     ChannelServer],
                                                      tmp_path: Path) -> None:
    _, server = channel
    context = write_context(tmp_path, server)
    env_yaml = context / "env.yaml"
    env_yaml.write_text(env_yaml.read_text().replace("  - pyhello\n",
                                                     "  - pyhello\n  - needsnewglibc\n"))
    proc = envnix("lock", str(context), check=False)
    assert proc.returncode == 4, proc.stderr
    assert "needsnewglibc" in proc.stderr and "__glibc" in proc.stderr
    assert not (context / "envnix.lock").exists()


def test_unreachable_channel_names_channel_and_mirror(tmp_path: Path) -> None:
    from _conda_channel import dead_url

    context = tmp_path / "c"
    context.mkdir()
    dead = dead_url("mirror/fixture")
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        f'    install.conda_packages(name=["pyhello"], channel=["{dead}"])\n')
    proc = envnix("lock", str(context), check=False)
    assert proc.returncode == 8  # a network failure (envnix/errors.py)
    assert dead in proc.stderr and "Traceback" not in proc.stderr


def test_malformed_env_yaml_points_at_line(channel: tuple[ChannelInfo, ChannelServer],
                                           tmp_path: Path) -> None:
    _, server = channel
    context = write_context(tmp_path, server)
    (context / "env.yaml").write_text("channels:\n  - fixture\ndependencies: [python\n")
    proc = envnix("lock", str(context), check=False)
    assert proc.returncode != 0
    assert "env.yaml:4:1: invalid YAML: expected ',' or ']'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_umoci_accepts_conda_image(conda_image: Built, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{conda_image.layout}:dev", str(bundle)],
                   check=True, capture_output=True)
    assert (bundle / "rootfs" / PREFIX.lstrip("/") / "bin/python3.11").is_file()


def _local_project(root: Path, name: str, value: str) -> None:
    """A setuptools project whose module reports where it was imported from."""
    (root / name).mkdir(parents=True)
    (root / name / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "0.1"\n')
    (root / name / f"{name}.py").write_text(f"VALUE = {value!r}\n")


@pytest.fixture(scope="module")
def local_pip_image(channel: tuple[ChannelInfo, ChannelServer],
                    tmp_path_factory: pytest.TempPathFactory) -> Built:
    """env.yaml with variables and local pip paths (one editable), as research repos have."""
    _, server = channel
    root = tmp_path_factory.mktemp("localpip")
    context = write_context(root, server, env_extra=(
        "    - pip\n    - setuptools\n    - -e ./src/editpkg\n    - ./plainpkg\n"
        "variables:\n  MODEL_DIR: /models\n  GREETING: from-env-yaml\n"))
    _local_project(context / "src", "editpkg", "editable")
    _local_project(context, "plainpkg", "copied")
    manifest = context / "build.envd"
    manifest.write_text(manifest.read_text().replace(
        '    install.conda_packages(',
        '    runtime.environ(env={"GREETING": "from-build-envd"})\n'
        '    install.conda_packages('))
    return build(context, "-t", "localpip:dev")


def test_env_yaml_local_pip_paths_install_offline(local_pip_image: Built,
                                                  podman_environ: dict) -> None:
    workdir = f"/home/envd/{local_pip_image.context.name}"
    out = run(local_pip_image, podman_environ, "python", "-c",
              "import editpkg, plainpkg; print(editpkg.__file__, editpkg.VALUE, "
              "plainpkg.__file__, plainpkg.VALUE)")
    edit_file, edit_value, plain_file, plain_value = out.split()
    # Editable: imported from the copied sources under the workdir, where envd up mounts the
    # project; the plain install is a copy in site-packages.
    assert (edit_file, edit_value) == (f"{workdir}/src/editpkg/editpkg.py", "editable")
    assert plain_file.startswith(f"{PREFIX}/lib/python3.11/site-packages/")
    assert plain_value == "copied"


def test_env_yaml_variables_are_image_env(local_pip_image: Built) -> None:
    layout = local_pip_image.layout
    config = json.loads((layout / "blobs/sha256" / local_pip_image.config[7:]).read_text())
    env = config["config"]["Env"]
    assert "MODEL_DIR=/models" in env
    assert "GREETING=from-build-envd" in env  # build.envd's runtime.environ wins


def test_local_pip_path_without_pip_in_env_is_one_line(
        channel: tuple[ChannelInfo, ChannelServer], tmp_path: Path) -> None:
    _, server = channel
    context = write_context(tmp_path, server, env_extra="    - -e ./editpkg\n")
    _local_project(context, "editpkg", "x")
    proc = envnix("lock", str(context), check=False)
    assert proc.returncode == 4, proc.stderr
    assert "env.yaml: local pip path" in proc.stderr and "has none" in proc.stderr
    assert not (context / "envnix.lock").exists()


def test_local_pip_path_outside_context_is_refused(
        channel: tuple[ChannelInfo, ChannelServer], tmp_path: Path) -> None:
    _, server = channel
    _local_project(tmp_path, "outside", "x")
    context = write_context(tmp_path, server, env_extra="    - ../outside\n")
    proc = envnix("spec", str(context), check=False)
    assert proc.returncode == 3, proc.stderr
    assert "outside the build context" in proc.stderr and "Traceback" not in proc.stderr


def test_local_pip_image_rebuilds_bit_identical_in_separate_store(
        local_pip_image: Built, tmp_path: Path) -> None:
    """pip building the local projects inside run() is part of the image: a fresh store
    (conda installs, wheel installs and the pip run all redone; the content-addressed
    downloads are seeded into it) must give the same digests."""
    context = tmp_path / local_pip_image.context.name  # the name is part of the workdir
    shutil.copytree(local_pip_image.context, context, ignore=shutil.ignore_patterns(".envnix"))
    store = tmp_path / "store"
    try:
        again = build(context, "-t", "localpip:dev", "--locked", "--store", str(store))
        assert (again.config, again.manifest) == (local_pip_image.config,
                                                  local_pip_image.manifest)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(store)], check=False)


def test_a_file_naming_no_channel_takes_envds_conda_defaults(
        channel: tuple[ChannelInfo, ChannelServer], tmp_path: Path) -> None:
    """envd's files often name no conda channel: envd's conda then reads conda-forge
    (its .condarc's default_channels) under conda's channel alias. envnix takes the alias from
    py-rattler, so without settings the lock asks that host and, where it cannot be reached,
    says so naming it; ENVNIX_CONDA_CHANNEL_ALIAS (here a loopback server carrying the fixture
    as conda-forge) and ENVNIX_CONDA_DEFAULT_CHANNELS point it elsewhere."""
    info, server = channel
    context = tmp_path / "nochannel"
    context.mkdir()
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    install.conda_packages(name=["pyhello"])\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVNIX_CONDA_")}
    rattler_host = urllib.parse.urlsplit(default_channel_alias()).hostname
    assert rattler_host
    proc = envnix("lock", str(context), env=env, check=False)
    if proc.returncode != 0:  # conda's host is not reachable from this machine
        assert proc.returncode == 8 and not (context / "envnix.lock").exists(), proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("envnix:")]
        assert len(errors) == 1 and rattler_host in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr

    alias = ChannelServer({"alias/conda-forge": info.root})
    try:
        envnix("lock", str(context), "--upgrade",
               env={**env, "ENVNIX_CONDA_CHANNEL_ALIAS": alias.url("alias")})
    finally:
        alias.stop()
    lock = json.loads((context / "envnix.lock").read_text())
    assert {"python", "pyhello"} <= {p["name"] for p in lock["conda"]["packages"]}
    assert [c["url"] for c in lock["conda"]["channels"]] == [alias.url("alias/conda-forge")]

    defaults = server.url("mirror-a") + "/fixture"
    envnix("lock", str(context), "--upgrade",
           env={**env, "ENVNIX_CONDA_DEFAULT_CHANNELS": defaults})
    lock = json.loads((context / "envnix.lock").read_text())
    assert [c["url"] for c in lock["conda"]["channels"]] == [defaults]

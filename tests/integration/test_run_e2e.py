"""run(): commands executed hermetically inside the Nix build, their changes a layer.

The seed's case: a local package copied in with io.copy and installed by pip offline inside
run() (`pip install -e /detectron2`), with its build dependencies in the image. A `pip install`
of an index's package in run() is locked like install.python_packages (frontend/runsteps.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import build, envnix
from _podman import podman

pytestmark = [pytest.mark.network, pytest.mark.slow]


def make_context(root: Path, commands: list[str]) -> Path:
    context = root / "rundemo"
    (context / "mypkg").mkdir(parents=True)
    (context / "mypkg" / "setup.py").write_text(
        "from setuptools import setup\n"
        "setup(name='mypkg', version='0.1', py_modules=['mypkg'])\n")
    (context / "mypkg" / "mypkg.py").write_text("def hello():\n    return 'hello from mypkg'\n")
    quoted = ", ".join(repr(c) for c in commands)
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    install.apt_packages(name=["python3-pip", "python3-setuptools"])\n'
        '    io.copy(host_path="./mypkg", envd_path="/")\n'
        f"    run(commands=[{quoted}])\n")
    return context


def test_pip_install_editable_offline_inside_run(tmp_path: Path, podman_environ: dict) -> None:
    context = make_context(tmp_path, [
        "pip install --no-cache-dir six==1.16.0",
        "pip install --no-build-isolation --no-index -e /mypkg",
        "mkdir -p /opt && echo built in $(pwd) > /opt/marker.txt",
    ])
    built = build(context, "-t", "rundemo:dev")
    assert ("run(): `pip install --no-cache-dir six==1.16.0` reads as "
            "install.python_packages(name=['six==1.16.0'])") in built.stderr
    assert '"six"' in (context / "envnix.lock").read_text()
    out = podman("run", "--rm", f"oci:{built.layout}", "sh", "-c",
                 "python3 -c 'import mypkg, six; print(mypkg.hello(), six.__version__)'; "
                 "cat /opt/marker.txt", env=podman_environ)
    assert out.stdout == "hello from mypkg 1.16.0\nbuilt in /home/envd/rundemo\n"
    again = build(context, "-t", "rundemo:dev", "--locked")
    assert (again.config, again.manifest) == (built.config, built.manifest)
    assert "0 derivation(s) built" in again.stderr


def test_network_in_run_fails_with_the_declarative_replacement(tmp_path: Path) -> None:
    """An isolated build of a local project fetches its build backend: the build stops at that
    step with one line naming it and what to write instead."""
    context = make_context(tmp_path, ["pip install -e /mypkg"])
    (context / "mypkg" / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=40.8.0"]\n'
        'build-backend = "setuptools.build_meta"\n')
    proc = envnix("build", str(context), check=False)
    assert proc.returncode == 6, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("envnix: ")
              and not line.startswith("envnix: warning:")]
    assert len(errors) == 1
    assert "needs the network" in errors[0] and "--no-build-isolation" in errors[0]

"""run(): commands executed hermetically inside the Nix build, their changes a layer.

The seed's case: a local package copied in with io.copy and installed by pip offline inside
run() (`pip install -e /detectron2`), with its build dependencies in the image. A `pip install`
of an index's package in run() is locked like install.python_packages (frontend/runsteps.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli import build, envnix
from _nvidia_apt_repo import LIBRARY_DIR, PREFIX, build_repo, serve_repo
from _podman import podman

from envnix.lock.apt.anchors import NVIDIA_KEY_FILE

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


def test_an_apt_source_a_step_adds_is_locked_and_installed(
        tmp_path: Path, podman_environ: dict) -> None:
    """Files add third-party apt repositories in run() (an echo of a `deb` line into
    sources.list, the key piped to apt-key or gpg) and then apt-get install from them. The
    repository here is a flat one on loopback (tests/_nvidia_apt_repo.py, signed with the
    session's test key, which it also serves as its key file): its index is read at lock
    time with the key the step names, the package is pinned by URL + sha256 from it, and the
    image runs with it. A key that does not sign the repository stops the lock in one line."""
    repo = build_repo(tmp_path / "repo" / "x86_64")
    with serve_repo(repo.root) as server:
        url = server.url(PREFIX)
        context = tmp_path / "thirdparty"
        context.mkdir()
        steps = [
            f"echo 'deb [signed-by=/usr/share/keyrings/cuda.gpg] {url} /' | sudo tee "
            "/etc/apt/sources.list.d/cuda.list",
            f"curl -fsSL {url}/{NVIDIA_KEY_FILE} | sudo gpg --dearmor -o "
            "/usr/share/keyrings/cuda.gpg",
            "sudo apt-get update && sudo apt-get install -y cuda-cudart-12-4",
        ]
        (context / "build.envd").write_text(
            'def build():\n    base(os="debian12", language="python3.11")\n'
            f"    run(commands={steps!r})\n")
        built = build(context, "-t", "thirdparty:dev")
        assert f"the apt source `deb [signed-by=/usr/share/keyrings/cuda.gpg] {url} /`" in (
            built.stderr)
        lock = json.loads((context / "envnix.lock").read_text())
        assert {"uri": url, "suite": "/", "components": [], "flat": True} in (
            lock["apt"]["sources"])
        cudart = next(p for p in lock["apt"]["packages"] if p["name"] == "cuda-cudart-12-4")
        deb = repo.get("cuda-cudart-12-4")
        assert (cudart["url"], cudart["sha256"]) == (f"{url}/{deb.filename}", deb.sha256)
        out = podman("run", "--rm", f"oci:{built.layout}", "sh", "-c",
                     f"ls {LIBRARY_DIR}/libcudart.so.12", env=podman_environ)
        assert out.stdout == f"{LIBRARY_DIR}/libcudart.so.12\n"

        steps[1] = steps[1].replace(f"/{NVIDIA_KEY_FILE}", "/Packages")  # not a key of it
        (context / "build.envd").write_text(
            'def build():\n    base(os="debian12", language="python3.11")\n'
            f"    run(commands={steps!r})\n")
        proc = envnix("lock", str(context), check=False)
        assert proc.returncode == 4, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("envnix:")
                  and "warning" not in line]
        assert len(errors) == 1 and f"{url}/InRelease" in errors[0], proc.stderr


def test_a_requirements_file_with_the_contexts_own_project(tmp_path: Path,
                                                           podman_environ: dict) -> None:
    """envd's own e2e fixture writes `-e .` in requirements.txt next to a setup.py: the
    project is copied in and installed by pip inside the build (offline, setuptools pinned),
    the rest of the file is locked, and the image imports both from the workdir's copy."""
    context = tmp_path / "reqlocal"
    (context / "reqlocal_pkg").mkdir(parents=True)
    (context / "setup.py").write_text(
        "from setuptools import setup, find_packages\n"
        "setup(name='reqlocal-pkg', version='1.0.0', packages=find_packages())\n")
    (context / "reqlocal_pkg" / "__init__.py").write_text("WHERE = 'from the context'\n")
    (context / "requirements.txt").write_text("six==1.16.0\n-e .\n")
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    install.python_packages(requirements="requirements.txt")\n')
    built = build(context, "-t", "reqlocal:dev")
    lock = json.loads((context / "envnix.lock").read_text())
    assert {"six", "pip", "setuptools"} <= {w["name"] for w in lock["pip"]["wheels"]}
    out = podman("run", "--rm", f"oci:{built.layout}", "python3", "-c",
                 "import reqlocal_pkg, six; print(reqlocal_pkg.WHERE, reqlocal_pkg.__file__, "
                 "six.__version__)", env=podman_environ)
    assert out.stdout == ("from the context /home/envd/reqlocal/reqlocal_pkg/__init__.py "
                          "1.16.0\n")


def _wheel(path: Path, name: str, version: str, files: dict[str, str],
           requires: list[str]) -> Path:
    """A pure-Python wheel as a build backend writes one (METADATA, WHEEL, RECORD)."""
    import base64
    import hashlib
    import zipfile

    info = f"{name}-{version}.dist-info"
    members = dict(files)
    members[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    members[f"{info}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                "Tag: py3-none-any\n")

    def digest(data: str) -> str:
        raw = hashlib.sha256(data.encode()).digest()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    record = [f"{n},sha256={digest(d)},{len(d.encode())}" for n, d in members.items()]
    members[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path


def test_local_wheels_install_with_their_dependencies_pinned(tmp_path: Path,
                                                             podman_environ: dict) -> None:
    """install.python_packages(local_wheels=[...]): envd pip-installs the context's wheel.
    Its dependencies (not its extras') are read from its METADATA and pinned with the other
    packages; the wheel is installed by the image's pip inside the build, offline."""
    context = tmp_path / "wheels"
    _wheel(context / "dist" / "greet-1.0-py3-none-any.whl", "greet", "1.0",
           {"greet/__init__.py": "import six\n\ndef hello():\n"
                                 "    return 'hello from a local wheel, six ' + six.__version__\n"},
           ["six==1.16.0", 'pytest ; extra == "test"'])
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    install.python_packages(local_wheels=["dist/greet-1.0-py3-none-any.whl"])\n')
    built = build(context, "-t", "wheels:dev")
    assert "local wheel(s) dist/greet-1.0-py3-none-any.whl installed by pip" in built.stderr
    lock = json.loads((context / "envnix.lock").read_text())
    names = {w["name"] for w in lock["pip"]["wheels"]}
    assert {"six", "pip"} <= names and "pytest" not in names and "greet" not in names
    out = podman("run", "--rm", f"oci:{built.layout}", "python3", "-c",
                 "import greet; print(greet.hello())", env=podman_environ)
    assert out.stdout == "hello from a local wheel, six 1.16.0\n"
    # not a wheel: one line at the call
    (context / "dist" / "notes-1.0.tar.gz").write_text("x")
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n'
        '    install.python_packages(local_wheels=["dist/notes-1.0.tar.gz"])\n')
    proc = envnix("spec", str(context), check=False)
    assert proc.returncode != 0 and "is not a wheel's file name" in proc.stderr
    assert "build.envd:3" in proc.stderr

"""run() steps that reach for the network: installs become locked inputs, fetches stay with a
warning naming the step, its host and what to write instead (frontend/runsteps.py).

The real lock and build of such a file is tests/integration/test_run_e2e.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from envnix.core.errors import FrontendError, SpecError
from envnix.frontend import load_spec
from envnix.frontend.runsteps import read_run_command
from envnix.lock.pip import _gather
from envnix.spec.pipargs import local_project

V0 = 'def build():\n    base(os="debian12", language="python3.11")\n'


def test_apt_install_with_its_update_and_cleanup_is_taken_whole() -> None:
    reading = read_run_command("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install "
                               "-y --no-install-recommends curl libgl1 && "
                               "rm -rf /var/lib/apt/lists/*")
    assert reading.apt == ["curl", "libgl1"]
    assert reading.kept is None
    assert len(reading.taken) == 3


def test_pip_install_keeps_its_index_options_and_drops_pips_own_upgrade() -> None:
    reading = read_run_command("python3 -m pip install -U pip && pip install --no-cache-dir "
                               "'torch==2.1.0' --index-url https://idx.example/cpu")
    assert reading.pip == ["torch==2.1.0 --index-url https://idx.example/cpu"]
    assert reading.install_calls() == [
        ("install.python_packages", {"name": ["torch==2.1.0 --index-url https://idx.example/cpu"]})]


def test_conda_install_takes_its_channels() -> None:
    reading = read_run_command("conda install -y -c conda-forge numpy=1.26 && conda clean -afy")
    assert (reading.conda, reading.conda_channels) == (["numpy=1.26"], ["conda-forge"])
    assert reading.kept is None


def test_other_commands_stay_in_the_step_untouched() -> None:
    reading = read_run_command("apt-get install -y curl && echo 'a && b' > /etc/motd; ls")
    assert reading.apt == ["curl"]
    assert reading.kept == "echo 'a && b' > /etc/motd && ls"
    assert read_run_command("echo hi | tee /x").kept == "echo hi | tee /x"


@pytest.mark.parametrize("command", [
    "pip install -e /files",
    "pip install --no-build-isolation --no-index -e /detectron2",
    "cd /src && pip install .",
])
def test_local_projects_build_offline_in_the_step(command: str) -> None:
    reading = read_run_command(command)
    assert (reading.kept, reading.taken) == (command, [])


@pytest.mark.parametrize(("command", "host", "hint"), [
    ("git clone https://git.example.org/x/y.git /opt/y", "git.example.org", "io.copy"),
    ("git clone git@git.example.org:x/y.git", "git.example.org", "io.copy"),
    ("curl -fsSL https://dl.example.net/tool.sh | bash", "dl.example.net",
     'io.http(url="https://dl.example.net/tool.sh"'),
    ("wget -q https://dl.example.net/m.bin -O /m.bin", "dl.example.net", "io.http"),
    ("mim install mmcv-full", "the network", "install.python_packages"),
])
def test_fetches_stay_with_a_warning_naming_the_host_and_the_replacement(
        command: str, host: str, hint: str) -> None:
    reading = read_run_command(command)
    assert reading.kept == command
    [warning] = reading.fetches
    assert f"fetches from {host} during the build" in warning and hint in warning


def test_an_install_inside_a_pipe_cannot_be_taken_apart() -> None:
    with pytest.raises(SpecError, match="inside a pipe"):
        read_run_command("apt-get install -y curl | tee /log")


def test_a_requirements_file_inside_the_image_is_refused() -> None:
    with pytest.raises(SpecError, match="a file inside the image") as info:
        read_run_command("pip install -r /files/requirements.txt")
    assert "install.python_packages(requirements=" in (info.value.hint or "")


def test_the_spec_gets_the_installs_and_a_warning_per_step(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six\n")
    (tmp_path / "build.envd").write_text(V0 + '    run(commands=[\n'
                                         '        "pip install requests==2.31.0",\n'
                                         '        "pip install -r requirements.txt",\n'
                                         '        "apt-get update && apt-get install -y curl",\n'
                                         '        "echo hello > /tmp/x",\n'
                                         '    ])\n')
    warnings: list[str] = []
    spec = load_spec(tmp_path, warn=warnings.append)
    assert "requests==2.31.0" in spec.pip.packages
    assert spec.pip.requirements_files == ["requirements.txt"]
    assert "curl" in spec.apt_packages
    assert [run.commands for run in spec.runs] == [["echo hello > /tmp/x"]]
    assert sum(w.startswith("build.envd:3: run(): `") and "locked like the install.* calls" in w
               for w in warnings) == 3


def test_a_fetch_in_the_spec_is_one_warning_and_the_step_stays(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(
        V0 + '    run(commands=["git clone https://git.example.org/foo.git /opt/foo"])\n')
    warnings: list[str] = []
    spec = load_spec(tmp_path, warn=warnings.append)
    assert [run.commands for run in spec.runs] == [["git clone https://git.example.org/foo.git "
                                                    "/opt/foo"]]
    assert [w for w in warnings if "git.example.org" in w] == [
        "build.envd:3: run(): `git clone https://git.example.org/foo.git /opt/foo` fetches from "
        "git.example.org during the build, which has no network: the build stops at this step; "
        "vendor the repository into the build context at the commit you want (a submodule or "
        "a copy) and io.copy it; a clone made during the build cannot be pinned"]


@pytest.mark.parametrize(("command", "line"), [
    ("echo 'deb http://apt.test/$(lsb_release -cs)/ tools-$(lsb_release -cs) main' | sudo tee "
     "-a /etc/apt/sources.list", "deb http://apt.test/@CODENAME@/ tools-@CODENAME@ main"),
    ('echo "deb [arch=amd64 signed-by=/usr/share/keyrings/t.gpg] https://apt.test/repo stable '
     'main" > /etc/apt/sources.list.d/t.list',
     "deb [arch=amd64 signed-by=/usr/share/keyrings/t.gpg] https://apt.test/repo stable main"),
    ("add-apt-repository -y 'deb https://apt.test/flat /'", "deb https://apt.test/flat /"),
])
def test_a_step_that_adds_an_apt_source_is_taken(command: str, line: str) -> None:
    reading = read_run_command(command)
    assert (reading.apt_repos, reading.kept) == ([line], None)


@pytest.mark.parametrize("command", [
    "wget --quiet -O - https://apt.test/key.asc | sudo apt-key add -",
    "curl -fsSL https://apt.test/key.asc | sudo gpg --dearmor -o /usr/share/keyrings/t.gpg",
    "curl -fsSL -o /etc/apt/keyrings/t.asc https://apt.test/key.asc",
])
def test_a_step_that_installs_an_archive_key_is_taken(command: str) -> None:
    reading = read_run_command(command)
    assert (reading.apt_keys, reading.kept) == (["https://apt.test/key.asc"], None)


def test_other_pipes_and_downloads_are_not_apt_sources() -> None:
    for command in ("echo 'deb http://x.test/ a main' | tee /tmp/notes",
                    "curl -fsSL https://x.test/install.sh | sh",
                    "curl -o /opt/tool.tgz https://x.test/tool.tgz"):
        reading = read_run_command(command)
        assert not reading.apt_repos and not reading.apt_keys and reading.kept == command


def test_the_spec_gets_the_apt_source_with_every_key_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(V0 + '    run(commands=[\n'
        '        "echo \'deb https://apt.test/repo stable main\' | tee /etc/apt/sources.list",\n'
        '        "apt-get update && apt-get install -y tool",\n'
        '    ])\n'
        '    run(commands=["curl -fsSL https://apt.test/key.asc | apt-key add -"])\n')
    warnings: list[str] = []
    spec = load_spec(tmp_path, warn=warnings.append)
    assert [(r.line, r.keys, r.where) for r in spec.apt_repos] == [
        ("deb https://apt.test/repo stable main", ("https://apt.test/key.asc",), "build.envd:3")]
    assert "tool" in spec.apt_packages and spec.runs == []
    assert any("the apt source `deb https://apt.test/repo stable main`" in w for w in warnings)
    source = spec.apt_repos[0].source("bookworm", "/keys/k.asc")
    assert (source.uri, source.suite, source.components, source.keyring) == (
        "https://apt.test/repo", "stable", ("main",), "/keys/k.asc")
    assert spec.to_dict()["apt_repos"][0]["line"] == "deb https://apt.test/repo stable main"


def test_a_cd_earlier_in_the_step_moves_where_a_requirements_file_is_read() -> None:
    """envd runs a step's commands as one script: after `cd /home`, `-r requirements.txt` is
    /home/requirements.txt in the image, not the context's file; a relative cd stays in the
    context."""
    moved = read_run_command("cd /home")
    assert (moved.cwd, moved.kept) == ("/home", "cd /home")
    with pytest.raises(SpecError, match=r"reads /home/requirements\.txt, a file inside the "):
        read_run_command("pip install -r requirements.txt", moved.cwd)
    relative = read_run_command("cd sub && pip install -r req.txt")
    assert (relative.pip_requirements, relative.kept) == (["sub/req.txt"], "cd sub")
    assert read_run_command("pip install -r r.txt", "sub/deeper").pip_requirements == [
        "sub/deeper/r.txt"]


@pytest.mark.parametrize(("line", "local"), [
    ("-e .", (".", True)), ("--editable=./pkg", ("./pkg", True)), ("./pkg", ("./pkg", False)),
    (".", (".", False)), ("-e git+https://git.test/x.git#egg=x", None), ("six==1.16.0", None),
])
def test_local_project_lines_of_a_requirements_file(line: str,
                                                    local: tuple[str, bool] | None) -> None:
    assert local_project(line) == local


def test_a_requirements_file_installs_the_contexts_project_offline(tmp_path: Path) -> None:
    """`-e .` in install.python_packages(requirements=): the project is copied in at the
    workdir and pip-installed there in the build, with pip and its build backend pinned; the
    lock resolves the other lines only."""
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling>=1.20"]\nbuild-backend = "hatchling.build"\n')
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n-e .  # the project itself\n")
    (tmp_path / "data.txt").write_text("kept\n")
    (tmp_path / "build.envd").write_text(
        V0 + '    install.python_packages(requirements="requirements.txt")\n'
        '    io.copy(host_path="data.txt", envd_path="/srv/data.txt")\n')
    spec = load_spec(tmp_path, warn=lambda _: None)
    workdir = f"/home/envd/{tmp_path.name}"
    # the file's own io.copy stays, and the project is copied once
    assert [(c.source, c.target) for c in spec.copies] == [
        ("data.txt", "/srv/data.txt"), (".", workdir)]
    assert {"pip", "hatchling>=1.20"} <= set(spec.pip.packages)
    install = spec.runs[0].commands[0]
    assert install.endswith(f"--no-build-isolation --no-compile --no-cache-dir "
                            f"--disable-pip-version-check -e {workdir}")
    lines, _ = _gather(spec.pip, tmp_path)
    assert "six==1.16.0" in lines and not any("-e" in line for line in lines)
    (tmp_path / "requirements.txt").write_text("-e ../elsewhere\n")
    with pytest.raises(FrontendError, match=r"requirements\.txt:1: local project '\.\./elsewhere' "
                                        r"is outside the build context"):
        load_spec(tmp_path, warn=lambda _: None)

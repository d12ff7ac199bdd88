"""Frontend: build.envd evaluated by Starlark into an ImageSpec, and its error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envnix.core.errors import FrontendError
from envnix.frontend import load_spec, parse_from

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, source: str, name: str = "build.envd") -> Path:
    (tmp_path / name).write_text(source)
    return tmp_path


def error_of(tmp_path: Path, source: str, from_: str = "build.envd:build") -> FrontendError:
    write(tmp_path, source)
    with pytest.raises(FrontendError) as info:
        load_spec(tmp_path, from_, warn=lambda _: None)
    return info.value


def test_quickstart_spec() -> None:
    spec = load_spec(ROOT / "examples" / "quickstart")
    assert spec.os.codename == "bookworm"
    assert spec.python is not None and spec.python.version == "3.11"
    assert spec.python.provider == "system"
    assert spec.apt_packages == ["libgl1", "libglib2.0-0"]
    assert spec.pip.packages == ["six", "numpy", "opencv-python"]
    assert "ENVNIX_EXAMPLE=quickstart" in spec.env_list()
    assert spec.workdir == "/home/envd/quickstart"
    roots = spec.apt_roots()
    assert roots[:4] == ["base-files", "libc6", "dash", "ca-certificates"]
    assert "python3.11" in roots and "libgl1" in roots
    assert json.loads(spec.to_json())["pip"]["packages"] == spec.pip.packages


def test_helpers_pip_index_environ_and_requirements(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
    spec = load_spec(write(tmp_path, '''
def mirror():
    config.pip_index(url="https://mirror.example/simple", extra_url="https://b.example/s",
                     trust=True)

def build():
    mirror()
    base(os="debian12", language="python")
    install.python_packages(requirements="requirements.txt")
    runtime.environ(env={"A": "1"}, extra_path=["/opt/tools/bin"])
'''))
    assert spec.pip.index_url == "https://mirror.example/simple"
    assert spec.pip.extra_index_urls == ["https://b.example/s"]
    assert spec.pip.trusted_hosts == ["b.example", "mirror.example"]
    assert spec.pip.requirements_files == ["requirements.txt"]
    assert spec.python is not None and spec.python.version == "3.11"  # envd: python -> 3.11
    env = spec.env_list()
    assert env[0].endswith(":/opt/tools/bin") and "A=1" in env


def test_legacy_system_packages_warns(tmp_path: Path) -> None:
    warnings: list[str] = []
    write(tmp_path, 'def build():\n    base(os="debian12", language="python3.11")\n'
                    '    install.system_packages(name=["curl"])\n')
    spec = load_spec(tmp_path, warn=warnings.append)
    assert spec.apt_packages == ["curl"]
    assert warnings and "install.apt_packages" in warnings[0]


def test_from_selects_function(tmp_path: Path) -> None:
    write(tmp_path, 'def serve():\n    base(os="debian12", language="python3.11")\n'
                    '    install.apt_packages(name=["jq"])\n', name="other.envd")
    spec = load_spec(tmp_path, "other.envd:serve")
    assert spec.apt_packages == ["jq"] and spec.function == "serve"
    assert parse_from(":serve") == ("build.envd", "serve")
    assert parse_from("x.envd") == ("x.envd", "build")
    with pytest.raises(FrontendError, match="invalid from format"):
        parse_from("a:b:c")


def test_typo_in_module_function_points_at_call_with_suggestion(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'def build():\n    base(os="debian12", language="python3.11")\n'
                             '    install.pythn_packages(name=["six"])\n')
    assert str(err) == ("build.envd:3:5: install has no function 'pythn_packages'; "
                        "did you mean 'install.python_packages'?")


def test_unknown_keyword_names_function_and_suggests(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'def build():\n    install.apt_packages(nme=["jq"])\n')
    assert str(err) == ("build.envd:2:5: install.apt_packages() got an unexpected keyword "
                        "argument 'nme'; did you mean 'name'?")


def test_unknown_global_in_helper(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'def build():\n    helper()\n\ndef helper():\n    bse(os="x")\n')
    assert str(err).startswith("build.envd:5:5: ") and "did you mean 'base'" in str(err)


def test_syntax_error_has_location(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'def build():\n    base(os="debian12",, language="python3.11")\n')
    assert str(err).startswith("build.envd:2:") and "Parse error" in str(err)


def test_tuple_where_list_expected(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'def build():\n    install.apt_packages(name=("jq",))\n')
    assert str(err) == ("build.envd:2:5: install.apt_packages: for parameter name: "
                        "got tuple, want list")


def test_non_string_list_element(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'def build():\n    install.python_packages(name=["six", 3])\n')
    assert "expected a list of strings" in str(err) and str(err).startswith("build.envd:2:5:")


def test_missing_required_argument(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'def build():\n    install.cuda()\n')
    assert str(err) == "build.envd:2:5: install.cuda() missing required argument 'version'"


def test_unsupported_os_points_at_base_and_seed_spelling_is_read(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'def build():\n    base(os="centos7", language="python3.8")\n')
    assert str(err).startswith("build.envd:2:5: os 'centos7' is not supported yet")
    warnings: list[str] = []
    write(tmp_path, 'def build():\n    base(os="ubuntu20.4", language="python3.8")\n')
    spec = load_spec(tmp_path, warn=warnings.append)
    assert (spec.os.codename, spec.os.components) == ("focal", ("main", "universe"))
    assert spec.python is not None and spec.python.provider == "system"  # focal ships 3.8
    assert warnings == ['base(os="ubuntu20.4") read as "ubuntu20.04"']


def test_python_provider_follows_release_and_conda(tmp_path: Path) -> None:
    # Debian 12 ships python3.11: the distribution provides it unless conda is asked for.
    write(tmp_path, 'def build():\n    base(os="debian12", language="python3.8")\n')
    spec = load_spec(tmp_path)
    assert spec.python is not None and spec.python.provider == "conda"
    assert spec.python.interpreter == "/opt/conda/envs/envd/bin/python3.8"
    assert spec.python.site_packages == "/opt/conda/envs/envd/lib/python3.8/site-packages"
    assert spec.env_list()[0].startswith("PATH=/opt/conda/envs/envd/bin:/opt/conda/bin:")
    assert "python3.8" not in spec.apt_roots()


def test_seed_style_conda_calls(tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("dependencies:\n  - requests\n")
    warnings: list[str] = []
    write(tmp_path, '''
def build():
    mirror_config()
    base(language="python3.11", os="debian12")
    install.conda_packages(channel= ["pytorch"], env_file = "env.yaml")
    install.conda_packages(name=["numpy"])

def mirror_config():
    config.conda_channel(channel="""
    channels:
    - defaults
    default_channels:
    - http://127.0.0.1:1/main
    """)
''')
    spec = load_spec(tmp_path, warn=warnings.append)
    assert spec.python is not None and spec.python.provider == "conda"
    assert spec.conda.channels == ["pytorch"] and spec.conda.packages == ["numpy"]
    assert spec.conda.env_file == "env.yaml"
    assert spec.conda.condarc == "channels:\n- defaults\ndefault_channels:\n- http://127.0.0.1:1/main\n"
    assert len(warnings) == 1 and "env_file together with name/channel" in warnings[0]
    err = error_of(tmp_path, 'def build():\n    install.conda_packages(env_file="nope.yaml")\n')
    assert str(err) == (f"build.envd:2:5: env_file 'nope.yaml' does not exist in {tmp_path}")
    assert err.hint and "relative to the build context" in err.hint


def test_missing_function_and_file(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'def biuld():\n    pass\n')
    assert "has no function 'build'" in str(err) and "did you mean 'biuld'" in str(err)
    with pytest.raises(FrontendError, match="file does not exist"):
        load_spec(tmp_path, "nope.envd")


def test_requirements_file_must_exist_inside_context(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'def build():\n    install.python_packages(requirements="r.txt")\n')
    assert str(err).startswith("build.envd:2:5: requirements file 'r.txt' does not exist")
    err = error_of(tmp_path, 'def build():\n'
                             '    install.python_packages(requirements="../r.txt")\n')
    assert "outside the build context" in str(err)


def test_no_python_exec_or_host_access(tmp_path: Path) -> None:
    # Starlark has no open/import; a Python-ism is an unknown name, not host access.
    err = error_of(tmp_path, 'def build():\n    open("/etc/passwd")\n')
    assert "unknown name 'open'" in str(err)


def test_syntax_is_chosen_and_explained(tmp_path: Path) -> None:
    v0 = 'def build():\n    base(os="debian12", language="python3.11")\n'
    spec = load_spec(write(tmp_path, v0))
    assert (spec.syntax, spec.syntax_reason) == ("v0", "it calls base(os=, language=)")
    assert spec.dev is not None and (spec.dev.uid, spec.dev.gid) == (1000, 1000)
    spec = load_spec(write(tmp_path, 'def build():\n    base(image="ubuntu:22.04", dev=True)\n'
                                     '    install.conda()\n    install.python(version="3.10")\n'))
    assert spec.syntax == "v1" and spec.os.codename == "jammy"
    assert spec.python is not None and (spec.python.provider, spec.python.version) == (
        "conda", "3.10")
    assert spec.dev is not None
    spec = load_spec(write(tmp_path, '# syntax=v1\ndef build():\n    base(image="debian:12")\n'))
    assert (spec.syntax, spec.syntax_reason) == ("v1", "# syntax=v1 on line 1")
    assert spec.dev is None and spec.python is None  # v1 serving image: only what's declared


def test_a_slim_release_image_is_that_release_packed_slim(tmp_path: Path) -> None:
    """debian:12-slim is Debian 12 with its dpkg path filters (ImageSpec.slim), which the
    lock's image section carries so that a Nix-only build packs it the same way."""
    for image, slim in (("debian:12-slim", True), ("docker.io/library/debian:bookworm-slim",
                                                   True), ("debian:12", False)):
        spec = load_spec(write(tmp_path, f'def build():\n    base(image="{image}")\n'))
        assert (spec.os.label, spec.base_image, spec.slim) == ("debian12", None, slim), image
        assert ("slim" in spec.to_dict()) is slim
    spec = load_spec(write(tmp_path, 'def build():\n    base(image="r.example/py:3-slim")\n'))
    assert (spec.base_image, spec.slim) == ("r.example/py:3-slim", False)  # its own files


def test_unreproducible_functions_are_skipped_with_one_warning_each(tmp_path: Path) -> None:
    warnings: list[str] = []
    write(tmp_path, 'def build():\n    base(os="debian12", language="python3.11")\n'
                    '    config.julia_pkg_server(url="https://pkg.example")\n'
                    '    install.julia_packages(name=["Flux"])\n    config.gpu(count=1)\n')
    load_spec(tmp_path, warn=warnings.append)
    assert [w.split("(")[0] for w in warnings] == [
        "config.julia_pkg_server", "install.julia_packages", "config.gpu"]
    assert all("skipped" in w for w in warnings)


def test_runtime_and_config_calls_shape_the_spec(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, '''
def build():
    base(os="debian12", language="python3.11")
    shell("zsh")
    git_config(name="Ada", email="ada@example.invalid", editor="vim")
    config.owner(uid=2000, gid=2001)
    config.repo(url="https://example.invalid/repo", description="demo")
    config.apt_source(source="deb http://mirror.invalid/debian bookworm main")
    runtime.expose(envd_port=8080, service="web")
    runtime.command(commands={"serve": "python3 -m http.server"})
    runtime.daemon(commands=[["python3", "-m", "http.server", "8080"]])
    runtime.init(commands=["echo ready"])
    runtime.mount(host_path="~/data", envd_path="~/data")
'''))
    assert spec.dev is not None
    assert (spec.dev.shell, spec.dev.uid, spec.dev.gid) == ("zsh", 2000, 2001)
    assert "zsh" in spec.apt_roots() and "sudo" in spec.apt_roots()
    assert spec.files["/home/envd/.gitconfig"].startswith("[user]\n\tname = Ada\n")
    assert spec.files["/etc/apt/sources.list"].startswith("deb http://mirror.invalid")
    assert spec.labels["ai.tensorchord.envd.repo"] == "https://example.invalid/repo"
    assert spec.labels["ai.tensorchord.envd.ports"] == "8080"
    assert spec.runtime.daemon == [["python3", "-m", "http.server", "8080"]]
    assert spec.runtime.mounts == ["/home/envd/data"]
    err = error_of(tmp_path, 'def build():\n    runtime.expose(envd_port=70000)\n')
    assert "envd_port must be a positive integer less than 65535" in str(err)
    err = error_of(tmp_path, 'def build():\n    config.owner(uid=-1, gid=0)\n')
    assert "get a wrong uid or gid" in str(err)


def test_load_of_local_envd_relative_to_manifest(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "common.envd").write_text(
        'load("lib/more.envd", "EXTRA")\n'
        'def python_stack(extra=[]):\n'
        '    install.python_packages(name=["six"] + EXTRA + extra)\n')
    (tmp_path / "lib" / "more.envd").write_text('EXTRA = ["pyyaml"]\n')
    write(tmp_path, 'load("lib/common.envd", "python_stack")\n'
                    'def build():\n    base(os="debian12", language="python3.11")\n'
                    '    python_stack(extra=["tqdm"])\n')
    spec = load_spec(tmp_path)
    assert spec.pip.packages == ["six", "pyyaml", "tqdm"]


def test_load_errors_point_into_the_loaded_file(tmp_path: Path) -> None:
    (tmp_path / "lib.envd").write_text('def helper():\n    install.apt_pakages(name=["jq"])\n')
    err = error_of(tmp_path, 'load("lib.envd", "helper")\ndef build():\n    helper()\n')
    assert str(err) == ("lib.envd:2:5: install has no function 'apt_pakages'; "
                        "did you mean 'install.apt_packages'?")
    (tmp_path / "a.envd").write_text('load("b.envd", "x")\n')
    (tmp_path / "b.envd").write_text('load("a.envd", "y")\nx = 1\n')
    err = error_of(tmp_path, 'load("a.envd", "x")\ndef build():\n    pass\n')
    assert "Detected cycle import during parsing a.envd" in str(err)
    err = error_of(tmp_path, 'load("../outside.envd", "x")\ndef build():\n    pass\n')
    assert "load('../outside.envd'): the file is outside" in str(err)


@pytest.mark.parametrize(("call", "path", "warned"), [
    ('shell("fish")', "/usr/bin/fish", "not envd's static fish 4"),
    ('shell("ZSH")', "/bin/zsh", "oh-my-zsh and its .zshrc are left out"),
    ('shell("bash")', "/bin/bash", None),
])
def test_shell_installs_the_shell_and_makes_it_the_login_shell(
        tmp_path: Path, call: str, path: str, warned: str | None) -> None:
    warnings: list[str] = []
    spec = load_spec(write(tmp_path, f'def build():\n    base(os="debian12", language="python")\n'
                                     f'    {call}\n'), warn=warnings.append)
    assert spec.dev is not None and spec.dev.shell_path == path
    assert spec.dev.shell in spec.apt_roots()  # the Debian package of that name
    assert f"SHELL={path}" in spec.env_list()
    assert [w for w in warnings if "shell(" in w] == ([] if warned is None else [
        next(w for w in warnings if warned in w)])


def test_an_unknown_shell_is_an_error_saying_what_to_write(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'def build():\n    base(os="debian12", language="python")\n'
                             '    shell("tcsh")\n')
    assert str(err).startswith("build.envd:3:5: shell 'tcsh' is not supported: envd installs "
                               "only bash, zsh and fish")
    assert err.hint is not None and 'shell("fish")' in err.hint and "\n" not in str(err)


def test_v1_base_without_arguments_takes_envds_defaults(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, 'def build():\n    base()\n    install.python()\n'
                                     '    install.python_packages(name=["six"])\n'))
    assert (spec.syntax, spec.os.codename, spec.dev) == ("v1", "jammy", None)
    assert spec.python is not None and spec.python.version == "3.11"
    # an earlier base(image=...) keeps its image; base() only resets dev, as in envd
    spec = load_spec(write(tmp_path, 'def build():\n    base(image="debian:12", dev=True)\n'
                                     '    base()\n'))
    assert (spec.os.codename, spec.dev) == ("bookworm", None)


def test_data_path_and_data_envd_feed_runtime_mount(tmp_path: Path) -> None:
    warnings: list[str] = []
    spec = load_spec(write(tmp_path, '''
def build():
    base(dev=True)
    runtime.mount(host_path=data.path.huggingface, envd_path="~/.cache/huggingface")
    runtime.mount(host_path=data.envd(name="mnist"), envd_path="/data/mnist")
    runtime.environ(env={"HF": data.path.huggingface, "DGL": data.path.dgl,
                         "SRC": data.envd("mnist")})
'''), warn=warnings.append)
    assert spec.runtime.mounts == ["/home/envd/.cache/huggingface", "/data/mnist"]
    assert spec.env == {"HF": "~/.cache/huggingface", "DGL": "~/.dgl", "SRC": "envd://mnist"}
    assert not [w for w in warnings if "data." in w]
    err = error_of(tmp_path, 'def build():\n    data.envd(name="a/b")\n')
    assert str(err).startswith("build.envd:2:5: data.envd: name 'a/b' is not a plain data set")


def test_adjacent_strings_get_a_hint_python_users_need(tmp_path: Path) -> None:
    """A Python habit in a real build.envd: two strings side by side in a run() list."""
    err = error_of(tmp_path, 'def build():\n    run(commands=[\n        "echo a"\n'
                             '        "echo b",\n    ])\n')
    assert str(err).startswith("build.envd:4:9: Parse error: unexpected string literal")
    assert err.hint and "does not join adjacent strings" in err.hint

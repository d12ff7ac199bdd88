"""Settings people can find and keep: the config files (envnix.toml, config.toml) and their
precedence, and every ENVNIX_* variable in --help and the README from options.py's one table.
(Shell completion starts bash, so its tests are in integration/test_results_settings_e2e.py.)"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from envnix.cli import _run, cli
from envnix.core import options
from envnix.core.config import PROJECT_FILE, load_config, read_config, user_file
from envnix.core.errors import ConfigError, UsageError

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the machine's own config file or variables, or leaves a layer behind."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for option in options.OPTIONS:
        monkeypatch.delenv(option.name, raising=False)
    yield
    options.use_config({})


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_keys_become_the_variables_values(tmp_path: Path) -> None:
    file = write(tmp_path / "xdg" / "envnix" / "config.toml", """
[apt]
mirror = "http://mirror.test/debian"
[nix]
substituters = ["http://a.test", "file:///srv/cache"]
builders = ["ssh://b1 x86_64-linux", "ssh://b2 x86_64-linux"]
[registry]
insecure = ["127.0.0.1:5000", "r.test"]
cert-dir = "certs"
tls-verify = false
""")
    assert read_config(file, project=False) == {
        "ENVNIX_APT_MIRROR": "http://mirror.test/debian",
        "ENVNIX_SUBSTITUTERS": "http://a.test file:///srv/cache",
        "ENVNIX_BUILDERS": "ssh://b1 x86_64-linux;ssh://b2 x86_64-linux",
        "ENVNIX_INSECURE_REGISTRIES": "127.0.0.1:5000,r.test",
        "ENVNIX_REGISTRY_CERT_DIR": str(file.parent / "certs"),  # beside the file
        "ENVNIX_REGISTRY_TLS_VERIFY": "false",
    }
    assert user_file() == file


def test_flag_beats_variable_beats_context_beats_user_file_beats_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(user_file(), '[apt]\nmirror = "http://user.test"\nsnapshot = "20240101T000000Z"\n'
                       '[cuda]\nprovider = "nixpkgs"\n')
    context = tmp_path / "ctx"
    write(context / PROJECT_FILE, '[apt]\nmirror = "http://project.test"\n')
    options.use_config(load_config(context))
    assert options.apt_mirror() == "http://project.test"          # context over user file
    assert options.apt_snapshot() == "20240101T000000Z"          # user file over default
    assert options.apt_security_mirror() is None                 # default
    monkeypatch.setenv("ENVNIX_APT_MIRROR", "http://env.test")
    assert options.apt_mirror() == "http://env.test"              # variable over files
    assert options.apt_mirror({}) is None                         # an explicit environ: no file
    # and the flag over all of them, through the CLI: spec shows the provider chosen
    envd = 'def build():\n    base(os="debian12", language="python3.11")\n' \
           '    install.cuda(version="12.1", cudnn="8")\n'
    write(context / "build.envd", envd)
    monkeypatch.setenv("ENVNIX_CUDA_PROVIDER", "apt")
    runner = CliRunner()
    from_file = runner.invoke(cli, ["spec", str(context)], env={"ENVNIX_CUDA_PROVIDER": None})
    assert '"provider": "nixpkgs"' in from_file.output, from_file.output
    from_flag = runner.invoke(cli, ["spec", str(context), "--cuda-provider", "pypi"])
    assert '"provider": "pypi"' in from_flag.output, from_flag.output


@pytest.mark.parametrize("text, where, what", [
    ('[apt]\nmirror = http://x\n', ":2:10: ", "not valid TOML: invalid value"),
    ('[apt\n', ":1:5: ", "not valid TOML: expected ']' at the end of a table declaration"),
    ('\n[apt]\nmirorr = "http://x"\n', ":3:1: ", "unknown key apt.mirorr"),
    ('[apt]\nmirror = true\n', ":2:1: ", "apt.mirror must be a string, not bool"),
    ('[nix]\nsubstituters = [1]\n', ":2:1: ", "nix.substituters must be a list of strings"),
    ('[nix]\nbuilders = "ssh://evil x86_64-linux"\n', ":2:1: ",
     "nix.builders is read only from the user's config file"),
    ('[registry]\ninsecure = ["r.test"]\n', ":2:1: ", "registry.insecure is read only from"),
])
def test_a_bad_project_file_is_one_line_at_file_line_col(tmp_path: Path, text: str, where: str,
                                                         what: str) -> None:
    file = write(tmp_path / PROJECT_FILE, text)
    with pytest.raises(ConfigError) as err:
        read_config(file, project=True)
    assert str(err.value).startswith(f"{file}{where}{what}"), str(err.value)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, UsageError) and err.value.exit_code == 2


def test_the_cli_says_it_in_one_line_with_exit_2(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / PROJECT_FILE, "[cuda]\nprovider = 12\n")
    monkeypatch.setattr(sys, "argv", ["envnix", "spec", str(tmp_path)])
    assert _run() == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (f"envnix: {tmp_path / PROJECT_FILE}:2:1: cuda.provider must "
                                   "be a string, not int"), err


def test_help_lists_every_variable_and_key() -> None:
    text = CliRunner().invoke(cli, ["--help"], terminal_width=100).output
    for option in options.OPTIONS:
        assert option.name in text
        assert option.default.split()[0] in text
        if option.key:
            assert f"[{option.key}" in text
    assert "_ENVNIX_COMPLETE=bash_source envnix" in text


def test_readme_table_is_the_options_table() -> None:
    """The README's table is generated from options.py; after a change, paste the new one."""
    assert options.markdown_table() in README.read_text(), (
        "README.md's settings table differs from envnix/core/options.py; replace it with:\n"
        + options.markdown_table())

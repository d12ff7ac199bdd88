"""env.yaml, .condarc and channel resolution: read as conda reads them. Offline, fast."""
# ruff: noqa: W293  (the seed's env.yaml below is verbatim, lines holding one space included)

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from envnix.core.errors import FrontendError, LockError
from envnix.frontend.envyaml import (
    DEFAULT_CHANNEL_ALIAS,
    ChannelLocation,
    Condarc,
    effective_channels,
    parse_condarc,
    parse_env_yaml,
    resolve_channel,
    resolve_channels,
)
from envnix.spec.envyaml import EnvFile, conda_spec_channel

# The seed's env.yaml, verbatim but for its mirror hosts, renamed to .invalid (never contacted),
# including the lines holding a single space and the Windows prefix.
SEED_ENV_YAML = """\
name: kyle
 
channels:
  - https://repo.seed.invalid/pkgs/main
  - https://mirror.seed.invalid/anaconda/pkgs/main/
  - https://mirror.seed.invalid/anaconda/pkgs/free/
  - https://mirror.seed.invalid/anaconda/cloud/pytorch/
  - https://mirror.seed.invalid/anaconda/cloud/menpo/
  - https://mirror.seed.invalid/anaconda/cloud/bioconda/
  - https://mirror.seed.invalid/anaconda/cloud/msys2/
  - https://mirror.seed.invalid/anaconda/cloud/conda-forge/
  - defaults
 
dependencies:
  - requests
  - pip:
    - opencv-python==4.1.2.30
 
prefix: C:\\ProgramData\\Anaconda3\\envs\\kyle
 
"""

# The seed build.envd's config.conda_channel(channel=\"\"\"...\"\"\") string, verbatim: indented
# inside the triple quotes, and with custom_channels' entries NOT indented under it.
SEED_CONDARC = """
    channels:
    - defaults
    show_channel_urls: true
    default_channels:
    - https://repo.seed.invalid/pkgs/main
    - https://mirror.seed.invalid/anaconda/pkgs/main/
    - https://mirror.seed.invalid/anaconda/pkgs/free/
    - https://mirror.seed.invalid/anaconda/cloud/pytorch/
    - https://mirror.seed.invalid/anaconda/cloud/menpo/
    - https://mirror.seed.invalid/anaconda/cloud/bioconda/
    - https://mirror.seed.invalid/anaconda/cloud/msys2/
    - https://mirror.seed.invalid/anaconda/cloud/conda-forge/
    custom_channels:
    conda-forge: https://mirror.seed.invalid/anaconda/cloud
    msys2: https://mirror.seed.invalid/anaconda/cloud
    bioconda: https://mirror.seed.invalid/anaconda/cloud
    menpo: https://mirror.seed.invalid/anaconda/cloud
    pytorch: https://mirror.seed.invalid/anaconda/cloud
    pytorch-lts: https://mirror.seed.invalid/anaconda/cloud
    simpleitk: https://mirror.seed.invalid/anaconda/cloud
    """

MIRROR = "https://mirror.invalid/conda"
SEED_URLS = [line.strip(" -/") for line in SEED_ENV_YAML.splitlines() if "://" in line]
SEED_PYTORCH = SEED_URLS[3]  # the mirror's cloud/pytorch channel


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def env(tmp_path: Path, text: str) -> EnvFile:
    return parse_env_yaml(write(tmp_path / "env.yaml", text))


def error(tmp_path: Path, text: str) -> FrontendError:
    with pytest.raises(FrontendError) as info:
        env(tmp_path, text)
    return info.value


# -- env.yaml --------------------------------------------------------------------------------


def test_seed_env_yaml_parses(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text(SEED_ENV_YAML)
    parsed = parse_env_yaml(path)
    assert parsed.source == path
    assert len(parsed.channels) == 9
    assert list(parsed.channels[:8]) == SEED_URLS  # in order, trailing "/" dropped
    assert parsed.channels[-1] == "defaults"  # kept as a marker, expanded by the condarc
    assert not any(c.endswith("/") for c in parsed.channels)
    assert not parsed.nodefaults
    assert parsed.dependencies == ("requests",)
    assert parsed.pip == ("opencv-python==4.1.2.30",)
    assert parsed.pip_local == () and parsed.pip_index_url is None
    assert parsed.variables == {}


def test_conda_env_export_forms(tmp_path: Path) -> None:
    parsed = env(tmp_path, """\
        name: research
        channels:
          - pytorch
          - conda-forge
          - nodefaults
          - conda-forge
        dependencies:
          - _libgcc_mutex=0.1=conda_forge
          - numpy=1.24.4=py38h59b608b_0
          - python=3.8.18=hd12c33a_0_cpython
          - python>=3.8,<3.9
          - python=3.8.*
          - pytorch::pytorch=2.1.0
          - conda-forge/linux-64::libgl
          - numpy[version='>=1.24,<2', build=py38*]
          - pip=23.3.1=pyhd8ed1ab_0
          - pip:
            - requests[security]>=2.0 ; python_version >= "3.8"
            - torch==2.4.1+cu118
        variables:
          OMP_NUM_THREADS: 4
          VERSION: 1.10
          EMPTY: ""
        prefix: /home/someone/miniconda3/envs/research
        """)
    assert parsed.channels == ("pytorch", "conda-forge")  # nodefaults dropped, dupes merged
    assert parsed.nodefaults
    assert parsed.dependencies[1] == "numpy=1.24.4=py38h59b608b_0"
    assert parsed.dependencies[3] == "python>=3.8,<3.9"
    assert "pytorch::pytorch=2.1.0" in parsed.dependencies
    assert "conda-forge/linux-64::libgl" in parsed.dependencies
    assert len(parsed.dependencies) == 9
    assert parsed.pip == ('requests[security]>=2.0 ; python_version >= "3.8"',
                          "torch==2.4.1+cu118")
    # Values as written, not as YAML types: 1.10 is not the float 1.1.
    assert parsed.variables == {"OMP_NUM_THREADS": "4", "VERSION": "1.10", "EMPTY": ""}


def test_windows_prefix_and_empty_sections(tmp_path: Path) -> None:
    parsed = env(tmp_path, """\
        name: x
        prefix: C:\\Users\\me\\Anaconda3\\envs\\x
        channels:
        dependencies:
          - python
          - pip:
        """)
    assert parsed.channels == () and parsed.dependencies == ("python",) and parsed.pip == ()


@pytest.mark.parametrize(("spec", "expected"), [
    ("numpy", (None, None, "numpy")),
    ("pytorch::pytorch=2.1.0", ("pytorch", None, "pytorch=2.1.0")),
    ("conda-forge/linux-64::libgl", ("conda-forge", "linux-64", "libgl")),
    ("conda-forge/noarch::tqdm>=4", ("conda-forge", "noarch", "tqdm>=4")),
    ("conda-forge/label/dev::x", ("conda-forge/label/dev", None, "x")),
    ("https://mirror.invalid/c/pytorch/linux-64::torch 2.*",
     ("https://mirror.invalid/c/pytorch", "linux-64", "torch 2.*")),
    ("http://127.0.0.1:8080/chan::pkg", ("http://127.0.0.1:8080/chan", None, "pkg")),
])
def test_conda_spec_channel(spec: str, expected: tuple[str | None, str | None, str]) -> None:
    assert conda_spec_channel(spec) == expected


def test_unknown_key_names_key_and_line(tmp_path: Path) -> None:
    err = error(tmp_path, """\
        name: x
        channels: [conda-forge]
        dependecies:
          - numpy
        """)
    assert "unknown key 'dependecies'" in str(err)
    assert str(err).startswith(f"{tmp_path / 'env.yaml'}:3:1: ")
    assert err.line == 3 and err.hint and "dependencies" in err.hint


@pytest.mark.parametrize(("text", "line", "col"), [
    ("name: x\ndependencies:\n  - numpy\n - scipy\n", 4, 2),          # bad indentation
    ("name: x\ndependencies: [numpy\n", 3, 1),                          # unclosed flow list
    ('name: x\nprefix: "C:\\Users"\n', 2, 14),                         # bad escape in "..."
    ("name: x\n\tdependencies:\n", 2, 1),                                # tab indentation
])
def test_malformed_yaml_points_at_line_and_column(tmp_path: Path, text: str, line: int,
                                                  col: int) -> None:
    path = tmp_path / "env.yaml"
    path.write_text(text)
    with pytest.raises(FrontendError) as info:
        parse_env_yaml(path)
    assert (info.value.line, info.value.col) == (line, col), str(info.value)
    assert str(info.value).startswith(f"{path}:{line}:{col}: invalid YAML")


@pytest.mark.parametrize(("text", "message", "line"), [
    ("", "env.yaml is empty", None),
    ("- numpy\n", "must be a mapping", 1),
    ("dependencies:\n  - numpy\ndependencies:\n  - scipy\n", "appears twice", 3),
    ("dependencies:\n  - conda: [x]\n", "unknown dependencies section 'conda'", 2),
    ("dependencies:\n  - numpy >=>1\n", "invalid conda match spec", 2),
    ("dependencies: numpy\n", "dependencies must be a list", 1),
    ("dependencies:\n  - [a, b]\n", "a dependency must be a string", 2),
    ("variables:\n  FOO:\n", "variable FOO must have a string value", 2),
    ("channels:\n  - {a: b}\n", "a channel must be a string", 2),
])
def test_structure_errors(tmp_path: Path, text: str, message: str, line: int | None) -> None:
    err = error(tmp_path, text)
    assert message in str(err)
    assert err.line == line


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FrontendError, match="does not exist"):
        parse_env_yaml(tmp_path / "nope.yaml")


# -- pip section -----------------------------------------------------------------------------


def test_pip_requirements_files_indexes_and_local_paths(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", """\
        # top-level requirements
        --extra-index-url https://extra.invalid/simple
        rich==13.7.1  # pinned
        -r sub/more.txt
        """)
    write(tmp_path / "sub" / "more.txt", """\
        tqdm \\
          >=4.66
        -r ../deeper.txt
        -e ../libs/editable_pkg
        """)
    write(tmp_path / "deeper.txt", "six==1.16.0\n")
    (tmp_path / "libs" / "editable_pkg").mkdir(parents=True)
    (tmp_path / "local_pkg").mkdir()
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "thing-1.0-py3-none-any.whl").write_bytes(b"PK")
    (tmp_path / "bare-2.0-py3-none-any.whl").write_bytes(b"PK")
    parsed = env(tmp_path, f"""\
        dependencies:
          - python=3.11
          - pip:
            - --index-url https://pypi.invalid/simple
            - -i https://pypi2.invalid/simple
            - --extra-index-url=https://extra.invalid/simple
            - --trusted-host pypi2.invalid
            - --prefer-binary
            - -r requirements.txt
            - opencv-python==4.1.2.30
            - -e .
            - ./local_pkg
            - dist/thing-1.0-py3-none-any.whl
            - bare-2.0-py3-none-any.whl
            - file://{tmp_path}/local_pkg
            - https://files.invalid/pkg-1.0-py3-none-any.whl
            - name @ https://files.invalid/name-1.0-py3-none-any.whl
        """)
    assert parsed.pip == ("rich==13.7.1", "tqdm   >=4.66", "six==1.16.0",
                          "opencv-python==4.1.2.30",
                          "https://files.invalid/pkg-1.0-py3-none-any.whl",
                          "name @ https://files.invalid/name-1.0-py3-none-any.whl")
    assert parsed.pip_index_url == "https://pypi2.invalid/simple"  # the last one wins, as in pip
    assert parsed.pip_extra_index_urls == ("https://extra.invalid/simple",)
    assert parsed.pip_trusted_hosts == ("pypi2.invalid",)
    root = tmp_path.resolve()
    assert parsed.pip_local == (
        (str(root / "libs" / "editable_pkg"), True),   # relative to sub/more.txt, as pip does
        (str(root), True),
        (str(root / "local_pkg"), False),
        (str(root / "dist" / "thing-1.0-py3-none-any.whl"), False),
        (str(root / "bare-2.0-py3-none-any.whl"), False),
    )
    assert parsed.requirement_files == (root / "requirements.txt", root / "sub" / "more.txt",
                                        root / "deeper.txt")


def test_pip_paths_are_relative_to_env_yaml_not_cwd(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    write(project / "reqs.txt", "attrs\n")
    write(project / "env.yaml", "dependencies:\n  - pip:\n    - -r reqs.txt\n    - -e ./pkg\n")
    monkeypatch.chdir(tmp_path)
    parsed = parse_env_yaml(Path("project/env.yaml"))
    assert parsed.pip == ("attrs",)
    assert parsed.pip_local == ((str((project / "pkg").resolve()), True),)


@pytest.mark.parametrize(("line", "requirement"), [
    ("git+https://example.invalid/user/repo.git@v1.0#egg=repo",
     "repo @ git+https://example.invalid/user/repo.git@v1.0"),
    ("-e git+https://example.invalid/user/repo.git#egg=repo",
     "repo @ git+https://example.invalid/user/repo.git"),
    ("repo @ git+https://example.invalid/user/repo.git@v1.0",
     "repo @ git+https://example.invalid/user/repo.git@v1.0"),
])
def test_pip_git_lines_become_git_references(tmp_path: Path, line: str,
                                             requirement: str) -> None:
    write(tmp_path / "env.yaml", f"dependencies:\n  - python\n  - pip:\n    - {line}\n")
    assert parse_env_yaml(tmp_path / "env.yaml").pip == (requirement,)


@pytest.mark.parametrize(("line", "needle"), [
    ("--editable=git+ssh://git@example.invalid/user/repo.git", "only git+https"),
    ("hg+https://example.invalid/repo#egg=repo", "only git over http(s)"),
])
def test_other_vcs_lines_are_one_line_at_their_place(tmp_path: Path, line: str,
                                                     needle: str) -> None:
    err = error(tmp_path, f"dependencies:\n  - python\n  - pip:\n    - requests\n    - {line}\n")
    assert needle in str(err) + str(err.hint) and line in str(err)
    assert (err.line, err.col) == (5, 7)


def test_vcs_line_inside_requirements_file_points_at_that_file(tmp_path: Path) -> None:
    write(tmp_path / "r.txt", "requests\n\ngit+ssh://example.invalid/x.git#egg=x\n")
    err = error(tmp_path, "dependencies:\n  - pip:\n    - -r r.txt\n")
    assert err.file == str((tmp_path / "r.txt").resolve()) and err.line == 3
    assert "only git+https" in str(err)


def test_requirements_cycle_is_detected(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "attrs\n-r b.txt\n")
    write(tmp_path / "b.txt", "six\n-r a.txt\n")
    err = error(tmp_path, "dependencies:\n  - pip:\n    - -r a.txt\n")
    assert "include each other: a.txt -> b.txt -> a.txt" in str(err)
    assert err.file == str((tmp_path / "b.txt").resolve()) and err.line == 2


@pytest.mark.parametrize(("line", "message"), [
    ("-r missing.txt", "does not exist"),
    ("./missing_pkg", "does not exist"),
    ("-e missing_dir/", "does not exist"),
    ("-e requests", "only local paths can be editable"),
    ("--find-links ./wheels", "not supported yet"),
    ("-c constraints.txt", "not supported yet"),
    ("--pre", "not supported yet"),
    ("--index-url", "needs a value"),
    ("-r https://example.invalid/reqs.txt", "from URLs are not supported yet"),
    ("./pkg[extra]", "extras on a local path"),
])
def test_pip_line_errors(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "pkg").mkdir()
    err = error(tmp_path, f"dependencies:\n  - pip:\n    - {line}\n")
    assert message in str(err)
    assert err.line == 3


# -- .condarc --------------------------------------------------------------------------------


def test_seed_condarc_with_unindented_custom_channels() -> None:
    rc = parse_condarc(SEED_CONDARC, "build.envd config.conda_channel")
    assert rc.channels == ("defaults",)
    assert len(rc.default_channels) == 8
    assert list(rc.default_channels) == SEED_URLS
    assert not any(c.endswith("/") for c in rc.default_channels)
    assert sorted(rc.custom_channels) == ["bioconda", "conda-forge", "menpo", "msys2",
                                          "pytorch", "pytorch-lts", "simpleitk"]
    assert rc.custom_channels["pytorch"] == SEED_PYTORCH.removesuffix("/pytorch")
    assert rc.channel_alias == DEFAULT_CHANNEL_ALIAS == ""
    assert len(rc.warnings) == 1
    assert "custom_channels is empty" in rc.warnings[0] and "conda-forge" in rc.warnings[0]
    # What the seed meant: pytorch (install.conda_packages(channel=["pytorch"])) is the mirror.
    loc = resolve_channel("pytorch", rc)
    assert loc.urls == (SEED_PYTORCH,) and loc.canonical == SEED_PYTORCH  # no alias set


def test_indented_condarc_has_no_warning() -> None:
    rc = parse_condarc(f"""
        channel_alias: https://canonical.invalid/
        custom_channels:
          conda-forge: {MIRROR}/cloud/
        channels: [conda-forge]
        ssl_verify: true
        """, "x")
    assert rc.custom_channels == {"conda-forge": f"{MIRROR}/cloud"}
    assert rc.channel_alias == "https://canonical.invalid"
    assert rc.warnings == ()


def test_stray_keys_before_custom_channels_are_not_taken() -> None:
    rc = parse_condarc(f"mystery: {MIRROR}\ncustom_channels:\n", "x")
    assert rc.custom_channels == {} and rc.warnings == ()


@pytest.mark.parametrize(("text", "message"), [
    ("channels: [a\n", "invalid .condarc YAML (line 2, column 1 of the text)"),
    ("channels: conda-forge\n", "channels must be a list"),
    ("custom_channels: [a]\n", "custom_channels must map"),
    ("channel_alias:\n", "channel_alias must be a URL"),
    ("- a\n", "must be a YAML mapping"),
])
def test_condarc_errors(text: str, message: str) -> None:
    with pytest.raises(FrontendError) as info:
        parse_condarc(text, "build.envd")
    assert message in str(info.value) and str(info.value).startswith("build.envd: ")


def test_empty_condarc() -> None:
    assert parse_condarc("  \n", "x") == Condarc(origin="x")


# -- channel resolution ----------------------------------------------------------------------


def rc(**kw: object) -> Condarc:
    return Condarc(origin="test", **kw)  # type: ignore[arg-type]


def test_url_channel_is_itself() -> None:
    url = f"{MIRROR}/cloud/pytorch"
    assert resolve_channel(url + "/", None) == ChannelLocation(url, url, (url,))


def test_named_channel_through_custom_channels_without_alias() -> None:
    loc = resolve_channel("conda-forge", rc(custom_channels={"conda-forge": f"{MIRROR}/cloud"}))
    # No alias: the mirror is also what the lock records.
    assert loc == ChannelLocation("conda-forge", f"{MIRROR}/cloud/conda-forge",
                                  (f"{MIRROR}/cloud/conda-forge",))


def test_named_channel_with_alias_records_canonical_and_fetches_mirror() -> None:
    loc = resolve_channel("conda-forge/label/dev", rc(
        channel_alias="https://canonical.invalid",
        custom_channels={"conda-forge": f"{MIRROR}/cloud"}))
    assert loc.canonical == "https://canonical.invalid/conda-forge/label/dev"
    assert loc.urls == (f"{MIRROR}/cloud/conda-forge/label/dev",)
    plain = resolve_channel("bioconda", rc(channel_alias="https://canonical.invalid"))
    assert plain.canonical == "https://canonical.invalid/bioconda" == plain.urls[0]


def test_named_channel_found_among_default_channels() -> None:
    loc = resolve_channel("pytorch", rc(default_channels=(f"{MIRROR}/pkgs/main",
                                                          f"{MIRROR}/cloud/pytorch")))
    assert loc.urls == (f"{MIRROR}/cloud/pytorch",)


def test_named_channel_without_any_configuration_is_a_clear_error() -> None:
    with pytest.raises(LockError) as info:
        resolve_channel("conda-forge", None)
    assert "'conda-forge' has no URL" in str(info.value)
    assert info.value.hint and "config.conda_channel" in info.value.hint


def test_defaults_expand_and_duplicates_collapse() -> None:
    config = rc(default_channels=(f"{MIRROR}/pkgs/main", f"{MIRROR}/pkgs/r"),
                custom_channels={"pytorch": f"{MIRROR}/cloud"})
    locs = resolve_channels(["pytorch", "defaults", f"{MIRROR}/pkgs/main"], config,
                            specs=["numpy", "pytorch::torch"])
    assert [loc.canonical for loc in locs] == [f"{MIRROR}/cloud/pytorch", f"{MIRROR}/pkgs/main",
                                               f"{MIRROR}/pkgs/r"]
    with pytest.raises(ValueError):
        resolve_channel("defaults", config)
    with pytest.raises(LockError, match="no default_channels"):
        resolve_channels(["defaults"], rc())


def test_spec_channels_are_searched_last() -> None:
    config = rc(channel_alias="https://canonical.invalid")
    locs = resolve_channels(["conda-forge"], config, specs=["pytorch::pytorch", "numpy"])
    assert [loc.name for loc in locs] == ["conda-forge", "pytorch"]


def test_seed_channels_resolve_with_seed_condarc(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text(SEED_ENV_YAML)
    parsed = parse_env_yaml(path)
    config = parse_condarc(SEED_CONDARC, "build.envd")
    names = effective_channels(parsed.channels, config, nodefaults=parsed.nodefaults,
                               first=["pytorch"])
    assert names[0] == "pytorch" and names[-1] == "defaults"
    locs = resolve_channels(names, config)
    canon = [loc.canonical for loc in locs]
    assert canon[0] == SEED_PYTORCH
    # "pytorch" is the 4th URL of env.yaml, and defaults lists the same 8 URLs: no duplicates.
    assert len(canon) == len(set(canon)) == 8


def test_effective_channels() -> None:
    config = rc(channels=("conda-forge", "defaults"))
    assert effective_channels(["a", "b/"], config, first=["x", "a"]) == (
        "x", "a", "b", "conda-forge", "defaults")
    assert effective_channels(["a"], config, nodefaults=True) == ("a",)
    assert effective_channels(["a"], None) == ("a",)

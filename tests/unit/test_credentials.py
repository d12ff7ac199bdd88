"""Where envnix finds a user's logins (core/credentials.py): their netrc for indexes, the
containers auth file or docker's config.json for registries; and that a conda channel URL
carrying a token is refused before the lock could record it. Credential helpers and the
wire side run in tests/integration/test_credentials_e2e.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from envnix.core import credentials
from envnix.core.errors import EnvnixError, FetchError, LockError
from envnix.frontend import load_spec
from envnix.lock import conda_plan


def _auth(user: str, secret: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{secret}".encode()).decode()}


def test_netrc_from_home_or_netrc_variable(tmp_path: Path) -> None:
    (tmp_path / ".netrc").write_text("machine idx.example login alice password s3cret\n"
                                     "default login anon password x\n")
    env = {"HOME": str(tmp_path)}
    assert credentials.netrc_path(env) == tmp_path / ".netrc"
    login = credentials.netrc_login("idx.example", env)
    assert login == credentials.Login("alice", "s3cret")
    assert "s3cret" not in repr(login)
    assert login is not None and login.basic() == "Basic " + base64.b64encode(
        b"alice:s3cret").decode()
    assert credentials.netrc_login("other.example", env) == credentials.Login("anon", "x")
    other = tmp_path / "elsewhere"
    other.write_text("machine idx.example login bob password b0b\n")
    env["NETRC"] = str(other)
    assert credentials.netrc_login("idx.example", env) == credentials.Login("bob", "b0b")
    assert credentials.netrc_path({"HOME": str(tmp_path / "none")}) is None
    assert credentials.netrc_login("idx.example", {"HOME": str(tmp_path / "none")}) is None


def test_a_broken_netrc_names_the_file_not_its_contents(tmp_path: Path) -> None:
    (tmp_path / ".netrc").write_text("machine idx.example login alice frobnicate s3cret\n")
    with pytest.raises(FetchError, match=r"cannot read .*\.netrc.*not a valid netrc") as err:
        credentials.netrc_login("idx.example", {"HOME": str(tmp_path)})
    assert "s3cret" not in str(err.value)


def test_registry_login_from_the_auth_files_in_their_order(tmp_path: Path) -> None:
    docker = tmp_path / ".docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps({"auths": {
        "reg.example:5000": _auth("alice", "from-docker"),
        "https://index.docker.io/v1/": _auth("hub", "hubpw")}}))
    env = {"HOME": str(tmp_path)}
    assert credentials.registry_login("reg.example:5000", env) == credentials.Login(
        "alice", "from-docker")
    assert credentials.registry_login("registry-1.docker.io", env) == credentials.Login(
        "hub", "hubpw")
    assert credentials.registry_login("nowhere.example", env) is None
    podman = tmp_path / ".config" / "containers"
    podman.mkdir(parents=True)
    (podman / "auth.json").write_text(json.dumps({"auths": {
        "reg.example:5000": _auth("alice", "from-podman")}}))
    assert credentials.registry_login("reg.example:5000", env).secret == "from-podman"
    explicit = tmp_path / "auth.json"
    explicit.write_text(json.dumps({"auths": {"reg.example:5000": _auth("ci", "token")}}))
    env["REGISTRY_AUTH_FILE"] = str(explicit)
    assert credentials.registry_login("reg.example:5000", env) == credentials.Login("ci",
                                                                                    "token")


def test_registry_auth_file_problems_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "auth.json"
    bad.write_text("{not json")
    with pytest.raises(FetchError, match=r"auth file .* not JSON"):
        credentials.registry_login("reg.example", {"HOME": str(tmp_path),
                                                   "REGISTRY_AUTH_FILE": str(bad)})
    bad.write_text(json.dumps({"auths": {"reg.example": {"auth": "bm9jb2xvbg=="}}}))  # nocolon
    with pytest.raises(FetchError, match=r"registry reg\.example: the login in .* is not base64"):
        credentials.registry_login("reg.example", {"HOME": str(tmp_path),
                                                   "REGISTRY_AUTH_FILE": str(bad)})
    # a helper that is not installed: said, naming the helper and the registry
    bad.write_text(json.dumps({"credHelpers": {"reg.example": "envnix-absent"}}))
    with pytest.raises(FetchError, match=r"registry reg\.example: credential helper "
                                         r"docker-credential-envnix-absent is not on PATH"):
        credentials.registry_login("reg.example", {"HOME": str(tmp_path), "PATH": "",
                                                   "REGISTRY_AUTH_FILE": str(bad)})


def test_conda_channel_token_is_refused_before_the_lock_records_it(tmp_path: Path) -> None:
    token = "tk-0123456789abcdef"
    (tmp_path / "build.envd").write_text(
        "def build():\n"
        '    base(os="ubuntu22.04", language="python3.11")\n'
        f'    install.conda_packages(name=["numpy"], channel=["https://conda.example/t/{token}/'
        'private"])\n')
    spec = load_spec(tmp_path, "build.envd:build")
    with pytest.raises(LockError, match=r"conda channel conda\.example: its URL carries an "
                                        "access token") as err:
        conda_plan(spec)
    assert token not in str(err.value) and token not in (err.value.hint or "")


def test_an_index_url_with_a_login_is_refused_before_it_reaches_pip_conf(tmp_path: Path
                                                                         ) -> None:
    (tmp_path / "build.envd").write_text(
        "def build():\n"
        '    base(os="debian12", language="python3.11")\n'
        '    config.pip_index(url="https://alice:s3cret@idx.example/simple")\n')
    with pytest.raises(EnvnixError, match=r"config\.pip_index: url carries a login") as err:
        load_spec(tmp_path, "build.envd:build")
    assert "s3cret" not in str(err.value) and "~/.netrc" in (err.value.hint or "")
    (tmp_path / "env.yaml").write_text(
        "name: e\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip:\n"
        "    - --extra-index-url https://alice:s3cret@idx.example/simple\n    - six\n")
    (tmp_path / "build.envd").write_text(
        "def build():\n"
        '    base(os="ubuntu22.04", language="python3.11")\n'
        '    install.conda_packages(env_file="env.yaml")\n')
    with pytest.raises(EnvnixError, match=r"--extra-index-url: the URL carries a login"):
        load_spec(tmp_path, "build.envd:build")

"""Credentials as people store them (issue 19, item 6): a private package index behind a
password, used from a netrc in a temporary HOME, and a private registry (htpasswd) for
base(image=...), used from docker's config.json there; then a registry with a token service
(the Docker token flow), whose public repositories need no login at all.

All on loopback, all real: the index of tests/_pip_index.py answering 401 without the login,
Debian's docker-registry with htpasswd, and with ``auth: token`` trusting the JWTs of the
token server in tests/_registry.py. The password is then looked for, as bytes, in every
file envnix wrote and every store path and image layer the build made: it must be in none.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from _cli import Built, build, envnix, parse_build
from _conda_channel import ChannelInfo, ChannelServer, serve
from _pip_index import Dist, serve_index
from _podman import podman
from _registry import Registry, have_registry_tools
from test_builders_unpack import make_wheel

from envnix.core.errors import FetchError
from envnix.frontend.envyaml import ChannelLocation
from envnix.lock.conda import lock_conda

pytestmark = pytest.mark.slow

USER = "alice"


def _home(tmp_path: Path, netrc: str | None = None,
          docker_auths: dict[str, str] | None = None,
          helpers: dict[str, tuple[str, str]] | None = None) -> dict[str, str]:
    """The environment of a user whose HOME is a fresh directory holding only their logins
    (``helpers``: a credential helper program on PATH knows them); caches stay where they are
    (the Debian indexes are not the point here)."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    path = os.environ["PATH"]
    if helpers is not None:
        (home / "bin").mkdir(exist_ok=True)
        helper = home / "bin" / "docker-credential-envnixtest"
        known = {h: {"ServerURL": h, "Username": u, "Secret": p} for h, (u, p) in helpers.items()}
        helper.write_text(f"#!{sys.executable}\nimport json, sys\n"
                          f"known = {json.dumps(known)!r}\n"
                          "assert sys.argv[1:] == ['get']\n"
                          "entry = json.loads(known).get(sys.stdin.read().strip())\n"
                          "print(json.dumps(entry)) if entry else sys.exit(1)\n")
        helper.chmod(0o755)
        path = f"{home / 'bin'}:{path}"
        (home / ".docker").mkdir(exist_ok=True)
        (home / ".docker" / "config.json").write_text(json.dumps(
            {"credHelpers": dict.fromkeys(helpers, "envnixtest")}))
    if netrc is not None:
        (home / ".netrc").write_text(netrc)
        (home / ".netrc").chmod(0o600)
    if docker_auths is not None:
        (home / ".docker").mkdir(exist_ok=True)
        auths = {h: {"auth": base64.b64encode(a.encode()).decode()}
                 for h, a in docker_auths.items()}
        (home / ".docker" / "config.json").write_text(json.dumps({"auths": auths}))
    env = {k: v for k, v in os.environ.items()
           if k not in ("NETRC", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG",
                        "XDG_CONFIG_HOME")}
    env["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    env["HOME"], env["PATH"] = str(home), path
    return env


def _files_holding(secret: bytes, paths: list[Path]) -> list[str]:
    """Every file under ``paths`` whose bytes (gunzipped too, for layers) contain ``secret``."""
    found = []
    for top in paths:
        files = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()
                                              and not p.is_symlink()]
        for file in files:
            data = file.read_bytes()
            if data[:2] == b"\x1f\x8b":
                with contextlib.suppress(OSError, EOFError):
                    data += gzip.decompress(data)
            if secret in data:
                found.append(str(file))
    return found


def _built_paths(out: Path) -> list[Path]:
    """The image output, its closure and the derivations (.drv files) it was built from."""
    closure = subprocess.run(["nix-store", "-qR", str(out)], capture_output=True, text=True,
                             check=True).stdout.split()
    drv = subprocess.run(["nix-store", "-qd", str(out)], capture_output=True, text=True,
                         check=True).stdout.strip()
    drvs = subprocess.run(["nix-store", "-qR", drv], capture_output=True, text=True,
                          check=True).stdout.split()
    return [Path(p) for p in {*closure, *(d for d in drvs if d.endswith(".drv"))}]


def _one_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("envnix:")]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_private_index_behind_a_password_works_from_a_netrc(tmp_path: Path) -> None:
    password = "pw-" + uuid.uuid4().hex
    # A wheel no store has yet (its bytes are new), so Nix must fetch it through the index.
    marker = uuid.uuid4().hex
    meta = b"Metadata-Version: 2.1\nName: privpkg\nVersion: 1.0\n"
    wheel = make_wheel(tmp_path / "privpkg-1.0-py3-none-any.whl",
                       {"privpkg.py": f"MARK = {marker!r}\n".encode(),
                        "privpkg-1.0.dist-info/METADATA": meta}, dist="privpkg-1.0")
    with serve_index([Dist("privpkg", wheel)], "html", login=(USER, password)) as index:
        context = tmp_path / "priv"
        context.mkdir()
        (context / "build.envd").write_text(
            "def build():\n"
            '    base(os="debian12", language="python3.11")\n'
            f'    config.pip_index(url="{index.url}")\n'
            '    install.python_packages(name=["privpkg"])\n')

        wrong = _home(tmp_path, f"machine 127.0.0.1 login {USER} password nope\n")
        line = _one_error(envnix("lock", str(context), env=wrong, check=False))
        assert "127.0.0.1" in line and "refused the login" in line, line
        (tmp_path / "home" / ".netrc").unlink()
        line = _one_error(envnix("lock", str(context), env=_home(tmp_path), check=False))
        assert "127.0.0.1" in line and "needs a login" in line, line

        env = _home(tmp_path, f"machine 127.0.0.1 login {USER} password {password}\n")
        envnix("lock", str(context), env=env)
        [pinned] = json.loads((context / "envnix.lock").read_text())["pip"]["wheels"]
        assert pinned["url"] == f"{index.url.removesuffix('/simple')}/files/{wheel.name}"
        # The login expires between lock and build: Nix's fetch is refused, said in one line.
        (tmp_path / "home" / ".netrc").write_text(
            f"machine 127.0.0.1 login {USER} password expired\n")
        line = _one_error(envnix("build", str(context), "-t", "priv:1", env=env, check=False))
        assert "127.0.0.1" in line and "refused the login" in line and "401" in line, line
        (tmp_path / "home" / ".netrc").write_text(
            f"machine 127.0.0.1 login {USER} password {password}\n")
        before = len(index.agents)
        built: Built = parse_build(context, envnix("build", str(context), "-t", "priv:1",
                                                   env=env))
        # envnix's seeding (envnix/nix/seed.py) fetched the wheel with the netrc's login;
        # when it cannot, Nix's builtin:fetchurl does, with the netrc-file envnix passes
        # (the expired login above: Nix's 401 is the line the user gets).
        assert index.agents[before:] == ["envnix"], index.agents
    assert built.store_path.is_dir()
    secret = password.encode()
    written = [context / "envnix.lock", context / ".envnix"]
    assert _files_holding(secret, written) == []
    assert _files_holding(secret, _built_paths(built.store_path)) == []
    layers = list((built.layout / "blobs" / "sha256").iterdir())
    assert any(marker.encode() in gzip.decompress(p.read_bytes()) for p in layers
               if p.read_bytes()[:2] == b"\x1f\x8b")  # the wheel is in the image
    assert _files_holding(secret, layers) == []


def test_private_conda_channel_locks_from_the_netrc(channel: tuple[ChannelInfo, ChannelServer],
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A channel behind a password: repodata and any package hashed at lock time come with the
    netrc's login; the lock records plain URLs; a wrong login is one line naming the host."""
    info, _ = channel
    password = "ch-" + uuid.uuid4().hex
    monkeypatch.delenv("NETRC", raising=False)
    with serve(info.root, prefixes=("private/fixture",), login=(USER, password)) as server:
        where = ChannelLocation("fixture", server.url("private/fixture"),
                                (server.url("private/fixture"),))
        monkeypatch.setenv("HOME", str(tmp_path))
        (tmp_path / ".netrc").write_text(f"machine 127.0.0.1 login {USER} password nope\n")
        with pytest.raises(FetchError) as err:
            lock_conda(["pkg-a", "nosha"], [where], glibc="2.36", cache_dir=tmp_path / "c1")
        assert "127.0.0.1" in str(err.value) and "refused the login" in str(err.value)
        assert err.value.hint is not None and "machine 127.0.0.1 login" in err.value.hint
        (tmp_path / ".netrc").write_text(f"machine 127.0.0.1 login {USER} password "
                                         f"{password}\n")
        entries = lock_conda(["pkg-a", "nosha"], [where], glibc="2.36",
                             cache_dir=tmp_path / "c2")
    assert {e["name"] for e in entries} >= {"pkg-a", "nosha"}
    assert all(str(e["url"]).startswith(server.url("private/fixture") + "/") for e in entries)
    assert password not in json.dumps(entries)


def _push_small_base(root: Path, reg: Registry, password: str, ref: str) -> Built:
    """A small envnix image with a layer of its own (a file no other image has, so no store
    holds that blob yet and the derived build must download it), pushed with the login."""
    base = root / "small"
    base.mkdir(parents=True)
    (base / "unique.txt").write_text(uuid.uuid4().hex + "\n")
    (base / "build.envd").write_text('def build():\n    base(os="debian12", '
                                     'language="python3.11")\n'
                                     '    io.copy(source="unique.txt", target="/unique.txt")\n')
    built = build(base, "-t", "small:dev")
    envnix("push", "-p", str(base), f"{reg.host}/{ref}", "--tls-verify=false",
           env={**os.environ, "ENVNIX_REGISTRY_CREDS": f"{USER}:{password}"})
    return built


def _derived_on(context: Path, ref: str) -> Path:
    context.mkdir(parents=True)
    (context / "greeting.txt").write_text("hello\n")
    (context / "build.envd").write_text(
        "# syntax=v1\ndef build():\n"
        f'    base(image="{ref}")\n'
        '    io.copy(source="greeting.txt", target="/opt/greeting.txt")\n')
    return context


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if not have_registry_tools():
        pytest.fail("docker-registry, htpasswd or openssl missing: run ./scripts/setup")
    password = "reg-" + uuid.uuid4().hex
    reg = Registry(tmp_path_factory.mktemp("privreg"), auth=(USER, password)).start()
    yield reg, password
    reg.stop()


def test_base_image_from_a_registry_behind_htpasswd(private_registry: tuple[Registry, str],
                                                    tmp_path: Path) -> None:
    reg, password = private_registry
    _push_small_base(tmp_path, reg, password, "team/privbase:1")
    context = _derived_on(tmp_path / "derived", f"{reg.host}/team/privbase:1")
    insecure = {"ENVNIX_INSECURE_REGISTRIES": reg.host}

    nobody = {**_home(tmp_path / "nobody"), **insecure}
    line = _one_error(envnix("lock", str(context), env=nobody, check=False))
    assert reg.host in line and "needs a login" in line, line
    wrong = {**_home(tmp_path / "wrong", docker_auths={reg.host: f"{USER}:nope"}), **insecure}
    line = _one_error(envnix("lock", str(context), env=wrong, check=False))
    assert reg.host in line and "refused" in line, line

    # docker's credential helper protocol: `docker-credential-NAME get`, the host on stdin
    helped = {**_home(tmp_path / "helper", helpers={reg.host: (USER, password)}), **insecure}
    envnix("lock", str(context), env=helped)
    (context / "envnix.lock").unlink()

    env = {**_home(tmp_path, docker_auths={reg.host: f"{USER}:{password}"}), **insecure}
    envnix("lock", str(context), env=env)
    lock = json.loads((context / "envnix.lock").read_text())
    assert lock["base"]["blob_urls"][0].startswith(f"http://{reg.host}/v2/team/privbase/blobs/")
    mark = reg.mark()
    proc = envnix("build", str(context), "--locked", "-t", "derived:1", env=env)
    built = parse_build(context, proc)
    # envnix fetched the layer(s) the store lacked with alice's login (Nix cannot: a registry
    # may want a token flow), as fixed outputs Nix then found built.
    assert "base layer(s) with the registry login" in proc.stderr, proc.stderr
    fetched = [a for a in reg.access_log()[mark:] if a.method == "GET" and a.status == 200]
    # (a 200 from an htpasswd registry is an authenticated answer; its app log names the user)
    assert fetched and all("/blobs/sha256:" in a.uri for a in fetched)
    assert reg.authenticated_users() == {USER}
    secret = password.encode()
    assert _files_holding(secret, [context / "envnix.lock", context / ".envnix"]) == []
    assert _files_holding(secret, _built_paths(built.store_path)) == []


# --------------------------------------------------------------------------------------------
# a registry with a token service (the Docker token flow), as the big public registries run
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """docker-registry with ``auth: token``; its token server lets anyone pull public/*."""
    if not have_registry_tools():
        pytest.fail("docker-registry, htpasswd or openssl missing: run ./scripts/setup")
    password = "tok-" + uuid.uuid4().hex
    reg = Registry(tmp_path_factory.mktemp("tokenreg"), auth=(USER, password), token=True,
                   public=("public/",)).start()
    yield reg, password
    reg.close()


def _layers(built: Built) -> list[dict[str, object]]:
    manifest = json.loads((built.layout / "blobs/sha256" / built.manifest[7:]).read_text())
    return list(manifest["layers"])


def test_public_base_on_a_token_registry_needs_no_login(
        token_registry: tuple[Registry, str], tmp_path: Path,
        podman_environ: dict[str, str]) -> None:
    """Anyone may pull a public repository: the token service gives an anonymous token.
    envnix locks with it, and builds by downloading the layers with it (Nix could not)."""
    reg, password = token_registry
    assert reg.tokens is not None
    base = _push_small_base(tmp_path / "base", reg, password, "public/base:1")
    ref = f"{reg.host}/public/base:1"
    context = _derived_on(tmp_path / "derived", ref)
    nobody = {**_home(tmp_path / "nobody"), "ENVNIX_INSECURE_REGISTRIES": reg.host}

    def anonymous_pulls(since: int) -> int:
        assert reg.tokens is not None
        return sum(1 for r in reg.tokens.requests[since:] if r.user is None
                   and r.granted == ("repository:public/base:pull",))

    before = len(reg.tokens.requests)
    envnix("lock", str(context), env=nobody)
    assert anonymous_pulls(before) >= 1  # skopeo's, and envnix's own check of the blobs
    lock = json.loads((context / "envnix.lock").read_text())
    assert lock["base"]["blob_urls"][0].startswith(f"http://{reg.host}/v2/public/base/blobs/")

    before, mark = len(reg.tokens.requests), reg.mark()
    proc = envnix("build", str(context), "--locked", "-t", "derived:1", env=nobody)
    built = parse_build(context, proc)
    assert "base layer(s) with an anonymous registry token" in proc.stderr, proc.stderr
    assert anonymous_pulls(before) >= 1
    fetched = [a for a in reg.access_log()[mark:] if a.method == "GET" and a.status == 200]
    assert fetched and all("/v2/public/base/blobs/sha256:" in a.uri for a in fetched)
    assert not any(a.status == 200 for a in reg.access_log()[mark:]
                   if "/manifests/" in a.uri)  # --locked: blobs only
    assert not [r for r in reg.tokens.requests[before:] if r.user is not None]

    base_layers = _layers(base)
    assert _layers(built)[:len(base_layers)] == base_layers
    unique = (base.context / "unique.txt").read_text()
    out = podman("run", "--rm", f"oci:{built.layout}", "/bin/sh", "-c",
                 "cat /unique.txt /opt/greeting.txt", env=podman_environ)
    assert out.stdout == unique + "hello\n"


def test_private_repository_on_a_token_registry_needs_the_login(
        token_registry: tuple[Registry, str], tmp_path: Path) -> None:
    """The token service gives no anonymous pull on a private repository: without a login
    the lock is one line saying so; with the stored login the token carries it."""
    reg, password = token_registry
    assert reg.tokens is not None
    _push_small_base(tmp_path / "base", reg, password, "team/privbase:1")
    context = _derived_on(tmp_path / "derived", f"{reg.host}/team/privbase:1")
    insecure = {"ENVNIX_INSECURE_REGISTRIES": reg.host}

    before = len(reg.tokens.requests)
    proc = envnix("lock", str(context), env={**_home(tmp_path / "nobody"), **insecure},
                  check=False)
    line = _one_error(proc)
    assert reg.host in line and "needs a login" in line, line
    assert proc.returncode == FetchError.exit_code, proc.stderr
    asked = reg.tokens.requests[before:]
    assert asked and all(r.user is None and r.granted == () for r in asked), asked
    wrong = {**_home(tmp_path / "wrong", docker_auths={reg.host: f"{USER}:nope"}), **insecure}
    line = _one_error(envnix("lock", str(context), env=wrong, check=False))
    assert reg.host in line and "refused" in line, line

    env = {**_home(tmp_path, docker_auths={reg.host: f"{USER}:{password}"}), **insecure}
    envnix("lock", str(context), env=env)
    before, mark = len(reg.tokens.requests), reg.mark()
    proc = envnix("build", str(context), "--locked", "-t", "derived:1", env=env)
    built = parse_build(context, proc)
    assert "base layer(s) with the registry login" in proc.stderr, proc.stderr
    assert any(r.user == USER and r.granted == ("repository:team/privbase:pull",)
               for r in reg.tokens.requests[before:])
    fetched = [a for a in reg.access_log()[mark:] if a.method == "GET" and a.status == 200]
    assert fetched and all("/v2/team/privbase/blobs/sha256:" in a.uri for a in fetched)
    secret = password.encode()
    assert _files_holding(secret, [context / "envnix.lock", context / ".envnix"]) == []
    assert _files_holding(secret, _built_paths(built.store_path)) == []

"""include(git=URL) end to end: a real repository served by git daemon on loopback holds an
envdlib-style .envd file; `envnix lock` pins its HEAD, the included function's effect is in
the built image, a new commit upstream moves nothing until `envnix lock --upgrade`, and
`--locked` fetches the pinned commit (not HEAD) into an empty cache.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from _cli import build, envnix
from _git_daemon import served_repository
from _podman import podman

from envnix.frontend import load_spec
from envnix.frontend.include import cache_dir, content_sha256

LIB_V1 = ('def greeting(msg="hello"):\n'
          '    """Say it in the image: an environment variable and a file."""\n'
          '    runtime.environ(env={"GREETING": msg + " " + _VERSION})\n'
          '    run(commands=["echo $GREETING > /greeting.txt"])\n'
          '_VERSION = "v1"\n')
LIB_V2 = LIB_V1.replace('"v1"', '"v2"')


def _context(root: Path, url: str) -> Path:
    context = root / "inc"
    context.mkdir(parents=True)
    (context / "build.envd").write_text(
        f'envdlib = include(git="{url}")\n\n'
        'def build():\n'
        '    base(image="debian:12", dev=False)\n'
        '    envdlib.greeting(msg="hi")\n')
    return context


def _pin(context: Path) -> dict[str, str]:
    [pin] = json.loads((context / "envnix.lock").read_text())["image"]["includes"]
    return pin


def _greeting(layout: Path, env: dict[str, str]) -> str:
    return podman("run", "--rm", f"oci:{layout}", "/bin/sh", "-c",
                  'echo "$GREETING"; cat /greeting.txt', env=env).stdout


@pytest.mark.network
@pytest.mark.slow
def test_include_is_pinned_built_kept_and_upgraded(tmp_path: Path,
                                                   podman_environ: dict[str, str]) -> None:
    with served_repository(tmp_path / "srv", {"src/greeting.envd": LIB_V1}) as served:
        first = served.git("rev-parse", "HEAD")
        context = _context(tmp_path, served.url)
        built = build(context, "--no-load")
        assert _pin(context) == {"url": served.url, "commit": first, "sha256": content_sha256(
            (("src/greeting.envd", LIB_V1),))}
        assert _greeting(built.layout, podman_environ) == "hi v1\nhi v1\n"

        second = served.commit({"src/greeting.envd": LIB_V2})
        relock = envnix("lock", str(context))
        assert "unchanged" in relock.stdout and _pin(context)["commit"] == first
        assert envnix("lock", "--check", str(context)).returncode == 0
        # --locked in an empty cache: the pinned commit is fetched by name, not HEAD.
        shutil.rmtree(cache_dir(served.url))
        again = build(context, "--locked", "--no-load")
        assert (again.config, again.manifest) == (built.config, built.manifest)

        envnix("lock", "--upgrade", str(context))
        assert _pin(context)["commit"] == second
        upgraded = build(context, "--locked", "--no-load")
        assert _greeting(upgraded.layout, podman_environ) == "hi v2\nhi v2\n"

        # A pin whose files hash otherwise (an edited lock, a rewritten repository).
        lock = json.loads((context / "envnix.lock").read_text())
        lock["image"]["includes"][0]["sha256"] = "0" * 64
        (context / "envnix.lock").write_text(json.dumps(lock))
        proc = envnix("build", str(context), "--locked", "--no-load", check=False)
    assert proc.returncode == 5
    errors = [line for line in proc.stderr.splitlines() if line.startswith("envnix:")]
    assert errors == [f"envnix: build.envd:1:11: include(git='{served.url}'): commit "
                      f"{second[:12]}'s .envd files have sha256 "
                      f"{content_sha256((('src/greeting.envd', LIB_V2),))}, but envnix.lock "
                      f"recorded {'0' * 64}"]


def test_smart_http_serves_the_pinned_commit_too(tmp_path: Path) -> None:
    """Over git's smart HTTP (git-http-backend): HEAD pinned, then, after a new commit and
    with an empty cache, the pinned commit fetched by its id."""
    with served_repository(tmp_path / "srv", {"lib.envd": LIB_V1}, http=True) as served:
        first = served.git("rev-parse", "HEAD")
        context = _context(tmp_path, served.url)
        spec = json.loads(envnix("spec", str(context)).stdout)
        assert spec["includes"][0]["commit"] == first and spec["env"] == {"GREETING": "hi v1"}
        served.commit({"lib.envd": LIB_V2})
        shutil.rmtree(cache_dir(served.url))
        again = load_spec(context, include_pins={served.url: spec["includes"][0]})
    assert again.includes == spec["includes"] and again.env == {"GREETING": "hi v1"}


def test_an_unreachable_repository_is_one_line_and_exit_8(tmp_path: Path) -> None:
    with served_repository(tmp_path / "srv", {"lib.envd": LIB_V1}) as served:
        context = _context(tmp_path, served.url.rsplit("/", 1)[0] + "/missing")
        proc = envnix("spec", str(context), check=False)
    assert proc.returncode == 8, proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("envnix:")]
    assert line.startswith(f"envnix: build.envd:1:11: include(git='{served.url[:-7]}missing'): "
                           "cannot reach the repository: ")
    assert "Traceback" not in proc.stderr


def test_git_reads_none_of_the_users_config(tmp_path: Path) -> None:
    """A ~/.gitconfig (or GIT_CONFIG_GLOBAL) whose insteadOf would send the URL to a dead
    port and whose credential helper would leave a mark: envnix's git sees neither."""
    home = tmp_path / "home"
    home.mkdir()
    mark = tmp_path / "helper-ran"
    with served_repository(tmp_path / "srv", {"lib.envd": LIB_V1}) as served:
        config = (f'[url "git://127.0.0.1:1/"]\n\tinsteadOf = {served.url.rsplit("/", 1)[0]}/\n'
                  f'[credential]\n\thelper = "!touch {mark}"\n'
                  '[core]\n\thooksPath = /nonexistent\n')
        (home / ".gitconfig").write_text(config)
        env = {**os.environ, "HOME": str(home),
               "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
               "XDG_CACHE_HOME": str(home / ".cache")}
        context = _context(tmp_path, served.url)
        proc = envnix("spec", str(context), env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["env"] == {"GREETING": "hi v1"}
    assert not mark.exists()

"""envnix builds with the user's Nix settings: their binary cache and its key are used, a cache
that does not answer costs seconds, not a stalled build, and the command line overrides.

Real parts only: a binary cache made by ``nix copy`` and signed with a key from
``nix-store --generate-binary-cache-key``, served over HTTP on loopback; a TCP server that
accepts and never answers; a closed port; the user's nix.conf given to Nix the way a user
gives it (NIX_USER_CONF_FILES, and NIX_CONF_DIR for the machine's, here an empty one).
"""

from __future__ import annotations

import http.server
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _binary_cache import NIX, nix_env, nonce_context, serve, signing_key
from _cli import envnix, parse_build
from _tiny import dead_port

from envnix.nix import DEFAULTS, NixConfig, build_options


@contextmanager
def _silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A loopback TCP server that accepts every connection and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", held
    finally:
        listener.close()
        for conn in held:
            conn.close()


@pytest.mark.slow
def test_users_signed_cache_is_used_and_its_key_checked(tmp_path: Path,
                                                        cleanup_stores: None) -> None:
    nonce = uuid.uuid4().hex
    first = parse_build(*_built(nonce_context(tmp_path / "a", nonce), "--no-substitute"))
    image = str(first.store_path)

    secret, public = signing_key(tmp_path, "envnix-test-cache-1")
    cache = tmp_path / "cache"
    subprocess.run([*NIX, "copy", "--to", f"file://{cache}?secret-key={secret}&compression=none",
                    image], check=True)

    with serve(cache) as (url, requests):
        # A fresh chroot store, the user's nix.conf naming the cache and its key: the image
        # is copied from the cache, not built.
        env = nix_env(tmp_path, f"substituters = {url}\ntrusted-public-keys = {public}\n")
        context = nonce_context(tmp_path / "b", nonce)
        proc = envnix("build", str(context), "--locked", "--store",
                      str(tmp_path / "store-b"), "-v", env=env)
        got = parse_build(context, proc)
        assert (got.config, got.manifest) == (first.config, first.manifest)
        assert f"copying path '{image}' from '{url}'" in proc.stderr, proc.stderr[-3000:]
        assert not re.search(r"building '\S+-envnix-image-", proc.stderr)
        hash_part = Path(image).name.split("-")[0]
        assert f"/{hash_part}.narinfo" in requests
        assert any(r.startswith("/nar/") for r in requests), requests

        # The same cache under a key the user does not trust: Nix refuses its paths, and the
        # build makes the same image itself.
        _, other = signing_key(tmp_path, "envnix-test-cache-2")
        env = nix_env(tmp_path, f"substituters = {url}\ntrusted-public-keys = {other}\n")
        context = nonce_context(tmp_path / "c", nonce)
        proc = envnix("build", str(context), "--locked", "--store",
                      str(tmp_path / "store-c"), "-v", env=env)
        got = parse_build(context, proc)
        assert (got.config, got.manifest) == (first.config, first.manifest)
        assert f"copying path '{image}'" not in proc.stderr
        assert re.search(r"building '\S+-envnix-image-", proc.stderr)


def _built(context: Path, *extra: str,
           env: dict[str, str] | None = None) -> tuple[Path, subprocess.CompletedProcess[str]]:
    return context, envnix("build", str(context), "--locked", *extra, env=env)


@pytest.mark.slow
def test_unreachable_caches_cost_seconds_not_a_stalled_build(tmp_path: Path) -> None:
    """A cache that accepts and never answers and one on a closed port, both in the user's
    nix.conf: the build succeeds, and its extra time over the same build with no cache at all
    (measured here, both really building) stays far below what Nix alone would wait — 5
    transfers x stalled-download-timeout (300 s) for the silent one."""
    baseline_env = nix_env(tmp_path, "substituters =\n")
    started = time.monotonic()
    _built(nonce_context(tmp_path / "base", uuid.uuid4().hex), env=baseline_env)
    baseline = time.monotonic() - started

    with _silent_server() as (silent, held):
        closed = f"http://127.0.0.1:{dead_port()}"
        env = nix_env(tmp_path, f"substituters = {silent} {closed}\n")
        started = time.monotonic()
        context, proc = _built(nonce_context(tmp_path / "bad", uuid.uuid4().hex), env=env)
        slow = time.monotonic() - started
        parse_build(context, proc)
        # envnix's probe was the only visitor: Nix was never left waiting on the silent one.
        assert len(held) == 1
    for url, why in ((silent, "timed out"), (closed, "connection refused")):
        assert f"nix: substituter {url} does not answer ({why})" in proc.stderr, proc.stderr
    count = re.search(r"^build: (\d+) derivation\(s\) built", proc.stderr, re.M)
    assert count and int(count[1]) >= 1  # it really built (the image), as the baseline did
    assert slow - baseline < 30, (slow, baseline)


def test_settings_the_user_made_are_left_alone(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """envnix's defaults fill only settings left at Nix's default; flags override nix.conf."""
    monkeypatch.setenv("NIX_CONF_DIR", str(tmp_path))
    monkeypatch.setenv("NIX_USER_CONF_FILES", str(tmp_path / "user.conf"))
    (tmp_path / "user.conf").write_text("max-jobs = 3\nconnect-timeout = 7\nsubstituters =\n")

    def options(config: NixConfig) -> dict[str, str]:
        opts = build_options("pinned", config)
        pairs = [opts[i + 1:i + 3] for i, o in enumerate(opts) if o == "--option"]
        assert len(pairs) * 3 == len(opts)  # nothing but --option NAME VALUE
        return dict(pairs)

    mine = options(NixConfig())
    assert mine == {"sandbox": "true", "fallback": DEFAULTS["fallback"],
                    "stalled-download-timeout": DEFAULTS["stalled-download-timeout"]}
    asked = options(NixConfig(substituters="file:///nowhere", max_jobs="4", builders="",
                              options=(("fallback", "false"),)))
    assert asked == {**mine, "fallback": "false", "max-jobs": "4", "builders": "",
                     "substituters": "file:///nowhere"}
    assert options(NixConfig(substitute=False))["substitute"] == "false"
    # The host toolchain (not reproducible) is the one build that gets host paths.
    assert options(NixConfig()) == mine
    host = build_options("host", NixConfig())
    assert host[:6] == ["--option", "sandbox", "true", "--option", "extra-sandbox-paths",
                        "/usr /lib /lib64"]


@pytest.mark.parametrize(("args", "says"), [
    (["--nix-option", "sandbox", "false"], "--nix-option sandbox: envnix always builds in"),
    (["--nix-option", "extra-sandbox-paths", "/usr"], "--nix-option extra-sandbox-paths"),
    (["--max-jobs", "lots"], "--max-jobs 'lots': expected a number or auto"),
    (["--substituters", "http://127.0.0.1:1", "--no-substitute"], "contradict each other"),
])
def test_bad_nix_flags_are_one_line_usage_errors(tmp_path: Path, args: list[str],
                                                 says: str) -> None:
    context = nonce_context(tmp_path, "x")
    proc = envnix("build", str(context), "--locked", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("envnix: ") and says in first, proc.stderr
    assert not (context / ".envnix").exists()  # refused before anything was written


def test_nix_is_asked_with_nothing_but_the_sandbox_where_the_user_decides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No forced ``substituters ''``: a user who set every bounded setting gets the sandbox and
    nothing else, and the reachable substituter they named is passed through untouched."""
    with serve(tmp_path) as (url, requests):
        (tmp_path / "nix-cache-info").write_text("StoreDir: /nix/store\n")
        conf = (f"substituters = {url}\nmax-jobs = 2\nconnect-timeout = 3\nfallback = true\n"
                "stalled-download-timeout = 60\n")
        monkeypatch.setenv("NIX_CONF_DIR", str(tmp_path))
        monkeypatch.setenv("NIX_USER_CONF_FILES", str(tmp_path / "user.conf"))
        (tmp_path / "user.conf").write_text(conf)
        assert build_options("pinned", NixConfig()) == ["--option", "sandbox", "true"]
        assert requests == ["/nix-cache-info"]  # envnix's probe, which found it answering


@contextmanager
def _cache_that_stops_answering() -> Iterator[str]:
    """Answers ``nix-cache-info`` (so the probe finds it alive), then never answers again."""
    closing = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/nix-cache-info":
                closing.wait(120)
                return
            body = b"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        closing.set()
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_cache_that_stops_answering_mid_build_is_one_line(tmp_path: Path) -> None:
    """What the probe cannot see: Nix 2.8 fails the build when a cache dies after it started
    using it. envnix says which cache and how to build without it (network's exit code)."""
    with _cache_that_stops_answering() as url:
        context = nonce_context(tmp_path, uuid.uuid4().hex)
        proc = envnix("build", str(context), "--locked", "--substituters", url,
                      "--nix-option", "stalled-download-timeout", "1",
                      "--nix-option", "download-attempts", "2", check=False)
    assert proc.returncode == 8, proc.stderr
    assert f"envnix: binary cache {url} stopped answering: " in proc.stderr, proc.stderr
    assert "hint: build without it: --substituters" in proc.stderr

"""``envnix cache push`` fills a real signed binary cache from which a fresh store gets the same
image without building anything: over ``file://`` and over HTTP on loopback.

Real parts only (tests/_binary_cache.py): keys from ``nix-store --generate-binary-cache-key``,
the consumer's nix.conf given to Nix as a user gives it, fresh chroot stores, and Nix's own
refusal of what nobody signed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from _binary_cache import nix_env, nonce_context, serve, signing_key
from _cli import Built, envnix, parse_build
from _tiny import dead_port, tiny_context


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Built, str]:
    """A tiny image new to this machine, built in its store: (work dir, build, nonce)."""
    work = tmp_path_factory.mktemp("producer")
    nonce = uuid.uuid4().hex
    context = nonce_context(work / "producer", nonce)
    return work, parse_build(context, envnix("build", str(context), "--locked",
                                              "--no-substitute")), nonce


def _push(context: Path, cache: str, *extra: str,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return envnix("cache", "push", cache, str(context), *extra, env=env)


def _consume(work: Path, name: str, nonce: str, substituters: str,
             env: dict[str, str]) -> tuple[Built, str]:
    """Build the produced context afresh in a new chroot store that substitutes from
    ``substituters``; (its build, its stderr). The store is removed afterwards (disk)."""
    context = nonce_context(work / name, nonce)
    store = work / f"store-{name}"
    try:
        proc = envnix("build", str(context), "--locked", "--store", str(store),
                      "--substituters", substituters, "-v", env=env)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(store)], check=False)
        shutil.rmtree(store, ignore_errors=True)
    return parse_build(context, proc), proc.stderr


def _built_count(stderr: str) -> int:
    count = re.search(r"^build: (\d+) derivation\(s\) built", stderr, re.M)
    assert count, stderr[-3000:]
    return int(count[1])


@pytest.mark.slow
def test_a_fresh_store_gets_the_pushed_image_and_builds_nothing(
        produced: tuple[Path, Built, str], tmp_path: Path, cleanup_stores: None) -> None:
    work, first, nonce = produced
    secret, public = signing_key(tmp_path, "envnix-test-push-1")
    cache = tmp_path / "cache"
    proc = _push(first.context, f"file://{cache}", "--sign-key", str(secret))
    assert f"trust:    {public}\n" in proc.stdout, proc.stdout
    new = int(re.search(r"^paths:\s+\d+ \(and their closure\), (\d+) new$", proc.stdout,
                        re.M)[1])  # type: ignore[index]
    assert new >= 3, proc.stdout  # the image, its layers, the toolchain and trees
    hash_part = first.store_path.name.split("-")[0]
    assert (cache / f"{hash_part}.narinfo").is_file()
    assert "Sig: envnix-test-push-1:" in (cache / f"{hash_part}.narinfo").read_text()
    assert list((cache / "nar").glob("*.nar.zst"))
    # A second push finds everything there.
    again = _push(first.context, f"file://{cache}", "--sign-key", str(secret))
    assert re.search(r", 0 new$", again.stdout, re.M), again.stdout

    env = nix_env(tmp_path, f"trusted-public-keys = {public}\n")
    got, log = _consume(work, "from-file", nonce, f"file://{cache}", env)
    assert (got.config, got.manifest, got.store_path) == \
        (first.config, first.manifest, first.store_path)
    assert f"copying path '{first.store_path}' from 'file://{cache}'" in log, log[-3000:]
    assert _built_count(log) == 0
    assert "will be built" not in log and "derivation(s) to build" not in log

    with serve(cache) as (url, requests):
        got, log = _consume(work, "from-http", nonce, url, env)
    assert (got.config, got.manifest) == (first.config, first.manifest)
    assert f"copying path '{first.store_path}' from '{url}'" in log, log[-3000:]
    assert _built_count(log) == 0
    assert "will be built" not in log
    assert f"/{hash_part}.narinfo" in requests
    assert any(r.startswith("/nar/") for r in requests), requests


@pytest.mark.slow
def test_an_unsigned_push_is_not_substituted_where_signatures_are_required(
        produced: tuple[Path, Built, str], tmp_path: Path, cleanup_stores: None) -> None:
    """Nix's own rule (require-sigs, on by default): paths nobody signed are not taken from
    the cache; the consumer builds the same image itself. envnix warns at push time and says
    in one line at build time why the cache was not used (Nix warns once per path)."""
    work, first, nonce = produced
    cache = tmp_path / "unsigned"
    no_keys = nix_env(tmp_path, "")
    proc = _push(first.context, str(cache), env=no_keys)  # a directory: a file:// cache
    assert "envnix: warning: nothing signed these paths" in proc.stderr, proc.stderr
    assert "trust:" not in proc.stdout
    assert f"cache:    file://{cache}\n" in proc.stdout
    _, public = signing_key(tmp_path, "envnix-test-push-2")
    got, log = _consume(work, "unsigned", nonce, f"file://{cache}",
                        nix_env(tmp_path, f"trusted-public-keys = {public}\n"))
    assert (got.config, got.manifest) == (first.config, first.manifest)
    assert f"copying path '{first.store_path}'" not in log
    assert _built_count(log) >= 1
    said = re.search(rf"^nix: (\d+) path\(s\) in file://{cache} are not signed by a key in "
                     r"trusted-public-keys: Nix did not use them$", log, re.M)
    assert said and int(said[1]) >= 1, log[-3000:]


@pytest.mark.slow
def test_nix_conf_secret_key_files_sign_without_a_flag(produced: tuple[Path, Built, str],
                                                       tmp_path: Path) -> None:
    _, first, _ = produced
    secret, public = signing_key(tmp_path, "envnix-test-conf-key")
    cache = tmp_path / "signed-by-conf"
    proc = _push(first.context, f"file://{cache}",
                 env=nix_env(tmp_path, f"secret-key-files = {secret}\n"))
    assert f"trust:    {public}\n" in proc.stdout, proc.stdout
    assert "warning" not in proc.stderr
    narinfo = cache / f"{first.store_path.name.split('-')[0]}.narinfo"
    assert "Sig: envnix-test-conf-key:" in narinfo.read_text()


@pytest.mark.slow
def test_cache_push_failures_are_one_line(produced: tuple[Path, Built, str],
                                          tmp_path: Path) -> None:
    _, first, _ = produced
    secret, public = signing_key(tmp_path, "envnix-test-push-3")
    (tmp_path / "public.key").write_text(public + "\n")
    cases = [
        ([f"file://{tmp_path / 'c'}", "--sign-key", str(tmp_path / "missing.sec")], 2,
         "cannot read it (no such file or directory)"),
        ([f"file://{tmp_path / 'c'}", "--sign-key", str(tmp_path / "public.key")], 2,
         "is a public key"),
        ([f"file://{tmp_path / 'c'}?secret-key={secret}", "--sign-key", str(secret)], 2,
         "contradict each other"),
        ([f"http://127.0.0.1:{dead_port()}", "--sign-key", str(secret)], 8,
         "does not answer (connection refused)"),
        (["nosuch://cache", "--sign-key", str(secret)], 2, "is not a binary cache Nix can"),
    ]
    for args, code, says in cases:
        proc = envnix("cache", "push", *args, str(first.context), check=False)
        assert proc.returncode == code, (args, proc.stderr)
        said = [ln for ln in proc.stderr.splitlines() if ln.startswith("envnix: ")]
        assert len(said) == 1 and says in said[0], (args, proc.stderr)
        assert "secret-key" not in said[0] or "contradict" in said[0]
    assert not (tmp_path / "c").exists()  # refused before Nix wrote anything


def test_nothing_built_yet_is_one_line(tmp_path: Path) -> None:
    context = tiny_context(tmp_path)
    proc = envnix("cache", "push", f"file://{tmp_path / 'cache'}", str(context), check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"envnix: no image has been built in {context} ({context}/.envnix/result is missing)",
        "  hint: run envnix build first"]

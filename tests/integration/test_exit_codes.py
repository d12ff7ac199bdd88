"""Every exit code of envnix/core/errors.py's table, each caused for real through the CLI; the
README's table says the same; Ctrl-C and SIGTERM stop Nix and leave nothing half-done; build
--store seeds only what Nix itself may fetch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _cli import envnix, without_nix_path
from _tiny import Server, dead_port, lock_text, tiny_context, wheel

from envnix.core.errors import EXIT_CODES, BuildError, LockError
from envnix.nix.seed import seed_chroot_store


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("envnix: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "[Errno" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny image, built for real (seconds, offline)."""
    context = tiny_context(tmp_path_factory.mktemp("built"))
    envnix("build", str(context), "--locked")
    return context


# --- every code, for real ------------------------------------------------------------------

def usage(tmp: Path, built: Path) -> subprocess.CompletedProcess[str]:
    return envnix("build", str(built), "--locked", "-t", 'x"; builtins.exec', check=False)


def frontend(tmp: Path, built: Path) -> subprocess.CompletedProcess[str]:
    context = tiny_context(tmp, envd="def build(:\n")
    return envnix("spec", str(context), check=False)


def lock(tmp: Path, built: Path) -> subprocess.CompletedProcess[str]:
    context = tiny_context(tmp, envd='def build():\n    base(os="debian12", '
                           'language="python3.11")\n    install.apt_packages(name=["nosuch-'
                           'envnix-pkg"])\n')
    (context / "envnix.lock").unlink()
    return envnix("lock", str(context), check=False)


def stale(tmp: Path, built: Path) -> subprocess.CompletedProcess[str]:
    context = tiny_context(tmp)
    (context / "build.envd").write_text((context / "build.envd").read_text()
                                        + '    install.apt_packages(name=["jq"])\n')
    return envnix("build", str(context), "--locked", check=False)


def nix_build(tmp: Path, built: Path) -> subprocess.CompletedProcess[str]:
    with Server(b"the served bytes").running() as server:
        context = tiny_context(tmp, wheels=[wheel(f"{server.url}/envnixprobe-1.0-py3-none-"
                                                  "any.whl", data=b"the locked bytes")])
        return envnix("build", str(context), "--locked", check=False)


def publish(tmp: Path, built: Path) -> subprocess.CompletedProcess[str]:
    return envnix("push", str(built), f"127.0.0.1:{dead_port()}/team/tiny:1",
                  "--tls-verify=false", check=False)


def network(tmp: Path, built: Path) -> subprocess.CompletedProcess[str]:
    """A download failure while building (seeding a --store) is the network's code."""
    url = f"http://127.0.0.1:{dead_port()}/envnixprobe-1.0-py3-none-any.whl"
    data = os.urandom(32)  # on no machine's store: it must be downloaded
    context = tiny_context(tmp, wheels=[wheel(url, data=data)])
    proc = envnix("build", str(context), "--locked", "--store", str(tmp / "store"),
                  check=False)
    assert f"cannot download {url}: connection refused" in proc.stderr, proc.stderr
    subprocess.run(["chmod", "-R", "u+w", str(tmp / "store")], check=False)
    return proc


def missing_tool(tmp: Path, built: Path) -> subprocess.CompletedProcess[str]:
    return envnix("build", str(built), "--locked", env=without_nix_path(), check=False)


def interrupted(tmp: Path, built: Path) -> subprocess.CompletedProcess[str]:
    return interrupt_build(tmp, signal.SIGINT, in_nix=False)  # in envnix's own download


def terminated(tmp: Path, built: Path) -> subprocess.CompletedProcess[str]:
    return interrupt_build(tmp, signal.SIGTERM, in_nix=True)  # in Nix's fetch


SCENARIOS: dict[int, Callable[[Path, Path], subprocess.CompletedProcess[str]]] = {
    2: usage, 3: frontend, 4: lock, 5: stale, 6: nix_build, 7: publish, 8: network,
    127: missing_tool, 130: interrupted, 143: terminated,
}


def test_every_code_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(EXIT_CODES)


@pytest.mark.parametrize("code", sorted(SCENARIOS))
def test_exit_code(code: int, tmp_path: Path, built: Path) -> None:
    proc = SCENARIOS[code](tmp_path, built)
    assert proc.returncode == code, proc.stderr
    one_error(proc)


# --- Ctrl-C / SIGTERM: Nix stopped, nothing half-written -------------------------------------

def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgid, state) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            table[int(entry)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def _descendants(pid: int) -> dict[int, int]:
    """pid -> pgid of every live process below ``pid``."""
    table = _proc_table()
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, pgid, _) in table.items():
            if ppid == parent and child not in found:
                found[child] = pgid
                todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def interrupt_build(tmp: Path, sig: int, in_nix: bool) -> subprocess.CompletedProcess[str]:
    """Start a build whose download never answers; signal envnix while it waits for it: in
    envnix's own download before nix-build (nix/seed.py), or (``in_nix``) in Nix's fetch
    once envnix's was refused."""
    with Server(b"never sent", delay=600,
                refuse_agent="envnix" if in_nix else None).running() as server:
        context = tiny_context(tmp, wheels=[wheel(f"{server.url}/envnixprobe-1.0-py3-none-"
                                                  "any.whl")])
        before = lock_text(context)
        proc = subprocess.Popen(
            [sys.executable, "-m", "envnix", "build", str(context), "--locked"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while server.requests == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.requests and proc.poll() is None, "the download never started"
        below = _descendants(proc.pid)
        assert any("nix-build" in _cmdline(p) for p in below) is in_nix, below
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        # While the download still hangs (the server is up): nothing envnix started is left.
        alive = _proc_table()
        survivors = [p for p in below if p in alive and alive[p][2] != "Z"]
        groups = set(below.values()) - {os.getpgrp()}
        in_groups = [p for p, (_, pgid, state) in alive.items()
                     if pgid in groups and state != "Z"]
        assert not survivors and not in_groups, [(p, _cmdline(p))
                                                 for p in survivors + in_groups]
    generated = context / ".envnix"
    assert not os.path.lexists(generated / "result")
    leftovers = [p for p in context.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    assert lock_text(context) == before
    word = "interrupted" if sig == signal.SIGINT else "terminated"
    assert err.splitlines()[-1] == f"envnix: {word}", err
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --- item 4: --store seeds only what Nix may fetch -----------------------------------------

def test_store_seeding_never_reads_a_file_url(tmp_path: Path) -> None:
    """A FIFO as the "host file": any attempt to read it would block, so a hang is a read."""
    secret = tmp_path / "secret"
    os.mkfifo(secret)
    context = tiny_context(tmp_path, wheels=[wheel(f"file://{secret}")])
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "envnix", "build", str(context), "--locked",
                           "--store", str(store)], capture_output=True, text=True, timeout=120)
    # Refused where envnix.lock is read, before anything is fetched or seeded (the seeding's
    # own check is tested on a tampered rendered lock below).
    assert proc.returncode == 5, proc.stderr
    assert "expected an http(s) URL" in one_error(proc)
    assert not store.exists()


@pytest.mark.parametrize("artifact, problem", [
    ({"url": "file:///etc/shadow"}, "http(s) URL"),
    ({"url": "http://user:secret@127.0.0.1:9/x.whl"}, "credentials"),
    ({"url": "ftp://127.0.0.1/x.whl"}, "http(s) URL"),
    ({"url": "http://127.0.0.1:9/a b.whl"}, "spaces"),
    ({"filename": "../../../../tmp/ENVNIX_SEEDED.whl"}, "a wheel file name"),
    ({"sha256": "../x"}, "64 hex digits"),
])
def test_seeding_checks_the_rendered_lock_on_its_own(tmp_path: Path, artifact: dict[str, str],
                                                     problem: str) -> None:
    """Whatever wrote .envnix/envnix.lock, seeding (outside any sandbox) refuses these before
    acting: a lock envnix rendered, then tampered with."""
    context = tiny_context(tmp_path, wheels=[wheel("http://127.0.0.1:9/x.whl", b"x")])
    envnix("render", str(context), "--locked")
    rendered = context / ".envnix" / "envnix.lock"
    data = json.loads(rendered.read_text())
    data["pip"]["wheels"][0].update(artifact)
    rendered.write_text(json.dumps(data))
    store = tmp_path / "store"
    with pytest.raises((LockError, BuildError)) as info:
        seed_chroot_store(rendered, str(store))
    assert str(rendered) in info.value.message and problem in info.value.message, \
        info.value.message
    assert not store.exists() and not Path("/tmp/ENVNIX_SEEDED").exists()


def test_credentials_in_a_locked_url_are_refused_before_any_request(tmp_path: Path) -> None:
    with Server(b"x").running() as server:
        host = server.url.removeprefix("http://")
        context = tiny_context(tmp_path, wheels=[wheel(f"http://me:secret@{host}/x.whl")])
        proc = envnix("build", str(context), "--locked", check=False)
        assert proc.returncode == 5 and "carries credentials" in one_error(proc)
        assert "secret" not in proc.stderr
        assert server.requests == 0

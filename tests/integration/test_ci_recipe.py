"""The CI recipe runs as users copy it: docs/ci/build.sh, twice, as two CI runs on fresh
machines that share only the binary cache directory the CI keeps, against a real registry on
loopback (TLS, password) — the second run substitutes the image instead of building it and
pushes the same digest; in between, a reviewer with a fresh store runs envnix verify on the
pushed tag and sees "verified"."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from _binary_cache import nonce_context, signing_key
from _cli import ROOT
from _registry import Registry, have_registry_tools

SCRIPT = ROOT / "docs" / "ci" / "build.sh"
USER, PASSWORD = "ci", "s3cret-ci"


def _ci_run(work: Path, name: str, nonce: str, env: dict[str, str]) -> str:
    """One CI run: a fresh checkout and a fresh Nix store (removed after, for disk)."""
    context = nonce_context(work / name, nonce)
    store = work / f"store-{name}"
    try:
        proc = subprocess.run(["bash", str(SCRIPT)], cwd=context, capture_output=True,
                              text=True, check=False, env=env | {"STORE": str(store)})
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(store)], check=False)
        shutil.rmtree(store, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_second_ci_run_substitutes_and_pushes_the_same_digest(tmp_path: Path) -> None:
    if not have_registry_tools():
        pytest.fail("docker-registry, htpasswd or openssl missing: run ./scripts/setup")
    secret, public = signing_key(tmp_path, "envnix-ci-test")
    cache = tmp_path / "ci-cache"  # what the CI keeps between runs (actions/cache, a volume)
    nonce = uuid.uuid4().hex
    with Registry(tmp_path / "reg", tls=True, auth=(USER, PASSWORD)) as reg:
        env = os.environ | {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "REGISTRY": reg.host, "IMAGE": "team/app", "TAG": "ci",
            "CACHE_DIR": str(cache), "CACHE_PUBLIC_KEY": public, "CACHE_KEY_FILE": str(secret),
            "ENVNIX_REGISTRY_CREDS": f"{USER}:{PASSWORD}",
            "ENVNIX_REGISTRY_CERT_DIR": str(reg.cert_dir)}
        first = _ci_run(tmp_path, "run1", nonce, env)
        built = re.search(r"^build: (\d+) derivation\(s\) built", first, re.M)
        assert built and int(built[1]) >= 1, first[-3000:]
        manifest = re.search(r"^manifest: (sha256:[0-9a-f]{64})$", first, re.M)[1]  # type: ignore[index]
        assert f"{reg.host}/team/app:ci@{manifest}" in first
        assert (cache / "nix-cache-info").is_file()
        assert f"verified {manifest}" in first  # the recipe's own verify step

        # A reviewer elsewhere: a fresh checkout and a fresh store, the CI's binary cache, and
        # the pushed tag: envnix verify rebuilds from the lock and finds the same image.
        checkout = nonce_context(tmp_path / "reviewer", nonce)
        review_store = tmp_path / "store-reviewer"
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "envnix", "verify", str(checkout),
                 f"docker://{reg.host}/team/app:ci", "--store", str(review_store),
                 "--substituters", f"file://{cache}",
                 "--nix-option", "trusted-public-keys", public],
                capture_output=True, text=True, check=False, env=env)
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(review_store)], check=False)
            shutil.rmtree(review_store, ignore_errors=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.splitlines() == [f"verified {manifest}"], proc.stdout
        assert "verify: 0 derivation(s) built" in proc.stderr, proc.stderr[-3000:]

        mark = reg.mark()
        second = _ci_run(tmp_path, "run2", nonce, env)
        assert "build: 0 derivation(s) built" in second, second[-3000:]
        assert "derivation(s) to build" not in second
        assert f"manifest: {manifest}" in second
        assert f"{reg.host}/team/app:ci@{manifest}" in second
        assert reg.blob_uploads(since=mark) == []  # the registry had every blob already
        assert reg.manifest_digest("team/app", "ci") == manifest
        assert re.search(r"^paths:.*, 0 new$", second, re.M), second[-2000:]


def test_the_workflow_runs_the_script_with_every_variable_it_reads() -> None:
    """workflow.yml and build.sh are copied together: the step hands the script every variable
    the script's header documents (TAG and STORE have defaults a CI run wants)."""
    header = SCRIPT.read_text().split("set -euo pipefail")[0]
    documented = set(re.findall(r"^#   ([A-Z_]+)\s", header, re.M)) - {"TAG", "STORE"}
    workflow = (ROOT / "docs" / "ci" / "workflow.yml").read_text()
    preserved = set(re.search(r"--preserve-env=(\S+)", workflow)[1].split(","))  # type: ignore[index]
    assert documented and documented <= preserved, documented - preserved
    assert "docs/ci/build.sh" in workflow

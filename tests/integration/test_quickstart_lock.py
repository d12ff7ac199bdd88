"""The committed quickstart lock builds the image whose digests the README quotes.

examples/quickstart/envnix.lock is committed so that every newcomer builds the same image, and
examples/quickstart/expected-digests.json holds the digests it gives. The lock pins .debs on a
live Debian mirror, which deletes a version once a point release or a security update supersedes
it: the lock rots, and a locked .deb then fails to download (404). The failure messages below
say which case it is and what to run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from _cli import copy_example, envnix, parse_build
from test_quickstart_lock_offline import EXAMPLE, EXPECTED

TAG = "quickstart:dev"
RELOCK = "env -u SOURCE_DATE_EPOCH .venv/bin/envnix lock examples/quickstart"
REBUILD = f"env -u SOURCE_DATE_EPOCH .venv/bin/envnix build examples/quickstart --locked -t {TAG}"


def build_committed(dest: Path,
                    lock: dict | None = None) -> tuple[Path, subprocess.CompletedProcess]:
    """``envnix build --locked`` of a copy of the quickstart with the committed lock (or
    ``lock``), SOURCE_DATE_EPOCH unset as for the committed digests."""
    context = copy_example("quickstart", dest)
    if lock is None:
        shutil.copy(EXAMPLE / "envnix.lock", context / "envnix.lock")
    else:
        (context / "envnix.lock").write_text(json.dumps(lock, indent=2))
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    proc = envnix("build", str(context), "--locked", "-t", TAG, env=env, check=False)
    return context, proc


def failure_reason(proc: subprocess.CompletedProcess) -> str:
    """Why the committed lock did not build, and what to do about it."""
    download = re.search(r"cannot download (\S+?):? (.*)", proc.stderr)
    if download and "404" in download[2]:
        return (f"the mirror no longer has {download[1]} ({download[2].strip()}): a live Debian "
                "mirror deletes .debs that a point release or security update superseded, so "
                f"the committed quickstart lock has rotted. Re-lock with `{RELOCK}`, build with "
                f"`{REBUILD}`, write its config and manifest digests into {EXPECTED.name} and "
                "the README, and commit envnix.lock and expected-digests.json together.")
    if download:
        return (f"downloading {download[1]} failed ({download[2].strip()}): check the network "
                "and run again; the lock is fine unless the mirror answers 404")
    return f"envnix build --locked exited {proc.returncode}:\n{proc.stderr[-3000:]}"


@pytest.mark.network
@pytest.mark.slow
def test_committed_lock_builds_the_readme_digests(tmp_path: Path) -> None:
    expected = json.loads(EXPECTED.read_text())
    context, proc = build_committed(tmp_path)
    if proc.returncode != 0:
        pytest.fail(failure_reason(proc), pytrace=False)
    built = parse_build(context, proc)
    got = {"config": built.config, "manifest": built.manifest}
    if got != {k: expected[k] for k in got}:
        pytest.fail(
            f"examples/quickstart/envnix.lock now builds config {built.config}, manifest "
            f"{built.manifest}; {EXPECTED.name} says config {expected['config']}, manifest "
            f"{expected['manifest']}. If the image changed on purpose (builders, rendering, a "
            f"new lock), refresh the file: `{REBUILD}` prints the two digests; put them into "
            f"examples/quickstart/{EXPECTED.name} (\"config\" and \"manifest\") and into the "
            "README's walkthrough, and commit them with the change. If it did not, the same lock "
            "no longer gives the same image: a reproducibility bug.", pytrace=False)


@pytest.mark.network
@pytest.mark.slow
def test_a_deb_gone_from_the_mirror_says_how_to_relock(tmp_path: Path) -> None:
    """A .deb the mirror deleted, tried for real: a locked URL that is not on the mirror."""
    lock = json.loads((EXAMPLE / "envnix.lock").read_text())
    package = lock["apt"]["packages"][0]
    gone = f"{package['name']}_0.0-envnix-gone_{package['arch']}.deb"
    package["url"] = package["url"].rsplit("/", 1)[0] + "/" + gone
    package["filename"] = package["filename"].rsplit("/", 1)[0] + "/" + gone
    package["sha256"] = uuid.uuid4().hex * 2  # on no machine's store: it must be downloaded
    _, proc = build_committed(tmp_path, lock)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("envnix: ") or "\nenvnix: " in proc.stderr, proc.stderr
    reason = failure_reason(proc)
    assert reason.startswith(f"the mirror no longer has {package['url']}"), reason
    assert RELOCK in reason and REBUILD in reason

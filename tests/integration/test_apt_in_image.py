"""apt inside a dev image works as on a Debian system: ``sudo apt-get install`` of one more
package, against the archive the image was locked from.

The fast tests follow the lock's sources through render (the lock's image plan, read back
checked) and the real mkmeta.py builder; the slow one builds a dev image with Nix from the
machine's Debian mirror and runs apt, dpkg and the installed program in it under podman.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _cli import Built, build
from _podman import podman
from test_apt_in_image_offline import MAIN, SECURITY
from test_builders_dpkgdb import PROG, deb, unpacked
from test_builders_unpack import assert_ok, run_builder


def meta_with_apt(tmp_path: Path, sources: list[dict]) -> Path:
    """mkmeta.py over an apt-like and a base-passwd-like tree, as Nix runs it."""
    apt = deb(tmp_path / "apt.deb", "Package: apt\nVersion: 1\nArchitecture: amd64\n"
              "Description: apt\n",
              [("dir", "./"), ("dir", "./usr"), ("dir", "./usr/bin"),
               ("file", "./usr/bin/apt-get", PROG, 0o755), ("dir", "./usr/share"),
               ("dir", "./usr/share/keyrings"),
               ("file", "./usr/share/keyrings/debian-archive-keyring.gpg", b"k"),
               *(("dir", d) for d in ("./var", "./var/lib", "./var/lib/apt",
                                      "./var/lib/apt/lists", "./var/lib/apt/lists/partial",
                                      "./var/cache", "./var/cache/apt",
                                      "./var/cache/apt/archives",
                                      "./var/cache/apt/archives/partial"))])
    master = "/usr/share/base-passwd"
    passwd = deb(tmp_path / "bp.deb", "Package: base-passwd\nVersion: 1\nArchitecture: amd64\n"
                 "Description: bp\n",
                 [("dir", "./"), ("dir", "./usr"), ("dir", "./usr/share"), ("dir", f".{master}"),
                  ("file", f".{master}/passwd.master",
                   b"root:*:0:0:root:/root:/bin/bash\n"
                   b"_apt:*:42:65534::/nonexistent:/usr/sbin/nologin\n"),
                  ("file", f".{master}/group.master", b"root:*:0:\nnogroup:*:65534:\n")])
    trees = [str(unpacked(tmp_path, "apt", apt)), str(unpacked(tmp_path, "bp", passwd))]
    out = tmp_path / "meta"
    assert_ok(run_builder("mkmeta.py", {"out": str(out), "trees": json.dumps(trees),
                                        "aptSources": json.dumps(sources)}, tmp_path / "build"))
    return out


def test_mkmeta_writes_sources_and_apts_own_download_directories(tmp_path: Path) -> None:
    out = meta_with_apt(tmp_path, [MAIN, SECURITY])
    text = (out / "root/etc/apt/sources.list.d/envnix.sources").read_text()
    stanzas = [s.splitlines() for s in text.split("\n\n")]
    keyring = "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    assert stanzas == [
        ["Types: deb", f"URIs: {MAIN['uri']}", "Suites: bookworm", "Components: main", keyring,
         "Check-Valid-Until: no"],
        ["Types: deb", f"URIs: {SECURITY['uri']}", "Suites: bookworm-security",
         "Components: main contrib", keyring]]
    modes = json.loads((out / "meta.json").read_text())["modes"]
    for rel in ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial"):
        assert modes[rel] == [0o700, 42, 0], rel
    assert "_apt:x:42:65534:" in (out / "root/etc/passwd").read_text()


def test_no_sources_file_without_sources(tmp_path: Path) -> None:
    out = meta_with_apt(tmp_path, [])
    assert not (out / "root/etc/apt/sources.list.d/envnix.sources").exists()


# ------------------------------------------------------------------------------ for real

NEW_PACKAGE = "jq"  # small, not in a dev image, with two libraries and libc-bin's trigger
STEPS = {
    "id": "id -un",
    "sources": "cat /etc/apt/sources.list.d/envnix.sources",
    "owners": "stat -c '%U:%G %a %n' /var/lib/apt/lists/partial /var/cache/apt/archives/partial",
    "check": "sudo apt-get check 2>&1",
    "rows": "dpkg -l | tail -n +6 | wc -l",
    "installed": "dpkg -l | grep -c '^ii'",
    # As on Debian: /usr/bin/awk is the alternatives link, which no package owns; its target is.
    "awk-link": "dpkg -S /usr/bin/awk 2>&1",
    "awk-target": 'dpkg -S "$(readlink -f /usr/bin/awk)"',
    "alternatives": "update-alternatives --display awk",
    "update": "sudo apt-get update 2>&1",
    "install": f"sudo DEBIAN_FRONTEND=noninteractive apt-get install -y "
               f"--no-install-recommends {NEW_PACKAGE} 2>&1",
    "run": "echo '{\"a\": [1, 2]}' | jq -c '.a | add'",
    "check-after": "sudo apt-get check 2>&1",
    "audit": "dpkg --audit 2>&1",
    "installed-after": "dpkg -l | grep -c '^ii'",
    # extended_states: nothing of the image is orphaned; removing the new package orphans
    # exactly what it pulled in
    "autoremove": "apt-get -s autoremove 2>&1 | grep -c '^Remv' || true",
    "remove": f"sudo apt-get remove -y {NEW_PACKAGE} >/dev/null 2>&1 && "
              "apt-get -s autoremove 2>&1 | grep '^Remv' | cut -d' ' -f2 | cut -d: -f1 | sort",
}


def run_steps(layout: Path, env: dict) -> dict[str, tuple[int, str]]:
    """Each step's exit code and output, from one container (apt's state carries over)."""
    script = "".join(f"echo '@@step {name}'\n{cmd}\necho \"@@rc $?\"\n"
                     for name, cmd in STEPS.items())
    proc = podman("run", "--rm", "--network", "host", f"oci:{layout}", "/bin/bash", "-c",
                  script, env=env, timeout=900)
    found = re.findall(r"^@@step (\S+)\n(.*?)^@@rc (\d+)$", proc.stdout, flags=re.M | re.S)
    return {name: (int(rc), out.strip()) for name, out, rc in found}


@pytest.fixture(scope="module")
def dev_image(tmp_path_factory: pytest.TempPathFactory) -> Built:
    context = tmp_path_factory.mktemp("aptin") / "dev"
    context.mkdir()
    (context / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n')
    return build(context, "-t", "aptin:dev")


@pytest.mark.network
@pytest.mark.slow
def test_sudo_apt_get_install_in_a_dev_image(dev_image: Built, podman_environ: dict) -> None:
    lock = json.loads((dev_image.context / "envnix.lock").read_text())
    names = {p["name"] for p in lock["apt"]["packages"]}
    assert "apt" in names and NEW_PACKAGE not in names
    out = run_steps(dev_image.layout, podman_environ)
    print(json.dumps(out, indent=1))
    assert list(out) == list(STEPS)
    assert out["id"] == (0, "envd")  # a dev image's user, who runs apt with sudo
    uris = re.findall(r"^URIs: (\S+)$", out["sources"][1], flags=re.M)
    assert uris == [s["uri"] for s in lock["apt"]["sources"] if not s.get("flat")]
    assert out["owners"][1].splitlines() == [
        "_apt:root 700 /var/lib/apt/lists/partial", "_apt:root 700 /var/cache/apt/archives/partial"]
    assert out["check"][0] == 0 and "E:" not in out["check"][1], out["check"]
    assert int(out["rows"][1]) == int(out["installed"][1]) == len(names)
    assert out["awk-link"] == (1, "dpkg-query: no path found matching pattern /usr/bin/awk")
    assert out["awk-target"] == (0, "mawk: /usr/bin/mawk")
    assert out["alternatives"][1].splitlines()[:2] == [
        "awk - auto mode", "  link best version is /usr/bin/mawk"]
    update = out["update"]
    assert update[0] == 0 and not re.search(r"^[WE]:", update[1], flags=re.M), update[1]
    install = out["install"]
    assert install[0] == 0 and f"Setting up {NEW_PACKAGE} " in install[1], install[1]
    assert out["run"] == (0, "3")
    assert out["check-after"][0] == 0 and "E:" not in out["check-after"][1]
    assert out["audit"] == (0, "")
    new = re.findall(r"^Setting up (\S+) ", install[1], flags=re.M)
    assert int(out["installed-after"][1]) == len(names) + len(new)
    assert out["autoremove"] == (0, "0")
    pulled_in = sorted({n.split(":")[0] for n in new} - {NEW_PACKAGE})
    assert pulled_in and out["remove"] == (0, "\n".join(pulled_in))

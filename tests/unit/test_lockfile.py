"""envnix.lock: deterministic bytes, atomic writes, and one-line staleness reasons."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from envnix.core.errors import LockError
from envnix.lock.model import Lock, read_lock, stale_reason, write_lock


def deb(name: str, sha: str = "a", **over: Any) -> dict[str, Any]:
    """A complete apt entry, as debian.DebPackage.to_lock_dict writes them."""
    file = f"pool/main/{name[0]}/{name}/{name}_1.0-1_amd64.deb"
    return {"name": name, "version": "1.0-1", "arch": "amd64", "filename": file,
            "url": f"http://deb.invalid/debian/{file}", "sha256": sha * 64, "size": 1000,
            "priority": "optional", "essential": False, "source_suite": "bookworm",
            "control": f"Package: {name}\nVersion: 1.0-1\n", **over}


def wheel(name: str, sha: str = "c", **over: Any) -> dict[str, Any]:
    file = f"{name}-1.0-py3-none-any.whl"
    return {"name": name, "version": "1.0", "filename": file,
            "url": f"https://files.invalid/{file}", "sha256": sha * 64, "size": 3000, **over}


def conda(name: str, sha: str = "e", **over: Any) -> dict[str, Any]:
    fn = f"{name}-1.0-h0_0.conda"
    return {"kind": "conda", "name": name, "version": "1.0", "build": "h0_0", "build_number": 0,
            "subdir": "linux-64", "fn": fn, "url": f"https://conda.invalid/c/linux-64/{fn}",
            "mirrors": [], "channel": "https://conda.invalid/c", "sha256": sha * 64,
            "md5": "f" * 32, "size": 5000, "depends": ["libc >=2.17"], "constrains": [],
            "noarch": None, "license": "MIT", "timestamp": 1700000000000, **over}


def sample(**over: object) -> Lock:
    inputs = {"apt": {"packages": ["libc6", "dash"], "release": "bookworm"},
              "pip": {"requirements": ["six"], "python": "3.11"}}
    lock = Lock(
        inputs=inputs,
        apt_sources=[{"uri": "http://deb.invalid/debian", "suite": "bookworm",
                      "components": ["main"]}],
        apt_packages=[deb("libc6"), deb("dash", "b")],
        pip_wheels=[wheel("six")],
    )
    for key, value in over.items():
        setattr(lock, key, value)
    return lock


def test_bytes_are_deterministic_and_sorted() -> None:
    a, b = sample(), sample()
    b.apt_packages = list(reversed(b.apt_packages))
    assert a.dumps() == b.dumps()
    assert a.dumps().index('"dash"') < a.dumps().index('"libc6"')
    assert a.digest == b.digest and a.digest.startswith("sha256:")
    assert Lock.loads(a.dumps()).dumps() == a.dumps()


def test_write_is_atomic_and_reports_change(tmp_path: Path) -> None:
    path = tmp_path / "envnix.lock"
    assert write_lock(path, sample()) is True
    assert write_lock(path, sample()) is False
    assert read_lock(path) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envnix.lock"]


def test_failed_write_leaves_old_lock_and_no_temp(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "envnix.lock"
    write_lock(path, sample())
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    changed = sample()
    changed.pip_wheels = []
    with pytest.raises(OSError):
        write_lock(path, changed)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envnix.lock"]


def test_stale_reason_names_what_changed() -> None:
    lock = sample()
    assert stale_reason(lock, lock.inputs) is None
    inputs = {"apt": {"packages": ["libc6", "dash", "jq"], "release": "bookworm"},
              "pip": {"requirements": [], "python": "3.11"}}
    assert stale_reason(lock, inputs) == "apt packages changed: added jq"
    inputs["apt"]["packages"] = ["libc6", "dash"]
    assert stale_reason(lock, inputs) == "pip requirements changed: removed six"


def test_corrupt_or_foreign_lock_is_one_clear_error() -> None:
    with pytest.raises(LockError, match=r"^envnix.lock:1:2: not valid JSON: Expecting prop"):
        Lock.loads("{nope")
    with pytest.raises(LockError, match="lock-version 7 is not 2: made by another envnix"):
        Lock.loads('{"lock-version": 7}')


# -- every field read back is checked (issue 11, items 7 and 8) ------------------------------


def full() -> dict[str, Any]:
    """A lock with every section: apt, pip, conda and a base image."""
    data = sample(conda_channels=[{"name": "c", "url": "https://conda.invalid/c",
                                   "mirrors": ["http://mirror.invalid/c"]}],
                  conda_packages=[conda("zlib"), conda("xz", "d", md5=None, license=None,
                                                       noarch="generic", timestamp=None)],
                  apt_indexes=[{"uri": "http://deb.invalid/debian", "suite": "bookworm",
                                "component": "main", "sha256": "9" * 64, "size": 8,
                                "url": "http://deb.invalid/debian/dists/bookworm/Packages.xz"}],
                  ).to_dict()
    data["base"] = {
        "ref": "registry.invalid/app:1", "digest": "sha256:" + "1" * 64,
        "manifest": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                     "layers": [{"digest": "sha256:" + "2" * 64, "size": 10,
                                 "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}]},
        "config": {"digest": "sha256:" + "3" * 64, "diff_ids": ["sha256:" + "4" * 64],
                   "Env": ["PATH=/bin"], "WorkingDir": "/", "User": None, "Entrypoint": None,
                   "Cmd": ["sh"]},
        "blob_urls": ["https://registry.invalid/v2/app/blobs/sha256:" + "2" * 64],
    }
    return data


def dumps(data: Any) -> str:
    import json

    return json.dumps(data, indent=2)


def test_a_full_lock_round_trips() -> None:
    lock = Lock.loads(dumps(full()))
    assert len(lock.conda_packages) == 2 and lock.base is not None
    assert Lock.loads(lock.dumps()).dumps() == lock.dumps()


def _set(path: str, value: Any) -> Any:
    """A change to full(): set the field at ``path`` (``apt.packages.0.sha256``); a value of
    DELETE removes it."""
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        key: Any = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    return change


DELETE = object()
WHL = "https://files.invalid/six-1.0-py3-none-any.whl"


@pytest.mark.parametrize(("change", "message"), [
    (_set("apt.packages.1.sha256", "abc"),
     "apt.packages[1].sha256: expected 64 hex digits, got 'abc'"),
    (_set("apt.packages.1.sha256", "A" * 64), "apt.packages[1].sha256: expected 64 hex digits"),
    (_set("pip.wheels.0.url", "file:///etc/shadow"),
     "pip.wheels[0].url: expected an http(s) URL, got 'file:///etc/shadow'"),
    (_set("pip.wheels.0.url", "http://"), "pip.wheels[0].url: expected an http(s) URL"),
    (_set("conda.packages.0.mirrors", ["ftp://x.invalid/c"]),
     "conda.packages[0].mirrors[0]: expected an http(s) URL"),
    (_set("apt.sources.0.uri", "file:///srv/mirror"), "apt.sources[0].uri: expected an http"),
    (_set("base.blob_urls", ["file:///etc/passwd"]), "base.blob_urls[0]: expected an http"),
    (_set("pip.wheels.0.size", -1), "pip.wheels[0].size: expected a non-negative integer"),
    (_set("pip.wheels.0.size", "12"), "pip.wheels[0].size: expected a non-negative integer"),
    (_set("pip.wheels.0.size", 1.5), "pip.wheels[0].size: expected a non-negative integer"),
    (_set("pip.wheels.0.size", True), "pip.wheels[0].size: expected a non-negative integer"),
    (_set("pip.wheels.0.size", 1 << 60), "pip.wheels[0].size: expected a non-negative integer"),
    (_set("pip.wheels.0.name", "../../x"), "pip.wheels[0].name: expected a pip project name"),
    (_set("apt.packages.0.name", "Lib C"), "apt.packages[0].name: expected a Debian package"),
    (_set("apt.packages.0.filename", "../../../etc/x.deb"),
     "apt.packages[0].filename: expected a relative path without .."),
    (_set("pip.wheels.0.filename", "six.tar.gz"), "pip.wheels[0].filename: expected a wheel"),
    (_set("conda.packages.0.name", "zlib\n"), "conda.packages[0].name: control character"),
    (_set("conda.packages.1.md5", "xyz"), "conda.packages[1].md5: expected 32 hex digits"),
    (_set("conda.packages.0.noarch", "yes"), "conda.packages[0].noarch: expected null or "),
    (_set("apt.packages.0.essential", "no"), "apt.packages[0].essential: expected true or"),
    (_set("apt.packages.0.sha256", DELETE), "apt.packages[0].sha256: missing"),
    (_set("apt", DELETE), "apt: missing"),
    (_set("pip.wheels", {"six": 1}), "pip.wheels: expected a list, got an object"),
    (_set("pip.wheels.0.extra", 1), "pip.wheels[0].extra: unknown field"),
    (_set("inputs", []), "inputs: expected an object, got a list"),
    (_set("base.config.diff_ids", []), "base.config.diff_ids: 0 entries for 1 layers"),
    (_set("base.digest", "sha256:12"), "base.digest: expected sha256: and 64 hex digits"),
    # item 8: the same package or URL twice is refused, never collapsed into one
    (lambda d: d["apt"]["packages"].append(deb("libc6", "7")),
     "apt.packages[2].name: 'libc6' appears twice (also apt.packages[1])"),
    (lambda d: d["pip"]["wheels"].append(wheel("Six", "8")),
     "pip.wheels[1].name: 'six' appears twice (also pip.wheels[0])"),
    (lambda d: d["conda"]["packages"].append(conda("zlib", "9")),
     "conda.packages[2].name: 'zlib' appears twice (also conda.packages[1])"),
    (lambda d: d["pip"]["wheels"].append(wheel("other", url=WHL)),
     f"pip.wheels[1].url: '{WHL}' appears twice (also pip.wheels[0].url)"),
    (lambda d: d["pip"]["wheels"].__setitem__(0, wheel("six", url=d["apt"]["packages"][0]["url"])),
     "pip.wheels[0].url: 'http://deb.invalid/debian/pool/main/d/dash/dash_1.0-1_amd64.deb' "
     "appears twice (also apt.packages[0].url)"),
    (lambda d: d["apt"]["indexes"].append(dict(d["apt"]["indexes"][0])),
     "apt.indexes[1].url: 'http://deb.invalid/debian/dists/bookworm/Packages.xz' appears twice"),
    (lambda d: d["conda"]["channels"].append(dict(d["conda"]["channels"][0], name="d")),
     "conda.channels[1].url: 'https://conda.invalid/c' appears twice"),
])
def test_a_bad_field_is_one_line_naming_the_file_and_field(change: Any, message: str) -> None:
    data = full()
    change(data)
    with pytest.raises(LockError) as info:
        Lock.loads(dumps(data), origin="ctx/envnix.lock")
    assert str(info.value).startswith(f"ctx/envnix.lock: {message}"), str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 5 and "run envnix lock" in (info.value.hint or "")


@pytest.mark.parametrize(("raw", "message"), [
    (b"{nope", "envnix.lock:1:2: not valid JSON: Expecting property name"),
    (b'{"lock-version": 1,\n "apt": [1,]}', "envnix.lock:2:12: not valid JSON: "),
    (b"", "envnix.lock:1:1: not valid JSON: Expecting value"),
    (b'{"lock-version": 1}\xff\xfe', "envnix.lock: not UTF-8 text (byte 19 is 0xff)"),
    (b"\xef\xbb\xbf{}", "envnix.lock:1:1: not valid JSON: Unexpected UTF-8 BOM"),
    (b"[]", "envnix.lock: expected a JSON object, got a list"),
    (b"{}", "envnix.lock: lock-version: missing; not an envnix lock?"),
    (b'{"lock-version": "1"}', "envnix.lock: lock-version '1' is not 2"),
    (b'{"lock-version": true}', "envnix.lock: lock-version true is not 2"),
    (b'{"lock-version": 3}', "envnix.lock: lock-version 3 is not 2: made by another envnix"),
    (b'{"lock-version": 1, "lock-version": 1}',
     "envnix.lock: not valid JSON: the key 'lock-version' appears twice in one object"),
    (b'{"lock-version": NaN}', "envnix.lock: not valid JSON: NaN is not a JSON number"),
    (b"[" * 100_000 + b"]" * 100_000, "envnix.lock: not valid JSON: nested too deeply"),
    (b'{"lock-version": ' + b"9" * 5000 + b"}", "envnix.lock: not valid JSON: Exceeds the limit"),
])
def test_unreadable_bytes_are_one_line(raw: bytes, message: str) -> None:
    with pytest.raises(LockError) as info:
        Lock.loads(raw)
    assert str(info.value).startswith(message), str(info.value)


def test_files_that_are_not_regular_or_lead_outside_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.json"
    outside.write_text("{}")
    context = tmp_path / "ctx"
    context.mkdir()
    lock = context / "envnix.lock"
    lock.symlink_to(outside)
    with pytest.raises(LockError, match=f"envnix.lock: a symlink to {outside}, outside its dir"):
        read_lock(lock)
    lock.unlink()
    os.mkfifo(lock)  # opening it would block: the error proves it was never opened
    with pytest.raises(LockError, match=r"envnix\.lock: not a regular file"):
        read_lock(lock)
    lock.unlink()
    with open(lock, "wb") as fh:  # sparse: no disk used
        fh.truncate(300 << 20)
    with pytest.raises(LockError, match=r"envnix.lock: 314572800 bytes is more than envnix"):
        read_lock(lock)
    lock.unlink()
    lock.symlink_to("missing.lock")
    with pytest.raises(LockError, match=r"envnix\.lock: cannot read it: No such file"):
        read_lock(lock)


@pytest.mark.parametrize("old", [
    b"{nope", b"\xff\xfe\x00garbage", b'{"lock-version": 99}', b"",
    dumps(dict(full(), pip={"wheels": [wheel("six"), wheel("six", "d")]})).encode(),
])
def test_write_lock_keeps_a_corrupt_lock_as_bak_and_says_so(tmp_path: Path, old: bytes) -> None:
    path = tmp_path / "envnix.lock"
    path.write_bytes(old)
    notices: list[str] = []
    assert write_lock(path, sample(), notices.append) is True
    assert (tmp_path / "envnix.lock.bak").read_bytes() == old
    assert read_lock(path) is not None
    assert len(notices) == 1 and notices[0].startswith("lock: envnix.lock was unusable (")
    assert notices[0].endswith("); kept it as envnix.lock.bak")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envnix.lock", "envnix.lock.bak"]


def test_write_lock_replaces_a_fifo_or_an_escaping_symlink_without_opening_it(
        tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    path = tmp_path / "ctx" / "envnix.lock"
    os.mkfifo(path)
    notices: list[str] = []
    write_lock(path, sample(), notices.append)
    assert notices == ["lock: envnix.lock was unusable (not a regular file); kept it as "
                       "envnix.lock.bak"]
    secret = tmp_path / "secret"
    secret.write_text("host file")
    path.unlink()
    path.symlink_to(secret)
    write_lock(path, sample(), notices.append)
    assert not path.is_symlink() and read_lock(path) is not None
    assert secret.read_text() == "host file"  # written beside, never through the link
    assert (path.parent / "envnix.lock.bak").is_symlink()


def test_a_valid_old_lock_is_replaced_without_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "envnix.lock"
    write_lock(path, sample())
    notices: list[str] = []
    assert write_lock(path, sample(pip_wheels=[]), notices.append) is True
    assert notices == [] and not (tmp_path / "envnix.lock.bak").exists()


def test_envnix_never_writes_a_lock_it_would_refuse(tmp_path: Path) -> None:
    """A file:// apt mirror or conda channel gives a lock no other machine can rebuild (and
    one that would make Nix hash a host file): refused when writing, the old lock untouched."""
    path = tmp_path / "envnix.lock"
    write_lock(path, sample())
    before = path.read_bytes()
    bad = sample(apt_packages=[deb("libc6", url="file:///srv/mirror/libc6.deb")])
    with pytest.raises(LockError) as info:
        write_lock(path, bad)
    assert str(info.value) == ("the new envnix.lock: apt.packages[0].url: expected an http(s) "
                               "URL, got 'file:///srv/mirror/libc6.deb': only http(s) URLs are "
                               "fetched, not file URLs")
    assert "serve a local mirror or channel over http" in (info.value.hint or "")
    twice = sample(apt_packages=[deb("libc6"), deb("libc6", "b")])
    with pytest.raises(LockError, match=r"apt.packages\[1\].name: 'libc6' appears twice"):
        write_lock(path, twice)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["envnix.lock"]

"""io.http: what the frontend records and refuses, and how the lock pins and reads it back.

No network: a lock that keeps its pin fetches nothing (the unit tier's guard would fail the
test if it tried). Downloading, a wrong checksum and the built image: tests/integration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envnix.core.errors import FrontendError
from envnix.frontend import load_spec
from envnix.lock import Lock, kept_pins, lock_inputs
from envnix.lock.downloads import lock_downloads
from envnix.lock.model import CorruptLockError
from envnix.spec import HttpSpec, ImageSpec

HEX = "ab" * 32


def spec_of(tmp_path: Path, body: str) -> ImageSpec:
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(os="debian12", language="python3.11")\n' + body)
    return load_spec(tmp_path, "build.envd:build", warn=lambda _: None)


def error_of(tmp_path: Path, call: str) -> str:
    with pytest.raises(FrontendError) as info:
        spec_of(tmp_path, f"    {call}\n")
    return str(info.value)


def test_downloads_recorded_in_call_order_with_their_place(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, (
        f'    io.http(url="https://example.org/d/model.bin?x=1", checksum="sha256:{HEX}")\n'
        '    io.http("https://example.org/a%20b.txt", filename="data.txt")\n'
        '    io.http(url="https://example.org/a%20b.txt")\n'))
    assert spec.downloads == [
        HttpSpec("https://example.org/d/model.bin?x=1", HEX, "model.bin", "build.envd:3"),
        HttpSpec("https://example.org/a%20b.txt", None, "data.txt", "build.envd:4"),
        HttpSpec("https://example.org/a%20b.txt", None, "a b.txt", "build.envd:5"),
    ]  # the default name: the URL path's last segment, decoded
    assert spec.downloads[0].target == "/home/envd/extra_source/model.bin"


def test_a_loaded_helper_points_at_the_call_in_its_own_file(tmp_path: Path) -> None:
    (tmp_path / "lib.envd").write_text('def fetch(url):\n\n    io.http(url)\n')
    (tmp_path / "build.envd").write_text(
        'load("lib.envd", "fetch")\ndef build():\n    base(os="debian12", language="python")\n'
        '    fetch("http://127.0.0.1:1/f.bin")\n')
    spec = load_spec(tmp_path, "build.envd:build", warn=lambda _: None)
    assert spec.downloads[0].where == "lib.envd:3"


@pytest.mark.parametrize(("call", "message"), [
    ('io.http(url="https://e.org/x", checksum="sha256:abc")',
     "build.envd:3:5: io.http: checksum 'sha256:abc' is not a sha256 digest"),
    (f'io.http(url="https://e.org/x", checksum="sha512:{HEX}")',
     "is not a sha256 digest"),
    (f'io.http(url="https://e.org/x", checksum="sha256:{HEX.upper()}")',
     "is not a sha256 digest"),
    ('io.http(url="https://e.org/x", filename="../etc/passwd")',
     "io.http: filename '../etc/passwd' is not a plain file name; the file must stay inside "
     "/home/envd/extra_source"),
    ('io.http(url="https://e.org/x", filename="sub/x")', "is not a plain file name"),
    ('io.http(url="https://e.org/x", filename="..")', "is not a plain file name"),
    ('io.http(url="https://e.org/dir/")', "ends in '/', so it names no file"),
    ('io.http(url="file:///etc/passwd")', "only http(s) URLs are fetched"),
    ('io.http(url="https://user:pw@e.org/x")', "carries credentials"),
])
def test_bad_calls_are_one_line_at_the_call(tmp_path: Path, call: str, message: str) -> None:
    text = error_of(tmp_path, call)
    assert message in text and text.startswith("build.envd:3:5: ") and "\n" not in text


def test_call_stack_stays_out_of_build_files(tmp_path: Path) -> None:
    """The prelude alone has call_stack(): envd files do not, and must not start to."""
    assert "call_stack" in error_of(tmp_path, "call_stack()")


def test_relock_keeps_a_pin_and_fetches_nothing(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, f'    io.http(url="http://127.0.0.1:1/f.bin", '
                             f'checksum="sha256:{HEX}", filename="f")\n')
    old = Lock(inputs=lock_inputs(spec, tmp_path),
               http_files=[{"url": "http://127.0.0.1:1/f.bin", "sha256": HEX, "size": 7,
                            "filename": "old-name"}])
    assert old.inputs["http"] == [{"url": "http://127.0.0.1:1/f.bin", "sha256": HEX,
                                   "filename": "f"}]
    pins = kept_pins(Lock.loads(old.dumps()), old.inputs)
    assert pins.http == {"http://127.0.0.1:1/f.bin": {"sha256": HEX, "size": 7}}
    assert lock_downloads(spec.downloads, pins.http) == [
        {"url": "http://127.0.0.1:1/f.bin", "sha256": HEX, "size": 7, "filename": "f"}]
    assert kept_pins(old, old.inputs, upgrade=True).http == {}


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ""])
def test_lock_refuses_a_file_name_leaving_extra_source(name: str) -> None:
    lock = Lock(inputs={}, http_files=[{"url": "https://e.org/x", "sha256": HEX, "size": 1,
                                        "filename": name}])
    with pytest.raises(CorruptLockError, match=r"http\.files\[0\]\.filename"):
        Lock.loads(lock.dumps())


def test_locks_without_downloads_keep_their_bytes() -> None:
    assert "http" not in Lock(inputs={}).to_dict()

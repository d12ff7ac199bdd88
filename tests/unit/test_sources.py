"""lock/sources.py reads an sdist's PEP 517 build system from the archive alone (plain data:
archives made here); the image build relies on what it returns."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from envnix.core.errors import LockError, SpecError
from envnix.lock.sources import LEGACY_BACKEND, LEGACY_REQUIRES, BuildSystem, read_build_system
from envnix.spec.pipargs import parse_pip_words


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_the_declared_build_system_is_read(tmp_path: Path) -> None:
    sdist = _tar(tmp_path / "p-1.0.tar.gz", {
        "p-1.0/pyproject.toml": b'[build-system]\nrequires = ["hatchling>=1.20", "cython"]\n'
                                b'build-backend = "backend:api"\nbackend-path = ["_build"]\n',
        "p-1.0/sub/pyproject.toml": b"not read: only the top directory's counts",
    })
    assert read_build_system(sdist, "p-1.0.tar.gz") == BuildSystem(
        ("hatchling>=1.20", "cython"), "backend:api", ("_build",))


def test_no_pyproject_or_no_table_means_pep_517s_default(tmp_path: Path) -> None:
    legacy = BuildSystem(LEGACY_REQUIRES, LEGACY_BACKEND, ())
    bare = _tar(tmp_path / "a-1.tar.gz", {"a-1/setup.py": b"print('never run')\n"})
    assert read_build_system(bare, "a") == legacy
    no_table = _tar(tmp_path / "b-1.tar.gz", {"b-1/pyproject.toml": b"[tool.black]\n"})
    assert read_build_system(no_table, "b") == legacy
    zipped = tmp_path / "c-1.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("c-1/pyproject.toml", '[build-system]\nrequires = ["flit_core"]\n'
                                          'build-backend = "flit_core.buildapi"\n')
    assert read_build_system(zipped, "c") == BuildSystem(("flit_core",), "flit_core.buildapi",
                                                         ())


@pytest.mark.parametrize(("pyproject", "error"), [
    (b'[build-system]\nbackend-path = ["../outside"]\n', "backend-path must list directories"),
    (b'[build-system]\nbackend-path = ["/abs"]\n', "backend-path must list directories"),
    (b'[build-system]\nbuild-backend = "os; rm -rf /"\n', "is not a module:object name"),
    (b'[build-system]\nrequires = ["ok", "bad\\nline"]\n', "is not a list of requirements"),
    (b'[build-system]\nrequires = "setuptools"\n', "is not a list of requirements"),
    (b'[build-system]\nrequires = ["-r /etc/passwd"]\n', "is not a list of requirements"),
    (b'[build-system]\nrequires = ["-e ."]\n', "is not a list of requirements"),
    (b'[build-system]\nrequires = ["x @ file:///etc"]\n', "is not a list of requirements"),
    (b"[build-system\n", "is not TOML"),
])
def test_a_hostile_or_broken_build_system_is_one_line(tmp_path: Path, pyproject: bytes,
                                                      error: str) -> None:
    sdist = _tar(tmp_path / "h-1.tar.gz", {"h-1/pyproject.toml": pyproject})
    with pytest.raises(LockError, match=error):
        read_build_system(sdist, "h-1.tar.gz")


def test_an_archive_that_is_not_one_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "j-1.tar.gz"
    junk.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(LockError, match=r"j-1\.tar\.gz is not a readable sdist archive"):
        read_build_system(junk, "j-1.tar.gz")


def test_only_http_git_references_are_taken() -> None:
    assert parse_pip_words("probe @ git+https://git.example/o/probe@v1", "").requirements == [
        "probe @ git+https://git.example/o/probe@v1"]
    assert parse_pip_words("git+https://git.example/o/probe.git@v1#egg=probe", "").requirements \
        == ["probe @ git+https://git.example/o/probe.git@v1"]
    # no name: uv reads it from the project's static metadata
    assert parse_pip_words("git+https://git.example/o/probe@v1", "").requirements == [
        "git+https://git.example/o/probe@v1"]
    for bad in ("probe @ git+file:///srv/probe", "probe @ git+ssh://git@git.example/o/probe"):
        with pytest.raises(SpecError, match=r"only git\+https"):
            parse_pip_words(bad, "build.envd:3")


def test_a_bare_git_url_entry_is_a_requirement() -> None:
    from envnix.spec import PipRequest
    from envnix.spec.pipargs import add_entry

    request = PipRequest()
    add_entry(request, "git+https://git.example/org/tool", "build.envd:35:5")
    assert request.packages == ["git+https://git.example/org/tool"]

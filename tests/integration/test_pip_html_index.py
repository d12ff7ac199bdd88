"""Locking against a pip index that serves plain PEP 503 HTML (issue 11, item 8b).

Many private indexes and mirrors serve only HTML pages: no JSON, no file sizes, maybe no
``#sha256=`` fragment. A real index of that kind (tests/_pip_index.py) serves real wheels on
loopback: six and packaging as uv finds them on its default index (downloaded once, checked
against their sha256), next to a newer six that is yanked and a newer packaging that needs
Python 3.99, each a real wheel built here. Relative hrefs, ``data-requires-python`` and
``data-yanked`` are on the pages.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

import pytest
from _cli import envnix, parse_build
from _pip_index import Dist, PipIndex, serve_index
from test_builders_unpack import make_wheel

from envnix.core.errors import FetchError, LockError
from envnix.lock.model import read_lock
from envnix.lock.pip import _complete, _Found, _index_names, lock_pip
from envnix.render import lock_artifacts
from envnix.spec import PipRequest

pytestmark = pytest.mark.network

REAL = {"six": "1.17.0", "packaging": "24.2"}


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> list[Dist]:
    cache = tmp_path_factory.mktemp("pip-index-wheels")
    found = lock_pip(PipRequest(packages=[f"{n}=={v}" for n, v in REAL.items()]), cache,
                     "3.11", "2.36")
    out = []
    for wheel in found:
        data = urllib.request.urlopen(wheel.url, timeout=120).read()
        assert hashlib.sha256(data).hexdigest() == wheel.sha256
        (cache / wheel.filename).write_bytes(data)
        out.append(Dist(wheel.name, cache / wheel.filename))

    def fake(name: str, **index: str) -> Dist:
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 99.0\n".encode()
        path = make_wheel(cache / f"{name}-99.0-py3-none-any.whl",
                          {f"{name}.py": b"", f"{name}-99.0.dist-info/METADATA": meta},
                          dist=f"{name}-99.0")
        return Dist(name, path, **index)

    out.append(fake("six", yanked="broken release"))
    out.append(fake("packaging", requires_python=">=3.99"))
    return out


def context_for(tmp_path: Path, index: PipIndex) -> Path:
    context = tmp_path / "htmlidx"
    context.mkdir()
    (context / "build.envd").write_text(
        "def build():\n"
        '    base(os="debian12", language="python3.11")\n'
        f'    config.pip_index(url="{index.url}")\n'
        '    install.python_packages(name=["six", "packaging"])\n')
    return context


def check_wheels(context: Path, index: PipIndex, dists: list[Dist]) -> None:
    wheels = {w["name"]: w for w in json.loads((context / "envnix.lock").read_text())["pip"][
        "wheels"]}
    assert {n: w["version"] for n, w in wheels.items()} == REAL  # not yanked, not py3.99
    for name, wheel in wheels.items():
        dist = next(d for d in dists if d.project == name and wheel["filename"] == d.path.name)
        assert wheel["url"] == f"{index.url.removesuffix('/simple')}/files/{dist.path.name}"
        assert (wheel["sha256"], wheel["size"]) == (dist.sha256, dist.size)


@pytest.mark.parametrize(("style", "options"), [
    ("html", {}),
    ("html", {"head_length": False}),  # HEAD says no size: downloaded and checked instead
    ("html-nohash", {"ranges": True}),
    ("json", {}),
])
def test_lock_against_the_index(dists: list[Dist], tmp_path: Path, style: str,
                                options: dict[str, bool]) -> None:
    with serve_index(dists, style, **options) as index:
        context = context_for(tmp_path, index)
        proc = envnix("lock", str(context))
        check_wheels(context, index, dists)
        html = style != "json"
        assert ("pip: the index gave no size for 2 wheel(s)" in proc.stderr) == html
        rendered = Path(envnix("render", str(context)).stdout.strip())
        lock = read_lock(rendered / "envnix.lock")
        assert lock is not None
        six_url = lock_artifacts(lock)["wheel:six"]["url"]
        assert six_url.startswith(index.url.removesuffix("simple"))


def test_what_pylock_lacks_is_asked_from_the_server(dists: list[Dist]) -> None:
    """uv leaves out sizes (HTML pages) and may leave out hashes: HEAD, else download."""
    six = next(d for d in dists if d.path.name.startswith("six-1.17.0"))
    with serve_index(dists, "html-nohash", head_length=False) as index:
        url = f"{index.url.removesuffix('/simple')}/files/{six.path.name}"
        [wheel] = _complete([_Found("six", "1.17.0", url, None, None)], set())
        assert (wheel.sha256, wheel.size, wheel.filename) == (six.sha256, six.size, six.path.name)
        assert index.hits("GET") == [f"/files/{six.path.name}"]
        with pytest.raises(LockError, match=f"has sha256 {six.sha256}, but the index says "
                                            f"{'0' * 64}"):
            _complete([_Found("six", "1.17.0", url, "0" * 64, None)], set())
        with pytest.raises(FetchError, match=r"is listed by the index but not found \(HTTP 404"):
            _complete([_Found("six", "1.17.0", url + ".gone", None, None)], set())
    with serve_index(dists, "html") as index:
        url = f"{index.url.removesuffix('/simple')}/files/{six.path.name}"
        [wheel] = _complete([_Found("six", "1.17.0", url, six.sha256, None)], set())
        assert wheel.size == six.size
        assert index.hits("HEAD") == [f"/files/{six.path.name}"] and not index.hits("GET")
    with pytest.raises(LockError, match=r"comes from file:///srv/six\.whl, not an http"):
        _complete([_Found("six", "1.17.0", "file:///srv/six.whl", None, None)], set())


def test_did_you_mean_reads_the_html_root_page_and_survives_a_damaged_cache(
        dists: list[Dist], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with serve_index(dists, "html") as index:
        assert _index_names(index.url) == ["packaging", "six"]
        [cache] = (tmp_path / "envnix").glob("index-names-*.json.gz")
        for damaged in (b"not gzip", b"\x1f\x8b\x08\x00garbage"):
            cache.write_bytes(damaged)
            assert _index_names(index.url) == ["packaging", "six"]


@pytest.mark.slow
def test_image_from_the_html_index_builds_and_imports(dists: list[Dist], tmp_path: Path,
                                                      podman_environ: dict) -> None:
    from _podman import podman

    with serve_index(dists, "html") as index:
        context = context_for(tmp_path, index)
        built = parse_build(context, envnix("build", str(context), "-t", "htmlidx:dev"))
        check_wheels(context, index, dists)
    out = podman("run", "--rm", f"oci:{built.layout}", "python3", "-c",
                 "import six, packaging; print(six.__version__, packaging.__version__)",
                 env=podman_environ)
    assert out.stdout.split() == [REAL["six"], REAL["packaging"]]

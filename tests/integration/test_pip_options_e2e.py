"""pip options inside install.python_packages entries and requirements files, locked against
real PEP 503 indexes on loopback (tests/_pip_index.py) serving real wheel files built here.

The default index (config.pip_index) serves a CUDA ``torch`` that needs NVIDIA's runtime
wheel; a second index stands in for a framework's CPU index and serves ``torch 2.5.1+cpu``.
A file that says ``torch --index-url <cpu>`` must get the CPU wheel and nothing of NVIDIA's,
from build.envd and from a requirements file alike. A third server's project page serves as
a ``-f`` find-links page and its files as direct ``name @ URL`` wheels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _pip_index import Dist, PipIndex, serve_index
from test_builders_unpack import make_wheel

from envnix.frontend import load_spec
from envnix.lock import pip_request
from envnix.lock.pip import lock_pip
from envnix.spec.cuda import implied_by_wheels


def wheel(out: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Dist:
    meta = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode()
    dist = f"{name}-{version}"
    path = make_wheel(out / f"{dist}-py3-none-any.whl",
                      {f"{name}/__init__.py": b"", f"{dist}.dist-info/METADATA": meta},
                      dist=dist)
    return Dist(name, path)


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PipIndex, ...]]:
    out = tmp_path_factory.mktemp("pip-options-wheels")
    default = [wheel(out, "torch", "2.5.1", ("nvidia-cuda-runtime-cu12==12.4.127",)),
               wheel(out, "nvidia_cuda_runtime_cu12", "12.4.127"),
               wheel(out, "six", "1.17.0"),
               wheel(out, "prepkg", "1.0"), wheel(out, "prepkg", "2.0rc1")]
    cpu = [wheel(out, "torch", "2.5.1+cpu")]
    links = [wheel(out, "dgl", "2.1.0"), wheel(out, "tok", "0.3")]
    with serve_index(default) as a, serve_index(cpu, "html-nohash") as b, \
            serve_index(links, "html-nohash") as c:
        yield a, b, c


def test_cpu_index_in_an_entry_gives_the_cpu_wheel(tmp_path: Path,
                                                   indexes: tuple[PipIndex, ...]) -> None:
    default, cpu, _ = indexes
    got = _with_default(tmp_path, default, [f"torch --index-url {cpu.url}", "six"])
    assert {n: w.version for n, w in got.items()} == {"torch": "2.5.1+cpu", "six": "1.17.0"}
    assert got["torch"].url.startswith(cpu.url.removesuffix("/simple"))
    assert len(got["torch"].sha256) == 64  # the page gave no hash: downloaded and hashed
    assert implied_by_wheels((w.name, w.version) for w in got.values()) is None  # no GPU
    # the same file without the option: the CUDA torch and NVIDIA's runtime (a GPU image)
    got = _with_default(tmp_path, default, ["torch", "six"])
    assert got["torch"].version == "2.5.1" and "nvidia-cuda-runtime-cu12" in got


def test_the_same_forms_in_a_requirements_file(tmp_path: Path,
                                               indexes: tuple[PipIndex, ...]) -> None:
    default, cpu, links = indexes
    files = links.url.removesuffix("/simple") + "/files"
    got = _with_default(tmp_path, default, ["six"], requirements=(
        f"--extra-index-url {cpu.url}\ntorch==2.5.1\n"
        f"dgl -f {links.url}/dgl/\ntok @ {files}/tok-0.3-py3-none-any.whl\n--pre\nprepkg\n"))
    assert {n: w.version for n, w in got.items()} == {
        "torch": "2.5.1+cpu", "six": "1.17.0", "dgl": "2.1.0", "tok": "0.3",
        "prepkg": "2.0rc1"}
    assert got["tok"].url == f"{files}/tok-0.3-py3-none-any.whl"
    assert got["tok"].sha256 == links.files["tok-0.3-py3-none-any.whl"].sha256


def test_find_links_direct_url_and_pre_in_entries(tmp_path: Path,
                                                  indexes: tuple[PipIndex, ...]) -> None:
    default, _, links = indexes
    files = links.url.removesuffix("/simple") + "/files"
    got = _with_default(tmp_path, default, [
        f"dgl -f {links.url}/dgl/", f"tok @ {files}/tok-0.3-py3-none-any.whl", "prepkg"])
    assert {n: w.version for n, w in got.items()} == {"dgl": "2.1.0", "tok": "0.3",
                                                      "prepkg": "1.0"}
    got = _with_default(tmp_path, default, ["--pre prepkg"])
    assert got["prepkg"].version == "2.0rc1"


def _with_default(tmp_path: Path, default: PipIndex, entries: list[str],
                  requirements: str | None = None) -> dict:
    """Lock with the default index as config.pip_index's url (no public index is asked)."""
    context = tmp_path / "ctx"
    context.mkdir(exist_ok=True)
    lines = ['def build():', '    base(os="debian12", language="python3.11")',
             f'    config.pip_index(url="{default.url}")']
    if requirements is not None:
        (context / "requirements.txt").write_text(requirements)
        lines.append('    install.python_packages(requirements="requirements.txt")')
    lines.append(f"    install.python_packages(name={entries!r})")
    (context / "build.envd").write_text("\n".join(lines) + "\n")
    spec = load_spec(context, warn=lambda _: None)
    return {w.name: w for w in lock_pip(pip_request(spec, None), context, "3.11", "2.36")}

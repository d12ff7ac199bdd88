"""``envnix build`` of a lock holding several platforms (--platform linux/amd64,linux/arm64):
one OCI image index (templates/image.nix's ``index``, builders/mkindex.py) joining each
platform's image, pushed whole with ``skopeo copy --all``; the host platform's image is what
a local engine loads.

A module of its own so that the one-image path of build stays as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from envnix.cli import publish as _publish
from envnix.core import options
from envnix.core import schema as S
from envnix.core.errors import PublishError, UsageError
from envnix.core.progress import REPORTER
from envnix.lock import Lock
from envnix.nix import NixConfig, nix_build
from envnix.oci.layout import read_image, store_real_path
from envnix.oci.output import OutputSpec
from envnix.oci.registry import RegistryOptions, parse_destination, push_layout
from envnix.spec.platform import HOST

_HINT = "the image output is damaged: build again"
_DESC = S.obj({"mediaType": S.text, "digest": S.digest, "size": S.size},
              {"annotations": S.mapping(S.text, S.text),
               "platform": S.obj({"architecture": S.token, "os": S.token}, other_keys=True)})
_INDEX = S.obj({"schemaVersion": S.anything, "mediaType": S.text, "manifests": S.array(_DESC)})


def check_output(output: OutputSpec | None) -> None:
    """Before the build: what --output can do with an image index (push it, or nothing)."""
    if output is not None and output.type != "image":
        raise UsageError(f"--output type={output.type} writes one platform's image; with "
                         "several platforms use type=image,push=true (or lock one platform)")


def _read(path: Path, what: str) -> dict[str, Any]:
    data = S.parse_json(S.read_bytes(path, str(path), PublishError, _HINT), what,
                        PublishError, _HINT)
    S.validate(data, _INDEX, what, PublishError, _HINT)
    return data


def read_index(layout: Path) -> tuple[str, dict[str, str]]:
    """The image index's digest and each platform's manifest digest, from the layout."""
    top = _read(layout / "index.json", f"{layout}/index.json")["manifests"]
    if len(top) != 1:
        raise PublishError(f"{layout}/index.json: expected one image index", hint=_HINT)
    digest = top[0]["digest"]
    nested = _read(layout / "blobs" / "sha256" / digest.removeprefix("sha256:"), digest)
    return digest, {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
                    for m in nested["manifests"] if "platform" in m}


def build_index(directory: Path, lock: Lock, tag: str, toolchain: str, store: str | None,
                verbose: bool, config: NixConfig, output: OutputSpec | None,
                load: bool | None, echo: Callable[[str], None]) -> dict[str, Any]:
    """Build every platform's image and the index; push or load as asked. Returns the
    metadata (buildx's keys: the index is the image's digest)."""
    check_output(output)
    result = nix_build(directory, "index", toolchain, out_link=directory / "result",
                       store=store, progress=REPORTER, verbose=verbose, config=config)
    layout = store_real_path(result.out_path, store) / "oci"
    digest, manifests = read_index(layout)
    REPORTER.message(f"build: {result.built} derivation(s) built in {result.seconds:.1f}s")
    echo(f"image:    {tag}")
    echo(f"store:    {result.out_path}")
    echo(f"index:    {digest}")
    for platform, manifest in manifests.items():
        echo(f"manifest: {manifest} ({platform})")
    echo(f"oci:      oci:{result.out_path / 'oci'}")
    metadata: dict[str, Any] = {
        "containerimage.digest": digest,
        "containerimage.descriptor": {"mediaType": "application/vnd.oci.image.index.v1+json",
                                      "digest": digest},
        "image.name": tag,
        "envnix.store.path": str(result.out_path),
        "envnix.oci.layout": f"oci:{result.out_path / 'oci'}",
        "envnix.platforms": manifests,
        "envnix.lock.digest": lock.digest,
    }
    ref = tag.rsplit(":", 1)[1] if ":" in tag.rsplit("/", 1)[-1] else "latest"
    if output is not None and output.push:
        opts = RegistryOptions.from_env(insecure=output.insecure)
        pushed = []
        for name in output.names or (tag,):
            dest = parse_destination(name, ref)
            push_layout(layout, ref, dest, opts, all_images=True)
            pushed.append(f"{dest}@{digest}")
            echo(f"pushed:   {dest}@{digest}")
        metadata["envnix.pushed"] = pushed
    load = options.load() if load is None else load
    if load is not False and HOST.name in manifests:
        host = nix_build(directory, f'images."{HOST.name}"', toolchain, store=store,
                         progress=REPORTER, verbose=verbose, config=config)
        image = read_image(store_real_path(host.out_path, store), host.out_path)
        loaded = _publish.load_after_build(directory, image, store, verbose,
                                           required=load is True)
        if loaded and loaded.names:
            echo(f"loaded:   {loaded.engine} {loaded.names[0]} ({HOST.name})")
            metadata["envnix.loaded"] = {"engine": loaded.engine, "names": list(loaded.names)}
    return metadata

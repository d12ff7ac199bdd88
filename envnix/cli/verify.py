"""``envnix verify CTX IMAGE_REF``: rebuild from the lock, compare with what the registry serves.

Why a rebuild and not a signature: a lock pins every input by sha256 and the build is
reproducible, so anyone holding the context can recompute the image's manifest digest and
check that the registry serves exactly it (a digest covers the config and every layer). The
rebuild is ``envnix build --locked --no-load`` (the same functions, never a re-lock), rendered
into a private directory so the context's last build, which ``envnix push`` reads, stays as
it was. When the digests differ, the registry's image is copied and compared with the
rebuild by envnix diff's reader (oci/imagediff.py): the first differing layer and its files.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from envnix.cli import (
    GENERATED_DIR,
    _context,
    _default_tag,
    _describer,
    _load_spec,
    _nix_config,
    _nix_config_options,
    cli,
    cuda_provider_option,
    from_option,
)
from envnix.cli.publish import _registry_options, registry_options
from envnix.cli.results import emit_json, json_option
from envnix.core.errors import UsageError
from envnix.core.progress import REPORTER
from envnix.core.reference import InvalidReference, Reference
from envnix.lock import ensure_lock
from envnix.nix import nix_build
from envnix.oci.imagediff import config_changes, first_layer_diff, open_image, read_layout
from envnix.oci.layout import read_image, store_real_path
from envnix.oci.registry import remote_manifest
from envnix.render import render


def _image_ref(text: str) -> Reference:
    try:
        ref = Reference.parse_docker(text)
    except InvalidReference as exc:
        raise UsageError(f"{text} is not a valid image reference: {exc}") from None
    if ref.domain is None:
        raise UsageError(f"{text} does not name a registry: expected "
                         "[docker://]host[:port]/name[:tag|@digest]")
    return ref


def _is_index(raw: bytes) -> bool:
    """An image index (docker's manifest list): a tag for several platforms."""
    try:
        return isinstance(json.loads(raw).get("manifests"), list)
    except (ValueError, AttributeError):
        return False


@cli.command("verify")
@click.argument("path", metavar="CTX")
@click.argument("image_ref", metavar="IMAGE_REF")
@from_option
@cuda_provider_option
@click.option("-t", "--tag", help="The name:tag to rebuild as (default: IMAGE_REF's, as "
                                  "envnix build -t IMAGE_REF; the digests do not depend on it).")
@click.option("--out-dir", type=click.Path(path_type=Path),
              help="Where to write the rebuild's Nix project (default: a temporary "
                   f"directory, so <context>/{GENERATED_DIR} keeps the last build).")
@click.option("--toolchain", type=click.Choice(["pinned", "host", "nixpkgs"]),
              default="pinned", show_default=True, help="As for envnix build.")
@click.option("--store", help="Nix store to build in (as for envnix build).")
@_nix_config_options
@_registry_options
@click.option("-v", "--verbose", is_flag=True, help="Show Nix's full build log.")
@json_option
def verify_cmd(path: str, image_ref: str, from_: str, cuda_provider: str | None,
               tag: str | None, out_dir: Path | None, toolchain: str, store: str | None,
               substituters: str | None, no_substitute: bool, builders: str | None,
               max_jobs: str | None, nix_options: tuple[tuple[str, str], ...],
               creds: str | None, authfile: Path | None, cert_dir: Path | None,
               tls_verify: bool | None, verbose: bool, as_json: bool) -> int:
    """Rebuild CTX from its envnix.lock (never re-locking) and check that IMAGE_REF
    ([docker://]host[:port]/name[:tag|@digest]) serves the same image.

    Prints `verified sha256:...` and exits 0 when the manifest digests are equal; else
    exits 1 naming the first differing layer and the files that differ in it.
    """
    context = _context(path, None)
    ref = _image_ref(image_ref)
    nix_config = _nix_config(substituters, no_substitute, builders, max_jobs, nix_options)
    opts = registry_options(creds, authfile, cert_dir, tls_verify)
    tag = tag or (str(Reference(ref.domain, ref.path, ref.tag)) if ref.tag
                  else _default_tag(context))
    # What fails fast comes first: the lock (offline), then the registry, then the build.
    spec = _load_spec(context, from_, cuda_provider, locked=True)
    lock = ensure_lock(context, spec, None, True, REPORTER, _describer(spec, context))
    raw = remote_manifest(ref, opts)
    served = "sha256:" + hashlib.sha256(raw).hexdigest()
    REPORTER.message(f"verify: {ref} serves {served}")
    with ExitStack() as stack:
        where = out_dir or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="envnix-verify-"))) / "project"
        rendered = render(spec, lock, where, tag, toolchain, context=context)
        result = nix_build(rendered.directory, "image", toolchain,
                           out_link=rendered.directory / "result", store=store,
                           progress=REPORTER, verbose=verbose, config=nix_config)
        image = read_image(store_real_path(result.out_path, store), result.out_path)
        REPORTER.message(f"verify: {result.built} derivation(s) built in "
                         f"{result.seconds:.1f}s; the lock builds {image.manifest}")
        data: dict[str, Any] = {"image": str(ref), "served": served, "built": image.manifest,
                                "verified": served == image.manifest,
                                "lock.digest": lock.digest}
        if served == image.manifest:
            if as_json:
                emit_json(data)
            else:
                click.echo(f"verified {served}")
            return 0
        built = read_layout(image.layout, None, f"the rebuild of {context}")
        registry = stack.enter_context(open_image(ref.transport, opts))
        layer = first_layer_diff(built, registry)  # reads that one layer of each, no more
        config = config_changes(built, registry)
    if _is_index(raw):
        data["platform_image"] = registry.digest
    data["layer"] = layer.to_dict() if layer else None
    data["config"] = {"changed": config}
    if as_json:
        emit_json(data)
        return 1
    lines = [f"differs: {ref} serves {served}, but {context}'s lock builds {image.manifest}",
             "(+ only in the registry's image, - only in the rebuild, ~ changed)"]
    if _is_index(raw):  # several platforms: skopeo copied this machine's image
        lines.append(f"{ref} is an image index; its image for this platform is "
                     f"{registry.digest} (verify that by digest: NAME@{registry.digest})")
    lines += layer.lines() if layer else ["layers: the same, in the same order"]
    if config:
        lines.append("config: " + ", ".join(config) + " changed")
    click.echo("\n".join(lines))
    return 1

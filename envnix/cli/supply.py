"""``envnix sbom`` and ``envnix diff``: what is inside an image, and what changed between two.

Both read what envnix already wrote (a lock, an OCI layout) and resolve nothing: an SBOM of
the lock is the SBOM of every image ``build --locked`` makes from it, and a diff of two locks
tells a reviewer what a re-lock moved without a build.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from envnix.cli import GENERATED_DIR, _context, _default_tag, cli, path_option
from envnix.cli.publish import _creds, _registry_options
from envnix.core import options
from envnix.core.errors import EnvnixError, PublishError, UsageError, os_reason
from envnix.core.fileio import atomic_write
from envnix.core.progress import REPORTER
from envnix.core.reference import Reference
from envnix.lock.diff import diff_locks
from envnix.lock.model import LOCK_NAME, Lock, read_lock
from envnix.lock.sbom import FORMATS, cyclonedx, spdx
from envnix.nix.seed import fixed_output_path
from envnix.oci.attach import ARTIFACT_TYPES, MT_MANIFEST, referrer_layout, sbom_tag
from envnix.oci.imagediff import Image, diff_images, is_image_ref, open_image, read_layout
from envnix.oci.registry import (
    RegistryOptions,
    parse_destination,
    push_layout,
    remote_manifest,
)
from envnix.render import lock_artifacts

LOCK_LABEL = "io.envnix.lock.digest"  # render's image config label naming the lock


def _lock_of(context: Path) -> Lock:
    lock = read_lock(context / LOCK_NAME)
    if lock is None:
        raise UsageError(f"{context} has no {LOCK_NAME}", hint=f"run envnix lock {context}")
    return lock


def _store_files(lock: Lock, debs: bool) -> Callable[[dict[str, Any]], Path | None]:
    """Where this machine's Nix store holds an artifact a build of the lock fetched (wheels,
    and .debs when asked): the fixed-output path of render's fetch, which follows from the
    lock alone, so no Nix process is needed; None when it is not there."""
    names = {a["url"]: a["storeName"] for a in lock_artifacts(lock).values()
             if a["kind"] == "wheel" or (debs and a["kind"] == "deb")}

    def locate(artifact: dict[str, Any]) -> Path | None:
        name = names.get(artifact.get("url", ""))
        if name is None:
            return None
        path = Path(fixed_output_path(artifact["sha256"], name))
        return path if path.is_file() else None
    return locate


def _pins(lock: Lock) -> dict[str, Any]:
    """What a lock pins, without what only describes the image around the pins."""
    data = lock.to_dict()
    for key in ("image", "lock-version", "created-by"):
        data.pop(key, None)
    return data


def _built_from(image: Image, lock: Lock, rendered: Lock | None = None) -> bool:
    """Whether ``image`` was built from ``lock``: its label names the lock's digest, or that
    of the lock the build rendered (``rendered``: a lock made before the image section
    builds with one added, and pins the same artifacts)."""
    labels = (image.config.get("config") or {}).get("Labels") or {}
    digests = {lock.digest}
    if rendered is not None and _pins(rendered) == _pins(lock):
        digests.add(rendered.digest)
    return labels.get(LOCK_LABEL) in digests


def _image_digest(context: Path, lock: Lock, image_ref: str | None) -> str | None:
    """The manifest digest of ``--image`` (which must be built from this lock), else of the
    context's last build when it was built from this lock, else None."""
    if image_ref is not None:
        if not image_ref.startswith("oci:"):
            raise UsageError(f"--image {image_ref}: give a built image as oci:DIR[:TAG]")
        with open_image(image_ref) as image:
            if not _built_from(image, lock):
                raise UsageError(f"--image {image_ref} was not built from {context / LOCK_NAME}",
                                 hint=f"its {LOCK_LABEL} label differs from the lock's digest")
            return image.digest
    layout = context / GENERATED_DIR / "result" / "oci"
    if (layout / "index.json").is_file():
        try:
            image = read_layout(layout, None, str(layout))
        except EnvnixError:
            image = None
        rendered = read_lock(context / GENERATED_DIR / LOCK_NAME)
        if image is not None and _built_from(image, lock, rendered):
            return image.digest
    REPORTER("sbom: no image built from this lock found; the SBOM names no image digest "
             "(build it, or pass --image oci:DIR)")
    return None


@cli.command("sbom")
@click.argument("path", required=False)
@path_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="spdx-json",
              show_default=True, help="SPDX 2.3 or CycloneDX 1.5, as JSON.")
@click.option("-o", "--output", type=click.Path(path_type=Path), metavar="FILE",
              help="Write the SBOM here (default: stdout).")
@click.option("--image", "image_ref", metavar="oci:DIR[:TAG]",
              help="The built image, for its digest (default: the context's last build, "
                   "when it was built from this lock).")
@click.option("-t", "--tag", "name", help="The image name in the SBOM (default: <context>:dev).")
@click.option("--deb-licenses", is_flag=True,
              help="Also read each .deb's license from its copyright file (DEP-5), for the "
                   ".debs in the Nix store; slower (every data.tar is decompressed).")
@click.option("--attach", "attach_to", metavar="DEST",
              help="Also attach the SBOM to the image pushed at DEST (host[:port]/name[:tag], "
                   "which must serve the image built from this lock) as an OCI artifact.")
@_registry_options
def sbom_cmd(path: str | None, path_opt: str | None, fmt: str, output: Path | None,
             image_ref: str | None, name: str | None, deb_licenses: bool,
             attach_to: str | None, creds: str | None, authfile: Path | None,
             cert_dir: Path | None, tls_verify: bool | None) -> None:
    """Write an SBOM of the image CTX's envnix.lock builds (no resolving, no network), and
    with --attach, attach it to that image in a registry."""
    context = _context(path, path_opt)
    lock = _lock_of(context)
    digest = _image_digest(context, lock, image_ref)
    if attach_to is not None and digest is None:
        raise UsageError("--attach needs the image built from this lock, for its digest",
                         hint="envnix build --locked first, or pass --image oci:DIR")
    make = spdx if fmt == "spdx-json" else cyclonedx
    doc = make(lock, name or _default_tag(context), digest, _store_files(lock, deb_licenses))
    text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if attach_to is not None:
        assert digest is not None
        opts = RegistryOptions(creds=_creds(creds), authfile=authfile,
                               cert_dir=cert_dir or options.registry_cert_dir(),
                               tls_verify=options.registry_tls_verify() if tls_verify is None
                               else tls_verify)
        _attach(text.encode(), fmt, digest, parse_destination(attach_to, "latest"), opts)
        if output is None:
            return
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        atomic_write(output, text)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {os_reason(exc)}") from None
    REPORTER(f"sbom: wrote {output} ({fmt}, {len(lock.artifacts())} artifacts)")


def _attach(payload: bytes, fmt: str, digest: str, dest: Reference,
            opts: RegistryOptions) -> None:
    """Push ``payload`` as an artifact referring to the image ``digest`` at ``dest``, after
    checking that ``dest`` serves exactly that image."""
    manifest = remote_manifest(dest, opts)
    served = "sha256:" + hashlib.sha256(manifest).hexdigest()
    if served != digest:
        raise PublishError(f"{dest} serves {served}, not the image built from this lock "
                           f"({digest})", hint="envnix push the build there first")
    repo = dest.with_tag(sbom_tag(digest))
    with tempfile.TemporaryDirectory(prefix="envnix-attach-") as tmp:
        tag, artifact = referrer_layout(
            Path(tmp), {"mediaType": MT_MANIFEST, "digest": digest, "size": len(manifest)},
            payload, ARTIFACT_TYPES[fmt])
        push_layout(Path(tmp), tag, repo, opts)
    click.echo(f"{repo}: {fmt} attached as {artifact}")


def _lock_arg(text: str) -> Lock:
    path = Path(text)
    if path.is_dir():
        return _lock_of(path)
    lock = read_lock(path)
    if lock is None:
        raise UsageError(f"{text} is not a lock, a build context or an image reference",
                         hint="give an envnix.lock, a directory with one, oci:DIR[:TAG] or "
                              "docker://HOST/NAME[:TAG]")
    return lock


@cli.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@click.option("--exit-code", is_flag=True,
              help="Exit 1 when A and B differ (as git diff --exit-code); default: 0.")
@_registry_options
def diff_cmd(a: str, b: str, as_json: bool, exit_code: bool, creds: str | None,
             authfile: Path | None, cert_dir: Path | None, tls_verify: bool) -> int:
    """Show what changed from A to B: two locks (an envnix.lock or a context directory) or two
    images (oci:DIR[:TAG], docker://REF)."""
    images = is_image_ref(a), is_image_ref(b)
    if images[0] != images[1]:
        raise UsageError("compare two locks or two images, not one of each",
                         hint="envnix build the lock, then diff the images")
    if images[0]:
        opts = RegistryOptions(creds=_creds(creds), authfile=authfile, cert_dir=cert_dir,
                               tls_verify=tls_verify)
        with ExitStack() as stack:
            old = stack.enter_context(open_image(a, opts))
            new = stack.enter_context(open_image(b, opts))
            result: Any = diff_images(old, new)
    else:
        result = diff_locks(_lock_arg(a), _lock_arg(b))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo("\n".join(result.lines()))
    return 1 if exit_code and result else 0

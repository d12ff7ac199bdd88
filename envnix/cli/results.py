"""What commands hand to tools: ``--json``, and build's ``--iidfile``, ``--metadata-file``, ``-q``.

Why buildx's spellings and keys: CI scripts written for ``docker buildx build --iidfile
--metadata-file`` read ``containerimage.digest`` and friends; they work unchanged on envnix.
The image ID is the config digest, as docker prints it (``sha256:...``, no newline in the
file). envnix's own keys (``envnix.*``) add what only a Nix build has: the store path and the
digest of the lock it was built from. Result files are removed before the build (as buildx
does) and written whole afterwards, so a failed build never leaves a stale ID for CI to read.
Commands that print results take ``json_option`` and call ``emit_json`` (verify and diff too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from envnix.core.errors import UsageError, os_reason
from envnix.core.fileio import atomic_write
from envnix.oci.layout import BuiltImage

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the result as one JSON object on stdout (progress "
                                "stays on stderr).")


def emit_json(data: Any) -> None:
    """One JSON document on stdout, keys sorted, so scripts and diffs see a stable shape."""
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def result_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed([
        click.option("--iidfile", type=click.Path(path_type=Path, dir_okay=False),
                     metavar="FILE", help="Write the image ID (the config digest) to FILE."),
        click.option("--metadata-file", type=click.Path(path_type=Path, dir_okay=False),
                     metavar="FILE", help="Write the build result as JSON to FILE (buildx's "
                                          "keys, plus envnix.*)."),
        click.option("-q", "--quiet", is_flag=True,
                     help="Print only the image ID on stdout; no progress."),
        json_option,
    ]):
        fn = option(fn)
    return fn


def prepare(*files: Path | None) -> None:
    """Before the build: each result file's directory must exist; an old file goes now."""
    for file in files:
        if file is None:
            continue
        if not file.absolute().parent.is_dir():
            raise UsageError(f"cannot write {file}: its directory does not exist")
        try:
            file.unlink(missing_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot replace {file}: {os_reason(exc)}") from None


def build_metadata(image: BuiltImage, tag: str, lock_digest: str, result_link: Path
                   ) -> dict[str, Any]:
    """buildx's metadata keys for one image, then envnix's own."""
    return {
        "containerimage.config.digest": image.config.digest,
        "containerimage.digest": image.manifest,
        "containerimage.descriptor": {"mediaType": MANIFEST_MEDIA_TYPE,
                                      "digest": image.manifest, "size": image.manifest_size},
        "image.name": tag,
        "envnix.store.path": str(image.out_path),
        "envnix.oci.layout": f"oci:{image.out_path / 'oci'}",
        "envnix.result": str(result_link),
        "envnix.lock.digest": lock_digest,
    }


def write(iidfile: Path | None, metadata_file: Path | None, metadata: dict[str, Any]) -> None:
    """The result files, each whole (core/fileio)."""
    # An image index (several platforms) has no config: its own digest is the image ID.
    iid = metadata.get("containerimage.config.digest", metadata["containerimage.digest"])
    for file, data in ((iidfile, iid),
                       (metadata_file, json.dumps(metadata, indent=2, sort_keys=True) + "\n")):
        if file is None:
            continue
        try:
            atomic_write(file, data)
        except OSError as exc:
            raise UsageError(f"cannot write {file}: {os_reason(exc)}") from None

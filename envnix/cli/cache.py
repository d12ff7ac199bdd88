"""``envnix cache push``: put the last build of a context into a Nix binary cache.

Why a command and not only ``nix copy``: the image alone is not what a team wants cached; the
toolchain, unpacked trees and layers it was built from make the next, slightly different
image cheap too. This finds them from the build's result link, signs them, and tells the
consumers what to trust. Nix does the copying (envnix.nix.cache_push); docs/nix-config.md
shows the raw commands.
"""

from __future__ import annotations

from pathlib import Path

import click

from envnix.cli import GENERATED_DIR, _context, cli, path_option
from envnix.cli.publish import _generated
from envnix.core.progress import REPORTER
from envnix.nix import cache_push
from envnix.oci.layout import last_build


@cli.group("cache")
def cache_group() -> None:
    """Share builds through a Nix binary cache (docs/nix-config.md)."""


@cache_group.command("push")
@click.argument("cache")
@click.argument("path", required=False)
@path_option
@click.option("--sign-key", type=click.Path(path_type=Path), metavar="FILE",
              help="Secret key from nix-store --generate-binary-cache-key (default: "
                   "nix.conf's secret-key-files).")
@click.option("--out-dir", type=click.Path(path_type=Path),
              help=f"The build's Nix project (default: <context>/{GENERATED_DIR}).")
@click.option("--store", help="The Nix store the image was built in (as given to build).")
@click.option("-v", "--verbose", is_flag=True, help="Show Nix's log.")
def push_cmd(cache: str, path: str | None, path_opt: str | None, sign_key: Path | None,
             out_dir: Path | None, store: str | None, verbose: bool) -> None:
    """Copy the last image built in PATH, and what it was built from, to CACHE.

    CACHE is a Nix store URL (file:///DIR, http(s)://..., s3://...) or a directory (a
    file:// cache there). Consumers add it to nix.conf's substituters with the key's public
    half in trusted-public-keys; their envnix build then fetches instead of building.
    """
    context = _context(path, path_opt)
    image = last_build(_generated(context, out_dir), store)
    pushed = cache_push(image.out_path, cache, sign_key, store, REPORTER, verbose)
    if pushed.key is None:
        REPORTER.warning("nothing signed these paths: a Nix that requires signatures (the "
                         "default) will not substitute them; pass --sign-key FILE")
    REPORTER.message(f"cache: {pushed.copied} new path(s) in {pushed.seconds:.1f}s")
    click.echo(f"cache:    {pushed.url}")
    click.echo(f"image:    {image.out_path}")
    click.echo(f"paths:    {pushed.paths} (and their closure), {pushed.copied} new")
    if pushed.key:
        click.echo(f"trust:    {pushed.key.public}")

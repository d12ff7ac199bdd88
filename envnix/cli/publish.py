"""``envnix push`` and ``envnix load``, and what ``envnix build --output`` does after the build.

Why these read ``<context>/.envnix/result``: envnix keeps no image store of its own; the last
build of a context *is* its image (a Nix store path), so publishing never rebuilds and never
touches the lock. Results (``DEST@sha256:...``, loaded names) go to stdout, progress to stderr.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from envnix.cli import GENERATED_DIR, _context, cli, path_option
from envnix.cli.results import emit_json, json_option
from envnix.core import options
from envnix.core.errors import PublishError, ToolMissingError, UsageError
from envnix.core.progress import REPORTER
from envnix.oci.export import build_archive, write_archive, write_rootfs
from envnix.oci.layout import BuiltImage, last_build, read_image, store_real_path
from envnix.oci.load import LoadResult, choose_engine, load_archive, load_into_podman
from envnix.oci.output import OutputSpec
from envnix.oci.registry import (
    RegistryOptions,
    SignOptions,
    is_registry_ref,
    parse_destination,
    push,
)


def _registry_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed([
        click.option("--creds", metavar="USER[:PASSWORD]", envvar=options.REGISTRY_CREDS.name,
                     show_envvar=True,
                     help="Registry credentials (prompted for the password if omitted). "
                          "Prefer the environment variable or --authfile in CI."),
        click.option("--authfile", type=click.Path(path_type=Path),
                     help="Auth file (auth.json / docker config.json). Default: skopeo's own "
                          "lookup (REGISTRY_AUTH_FILE, then podman and docker logins)."),
        click.option("--cert-dir", type=click.Path(path_type=Path),
                     envvar=options.REGISTRY_CERT_DIR.name, show_envvar=True,
                     help="Directory with the registry's CA as ca.crt (and client certs); "
                          "config key registry.cert-dir."),
        click.option("--tls-verify", type=click.BOOL, default=None,
                     envvar=options.REGISTRY_TLS_VERIFY.name, metavar="BOOL",
                     help="Require HTTPS and verify certificates; --tls-verify=false allows "
                          "plain HTTP and untrusted certificates (default: true, or config "
                          "key registry.tls-verify)."),
    ]):
        fn = option(fn)
    return fn


def registry_options(creds: str | None, authfile: Path | None, cert_dir: Path | None,
                     tls_verify: bool | None) -> RegistryOptions:
    """The flags (and click's envvar) first, then the config files (core/config.py)."""
    return RegistryOptions(creds=_creds(creds), authfile=authfile,
                           cert_dir=cert_dir or options.registry_cert_dir(),
                           tls_verify=options.registry_tls_verify() if tls_verify is None
                           else tls_verify)


def _sign_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed([
        click.option("--sign-by", metavar="FINGERPRINT",
                     help="Sign each pushed manifest with this GPG key (simple signing; "
                          "gpg's keyring, GNUPGHOME)."),
        click.option("--sign-by-sigstore-private-key", "sigstore_key",
                     type=click.Path(path_type=Path), metavar="KEY",
                     help="Sign with this sigstore private key instead."),
        click.option("--sign-passphrase-file", "passphrase_file",
                     type=click.Path(path_type=Path), metavar="FILE",
                     help="The signing key's passphrase, read from FILE (never from argv)."),
        click.option("--registries.d", "registries_d", type=click.Path(path_type=Path),
                     metavar="DIR",
                     help="registries.d directory saying where signatures go (a lookaside "
                          "store); default: skopeo's (/etc/containers/registries.d)."),
    ]):
        fn = option(fn)
    return fn


def _creds(creds: str | None) -> str | None:
    """USER without a password: ask for it (hidden), as skopeo does; never echo it."""
    if creds is None or ":" in creds:
        return creds
    if not click.get_text_stream("stdin").isatty():
        raise UsageError("--creds has no password and stdin is not a terminal",
                         hint="use --creds USER:PASSWORD via ENVNIX_REGISTRY_CREDS, "
                              "or --authfile")
    password = click.prompt(f"password for {creds}", hide_input=True, err=True)
    return f"{creds}:{password}"


def _generated(context: Path, out_dir: Path | None) -> Path:
    return (out_dir or context / GENERATED_DIR).absolute()


def _check_name(image: BuiltImage, wanted: str | None, context: Path) -> None:
    """``envnix push NAME:TAG DEST``: NAME:TAG must be what the last build was tagged."""
    if wanted is not None and wanted != image.name:
        raise UsageError(f"the last build in {context} is {image.name}, not {wanted}",
                         hint=f"run envnix build -t {wanted} first (or pass -p CONTEXT)")


@cli.command("push")
@click.argument("args", nargs=-1, metavar="[PATH|NAME:TAG] DEST...")
@path_option
@click.option("-t", "--tag", "name", help="The built image's name:tag (must match the last "
                                          "build; a guard for scripts).")
@click.option("--out-dir", type=click.Path(path_type=Path),
              help=f"The build's Nix project (default: <context>/{GENERATED_DIR}).")
@_registry_options
@_sign_options
@click.option("--store", help="The Nix store the image was built in (as given to build).")
@click.option("-v", "--verbose", is_flag=True, help="Show skopeo's log (credentials removed).")
@json_option
def push_cmd(args: tuple[str, ...], path_opt: str | None, name: str | None,
             out_dir: Path | None, creds: str | None, authfile: Path | None,
             cert_dir: Path | None, tls_verify: bool | None, sign_by: str | None,
             sigstore_key: Path | None, passphrase_file: Path | None,
             registries_d: Path | None, store: str | None, verbose: bool,
             as_json: bool) -> None:
    """Push the last image built in PATH to each DEST (host[:port]/name[:tag]).

    The first argument may be the build context (a directory) or the built image's NAME:TAG;
    every other argument is a destination (a `docker://` prefix is optional, the tag defaults
    to the build's). Without DEST, pushes to the build's own tag when that names a registry.
    Prints DEST@sha256:... per destination after checking that the registry holds exactly
    the manifest the build computed. Exit 7 when the registry or the push fails. With
    --sign-by (GPG) or --sign-by-sigstore-private-key, skopeo signs each pushed manifest;
    --registries.d says where the signatures go.
    """
    path_arg: str | None = None
    rest = list(args)
    if rest and not is_registry_ref(rest[0]):
        first = rest.pop(0)
        if Path(first).is_dir():
            path_arg = first
        elif not rest and "/" in first:
            parse_destination(first, "latest")  # meant as DEST: say why it is not one
            raise UsageError(f"{first} is not a registry reference")
        elif name is None:
            name = first
        else:
            raise UsageError(f"{first} is neither a build context nor a registry reference")
    context = _context(path_arg, path_opt)
    image = last_build(_generated(context, out_dir), store)
    _check_name(image, name, context)
    targets = rest or ([image.name] if image.name and is_registry_ref(image.name) else [])
    if not targets:
        raise UsageError(f"no destination: the image is tagged {image.name}, which names no "
                         "registry", hint="give one: envnix push host[:port]/name[:tag]")
    dests = [parse_destination(t, image.tag) for t in targets]
    sign = SignOptions(sign_by, sigstore_key, passphrase_file, registries_d)
    opts = registry_options(creds, authfile, cert_dir, tls_verify)
    pushed = []
    for result in push(image, dests, opts, REPORTER, verbose=verbose, sign=sign):
        pushed.append({"name": str(result.dest), "digest": result.digest})
        if not as_json:
            click.echo(f"{result.dest}@{result.digest}")
    if as_json:
        emit_json({"image": image.name, "config": image.config.digest, "pushed": pushed,
                   "signed": sign.signing})


@cli.command("load")
@click.argument("path", required=False)
@path_option
@click.option("--out-dir", type=click.Path(path_type=Path),
              help=f"The build's Nix project (default: <context>/{GENERATED_DIR}).")
@click.option("--engine", type=click.Choice(["auto", "podman", "docker"]), default="auto",
              show_default=True,
              help="auto: docker when its daemon answers, else podman.")
@click.option("--store", help="The Nix store the image was built in (as given to build).")
@click.option("-v", "--verbose", is_flag=True, help="Show Nix's full build log.")
def load_cmd(path: str | None, path_opt: str | None, out_dir: Path | None, engine: str,
             store: str | None, verbose: bool) -> None:
    """Load the last image built in PATH into podman or docker (as its build tag)."""
    context = _context(path, path_opt)
    generated = _generated(context, out_dir)
    image = last_build(generated, store)
    result = _load(generated, image, choose_engine(engine), store, verbose)
    for loaded in result.names or (image.name or image.manifest,):
        click.echo(f"{result.engine}: {loaded}")


def _load(generated: Path, image: BuiltImage, engine: str, store: str | None,
          verbose: bool) -> LoadResult:
    """podman: straight from the layout, skipping layers it has; docker: the built archive."""
    if engine == "podman" and image.name:
        return load_into_podman(image, image.name, REPORTER, verbose)
    archive = build_archive(generated, image, store, REPORTER, verbose)
    return load_archive(archive, image, engine, REPORTER)


def load_after_build(generated: Path, image: BuiltImage, store: str | None, verbose: bool,
                     required: bool) -> LoadResult | None:
    """``envnix build``'s load: into docker if its daemon answers, else podman. Unless the
    user asked for it (``required``), the build has succeeded whatever happens here: no engine
    is one progress line, a failed load one warning (exit 0; ``envnix load`` retries it)."""
    try:
        engine = choose_engine("auto")
    except (ToolMissingError, PublishError) as exc:
        if required:
            raise
        REPORTER.message(f"load: skipped, {exc} (the image stays in the Nix store: envnix "
                         "load or envnix push take it from there)")
        return None
    try:
        return _load(generated, image, engine, store, verbose)
    except (ToolMissingError, PublishError) as exc:
        if required:
            raise
        REPORTER.warning(f"the image is built, but loading it into {engine} failed: {exc} "
                         "(envnix load retries; --no-load skips it)")
        return None


def run_output(spec: OutputSpec, generated: Path, out_path: Path, store: str | None,
               verbose: bool, echo: Callable[[str], None] = click.echo) -> list[str]:
    """After ``envnix build --output ...``: push, or write the archive / root filesystem.

    Returns the pushed ``DEST@sha256:...`` (for build's --json and --metadata-file); ``echo``
    says where result lines go (stderr when stdout is taken by -q, --json or an archive)."""
    image = read_image(store_real_path(out_path, store), out_path)
    if spec.type == "image":
        if not spec.push:
            REPORTER.message("output: type=image without push=true: the image stays in the "
                             "Nix store (envnix push publishes it)")
            return []
        targets = spec.names or ((image.name,) if image.name else ())
        dests = [parse_destination(t, image.tag) for t in targets]
        opts = RegistryOptions.from_env(insecure=spec.insecure)
        pushed = [f"{r.dest}@{r.digest}" for r in push(image, dests, opts, REPORTER,
                                                       verbose=verbose)]
        for line in pushed:
            echo(f"pushed:   {line}")
        return pushed
    if spec.type == "tar":
        where = write_rootfs(image, spec.dest)
    else:
        where = write_archive(build_archive(generated, image, store, REPORTER, verbose),
                              spec.dest)
    REPORTER.message(f"output: wrote type={spec.type} to {where}")
    return []

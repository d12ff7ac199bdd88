"""envnix command line: thin click layer over the pipeline stages.

Every command raises EnvnixError for anything the user can fix; ``main`` prints it as one
``envnix: ...`` line (plus a hint line) and exits with the error's code. Progress goes to
stderr, results (paths, digests, JSON) to stdout, so scripts can capture them.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

import click

from envnix import __version__
from envnix.cli import results
from envnix.core import options
from envnix.core.config import PROJECT_FILE, load_config
from envnix.core.errors import (
    INTERRUPTED,
    EnvnixError,
    Terminated,
    UsageError,
    os_reason,
)
from envnix.core.fileio import atomic_write
from envnix.core.nixexpr import nix_string
from envnix.core.process import install_signal_handlers
from envnix.core.progress import MODES as progress_modes
from envnix.core.progress import REPORTER
from envnix.core.reference import default_name, image_name
from envnix.frontend import load_spec
from envnix.frontend.evaluate import parse_from
from envnix.frontend.include import pins_from_lock
from envnix.frontend.migrate import build_envd_from_conda
from envnix.lock import LOCK_NAME, Describe, check_lock, ensure_lock, lock_file, read_lock, relock
from envnix.nix import NixConfig, nix_build
from envnix.oci.layout import read_digests, read_image, store_real_path
from envnix.oci.output import parse_output
from envnix.render import image_section, render
from envnix.spec import ImageSpec
from envnix.spec.cuda import PROVIDERS as CUDA_PROVIDERS
from envnix.spec.platform import Platform, parse_platforms

GENERATED_DIR = ".envnix"


def _context(path_arg: str | None, path_opt: str | None) -> Path:
    if path_arg and path_opt and Path(path_arg).resolve() != Path(path_opt).resolve():
        raise UsageError("give the build context either as an argument or with --path, not both")
    context = Path(path_arg or path_opt or ".")
    if not context.is_dir():
        raise UsageError(f"build context {context} does not exist or is not a directory")
    context = context.resolve()
    # Every command with a context reads its config files here, before any option is used.
    options.use_config(load_config(context))
    return context


def _cuda_provider(flag: str | None) -> str | None:
    """--cuda-provider, else ENVNIX_CUDA_PROVIDER, else the config files' cuda.provider."""
    return flag or options.CUDA_PROVIDER.raw() or None


def _default_tag(context: Path) -> str:
    """envd's default: the context directory's name, normalised, with tag 'dev'."""
    return f"{default_name(context.name)}:dev"


def _platforms(flag: str | None) -> tuple[Platform, ...] | None:
    """--platform's platforms; None (the lock's, else the host's) without it."""
    return parse_platforms(flag) if flag else None


def _load_spec(context: Path, from_: str, cuda_provider: str | None, *,
               locked: bool = False, upgrade: bool = False) -> ImageSpec:
    """build.envd's spec, named as the project's lock recorded it (envd derives the image's
    name and working directory from the context directory's name: a checkout under another
    name must not change the image the lock describes), its include()s at the lock's
    commits (``upgrade``: at HEAD; ``locked``: an include the lock lacks is an error)."""
    manifest = context / parse_from(from_)[0]
    try:
        lock = read_lock(manifest.parent / LOCK_NAME)
    except EnvnixError:
        lock = None  # a damaged lock is reported where it is used
    name = lock.image.get("name") if lock is not None and lock.image else None
    pins = pins_from_lock(lock.image if lock is not None and not upgrade else None)
    return load_spec(context, from_, cuda_provider=_cuda_provider(cuda_provider),
                     owner=_owner(), name=name, include_pins=pins, locked=locked)


def _describer(spec: ImageSpec, context: Path) -> Describe:
    return lambda lock: image_section(spec, lock, context)


common_path = click.argument("path", required=False)
path_option = click.option("-p", "--path", "path_opt", help="Build context (default: .).")
from_option = click.option("-f", "--from", "from_", default="build.envd:build", show_default=True,
                           help="Manifest and function, as file:func.")
cuda_provider_option = click.option(
    "--cuda-provider", envvar=options.CUDA_PROVIDER.name, type=click.Choice(CUDA_PROVIDERS),
    help="Where install.cuda's libraries come from (default: conda for conda envs, else "
         "NVIDIA's PyPI wheels).")


def _parse_owner(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """--owner UID:GID (envd's): kept on the context for _owner(), so the commands' signatures
    stay as they are."""
    if value is None:
        return
    uid, sep, gid = value.partition(":")
    if not (sep and uid.isdigit() and gid.isdigit() and int(uid) <= 65535
            and int(gid) <= 65535):
        raise UsageError(f"--owner {value!r}: expected UID:GID, each 0..65535")
    ctx.meta["envnix.owner"] = (int(uid), int(gid))


def _owner() -> tuple[int, int] | None:
    return click.get_current_context().meta.get("envnix.owner")


def _set_progress(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        REPORTER.set_mode(value)


progress_option = click.option(
    "--progress", type=click.Choice(progress_modes), expose_value=False, callback=_set_progress,
    help="How progress shows on stderr, as buildx spells it: auto (a live line on a "
         "terminal, else plain), plain (lines; a long step repeats its status every few "
         "seconds), tty, quiet. NO_COLOR turns colour off.")
owner_option = click.option(
    "--owner", metavar="UID:GID", expose_value=False, callback=_parse_owner,
    help="Owner of io.copy's files, the workdir and the image user's home (envd's --owner; "
         "beats build.envd's config.owner).")
mirror_option = click.option("--apt-mirror", envvar=options.APT_MIRROR.name,
                             help="Debian mirror base URL (default: this machine's apt sources).")
platform_option = click.option(
    "--platform", "platform", metavar="PLATFORMS",
    help="Target platforms, comma-separated: linux/amd64, linux/arm64 (default: the lock's, "
         "else linux/amd64). Two make one OCI image index.")


_EPILOG = f"""\b
Settings: a command-line flag beats the environment variable, which beats the
build context's {PROJECT_FILE}, which beats the user's config file
($XDG_CONFIG_HOME/envnix/config.toml, default ~/.config/envnix/config.toml), which
beats the default. Config keys are TOML tables, e.g. [apt] mirror = "https://..."
or [nix] substituters = ["https://..."].

{options.help_text()}

\b
Shell completion: eval "$(_ENVNIX_COMPLETE=bash_source envnix)" (zsh: zsh_source, fish:
_ENVNIX_COMPLETE=fish_source envnix | source); see the README.
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
@click.version_option(__version__, prog_name="envnix")
def cli() -> None:
    """Reproducible OCI images from envd build.envd files, built by Nix."""


@cli.command("spec")
@common_path
@path_option
@from_option
@cuda_provider_option
@owner_option
def spec_cmd(path: str | None, path_opt: str | None, from_: str,
             cuda_provider: str | None) -> None:
    """Evaluate build.envd and print the ImageSpec as JSON."""
    context = _context(path, path_opt)
    spec = _load_spec(context, from_, cuda_provider)
    click.echo(spec.to_json(), nl=False)


FLAKE_FILES = ("flake.nix", "build.envd", ".gitignore")
FLAKE_INPUT = '"envnix"'  # the template's inputs.envnix.url: a flake registry name


@cli.command("init")
@click.option("--from-conda", "env_file", type=click.Path(path_type=Path),
              help="A conda env.yaml (e.g. from `conda env export`) inside the context.")
@click.option("--flake", is_flag=True,
              help="Also write flake.nix and .gitignore (the flake template), so that "
                   "`nix build .#image` builds the image with Nix alone.")
@click.option("--envnix-input", metavar="FLAKE_REF", default="envnix", show_default=True,
              help="With --flake: where the flake takes envnix from (a flake reference).")
@click.option("-p", "--path", "path_opt",
              help="Build context (default: the env.yaml's directory, else the current one).")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init_cmd(env_file: Path | None, flake: bool, envnix_input: str, path_opt: str | None,
             force: bool) -> None:
    """Start a project: build.envd from a conda environment, and/or the flake template."""
    if env_file is None and not flake:
        raise UsageError("nothing to write", hint="pass --from-conda ENV.yaml, --flake, or both")
    if env_file is not None and not env_file.is_file():
        raise UsageError(f"{env_file} does not exist")
    if not envnix_input or not envnix_input.isprintable() or any(
            c.isspace() for c in envnix_input):
        raise UsageError(f"--envnix-input {envnix_input!r} is not a flake reference")
    default = env_file.resolve().parent if env_file is not None else Path.cwd()
    context = Path(path_opt).resolve() if path_opt else default
    template = resources.files("envnix.templates") / "flake"
    files: dict[str, str] = {}
    if env_file is not None:
        files["build.envd"] = build_envd_from_conda(env_file, context)
    if flake:
        for name in FLAKE_FILES:
            text = (template / name).read_text("utf-8")
            if name == "flake.nix":
                text = text.replace(f"inputs.envnix.url = {FLAKE_INPUT};",
                                    f"inputs.envnix.url = {nix_string(envnix_input)};")
            files.setdefault(name, text)
    for name in files:
        if (context / name).exists() and not force and not (
                name == "build.envd" and env_file is None):
            raise UsageError(f"{context / name} already exists",
                             hint="pass --force to overwrite it")
    written = []
    for name, text in files.items():
        if name == "build.envd" and env_file is None and (context / name).exists():
            continue  # --flake alone keeps the project's own build.envd
        try:
            atomic_write(context / name, text)
        except OSError as exc:
            raise UsageError(f"cannot write {context / name}: {os_reason(exc)}",
                             hint="check the directory's permissions, or pass -p PATH") from None
        written.append(name)
    nxt = (f"git add {' '.join(written)} envnix.lock && nix build .#image" if flake
           else f"envnix build {context}")
    click.echo(f"wrote {', '.join(written)} in {context}; next: envnix lock {context} && {nxt}")


@cli.command("lock")
@common_path
@path_option
@from_option
@cuda_provider_option
@owner_option
@progress_option
@mirror_option
@click.option("--check", is_flag=True, help="Exit non-zero if envnix.lock does not match inputs.")
@click.option("-U", "--upgrade", is_flag=True,
              help="Re-resolve every package to the newest that fits, ignoring the old pins.")
@click.option("-P", "--upgrade-package", "upgrade_packages", multiple=True, metavar="NAME",
              help="Move only NAME (and what it needs) to the newest that fits; repeatable.")
@results.json_option
@platform_option
def lock_cmd(path: str | None, path_opt: str | None, from_: str, cuda_provider: str | None,
             apt_mirror: str | None, check: bool, upgrade: bool,
             upgrade_packages: tuple[str, ...], as_json: bool,
             platform: str | None) -> None:
    """Resolve every apt, pip and conda package to URL + sha256 and write envnix.lock.

    Pins of an existing envnix.lock that still satisfy the spec are kept: only what the spec
    changed is resolved (--upgrade: everything; --upgrade-package: NAME too).
    """
    if upgrade and upgrade_packages:
        raise UsageError("--upgrade moves every package: --upgrade-package adds nothing to it")
    if check and (upgrade or upgrade_packages):
        raise UsageError("--check resolves nothing: it cannot --upgrade")
    context = _context(path, path_opt)
    spec = _load_spec(context, from_, cuda_provider, locked=check, upgrade=upgrade)
    lock_path = lock_file(context, spec)
    if check:
        check_lock(context, spec, _describer(spec, context), _platforms(platform))
        if as_json:
            results.emit_json({"lock": str(lock_path), "up_to_date": True})
        else:
            click.echo(f"{lock_path.name} is up to date")
        return
    lock, changed = relock(context, spec, apt_mirror, _describer(spec, context), REPORTER,
                           _platforms(platform), upgrade=upgrade,
                           upgrade_packages=upgrade_packages)
    if as_json:
        results.emit_json({"lock": str(lock_path), "changed": changed, "digest": lock.digest,
                           "debs": len(lock.apt_packages), "wheels": len(lock.pip_wheels),
                           "conda": len(lock.conda_packages), "sdists": len(lock.sdists)})
        return
    sdists = f", {len(lock.sdists)} built from sdists" if lock.sdists else ""
    click.echo(f"{lock_path} {'written' if changed else 'unchanged'}: "
               f"{len(lock.apt_packages)} debs, {len(lock.pip_wheels)} wheels{sdists}")


def _build_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed([
        common_path, path_option, from_option, cuda_provider_option, owner_option,
        progress_option, mirror_option,
        click.option("-t", "--tag", help="Image name:tag (default: <context dir>:dev)."),
        click.option("--locked", is_flag=True, help="Fail instead of re-locking a stale lock."),
        click.option("--out-dir", type=click.Path(path_type=Path),
                     help=f"Where to write the Nix project (default: <context>/{GENERATED_DIR})."),
        click.option("--toolchain", type=click.Choice(["pinned", "host", "nixpkgs"]),
                     default="pinned", show_default=True,
                     help="What runs the builders inside Nix: pinned (Python, zlib and proot "
                          "from pinned .debs in the Nix store), host (NOT reproducible: this "
                          "machine's python3, needs extra-sandbox-paths) or nixpkgs."),
        click.option("--compression", type=click.Choice(["gzip", "zstd"]), default="gzip",
                     show_default=True,
                     help="Layer compression (zstd: tar+zstd media type, smaller and faster "
                          "to build and unpack; needs podman, containerd >= 1.5 or Docker "
                          ">= 23 to pull). Part of the image's bytes, like the lock."),
        click.option("--slim", is_flag=True,
                     help="Leave out docs (but copyright files), man/info pages and locales, "
                          "as Debian's slim images do; apt in the image keeps leaving them "
                          "out (/etc/dpkg/dpkg.cfg.d/envnix-slim)."),
    ]):
        fn = option(fn)
    return fn


def _nix_config_options(fn):  # type: ignore[no-untyped-def]
    """Per-build Nix settings; without them the user's nix.conf decides (docs/nix-config.md)."""
    for option in reversed([
        click.option("--substituters", metavar="URLS",
                     help="Binary caches for this build, space-separated, instead of "
                          "nix.conf's (their keys: nix.conf's trusted-public-keys, or "
                          "--nix-option trusted-public-keys KEYS). Default: "
                          f"{options.SUBSTITUTERS.name}, nix.substituters, nix.conf's."),
        click.option("--no-substitute", "no_substitute", is_flag=True,
                     help="Use no binary cache: build or fetch everything."),
        click.option("--builders", metavar="SPEC",
                     help="Nix remote builders for this build ('' = build locally). Default: "
                          f"{options.BUILDERS.name}, nix.builders, nix.conf's."),
        click.option("--max-jobs", metavar="N|auto",
                     help="Derivations built at once (default: nix.conf's, else auto)."),
        click.option("--nix-option", "nix_options", type=(str, str), multiple=True,
                     metavar="NAME VALUE", help="Any other Nix setting for this build "
                                                "(repeatable), e.g. trusted-public-keys."),
    ]):
        fn = option(fn)
    return fn


def _nix_config(substituters: str | None, no_substitute: bool, builders: str | None,
                max_jobs: str | None, nix_options: tuple[tuple[str, str], ...]) -> NixConfig:
    """The flags of _nix_config_options, then the environment and config files."""
    if no_substitute and substituters is not None:
        raise UsageError("--substituters and --no-substitute contradict each other")
    if substituters is None and not no_substitute:
        substituters = options.substituters()
    builders = builders if builders is not None else options.builders()
    keys = options.trusted_public_keys()
    if keys and all(name != "trusted-public-keys" for name, _ in nix_options):
        nix_options = (*nix_options, ("trusted-public-keys", keys))
    return NixConfig(substituters, not no_substitute, builders, max_jobs, nix_options)


@cli.command("render")
@_build_options
@platform_option
def render_cmd(path: str | None, path_opt: str | None, from_: str, cuda_provider: str | None,
               apt_mirror: str | None, tag: str | None, locked: bool, out_dir: Path | None,
               toolchain: str, compression: str, slim: bool, platform: str | None) -> None:
    """Lock if needed and write the Nix project (default.nix, image.nix) without building."""
    context = _context(path, path_opt)
    if tag:
        image_name(tag, "-t")
    tag = tag or _default_tag(context)
    spec = _load_spec(context, from_, cuda_provider, locked=locked)
    lock = ensure_lock(context, spec, apt_mirror, locked, REPORTER, _describer(spec, context),
                       _platforms(platform))
    rendered = render(spec, lock, out_dir or context / GENERATED_DIR, tag, toolchain,
                      context=context, compression=compression, slim=slim)
    click.echo(str(rendered.directory))


@cli.command("build")
@_build_options
@click.option("--store", help="Nix store to build in (e.g. a directory for a chroot store).")
@_nix_config_options
@click.option("-v", "--verbose", is_flag=True, help="Show Nix's full build log.")
@click.option("-o", "--output", "outputs", multiple=True, metavar="CSV",
              help="envd's --output: type=image,name=REF,push=true | "
                   "type=oci|docker|tar,dest=FILE|- (see envnix push for credentials).")
@click.option("--load/--no-load", "load", default=None,
              help="Load the image into the local engine under its tag: docker if its daemon "
                   f"answers, else podman (default: when there is one; {options.LOAD.name}).")
@results.result_options
@platform_option
def build_cmd(path: str | None, path_opt: str | None, from_: str, cuda_provider: str | None,
              apt_mirror: str | None, tag: str | None, locked: bool, out_dir: Path | None,
              toolchain: str, compression: str, slim: bool, store: str | None,
              substituters: str | None,
              no_substitute: bool, builders: str | None, max_jobs: str | None,
              nix_options: tuple[tuple[str, str], ...], verbose: bool,
              outputs: tuple[str, ...], load: bool | None, iidfile: Path | None,
              metadata_file: Path | None, quiet: bool, as_json: bool,
              platform: str | None) -> None:
    """Lock (if needed), render and build the image with Nix; print its OCI layout path."""
    if quiet and as_json:
        raise UsageError("-q/--quiet and --json contradict each other")
    context = _context(path, path_opt)
    nix_config = _nix_config(substituters, no_substitute, builders, max_jobs, nix_options)
    output = parse_output(outputs)  # before the build: a bad --output fails fast
    if output and output.to_stdout and (quiet or as_json):
        raise UsageError("--output ...,dest=- writes the archive to stdout: it cannot carry "
                         f"{'the image ID' if quiet else 'JSON'} too")
    results.prepare(iidfile, metadata_file)
    if quiet:
        REPORTER.quiet = True
    if tag:
        image_name(tag, "-t")
    tag = output.build_tag(tag, _default_tag(context)) if output else tag or _default_tag(context)
    spec = _load_spec(context, from_, cuda_provider, locked=locked)
    lock = ensure_lock(context, spec, apt_mirror, locked, REPORTER, _describer(spec, context),
                       _platforms(platform))
    rendered = render(spec, lock, out_dir or context / GENERATED_DIR, tag, toolchain,
                      context=context, compression=compression, slim=slim)
    if len(lock.platform_names) > 1:  # one OCI image index of every platform's image
        metadata = _multi.build_index(
            rendered.directory, lock, tag, toolchain, store, verbose, nix_config, output, load,
            REPORTER.message if quiet or as_json else click.echo)
        results.write(iidfile, metadata_file, metadata)
        if quiet:
            click.echo(metadata["containerimage.digest"])
        elif as_json:
            results.emit_json(metadata)
        return
    result = nix_build(rendered.directory, "image", toolchain,
                       out_link=rendered.directory / "result", store=store,
                       progress=REPORTER, verbose=verbose, config=nix_config,
                       args=["--argstr", "compression", compression,
                             "--arg", "slim", str(slim).lower()])
    store_root = Path(store) if store and "://" not in store else None
    real = Path(str(store_root) + str(result.out_path)) if store_root else result.out_path
    digests = read_digests(real / "digests.json")
    REPORTER.message(f"build: {result.built} derivation(s) built in {result.seconds:.1f}s")
    # The store path, not the result link: podman derives an image name from an oci: path,
    # and a component like ".envnix" is not a valid name.
    layout = result.out_path / "oci"
    # With --output ...,dest=- stdout carries the archive, so the summary goes to stderr;
    # -q and --json leave stdout to the image ID or the JSON.
    echo = REPORTER.message if (output and output.to_stdout) or quiet or as_json else click.echo
    echo(f"image:    {tag}")
    echo(f"store:    {result.out_path}")
    echo(f"config:   {digests['config']}")
    echo(f"manifest: {digests['manifest']}")
    echo(f"result:   {rendered.directory / 'result'}")
    echo(f"oci:      oci:{layout}")
    pushed: list[str] = []
    if output:
        pushed = _publish.run_output(output, rendered.directory, result.out_path, store,
                                     verbose, echo)
    image = read_image(store_real_path(result.out_path, store), result.out_path)
    load = options.load() if load is None else load
    loaded = None if load is False else _publish.load_after_build(
        rendered.directory, image, store, verbose, required=load is True)
    if loaded and loaded.names:
        echo(f"loaded:   {loaded.engine} {loaded.names[0]}")
        echo(f"run:      {loaded.engine} run --rm {loaded.names[0]} python3")
    else:
        echo(f"run:      podman run --rm oci:{layout} python3")
    metadata = results.build_metadata(image, tag, lock.digest, rendered.directory / "result")
    if pushed:
        metadata["envnix.pushed"] = pushed
    if loaded:
        metadata["envnix.loaded"] = {"engine": loaded.engine, "names": list(loaded.names)}
    results.write(iidfile, metadata_file, metadata)
    if quiet:
        click.echo(metadata["containerimage.config.digest"])
    elif as_json:
        results.emit_json(metadata)


def _run() -> int:
    try:
        # The name is fixed so that completion (_ENVNIX_COMPLETE) and usage lines say envnix
        # under `python -m envnix` too.
        result = cli.main(prog_name="envnix", complete_var="_ENVNIX_COMPLETE",
                          standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        click.echo("envnix: interrupted", err=True)
        return INTERRUPTED
    except Terminated:
        click.echo("envnix: terminated", err=True)
        return Terminated.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except EnvnixError as exc:
        click.echo(f"envnix: {exc}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        return exc.exit_code
    return result if isinstance(result, int) else 0


def main() -> None:
    install_signal_handlers()
    code = _run()
    if "rattler" in sys.modules:
        # py-rattler's runtime threads can abort the interpreter while it finalizes
        # ("PyGILState_Release: thread state ... must be current"), turning a finished lock
        # into exit -6. All output is written and files are closed here, so skip finalization.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


from envnix.cli import cache as _cache  # noqa: E402, F401  (registers cache on cli)
from envnix.cli import platforms as _multi  # noqa: E402  (several platforms: one image index)
from envnix.cli import publish as _publish  # noqa: E402  (registers push/load on cli)
from envnix.cli import supply as _supply  # noqa: E402, F401  (registers sbom and diff on cli)
from envnix.cli import verify as _verify  # noqa: E402, F401  (registers verify on cli)

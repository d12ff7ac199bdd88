"""Pin a base(image=...) by digest: resolve its manifest and config with skopeo at lock time.

Why skopeo: it already handles registries' auth files, certs.d and token flows, and envnix
needs it for push anyway. Only ``envnix lock`` runs it; the lock's ``base`` section then holds
everything the build needs (layer digests and sizes, diff_ids, the config to inherit, and each
blob's URL for Nix's fixed-output fetch), so ``envnix build --locked`` never asks the registry.

A registry that needs a login: skopeo finds the user's (auth.json, docker's config.json,
credential helpers), and :func:`_check_pull` checks with core/credentials' copy of it that
the layers can be downloaded; ``envnix build`` then fetches them with it (nix.py). A public
repository on a registry with a token service needs no login: skopeo and envnix ask it for
an anonymous token.

Registries listed in ``ENVNIX_INSECURE_REGISTRIES`` (comma-separated ``host[:port]``) are
spoken to over plain HTTP (``--tls-verify=false``), e.g. a loopback test registry.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from typing import Any

from envnix.core import credentials, http, options, process
from envnix.core.errors import FetchError, LockError, ToolMissingError
from envnix.core.reference import DIGEST, DOCKER_HUB, InvalidReference, Reference

__all__ = ["ImageRef", "parse_image_ref", "resolve_base"]

DOCKER_HUB_API = "registry-1.docker.io"
GZIP_LAYER_TYPES = frozenset({
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
})
INDEX_TYPES = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})
# What the image config contributes to envnix's image (envd: Env, and for serving images
# WorkingDir, User, Entrypoint; Cmd goes with Entrypoint).
INHERITED = ("Env", "WorkingDir", "User", "Entrypoint", "Cmd")

@dataclass(frozen=True)
class ImageRef:
    """A base image: the text written in base(image=...) (for messages and the lock's ``ref``)
    and its docker-normalised Reference (registry always named)."""

    written: str
    ref: Reference

    @property
    def host(self) -> str:
        assert self.ref.domain is not None  # normalized() names the registry
        return self.ref.domain

    @property
    def api_host(self) -> str:
        """Where the registry API answers: Docker Hub's is not docker.io itself."""
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host


def parse_image_ref(written: str) -> ImageRef:
    """docker's rules: a first component with '.', ':' or 'localhost' is the registry, else
    Docker Hub (with ``library/`` for one-component names)."""
    try:
        parsed = Reference.parse(written).normalized()
    except InvalidReference as exc:
        raise LockError(f"base image {written!r} is not a valid image reference: {exc}"
                        ) from None
    return ImageRef(written, parsed)


def _skopeo(ref: ImageRef, target: str, *flags: str, insecure: bool) -> bytes:
    skopeo = shutil.which("skopeo")
    if not skopeo:
        raise ToolMissingError("skopeo not found on PATH: envnix needs it to pin base images",
                               hint="install it (Debian/Ubuntu: apt-get install skopeo)")
    argv = [skopeo, "inspect", "--raw", *flags, "--retry-times", "1"]
    if insecure:
        argv.append("--tls-verify=false")
    proc = process.run([*argv, target], error=FetchError, timeout=300)
    if proc.returncode != 0:
        text = proc.stderr
        m = re.search(r'level=fatal msg="((?:[^"\\]|\\.)*)"', text)
        why = (m[1] if m else text.strip().splitlines()[-1] if text.strip() else
               f"skopeo exited {proc.returncode}")
        why = why.replace('\\"', '"')
        why = re.sub(r'^Error parsing image name "[^"]*": ', "", why)
        hint = None
        if re.search(r"unauthorized|authentication required", why, re.I):
            login = credentials.registry_login(ref.api_host)
            raise FetchError(f"base image {ref.written}: registry {ref.host} "
                             + ("refused the stored login" if login else "needs a login"),
                             hint=f"log in{' again' if login else ''}: podman login {ref.host} "
                                  "(or docker login)")
        if "http: server gave HTTP response to HTTPS client" in why:
            hint = f"a plain-HTTP registry: set ENVNIX_INSECURE_REGISTRIES={ref.host}"
        if re.search(r"manifest unknown|name unknown|not found|repository .* not found", why,
                     re.I):
            # The registry answered: the image is not there. A typo to fix, not a retry (8).
            raise LockError(f"base image {ref.written}: the registry has no such image: {why}",
                            hint="check the name and tag in base(image=...)")
        raise FetchError(f"base image {ref.written}: cannot inspect it: {why}", hint=hint)
    return proc.stdout


def _json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise LockError(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise LockError(f"{what} is not a JSON object")
    return data


def _sha256(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _pick_platform(ref: ImageRef, index: dict[str, Any], arch: str) -> str:
    for desc in index.get("manifests", []):
        platform = desc.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == arch:
            digest = str(desc.get("digest"))
            if not DIGEST.fullmatch(digest):
                raise LockError(f"base image {ref.written}: its index names the linux/{arch} "
                                f"manifest {digest!r}, not a sha256 digest")
            return digest
    raise LockError(f"base image {ref.written} has no linux/{arch} image in its index")


def _check_pull(ref: ImageRef, url: str, insecure: bool) -> None:
    """Check at lock time that the build can download the layers: anonymously, with an
    anonymous token (a public repository on a registry with a token service), or with the
    login the user stored for the registry. A blob that needs a token or a login is fetched
    by ``envnix build`` itself (nix.seed.seed_private_layers), since Nix's fetcher cannot speak a
    registry's token flow."""
    login = credentials.registry_login(ref.api_host)
    try:
        headers = http.registry_headers(url, login, insecure=insecure)
        with http.open_url(url, headers or {"Authorization": ""}, method="HEAD",
                           insecure=insecure):
            return
    except http.Unauthorized as exc:
        if login is not None:
            raise FetchError(f"base image {ref.written}: registry {ref.host} refused the stored "
                             f"login for {login.user!r} (HTTP {exc.code})",
                             hint=f"it may be wrong or expired: log in again (podman login "
                                  f"{ref.host}, or docker login)") from None
        raise FetchError(f"base image {ref.written}: registry {ref.host} needs a login to "
                         f"download layers (HTTP {exc.code}) and none is stored for it",
                         hint=f"log in: podman login {ref.host} (or docker login)") from None
    except http.HttpError as exc:
        raise FetchError(f"base image {ref.written}: HTTP {exc.code} for {url}") from None
    except http.Unreachable as exc:
        raise FetchError(f"base image {ref.written}: cannot reach {url}: {exc.why}") from None


def resolve_base(written: str, environ: dict[str, str] | None = None,
                 arch: str = "amd64") -> dict[str, Any]:
    """The lock's ``base`` section for ``written`` on linux/``arch``: manifest digest, gzip
    layers, config."""
    base = parse_image_ref(written)
    insecure = base.host in options.insecure_registries(environ)
    raw = _skopeo(base, base.ref.transport, insecure=insecure)
    digest = _sha256(raw)
    if base.ref.digest and digest != base.ref.digest:
        raise LockError(f"base image {written}: the registry served a manifest with digest "
                        f"{digest}")
    manifest = _json(raw, f"base image {written}: manifest")
    if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
        digest = _pick_platform(base, manifest, arch)
        raw = _skopeo(base, base.ref.at(digest).transport, insecure=insecure)
        if _sha256(raw) != digest:
            raise LockError(f"base image {written}: manifest {digest} does not match its bytes")
        manifest = _json(raw, f"base image {written}: manifest {digest}")
    layers = manifest.get("layers")
    config_desc = manifest.get("config") or {}
    if manifest.get("schemaVersion") != 2 or not isinstance(layers, list):
        raise LockError(f"base image {written}: not an OCI/Docker v2 image manifest")
    for layer in layers:
        if layer.get("mediaType") not in GZIP_LAYER_TYPES:
            raise LockError(f"base image {written}: layer {layer.get('digest')} is "
                            f"{layer.get('mediaType')}; envnix takes gzip layers only yet")
        if not DIGEST.fullmatch(str(layer.get("digest"))) or not isinstance(layer.get("size"), int):
            raise LockError(f"base image {written}: layer descriptor without sha256 digest/size")
    config_raw = _skopeo(base, base.ref.at(digest).transport, "--config", insecure=insecure)
    if _sha256(config_raw) != config_desc.get("digest"):
        raise LockError(f"base image {written}: config does not match its digest "
                        f"{config_desc.get('digest')}")
    config = _json(config_raw, f"base image {written}: config")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(layers):
        raise LockError(f"base image {written}: {len(layers)} layers but {len(diff_ids)} "
                        "diff_ids in its config")
    if (config.get("os"), config.get("architecture")) != ("linux", arch):
        raise LockError(f"base image {written} is {config.get('os')}/"
                        f"{config.get('architecture')}, not linux/{arch}")
    scheme = "http" if insecure else "https"
    urls = [f"{scheme}://{base.api_host}/v2/{base.ref.path}/blobs/{layer['digest']}"
            for layer in layers]
    if urls:
        _check_pull(base, urls[0], insecure)
    inherited = config.get("config") or {}
    return {
        "ref": written,
        "digest": digest,
        "manifest": {
            "mediaType": manifest.get("mediaType", "application/vnd.oci.image.manifest.v1+json"),
            "layers": [{"digest": la["digest"], "size": la["size"], "mediaType": la["mediaType"]}
                       for la in layers],
        },
        "config": {"digest": config_desc["digest"], "diff_ids": diff_ids,
                   **{k: inherited.get(k) for k in INHERITED}},
        "blob_urls": urls,
    }

"""Image references (``[host[:port]/]path[:tag][@sha256:...]``): one grammar for all of envnix.

Why one type: ``-t``, ``--output name=``, push destinations, ``base(image=)`` and the lock's base
section all take references, and each had its own regular expression that accepted different
things (one let ``"`` and ``${`` through into flake.nix). This follows the distribution
reference grammar docker uses (github.com/distribution/reference, regexp.go), ASCII only:

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path          (at most 255 characters)
    domain     := host [ ":" port ]            host: DNS labels, or an IPv6 address in [ ]
    path       := component ( "/" component )*
    component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    digest     := "sha256:" 64 lowercase hex   (envnix pins by sha256 only)

The first component is a registry host when it contains ``.`` or ``:`` or is ``localhost``
(docker's rule), otherwise the reference names Docker Hub, where a one-component path gets
``library/`` (``normalized()``; only the lock needs that). One deviation: docker also takes a
first component with capitals for a host; envnix reports it as a repository that must be
lowercase, which is what ``MyOrg/app`` almost always means.

Transports are the caller's business, around a Reference: ``docker://`` is skopeo's spelling
of a registry reference (``transport``; push destinations accept it as skopeo does), while an
image name (``-t``, ``--output name=``, ``base(image=)``) is a bare reference as docker takes
it; ``oci:DIR:TAG`` names a local layout, not a reference (oci/layout.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from envnix.core.errors import UsageError

DOCKER_HUB = "docker.io"
MAX_NAME = 255

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
"""A sha256 content digest as registries and OCI layouts write it (``fullmatch`` it)."""
DOCKER = "docker://"


class InvalidReference(ValueError):
    """Why a string is not an image reference (a short phrase; callers add where it came from)."""


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. ``domain`` is None when the text named no registry."""

    domain: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse ``text`` exactly (no ``docker://`` prefix, no surrounding space)."""
        if not text:
            raise InvalidReference("it is empty")
        if not text.isascii() or not text.isprintable() or any(c.isspace() for c in text):
            raise InvalidReference("only printable ASCII without spaces is allowed")
        rest, at, digest = text.partition("@")
        if at and not DIGEST.fullmatch(digest):
            raise InvalidReference(f"digest {digest!r} is not sha256:<64 lowercase hex>")
        name, tag = rest, None
        colon = rest.rfind(":")
        if colon > rest.rfind("/"):
            name, tag = rest[:colon], rest[colon + 1:]
            if not _TAG.fullmatch(tag):
                raise InvalidReference(f"tag {tag!r} is not [A-Za-z0-9_][A-Za-z0-9_.-]* "
                                       "of at most 128 characters")
        if not name:
            raise InvalidReference("it names no repository")
        if len(name) > MAX_NAME:
            raise InvalidReference(f"the name is longer than {MAX_NAME} characters")
        first, slash, remainder = name.partition("/")
        domain = None
        if slash and ("." in first or ":" in first or first == "localhost"
                      or first.startswith("[")):
            if not _DOMAIN.fullmatch(first):
                raise InvalidReference(f"{first!r} is not a registry host[:port]")
            domain, name = first, remainder
        for component in name.split("/"):
            if _COMPONENT.fullmatch(component):
                continue
            if component.lower() != component and _COMPONENT.fullmatch(component.lower()):
                raise InvalidReference("the repository name must be lowercase")
            raise InvalidReference(
                f"path component {component!r} is not lowercase letters and digits "
                "separated by '.', '_', '__' or '-'")
        return cls(domain, name, tag, digest or None)

    @classmethod
    def parse_docker(cls, text: str) -> Reference:
        """``[docker://]reference``: a registry reference as skopeo's docker transport (and
        ``envnix push``) take it."""
        return cls.parse(text.removeprefix(DOCKER))

    @property
    def name(self) -> str:
        """``[domain/]path`` as written."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def normalized(self) -> Reference:
        """docker's normalisation: Docker Hub when no registry is named, ``library/`` for
        one-component names there."""
        domain = self.domain or DOCKER_HUB
        path = self.path
        if domain == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        return replace(self, domain=domain, path=path)

    def with_tag(self, tag: str) -> Reference:
        if not _TAG.fullmatch(tag):
            raise InvalidReference(f"tag {tag!r} is not [A-Za-z0-9_][A-Za-z0-9_.-]* "
                                   "of at most 128 characters")
        return replace(self, tag=tag)

    def at(self, digest: str) -> Reference:
        """This repository pinned at ``digest`` (the tag dropped: the digest alone decides)."""
        if not DIGEST.fullmatch(digest):
            raise InvalidReference(f"digest {digest!r} is not sha256:<64 lowercase hex>")
        return replace(self, tag=None, digest=digest)

    @property
    def transport(self) -> str:
        """skopeo's ``docker://`` form: by digest when pinned (containers/image refuses a tag
        and a digest together), else by tag, ``latest`` when none is given, as docker pulls."""
        ref = replace(self, tag=None) if self.digest else replace(self, tag=self.tag or "latest")
        return DOCKER + str(ref)


def default_name(directory: str) -> str:
    """envd's default image name for a build context: its directory's name, lowercased, with
    what a repository name cannot hold folded into '-' ('envnix' if nothing is left)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", directory.lower())
    # A separator is one '.', one '_', '__' or a run of '-': fold any other run into '-'.
    name = re.sub(r"[._-]{2,}", lambda m: m[0] if m[0] == "__" or set(m[0]) == {"-"} else "-",
                  name).strip("-._")
    return name or "envnix"


def image_name(text: str, what: str) -> Reference:
    """The name[:tag] an image is built as (``-t``, ``--output name=``): a UsageError naming
    ``what`` for anything else, a digest included (the build computes it), and a ``docker://``
    prefix too, as ``docker build -t`` and the image builder refuse it."""
    try:
        ref = Reference.parse(text)
    except InvalidReference as exc:
        raise UsageError(f"{what} {text!r} is not a valid image name: {exc}",
                         hint="expected [host[:port]/]name[:tag] in lowercase, e.g. "
                              "team/app:1") from None
    if ref.digest:
        raise UsageError(f"{what} {text!r}: give a name[:tag]; the digest is computed by the "
                         "build")
    return ref

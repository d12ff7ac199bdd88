"""The one image-reference grammar (envnix/core/reference.py) and the Nix string escaping."""

from __future__ import annotations

import pytest

from envnix.core.errors import UsageError
from envnix.core.nixexpr import url_problem
from envnix.core.reference import DOCKER_HUB, InvalidReference, Reference, image_name

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, domain, path, tag, digest", [
    ("app", None, "app", None, None),
    ("app:1.0", None, "app", "1.0", None),
    ("team/app:dev", None, "team/app", "dev", None),
    ("registry.example.com/team/app:1", "registry.example.com", "team/app", "1", None),
    ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", None, None),
    ("localhost/a:2", "localhost", "a", "2", None),
    ("[::1]:5000/a:x", "[::1]:5000", "a", "x", None),
    (f"python@{DIGEST}", None, "python", None, DIGEST),
    (f"h.io/a_b__c-d--e.f:T_1.x-y@{DIGEST}", "h.io", "a_b__c-d--e.f", "T_1.x-y", DIGEST),
    ("localhost:5000", None, "localhost", "5000", None),  # as docker reads it
])
def test_valid_references_parse_and_print_back(text: str, domain: str | None, path: str,
                                               tag: str | None, digest: str | None) -> None:
    ref = Reference.parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("App:1", "must be lowercase"),
    ("MyOrg/app", "must be lowercase"),
    ('x"; builtins.exec', "printable ASCII without spaces"),
    ("a${b}", "path component"),
    ("a b", "printable ASCII without spaces"),
    ("a\nb", "printable ASCII"),
    ("app:" + "t" * 129, "at most 128"),
    ("app:-x", "tag '-x'"),
    ("app@sha256:abc", "digest"),
    ("a..b", "path component"),
    ("a/", "path component"),
    ("-a", "path component"),
    ("exa_mple.com:x/a", "registry host"),
    ("a" * 256, "longer than 255"),
    ("café", "printable ASCII"),
])
def test_invalid_references_say_why(text: str, why: str) -> None:
    with pytest.raises(InvalidReference, match=why.replace("$", r"\$")):
        Reference.parse(text)


def test_docker_normalisation_only_where_asked() -> None:
    assert str(Reference.parse("python:3.11").normalized()) == f"{DOCKER_HUB}/library/python:3.11"
    assert str(Reference.parse("team/app").normalized()) == f"{DOCKER_HUB}/team/app"
    assert Reference.parse("h.io:5000/x").normalized().domain == "h.io:5000"
    assert str(Reference.parse("a:1").with_tag("2")) == "a:2"


def test_transport_and_digest_pinning() -> None:
    """skopeo's docker:// form: the tag when unpinned (latest when none), the digest alone once
    pinned (containers/image refuses both together)."""
    assert Reference.parse("h.io/a").transport == "docker://h.io/a:latest"
    assert Reference.parse("h.io/a:1").transport == "docker://h.io/a:1"
    assert Reference.parse(f"h.io/a:1@{DIGEST}").transport == f"docker://h.io/a@{DIGEST}"
    assert str(Reference.parse("h.io/a:1").at(DIGEST)) == f"h.io/a@{DIGEST}"
    with pytest.raises(InvalidReference, match="digest"):
        Reference.parse("h.io/a").at("sha256:00")
    assert Reference.parse_docker("docker://h.io/a:1") == Reference.parse("h.io/a:1")


@pytest.mark.parametrize("text, ok", [
    ("team/app:1", True),
    ("127.0.0.1:5000/team/app", True),
    ("docker://team/app:1", False),  # docker build -t and the image builder refuse it too
    (f"team/app@{DIGEST}", False),   # the build computes the digest
    ("Team/app", False),
])
def test_image_names_for_t_and_output_name(text: str, ok: bool) -> None:
    if ok:
        assert str(image_name(text, "-t")) == text
    else:
        with pytest.raises(UsageError, match="-t"):
            image_name(text, "-t")


@pytest.mark.parametrize("url, ok", [
    ("https://deb.example/pool/a.deb", True),
    ("http://127.0.0.1:8080/x.whl", True),
    ("file:///etc/shadow", False),
    ("FILE:///etc/shadow", False),
    ("/etc/shadow", False),
    ("ftp://h/x", False),
    ("https://u:p@h/x", False),
    ("https://u@h/x", False),
    ("https://h/a b", False),
    ("https://h/\x00", False),
    ("https:///x", False),
    ("https://h:99999/x", False),
    ("https://h:port/x", False),
])
def test_only_plain_http_urls_are_fetched(url: str, ok: bool) -> None:
    assert (url_problem(url) is None) == ok, url_problem(url)

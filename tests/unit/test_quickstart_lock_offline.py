"""The offline tests of tests/integration/test_quickstart_lock.py (no network, no program started).

The committed quickstart lock builds the image whose digests the README quotes.
"""

from __future__ import annotations

import json

import pytest
from _cli import EXAMPLES

EXAMPLE = EXAMPLES / "quickstart"
EXPECTED = EXAMPLE / "expected-digests.json"


@pytest.mark.parametrize("kind", ["config", "manifest"])
def test_readme_quotes_the_expected_digests(kind: str) -> None:
    digest = json.loads(EXPECTED.read_text())[kind]
    readme = (EXAMPLES.parent / "README.md").read_text()
    assert f"{kind} `{digest}`" in readme, (
        f"README.md does not quote the quickstart's {kind} digest {digest} from {EXPECTED.name}")

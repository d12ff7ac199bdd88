"""envnix/core/options.py: every ENVNIX_* variable is declared once, and each accessor keeps the
meaning the variable had where it used to be read."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from envnix.core import options

ENVNIX = Path(__file__).resolve().parents[2] / "envnix"


def test_every_envnix_variable_in_the_source_is_declared() -> None:
    """A new ENVNIX_ name (read, or named in a message or docstring) must join the table."""
    declared = {o.name for o in options.OPTIONS}
    named: dict[str, str] = {}
    for path in sorted(ENVNIX.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".j2", ".md", ".nix"):
            # (?<!_): click's _ENVNIX_COMPLETE (shell completion) is no setting of envnix's.
            for name in re.findall(r"(?<![\w])ENVNIX_[A-Z0-9_]*[A-Z0-9]",
                                   path.read_text(encoding="utf-8")):
                named.setdefault(name, str(path.relative_to(ENVNIX)))
    assert len(named) >= 10  # the scan found the source
    assert {n: where for n, where in named.items() if n not in declared} == {}
    assert len(declared) == len(options.OPTIONS)
    assert all(o.meaning and o.default for o in options.OPTIONS)


@pytest.mark.parametrize("accessor, environ, expected", [
    (options.apt_mirror, {}, None),
    (options.apt_mirror, {"ENVNIX_APT_MIRROR": ""}, ""),  # set empty stays set (as before)
    (options.apt_snapshot, {"ENVNIX_APT_SNAPSHOT": ""}, None),
    (options.apt_snapshot, {"ENVNIX_APT_SNAPSHOT": "20240101T000000Z"}, "20240101T000000Z"),
    (options.apt_keyring, {"ENVNIX_APT_KEYRING": ""}, None),
    (options.apt_unverified, {"ENVNIX_APT_UNVERIFIED": "1"}, True),
    (options.apt_unverified, {"ENVNIX_APT_UNVERIFIED": "true"}, False),  # only 1 turns it on
    (options.apt_profile, {}, "essential"),
    (options.apt_profile, {"ENVNIX_APT_PROFILE": ""}, "essential"),
    (options.apt_profile, {"ENVNIX_APT_PROFILE": "minimal"}, "minimal"),
    (options.cuda_apt_repo, {"ENVNIX_CUDA_APT_REPO": "  "}, None),
    (options.cuda_apt_repo, {"ENVNIX_CUDA_APT_REPO": " http://r/ "}, "http://r/"),
    (options.cuda_apt_keyring, {}, ""),
    (options.insecure_registries, {"ENVNIX_INSECURE_REGISTRIES": " a:1, b ,"}, {"a:1", "b"}),
    (options.insecure_registries, {}, frozenset()),
    (options.registry_creds, {"ENVNIX_REGISTRY_CREDS": ""}, None),
    (options.registry_cert_dir, {"ENVNIX_REGISTRY_CERT_DIR": "/d"}, Path("/d")),
    (options.registry_cert_dir, {"ENVNIX_REGISTRY_CERT_DIR": ""}, None),
    (options.registry_tls_verify, {}, True),
    (options.registry_tls_verify, {"ENVNIX_REGISTRY_TLS_VERIFY": "False"}, False),
    (options.registry_tls_verify, {"ENVNIX_REGISTRY_TLS_VERIFY": "no"}, False),
    (options.registry_tls_verify, {"ENVNIX_REGISTRY_TLS_VERIFY": "maybe"}, True),
    (options.load, {}, None),                              # unset: load when there is an engine
    (options.load, {"ENVNIX_LOAD": "0"}, False),
    (options.load, {"ENVNIX_LOAD": " Yes "}, True),
    (options.load, {"ENVNIX_LOAD": "maybe"}, None),
    (options.builders, {"ENVNIX_BUILDERS": ""}, ""),       # '' = build locally, as --builders ''
    (options.substituters, {}, None),
    (options.trusted_public_keys, {"ENVNIX_TRUSTED_PUBLIC_KEYS": ""}, None),
])
def test_accessors_keep_each_variables_meaning(accessor: Callable[[dict[str, str]], object],
                                               environ: dict[str, str],
                                               expected: object) -> None:
    assert accessor(environ) == expected


def test_accessors_read_the_process_environment_by_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVNIX_APT_PROFILE", "minimal")
    assert options.apt_profile() == "minimal"

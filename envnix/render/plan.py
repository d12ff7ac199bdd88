"""plan.json's shape: what render hands Nix, and what ``--store`` seeding reads back.

Why here: render writes plan.json (envnix.render.build_plan) and the Nix expression it renders
beside it reads it, so its version and its checker belong to render; nix.py (a later stage)
imports read_plan from here. docs/schemas/plan.schema.json is the same shape as JSON Schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envnix.core import schema as S
from envnix.core.errors import BuildError

PLAN_SCHEMA = 1
"""plan.json's ``schema``: bump it when a field changes meaning."""

_PLAN_ARTIFACT = S.obj(
    {"kind": S.one_of("deb", "conda", "wheel"), "name": S.name, "version": S.version,
     "url": S.url, "sha256": S.sha256, "size": S.size, "storeName": S.store_name},
    {"fn": S.file_name, "record": S.string(max_len=1 << 20)},
)
_PLAN_BASE_LAYER = S.obj({"url": S.url, "sha256": S.sha256, "digest": S.digest,
                          "size": S.size, "diffId": S.digest, "storeName": S.store_name})
_PLAN_APT_SOURCE = S.obj({"uri": S.url, "suite": S.token, "components": S.array(S.token)},
                         {"snapshot": S.token})
_PLAN = S.obj(
    {
        "schema": S.anything,  # checked first, on its own, for a clearer message
        "tag": S.text, "storeName": S.store_name, "mtime": S.size, "workdir": S.text,
        "condaPrefix": S.text,
        "python": S.mapping(S.token, S.text),
        "artifacts": S.mapping(S.string(r"(deb|conda|wheel):[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}",
                                        "kind:name"), _PLAN_ARTIFACT),
        "layers": S.array(S.obj({"name": S.text, "trees": S.strings})),
        "nixpkgsCuda": S.nullable(S.obj({}, other_keys=True)),
        "baseLayers": S.array(_PLAN_BASE_LAYER),
        "users": S.array(S.tuple_of(S.text, S.integer(), S.integer(), S.text, S.text)),
        "runs": S.array(S.obj({"commands": S.array(S.any_text)})),
        "runEnv": S.mapping(S.text, S.any_text),
    },
    # Optional: a plan rendered before images got apt sources has none (no sources list),
    # and one rendered before the triggers layer names no triggers (plan.layers has none).
    {"aptSources": S.array(_PLAN_APT_SOURCE), "triggers": S.array(S.token),
     "aptAuto": S.array(S.token)},
    # Fields a newer renderer adds are left to the Nix expression of the same version.
    other_keys=True,
)
_PLAN_HINT = "it is generated: run envnix render (or envnix build) again"


def read_plan(path: Path) -> dict[str, Any]:
    """plan.json, checked: schema version, then every field; a bad file is a BuildError."""
    origin = str(path)
    data = S.parse_json(S.read_bytes(path, origin, BuildError, _PLAN_HINT), origin, BuildError,
                        _PLAN_HINT)
    if not isinstance(data, dict):
        raise BuildError(f"{origin}: expected a JSON object, got {S.kind(data)}",
                         hint=_PLAN_HINT)
    S.check_version(data, "schema", PLAN_SCHEMA, origin, BuildError, _PLAN_HINT,
                    made="rendered", missing=": rendered by an older envnix")
    S.validate(data, _PLAN, origin, BuildError, _PLAN_HINT)
    return data

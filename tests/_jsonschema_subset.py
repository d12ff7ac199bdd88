"""A JSON Schema (draft 2020-12) validator for the subset docs/schemas/ uses, standard library only.

Why not the jsonschema package: envnix does not depend on it, and the schemas use a dozen
keywords. A keyword outside the subset is an error, not ignored: a schema file that grows one
must grow it here too, or its rule would silently go unchecked.
"""

from __future__ import annotations

import re
from typing import Any

KEYWORDS = {"type", "properties", "required", "additionalProperties", "propertyNames", "items",
            "prefixItems", "minItems", "maxItems", "enum", "const", "pattern", "maxLength",
            "minimum", "maximum", "anyOf", "$ref"}
ANNOTATIONS = {"$schema", "$defs", "title", "description"}
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(value: Any, name: str) -> bool:
    if name == "integer":
        return type(value) is int or (type(value) is float and value.is_integer())
    if name == "number":
        return type(value) in (int, float)
    return isinstance(value, _TYPES[name]) and (name == "boolean" or type(value) is not bool)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_equal, a, b))
    return a == b


class Validator:
    """Validates documents against one schema; ``visited`` collects the object nodes checked
    on success (path, value, schema), the first item of each list only, for mutation tests."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.root = schema
        self.visited: list[tuple[tuple[str | int, ...], dict[str, Any], dict[str, Any]]] = []

    def errors(self, doc: Any) -> list[str]:
        self.visited = []
        out: list[str] = []
        self._check(doc, self.root, (), out, self.visited)
        return out

    def _resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref: {ref}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return node

    def _check(self, value: Any, schema: dict[str, Any] | bool, path: tuple[str | int, ...],
               out: list[str], seen: list) -> None:
        if schema is True:
            return
        if schema is False:
            out.append(f"{path}: not allowed")
            return
        unknown = set(schema) - KEYWORDS - ANNOTATIONS
        if unknown:
            raise ValueError(f"keyword(s) outside the subset at {path}: {sorted(unknown)}")
        where = "/".join(map(str, path)) or "(root)"
        if "$ref" in schema:
            self._check(value, self._resolve(schema["$ref"]), path, out, seen)
        if "anyOf" in schema:
            for branch in schema["anyOf"]:
                got: list[str] = []
                mine: list = []
                self._check(value, branch, path, got, mine)
                if not got:
                    seen.extend(mine)
                    break
            else:
                out.append(f"{where}: matches no anyOf branch")
        types = schema.get("type")
        if types is not None:
            names = [types] if isinstance(types, str) else types
            if not any(_is(value, n) for n in names):
                out.append(f"{where}: expected {types}, got {type(value).__name__}")
                return
        if "const" in schema and not _equal(value, schema["const"]):
            out.append(f"{where}: expected {schema['const']!r}")
        if "enum" in schema and not any(_equal(value, e) for e in schema["enum"]):
            out.append(f"{where}: expected one of {schema['enum']!r}")
        if isinstance(value, str):
            if len(value) > schema.get("maxLength", len(value)):
                out.append(f"{where}: longer than {schema['maxLength']}")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                out.append(f"{where}: does not match {schema['pattern']!r}")
        if _is(value, "number"):
            if "minimum" in schema and value < schema["minimum"]:
                out.append(f"{where}: below {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                out.append(f"{where}: above {schema['maximum']}")
        if isinstance(value, dict):
            self._object(value, schema, path, out, seen)
        if isinstance(value, list):
            self._array(value, schema, path, out, seen)

    def _object(self, value: dict[str, Any], schema: dict[str, Any],
                path: tuple[str | int, ...], out: list[str], seen: list) -> None:
        before = len(out)
        where = "/".join(map(str, path)) or "(root)"
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{where}: {key} missing")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        first_extra = True
        for key, item in value.items():
            if "propertyNames" in schema:
                self._check(key, schema["propertyNames"], (*path, key), out, seen)
            if key in props:
                self._check(item, props[key], (*path, key), out, seen)
            else:
                self._check(item, extra, (*path, key), out, seen if first_extra else [])
                first_extra = False
        if len(out) == before and ("properties" in schema or "required" in schema):
            seen.append((path, value, schema))

    def _array(self, value: list[Any], schema: dict[str, Any], path: tuple[str | int, ...],
               out: list[str], seen: list) -> None:
        where = "/".join(map(str, path)) or "(root)"
        if len(value) < schema.get("minItems", 0):
            out.append(f"{where}: fewer than {schema['minItems']} items")
        if len(value) > schema.get("maxItems", len(value)):
            out.append(f"{where}: more than {schema['maxItems']} items")
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            inner = prefix[i] if i < len(prefix) else schema.get("items", True)
            self._check(item, inner, (*path, i), out, seen if i == 0 else [])

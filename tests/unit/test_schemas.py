"""docs/schemas/ says what envnix's own checkers check, for the files it writes and reads back.

The committed examples (examples/quickstart/envnix.lock with its image section,
expected-digests.json) must pass both the JSON Schema and envnix's checker; then every field of
every object in them is removed, given a wrong type, or joined by an unknown sibling, and the
schema and the checker must still agree on accept or refuse. A schema that forgets a required
field or an object that refuses unknown fields fails here, naming the field. The schemas are
read with tests/_jsonschema_subset.py (no jsonschema dependency).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _cli import EXAMPLES, ROOT
from _jsonschema_subset import Validator

from envnix.core.errors import BuildError, LockError
from envnix.lock.model import IMAGE_FORMAT, LOCK_VERSION, READ_VERSIONS, Lock
from envnix.lock.toolchain_pin import shipped_pin_data
from envnix.oci.layout import DIGESTS_SCHEMA, read_digests

SCHEMAS = ROOT / "docs" / "schemas"
QUICKSTART = EXAMPLES / "quickstart"


def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def test_each_schema_names_the_version_envnix_writes() -> None:
    assert _schema("envnix.lock.schema.json")["properties"]["lock-version"] == {
        "enum": list(READ_VERSIONS)} and max(READ_VERSIONS) == LOCK_VERSION
    image = _schema("envnix.lock.schema.json")["$defs"]["image"]["properties"]
    assert image["format"] == {"const": IMAGE_FORMAT}
    assert _schema("digests.schema.json")["properties"]["schema"] == {"const": DIGESTS_SCHEMA}


def _lock_ok(doc: Any, _: Path) -> str | None:
    try:
        Lock.loads(json.dumps(doc).encode())
    except LockError as exc:
        return str(exc)
    return None


def _file_ok(reader: Callable[[Path], Any], error: type[Exception]) -> Callable[..., str | None]:
    def check(doc: Any, tmp_path: Path) -> str | None:
        path = tmp_path / "doc.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        try:
            reader(path)
        except error as exc:
            return str(exc)
        return None
    return check


def _committed_lock() -> dict[str, Any]:
    return json.loads((QUICKSTART / "envnix.lock").read_text(encoding="utf-8"))


def _with_source_builds(lock: dict[str, Any]) -> dict[str, Any]:
    deb = {**lock["apt"]["packages"][0], "url": "http://127.0.0.1:1/build/gcc.deb"}
    wheel = {"name": "setuptools", "version": "80.9.0", "url": "http://127.0.0.1:1/st.whl",
             "sha256": "1" * 64, "size": 1, "filename": "setuptools-80.9.0-py3-none-any.whl"}
    sdist = {"name": "probe", "version": "0.1.0", "url": "http://127.0.0.1:1/probe.tar.gz",
             "sha256": "2" * 64, "size": 2, "filename": "probe-0.1.0.tar.gz",
             "requires": ["setuptools>=61"], "backend": "setuptools.build_meta",
             "backend_path": ["."]}
    git = {"name": "gitprobe", "version": "0.2.0", "url": "http://127.0.0.1:1/probe.git",
           "commit": "3" * 40, "requires": [], "backend": "flit_core.buildapi",
           "backend_path": []}
    return {**lock, "source_builds": {"sdists": [sdist], "wheels": [wheel], "debs": [deb],
                                      "git": [git]}}


def _digests() -> dict[str, Any]:
    """digests.json as mkimage writes it, with the quickstart's committed digests."""
    expected = json.loads((QUICKSTART / "expected-digests.json").read_text(encoding="utf-8"))
    return {"schema": DIGESTS_SCHEMA, "config": expected["config"],
            "manifest": expected["manifest"],
            "layers": ["sha256:" + hashlib.sha256(b"layer").hexdigest()]}


DOCUMENTS = {
    "committed lock": ("envnix.lock.schema.json", _committed_lock, _lock_ok),
    # A lock made today also records the toolchain pin (the committed one predates that).
    "lock with toolchain": ("envnix.lock.schema.json",
                            lambda: {**_committed_lock(), "toolchain": shipped_pin_data()},
                            _lock_ok),
    "digests": ("digests.schema.json", _digests, _file_ok(read_digests, BuildError)),
    # A lock with a package built from its sdist: the sdist, and the build root's wheel and
    # .deb (here the quickstart's own, under new URLs: a URL is listed once per lock).
    "lock with source builds": ("envnix.lock.schema.json", lambda: _with_source_builds(
        _committed_lock()), _lock_ok),
}


def _document(which: str) -> dict[str, Any]:
    return copy.deepcopy(DOCUMENTS[which][1]())


@pytest.mark.parametrize("which", DOCUMENTS)
def test_the_examples_pass_schema_and_checker(which: str,
                                              tmp_path: Path) -> None:
    name, _, check = DOCUMENTS[which]
    doc = _document(which)
    assert Validator(_schema(name)).errors(doc) == []
    assert check(doc, tmp_path) is None


def test_expected_digests_json_has_its_schema() -> None:
    for example in sorted(EXAMPLES.glob("*/expected-digests.json")):
        doc = json.loads(example.read_text(encoding="utf-8"))
        assert Validator(_schema("expected-digests.schema.json")).errors(doc) == [], example


def _at(doc: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


Mutation = tuple[str, tuple[str | int, ...], Callable[[dict[str, Any]], Any]]


def _mutations(visited: list) -> list[Mutation]:
    """For each object the schema checked: an unknown field added, and each field removed or
    given a wrong type (a number, an object)."""
    out: list[Mutation] = []
    for path, value, _node in visited:
        where = "/".join(map(str, path)) or "(root)"
        out.append((f"{where} + unknown field", path, lambda o: o.__setitem__("zz-unknown", "x")))
        for key in value:
            out.append((f"{where}/{key} removed", path, lambda o, k=key: o.pop(k)))
            for wrong in (-1, {"zz": []}):
                out.append((f"{where}/{key} = {json.dumps(wrong)}", path,
                            lambda o, k=key, w=wrong: o.__setitem__(k, w)))
    return out


@pytest.mark.parametrize("which", DOCUMENTS)
def test_schema_and_checker_agree_on_every_field(which: str,
                                                 tmp_path: Path) -> None:
    name, _, check = DOCUMENTS[which]
    doc = _document(which)
    validator = Validator(_schema(name))
    assert validator.errors(doc) == []
    mutations = _mutations(validator.visited)
    disagree, refused = [], 0
    for what, path, mutate in mutations:
        changed = copy.deepcopy(doc)
        mutate(_at(changed, path))
        schema_says = validator.errors(changed)
        code_says = check(changed, tmp_path)
        refused += bool(code_says)
        if bool(schema_says) != bool(code_says):
            disagree.append(f"{what}: schema {schema_says[:2] or 'accepts'}, "
                            f"envnix {code_says or 'accepts'}")
    assert not disagree, "\n".join(disagree)
    assert refused > len(mutations) // 2  # most changes break a file: the checks do run

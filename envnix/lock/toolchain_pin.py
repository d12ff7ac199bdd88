"""The toolchain pin as data: its type and the checks a pin file or a lock's toolchain section
passes before anything trusts it.

It lives in the lock stage because a lock records the pin and reading a lock checks it; the
toolchain stage (envnix/toolchain: extraction, the store, making a new pin) builds on it. The
pin file itself ships beside the toolchain code (``envnix/toolchain/bookworm-amd64.json``) and
is read here as package data, without importing the toolchain stage.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from envnix.core.errors import LockError
from envnix.core.nixexpr import STORE_NAME, check_artifact

PIN_NAME = "bookworm-amd64.json"
PIN_FORMAT = 1


@dataclass(frozen=True)
class Toolchain:
    """The pin: the store name and NAR sha256 (hex) of the tree, and its .debs."""

    version: int
    store_name: str
    nar_sha256: str
    debs: list[dict[str, Any]]
    stage0: dict[str, str]
    # Debian's qemu-user-static for foreign platforms (storeName, narSha256, debs, programs):
    # a store path of its own, so adding it left the toolchain's path as it was.
    emulators: dict[str, Any] | None = None

    def for_nix(self) -> dict[str, Any]:
        """What default.nix needs to make the path itself (toolchain-pin.json, with the pin's
        ``format`` like every file envnix writes: Nix ignores it, a reader can check it)."""
        return {"format": PIN_FORMAT, "storeName": self.store_name, "narSha256": self.nar_sha256,
                "debs": [{k: d[k] for k in ("name", "url", "sha256")} for d in self.debs],
                # the tarball's top-level package/ becomes unpack-channel's channel directory
                "stage0": {"name": self.stage0["name"], "url": self.stage0["url"],
                           "sha256": self.stage0["sha256"],
                           "binary": self.stage0["binary"].removeprefix("package/")},
                **({"emulators": {
                    "storeName": self.emulators["storeName"],
                    "narSha256": self.emulators["narSha256"],
                    "debs": [{k: d[k] for k in ("name", "url", "sha256")}
                             for d in self.emulators["debs"]],
                    "programs": self.emulators["programs"]}} if self.emulators else {})}


def shipped_pin_data() -> dict[str, Any]:
    """The pin file shipped with this envnix, as JSON data (what a new lock records)."""
    pin_file = resources.files("envnix") / "toolchain" / PIN_NAME
    return json.loads(pin_file.read_text("utf-8"))


def load_pin(text: str | None = None) -> Toolchain:
    """The pin shipped with this envnix (or ``text``), checked."""
    try:
        data = shipped_pin_data() if text is None else json.loads(text)
    except json.JSONDecodeError as exc:
        raise LockError(f"envnix's toolchain pin {PIN_NAME} is damaged: {exc}",
                        hint="reinstall envnix") from None
    return parse_pin(data, f"envnix's toolchain pin {PIN_NAME}", LockError, "reinstall envnix")


def for_lock(recorded: dict[str, Any] | None) -> Toolchain:
    """The toolchain a lock builds with: the one it records, else (older locks) the shipped
    one."""
    if recorded is None:
        return load_pin()
    return parse_pin(recorded, "envnix.lock: toolchain", LockError, "run envnix lock again")


def parse_pin(data: Any, what: str, error: type[LockError], hint: str) -> Toolchain:
    """``data`` (a pin file's or a lock's toolchain section) checked, or ``error``."""
    try:
        if data["format"] != PIN_FORMAT:
            raise ValueError(f"format {data['format']!r}")
        emulators = data.get("emulators")
        pin = Toolchain(int(data["version"]), str(data["storeName"]), str(data["narSha256"]),
                        [dict(d) for d in data["debs"]], dict(data["stage0"]),
                        None if emulators is None else dict(emulators))
        if not isinstance(data["storeName"], str):
            raise ValueError("storeName is not a string")
        if pin.emulators is not None:
            _check_emulators(pin.emulators, what)
        for deb in [*pin.debs, *(pin.emulators or {}).get("debs", [])]:
            for key in ("name", "version", "url", "sha256", "size"):
                if key not in deb:
                    raise ValueError(f"deb entry without {key}")
            # the types docs/schemas/envnix.lock.schema.json gives them
            if not (isinstance(deb["name"], str) and isinstance(deb["version"], str)
                    and type(deb["size"]) is int and deb["size"] >= 0):
                raise ValueError(f"deb entry {deb['name']!r}: name, version or size mistyped")
            check_artifact({**deb, "storeName": f"{deb['name']}.deb"}, f"deb {deb['name']}",
                           what)
        check_artifact({**pin.stage0, "storeName": pin.stage0["name"]}, "stage0", what)
        if not STORE_NAME.fullmatch(pin.store_name):
            raise ValueError(f"storeName {pin.store_name!r}")
        if not re.fullmatch(r"package/[A-Za-z0-9/_.-]+", pin.stage0["binary"]):
            raise ValueError(f"stage0 binary {pin.stage0['binary']!r}")
        if not _is_sha256(pin.nar_sha256):
            raise ValueError("narSha256 is not 64 hex digits")
    except LockError as exc:
        raise error(f"{what}: {exc.message}", hint=hint) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise error(f"{what} is damaged: {exc!r}", hint=hint) from None
    return pin


def _is_sha256(value: Any) -> bool:
    return (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value))


def _check_emulators(emulators: dict[str, Any], what: str) -> None:
    """The pin's ``emulators`` entry: its own store name and NAR hash, .debs (checked with
    the toolchain's), and the programs taken from them (paths below the store path)."""
    if not (isinstance(emulators["storeName"], str)
            and STORE_NAME.fullmatch(emulators["storeName"])):
        raise ValueError(f"emulators storeName {emulators['storeName']!r}")
    if not _is_sha256(emulators["narSha256"]):
        raise ValueError("emulators narSha256 is not 64 hex digits")
    if not isinstance(emulators["debs"], list) or not emulators["debs"]:
        raise ValueError("emulators debs is not a non-empty list")
    programs = emulators["programs"]
    if not (isinstance(programs, list) and programs and all(
            isinstance(p, str) and re.fullmatch(r"usr/bin/qemu-[a-z0-9_]+-static", p)
            for p in programs)):
        raise ValueError(f"emulators programs {programs!r}")

"""Nix's ``--log-format internal-json``, read back as the lines plain nix-build prints, plus
the progress only that format carries: bytes of each download, derivations done of expected.

Why: plain nix-build says nothing while ``builtin:fetchurl`` downloads a large wheel or layer,
so a live display would show a clock and no bytes. envnix asks for the JSON only when the
reporter draws a live line (a terminal, not ``--verbose``); everything downstream (the
progress lines, the failure translation) still reads the plain lines given back here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

PREFIX = "@nix "
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Nix's activity and result types (src/libutil/logging.hh)
ACT_FILE_TRANSFER, ACT_BUILDS, ACT_BUILD = 101, 104, 105
RES_BUILD_LOG_LINE, RES_PROGRESS, RES_POST_BUILD_LOG_LINE = 101, 105, 107


@dataclass
class JsonLog:
    """Feed it Nix's stderr lines; ``on_bytes(url, done, expected)`` and ``on_builds(done,
    expected)`` hear progress; :meth:`feed` returns the plain lines to use instead."""

    on_bytes: Callable[[str, int, int], None]
    on_builds: Callable[[int, int], None]
    lines: list[str] = field(default_factory=list)
    _kinds: dict[int, tuple[int, str]] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The whole log as plain nix-build would have printed it (for failure messages)."""
        return "".join(self.lines)

    def feed(self, raw: str) -> list[str]:
        if not raw.startswith(PREFIX):
            out = [raw]  # not Nix's own: a builder hook's or the shell's
        else:
            try:
                event = json.loads(raw[len(PREFIX):])
            except ValueError:
                event = None
            out = self._lines(event) if isinstance(event, dict) else [raw]
        self.lines.extend(out)
        return out

    def _lines(self, event: dict) -> list[str]:
        action = event.get("action")
        fields = event.get("fields") or []
        if action == "msg":
            return [_ANSI.sub("", str(event.get("msg", ""))) + "\n"]
        if action == "start":
            kind = event.get("type")
            self._kinds[event.get("id", 0)] = (kind, str(fields[0]) if fields else "")
            if kind == ACT_BUILD and event.get("text"):
                return [_ANSI.sub("", str(event["text"])) + "...\n"]
            return []
        if action == "result":
            kind, what = self._kinds.get(event.get("id", 0), (None, ""))
            if event.get("type") in (RES_BUILD_LOG_LINE, RES_POST_BUILD_LOG_LINE) and fields:
                return [_ANSI.sub("", str(fields[0])) + "\n"]
            if event.get("type") == RES_PROGRESS and len(fields) >= 2:
                done, expected = int(fields[0]), int(fields[1])
                if kind == ACT_FILE_TRANSFER and expected:
                    self.on_bytes(what, done, expected)
                elif kind == ACT_BUILDS and expected:
                    self.on_builds(done, expected)
            return []
        if action == "stop":
            self._kinds.pop(event.get("id", 0), None)
        return []

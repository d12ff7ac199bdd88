"""libpam-runtime's first-install ``pam-auth-update --package --force``, computed from the trees.

Not a builder itself: mkmeta.py imports it (standard library only). Packages describe their
PAM modules in ``/usr/share/pam-configs/NAME`` profiles; libpam-runtime's postinst assembles
``/etc/pam.d/common-{auth,account,password,session,session-noninteractive}`` from the
templates in ``/usr/share/pam`` and records what it chose in ``/var/lib/pam``. Without those
files ``su``, ``login`` and ``sudo`` refuse everyone, so an image needs them as Debian has them.

What a first install does, and this module reproduces: every profile with ``Default: yes``
is enabled; profiles are ordered by Priority (highest first), then by name, descending; per
type, the "Primary" modules are written into the template's Primary block, the first one
taking its ``TYPE-Initial`` lines, each ``success=end`` becoming the number of lines left to
jump over (onto pam_permit after pam_deny); a type without Primary modules gets
``[default=1] pam_permit.so``; the "Additional" modules go into their block, jumping one line
less. ``Session-Interactive-Only: yes`` keeps a profile out of the noninteractive session.
Not reproduced: ``Conflicts`` (debconf would ask; both stay enabled, noted) and local edits
(an image has none).
"""

from __future__ import annotations

import os
import re

PROFILES_DIR = "usr/share/pam-configs"
TEMPLATES_DIR = "usr/share/pam"
TYPES = ("auth", "account", "password", "session", "session-noninteractive")
PRIMARY_MARK = '# here are the per-package modules (the "Primary" block)'
FALLBACK_MARK = "# here's the fallback if no module succeeds"
ADDITIONAL_MARK = '# and here are more per-package modules (the "Additional" block)'
END_MARK = "# end of pam-auth-update config"
FIELD_RE = re.compile(r"^(\S+):\s+(.*?)\s*$", re.S)
MODLINE_RE = re.compile(r"^((\[[^]]+\]|\w+)\s+\S+)\s*(.*)$")
NULL_LINE = "[default=1]\t\t\tpam_permit.so"


def parse_profile(text: str) -> dict[str, str]:
    """A profile's fields; continuation lines joined with newlines, stripped."""
    fields: dict[str, str] = {}
    name = ""
    for raw in text.splitlines(keepends=True):
        m = FIELD_RE.match(raw)
        if m:
            name = m.group(1).removesuffix("-Final")
            fields[name] = m.group(2)
            continue
        line = raw.strip()
        if name and line:
            fields[name] = (fields.get(name, "") + "\n" + line).lstrip()
    if "Session-Interactive-Only" not in fields:
        for suffix in ("-Type", "", "-Initial"):
            if f"Session{suffix}" in fields:
                fields[f"Session-noninteractive{suffix}"] = fields[f"Session{suffix}"]
    return fields


def _priority(profile: dict[str, str]) -> int:
    try:
        return int(profile.get("Priority", "0"))
    except ValueError:
        return 0


def enabled_order(profiles: dict[str, dict[str, str]]) -> tuple[list[str], list[str]]:
    """(every profile, the enabled ones), both in pam-auth-update's order."""
    order = sorted(profiles, key=lambda n: (_priority(profiles[n]), n), reverse=True)
    return order, [n for n in order if profiles[n].get("Default") == "yes"]


def _lines(profile: dict[str, str], key: str, first: bool) -> list[str]:
    text = profile.get(f"{key}-Initial") if first else None
    return [ln for ln in (text or profile.get(key, "")).split("\n") if ln]


def _block(profiles: dict[str, dict[str, str]], enabled: list[str], key: str,
           kind: str) -> list[tuple[str, list[str]]]:
    """(module, lines) of the enabled profiles of *kind* (Primary or Additional)."""
    mods = [m for m in enabled if profiles[m].get(f"{key}-Type") == kind]
    return [(m, _lines(profiles[m], key, i == 0)) for i, m in enumerate(mods)]


def _merged(line: str, count: int) -> str:
    """A profile line as the config file has it: ``end`` replaced by the jump count."""
    m = MODLINE_RE.match(line)
    if m is None:
        return line
    return m.group(1).replace("end", str(count)) + " " + " ".join(m.group(3).split())


def common_file(template: str, typ: str, profiles: dict[str, dict[str, str]],
                enabled: list[str]) -> str | None:
    """The ``common-TYPE`` file from its template, or None if the markers are missing."""
    key = "Session-noninteractive" if typ == "session-noninteractive" else typ.capitalize()
    word = typ.removesuffix("-noninteractive")
    out: list[str] = []
    state = 0
    for line in template.splitlines(keepends=True):
        if state in (1, 3):
            if line.startswith(FALLBACK_MARK if state == 1 else END_MARK):
                out.append(line)
                state += 1
            continue
        out.append(line)
        if state in (0, 2) and line.startswith(PRIMARY_MARK if state == 0 else ADDITIONAL_MARK):
            kind = "Primary" if state == 0 else "Additional"
            block = _block(profiles, enabled, key, kind)
            count = sum(len(lines) for _m, lines in block) - (kind == "Additional")
            if kind == "Primary" and not block:
                out.append(f"{word}\t{NULL_LINE}\n")
            for _m, lines in block:
                for ln in lines:
                    out.append(f"{word}\t{_merged(ln, count)}\n")
                    count -= 1
            state += 1
    return "".join(out) if state == 4 else None


def saved_state(typ: str, profiles: dict[str, dict[str, str]], enabled: list[str]) -> str:
    """``/var/lib/pam/TYPE``: the lines each module contributed, as the profile wrote them."""
    key = "Session-noninteractive" if typ == "session-noninteractive" else typ.capitalize()
    out = []
    primary = _block(profiles, enabled, key, "Primary")
    for mod, lines in primary:
        if lines:
            out.append(f"Module: {mod}\n" + "\n".join(lines) + "\n")
    if not primary:
        out.append(f"Module: null\n{NULL_LINE}\n")
    for mod, lines in _block(profiles, enabled, key, "Additional"):
        if lines:
            out.append(f"Module: {mod}\n" + "\n".join(lines) + "\n")
    return "".join(out)


def pam_files(read: dict[str, str], notes: list[str]) -> dict[str, bytes]:
    """Image path -> bytes of every file pam-auth-update writes. *read* maps the relative
    paths of profiles (``usr/share/pam-configs/NAME``) and templates (``usr/share/pam/
    common-TYPE``) to their text."""
    profiles = {os.path.basename(rel): parse_profile(text) for rel, text in read.items()
                if rel.startswith(PROFILES_DIR + "/")}
    if not profiles:
        return {}
    order, enabled = enabled_order(profiles)
    for name in enabled:
        for other in profiles[name].get("Conflicts", "").split(", "):
            if other in enabled:
                notes.append(f"pam profiles {name} and {other} conflict; both enabled")
    out: dict[str, bytes] = {}
    for typ in TYPES:
        template = read.get(f"{TEMPLATES_DIR}/common-{typ}")
        text = common_file(template, typ, profiles, enabled) if template else None
        if text is None:
            notes.append(f"pam: no usable template for common-{typ}; not written")
            continue
        out[f"etc/pam.d/common-{typ}"] = text.encode()
        out[f"var/lib/pam/{typ}"] = saved_state(typ, profiles, enabled).encode()
    out["var/lib/pam/seen"] = "".join(f"{n}\n" for n in order).encode()
    return out

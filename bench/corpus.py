#!/usr/bin/env python3
"""Issue 16's "done when" on real build.envd files: do their default targets evaluate and lock?

For each context under DIR (a directory holding build.envd, or a lone NAME.envd file, which
becomes the build.envd of an otherwise empty context) it runs `envnix spec` and then
`envnix lock` on a temporary copy (nothing is written into DIR; each copy is deleted before
the next) and sorts the outcome into one of:

- locked: envnix.lock written; its content is then checked lightly against the spec (every
  declared apt, pip and conda package, the python, env vars, ports and entrypoint present);
- unreachable host: a network failure (exit 8) whose error line names the host;
- error: any other one-line `envnix: ...` error, with or without a `hint:` line;
- traceback: a bug; timeout: no answer within --timeout seconds.

Failures are grouped by cause: the error line with file positions, quoted values, URLs and
version numbers normalized. The figure issue 16 asks for is (locked + unreachable) / total.
Files that fail are kept from the content check; files that lock but miss a declared package
are listed.

Usage:  .venv/bin/python bench/corpus.py DIR [--timeout 300] [--json OUT] [--only SUBSTR]
                                            [--env KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from _common import print_table, try_envnix

LOCKED, UNREACHABLE, HINTED, PLAIN, TRACEBACK, TIMEOUT = (
    "locked", "unreachable host", "error + hint", "error, no hint", "traceback", "timeout")
OUTCOMES = (LOCKED, UNREACHABLE, HINTED, PLAIN, TRACEBACK, TIMEOUT)
NETWORK_EXIT = 8  # envnix.core.errors: NetworkError


@dataclass
class Result:
    name: str
    outcome: str
    stage: str = ""            # spec or lock
    seconds: float = 0.0
    error: str = ""            # the `envnix: ` line, as printed
    hint: str = ""
    cause: str = ""            # the error, normalized (the grouping key)
    host: str = ""             # unreachable host
    missing: list[str] = field(default_factory=list)   # declared but not in the lock
    tail: str = ""             # traceback tail


def contexts(root: Path) -> list[tuple[str, Path]]:
    """(name, path) of every context under ``root``: directories with build.envd, *.envd."""
    found = [(p.name, p) for p in sorted(root.iterdir())
             if (p.is_dir() and (p / "build.envd").is_file()) or p.suffix == ".envd"]
    return found


def copy_context(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True)
    else:
        dest.mkdir()
        shutil.copyfile(src, dest / "build.envd")


def read_error(stderr: str) -> tuple[str, str]:
    """The error line and its hint from envnix's stderr (warnings skipped)."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("envnix: ") and not line.startswith("envnix: warning"):
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return line, nxt.removeprefix("hint:").strip() if nxt.startswith("hint:") else ""
    tail = [ln for ln in lines if ln.strip()]
    return (tail[-1] if tail else ""), ""


def normalize(error: str) -> str:
    """One cause for errors that differ only in where, which value, which URL or version."""
    text = error.removeprefix("envnix: ")
    text = re.sub(r"^[^\s:]+\.(envd|ya?ml|txt):\d+(:\d+)?: ", "", text)
    text = re.sub(r"(?<![A-Za-z])'[^']*'(?![A-Za-z])|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"[a-z+]+://[^\s'\")]*?([:;,.]?)(?=[\s'\")]|$)", r"<url>\1", text)
    text = re.sub(r"\b\d+(\.\d+)+\b", "N", text)
    return text[:110]


def named_host(error: str) -> str:
    """The host a network error names: the first URL's, else the first dotted host name."""
    if url := re.search(r"[a-z+]+://[^\s,;'\"]+", error):
        return urlsplit(url.group(0).rstrip(":.")).hostname or ""
    host = re.search(r"\b(?:[a-z0-9-]+\.)+[a-z]{2,}\b", error.removeprefix("envnix: "))
    return host.group(0) if host else ""


def pip_names(spec: dict, ctx: Path) -> set[str]:
    """Project names the spec asks pip for: name= entries and requirements files' lines (not
    options, editable or VCS references, whose name the file does not say)."""
    lines = list(spec["pip"]["packages"])
    for req in spec["pip"]["requirements_files"]:
        path = ctx / req
        if path.is_file():
            lines += path.read_text(errors="replace").splitlines()
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-") or re.match(r"^[a-z+]+://", line):
            continue
        if m := re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line):
            names.add(canonical(m.group(0)))
    return names


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_lock(spec: dict, lock: dict, ctx: Path) -> list[str]:
    """What the spec declares that the lock lacks (a light check, by name)."""
    missing = []
    debs = list(lock.get("apt", {}).get("packages", []))
    for p in lock.get("platforms", {}).values() if isinstance(lock.get("platforms"), dict) else ():
        debs += p.get("apt", {}).get("packages", [])
    apt = {p["name"] for p in debs}
    for p in debs:  # a virtual name (libxslt-dev) is met by a package that Provides it
        m = re.search(r"^Provides:(.*)$", str(p.get("control", "")), re.M)
        apt |= {re.split(r"[\s(]", v.strip())[0] for v in m[1].split(",")} if m else set()
    for name in spec["apt_packages"]:
        if re.split(r"[=<>:]", name)[0] not in apt:
            missing.append(f"apt:{name}")
    wheels = {canonical(w["name"]) for w in lock.get("pip", {}).get("wheels", [])}
    conda = {p["name"] for p in lock.get("conda", {}).get("packages", [])}
    # conda installs pip packages it already has (env.yaml's pip: section) from conda builds
    missing += [f"pip:{n}" for n in sorted(pip_names(spec, ctx)) if n not in wheels | conda]
    for pkg in spec["conda"]["packages"]:
        name = re.split(r"[=<>!~ \[]", pkg.split("::")[-1])[0]
        if name not in conda:
            missing.append(f"conda:{name}")
    python = spec.get("python")
    if python and python["provider"] == "system" and f"python{python['version']}" not in apt:
        missing.append(f"python{python['version']} (apt)")
    if python and python["provider"] == "conda" and "python" not in conda:
        missing.append(f"python{python['version']} (conda)")
    config = lock.get("image", {}).get("config", {}).get("config", {})
    env = {e.split("=", 1)[0] for e in config.get("Env", [])}
    missing += [f"env:{k}" for k in spec["env"] if k not in env]
    ports = set(config.get("ExposedPorts", {}))
    missing += [f"port:{e['envd_port']}" for e in spec["runtime"]["expose"]
                if f"{e['envd_port']}/tcp" not in ports]
    if spec["runtime"]["entrypoint"] and config.get("Entrypoint") != spec["runtime"]["entrypoint"]:
        missing.append("entrypoint")
    return missing


def failed(name: str, stage: str, seconds: float, code: int | None, stderr: str) -> Result:
    if code is None:
        return Result(name, TIMEOUT, stage, seconds, cause=f"{stage}: no answer in time")
    if "Traceback (most recent call last)" in stderr:
        tail = "\n".join(stderr.rstrip().splitlines()[-6:])
        last = stderr.rstrip().splitlines()[-1]
        return Result(name, TRACEBACK, stage, seconds, error=last, cause=normalize(last),
                      tail=tail)
    error, hint = read_error(stderr)
    host = named_host(error) if code == NETWORK_EXIT else ""
    outcome = UNREACHABLE if host else HINTED if hint else PLAIN
    return Result(name, outcome, stage, seconds, error=error, hint=hint,
                  cause=normalize(error), host=host)


def run_one(name: str, src: Path, timeout: float) -> Result:
    work = Path(tempfile.mkdtemp(prefix="envnix-bench-corpus-"))
    ctx = work / "ctx"
    try:
        copy_context(src, ctx)
        secs, code, out, err = try_envnix("spec", str(ctx), timeout=timeout)
        if code != 0:
            return failed(name, "spec", secs, code, err)
        spec = json.loads(out)
        lsecs, code, _, err = try_envnix("lock", str(ctx), "--progress", "plain",
                                         timeout=timeout)
        if code != 0 or not (ctx / "envnix.lock").is_file():
            return failed(name, "lock", secs + lsecs, code, err)
        lock = json.loads((ctx / "envnix.lock").read_text())
        return Result(name, LOCKED, "lock", secs + lsecs, missing=check_lock(spec, lock, ctx))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(results: list[Result]) -> None:
    total = len(results)
    by_outcome = collections.Counter(r.outcome for r in results)
    print(f"\n{total} contexts, default target (build.envd:build)\n")
    print_table([(o, str(by_outcome[o]), f"{by_outcome[o] / total:.0%}") for o in OUTCOMES])
    good = by_outcome[LOCKED] + by_outcome[UNREACHABLE]
    complete = sum(1 for r in results if r.outcome == LOCKED and not r.missing)
    print(f"\nlocked or unreachable host / total: {good}/{total} = {good / total:.2f}"
          f"  (with the lock's content check passing: "
          f"{complete + by_outcome[UNREACHABLE]}/{total})")
    causes: dict[tuple[str, str], list[Result]] = collections.defaultdict(list)
    for r in results:
        if r.outcome != LOCKED:
            key = f"{r.stage}: {r.host}" if r.outcome == UNREACHABLE else f"{r.stage}: {r.cause}"
            causes[(r.outcome, key)].append(r)
    print("\nfailures by cause (count, outcome, cause; an example file):")
    for (outcome, cause), rs in sorted(causes.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        print(f"{len(rs):3d}  {outcome:<16}  {cause}\n       e.g. {rs[0].name}")
    lacking = [r for r in results if r.outcome == LOCKED and r.missing]
    if lacking:
        print("\nlocked, but the lock lacks what the spec declares:")
        for r in lacking:
            print(f"  {r.name}: {', '.join(r.missing)}")
    for r in results:
        if r.outcome == TRACEBACK:
            print(f"\ntraceback ({r.stage}) in {r.name}:\n{r.tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds per envnix command (default 300)")
    parser.add_argument("--json", type=Path, help="write every file's result here")
    parser.add_argument("--only", default="", help="only contexts whose name contains this")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="set for every envnix run, e.g. ENVNIX_APT_MIRROR=URL to see what "
                             "a file meets after a missing mirror; repeatable")
    args = parser.parse_args()
    for setting in args.env:
        key, _, value = setting.partition("=")
        os.environ[key] = value
    results = []
    for name, src in contexts(args.dir):
        if args.only not in name:
            continue
        r = run_one(name, src, args.timeout)
        shown = r.host or r.error or ", ".join(r.missing) or "ok"
        print(f"{r.outcome:<16} {r.seconds:6.1f}s  {name}: {shown}", file=sys.stderr)
        results.append(r)
    if not results:
        sys.exit(f"no build.envd contexts under {args.dir}")
    report(results)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")


if __name__ == "__main__":
    main()

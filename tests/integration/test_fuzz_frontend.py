"""Fuzz the frontend: 10,000+ generated build.envd files, each one evaluated for real.

Every input must either give an ImageSpec or raise EnvnixError with a one-line message (and
at most a one-line hint): never another exception, never a signal. The inputs are
grammar-aware mutations of the corpus files (tokens dropped, doubled, swapped, strings and
numbers replaced by hostile values, API calls with random arguments spliced in) plus random
bytes, deep nesting, huge literals and odd unicode.

The batch runs in worker subprocesses (this file run as a script) calling
``evaluate_spec`` in-process, so a segfault or an abort fails the test with the seed and the
input instead of taking pytest down. Input i is generated from Random(f"{SEED}:{i}") alone:
``python tests/integration/test_fuzz_frontend.py --show I`` prints it again.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SEED = 20260611
COUNT = 10_000
CORPUS = Path(__file__).parents[1] / "corpus"
WORKERS = 2

_TOKEN = re.compile(r'''"""[\s\S]*?"""|'[^'\n]*'|"[^"\n]*"|#[^\n]*|\n[ \t]*|[A-Za-z_]\w*|\d+|'''
                    r'''[ \t]+|==|!=|<=|>=|\*\*|//|[^\sA-Za-z_\d]''')

STRINGS = [
    "", " ", "python3.11", "python", "debian12", "ubuntu22.04", "ubuntu:22.04", "debian:12",
    "files", "files/", "./files", "files/hello.txt", "files/build.txt", "files/env.yaml",
    "/", "/opt/", "/srv/x", "~/data", "~", ".", "..", "../", "/../../../tmp/x", "a/../../x",
    "/home/envd/../../etc", "~/../../x", "//x//./y/", "/x\x00y", "\x00", "A B", "1X", "A=B",
    "PATH", "_ok", "A\nB", "\n", "\t", "\r\n", "\x7f", "é", "\u202e", "\ufeff", "名前",
    "\U0001f600", "fifo", "zero", "up/x", "sock", "link_up", "https://x.invalid/simple",
    "file:///etc/hostname", "-r /etc/hostname", "six==1.17.0", "numpy>=1; python_version>'3'",
    "zsh", "bash", "fish", "8", "12.4", "11.8.0", "3", "3.11", "2.7", "x" * 300,
    "{}", "%s", "${HOME}", "$(id)", "`id`", "'", '"', "\\", "*", "?", "[", "]",
]
INTS = ["0", "1", "-1", "8888", "65535", "65536", "2147483647", "2147483648", "-2147483649",
        "9223372036854775808", "1" + "0" * 30, "9" * 5000]
RANDOM_BYTES = 0.04
DEEP = 0.06
HUGE = 0.01
UNICODE = 0.03
CALLS = 0.22


def corpus_sources() -> list[str]:
    return [p.read_text() for p in sorted(CORPUS.glob("*.envd"))]


def api_calls() -> list[tuple[str, list[tuple[str, str]]]]:
    from envnix.frontend.api import FUNCTIONS

    return [(f.qualname, [(p.name, p.kind) for p in f.params]) for f in FUNCTIONS]


def literal(rng: random.Random, kind: str, depth: int = 0) -> str:
    """A Starlark literal of ``kind``, usually right, sometimes of another type."""
    if rng.random() < 0.12 and depth < 2:
        kind = rng.choice(["str", "list", "dict", "bool", "int", "none", "tuple"])
    if kind == "str" or (kind == "any" and rng.random() < 0.3):
        return repr(rng.choice(STRINGS))
    if kind in ("list", "any", "tuple"):
        items = ", ".join(literal(rng, "str" if depth else rng.choice(["str", "list"]), depth + 1)
                          for _ in range(rng.randrange(4)))
        return f"({items},)" if kind == "tuple" else f"[{items}]"
    if kind == "dict":
        return "{" + ", ".join(f"{literal(rng, 'str', depth + 1)}: {literal(rng, 'str', depth + 1)}"
                               for _ in range(rng.randrange(4))) + "}"
    if kind == "bool":
        return rng.choice(["True", "False"])
    if kind == "int":
        return rng.choice(INTS)
    return "None"


def api_call(rng: random.Random, calls: list[tuple[str, list[tuple[str, str]]]]) -> str:
    name, params = rng.choice(calls)
    args = []
    for pname, kind in params:
        if rng.random() < 0.6:
            args.append(f"{pname}={literal(rng, kind)}")
    if rng.random() < 0.05:
        args.append(f"{rng.choice(['nme', 'envs', 'x'])}={literal(rng, 'str')}")
    return f"{name}({', '.join(args)})"


# Mutation kinds and their weights: most keep the syntax valid (replace a value, add a call),
# so that the inputs reach the API's argument checks; the rest break it on purpose.
MUTATIONS = {"string": 30, "number": 8, "call": 22, "name": 10, "drop": 6, "double": 5,
             "swap": 4, "symbol": 8, "splice": 7}


def mutate(rng: random.Random, source: str, sources: list[str],
           calls: list[tuple[str, list[tuple[str, str]]]]) -> str:
    tokens = _TOKEN.findall(source)
    kinds, weights = list(MUTATIONS), list(MUTATIONS.values())
    for _ in range(rng.randrange(1, 4)):
        if not tokens:
            break
        i = rng.randrange(len(tokens))
        op = rng.choices(kinds, weights)[0]
        strings = [k for k, t in enumerate(tokens) if t[:1] in "'\""]
        if op == "string" and strings:
            tokens[rng.choice(strings)] = repr(rng.choice(STRINGS))
        elif op == "number":
            numbers = [k for k, t in enumerate(tokens) if t.isdigit()]
            tokens[rng.choice(numbers) if numbers else i] = rng.choice(INTS)
        elif op == "call":
            lines = "".join(tokens).split("\n")
            k = rng.randrange(1, len(lines) + 1)
            lines.insert(k, "    " + api_call(rng, calls))
            tokens = _TOKEN.findall("\n".join(lines))
        elif op == "name":
            ident = [k for k, t in enumerate(tokens) if t[:1].isalpha() or t[:1] == "_"]
            if ident:
                tokens[rng.choice(ident)] = rng.choice(
                    [q for q, _ in calls] + ["build", "base", "io", "x", "range", "struct"])
        elif op == "drop":
            del tokens[i]
        elif op == "double":
            tokens.insert(i, tokens[i])
        elif op == "swap":
            j = rng.randrange(len(tokens))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "symbol":
            tokens.insert(i, rng.choice(["(", ")", "[", "]", "{", "}", ",", ":", "=", "\n",
                                         "\n    ", "\n        ", "\\", "#", "'", '"', "lambda",
                                         "not", "load", "def", "if", "elif", "else", "for"]))
        else:
            other = _TOKEN.findall(rng.choice(sources))
            a = rng.randrange(len(other))
            tokens[i:i] = other[a : a + rng.randrange(1, 30)]
    return "".join(tokens)


def deep(rng: random.Random) -> str:
    n = rng.choice([50, 99, 100, 101, 150, 400, 3000, 20000])
    kind = rng.randrange(9)
    if kind == 0:
        body = "x = " + "[" * n + "]" * n
    elif kind == 1:
        body = "x = " + "-" * n + "1"
    elif kind == 2:
        body = "x = " + " + ".join(["1"] * n)
    elif kind == 3:
        body = "x = " + "not " * n + "True"
    elif kind == 4:
        body = "x = " + "lambda: " * n + "1"
    elif kind == 5:
        body = "if x == 0:\n    pass\n" + "".join(f"elif x == {i}:\n    pass\n"
                                                   for i in range(n))
        body = "x = 1\n" + body
    elif kind == 6:
        n = min(n, 2000)
        return "def build():\n" + "".join(" " * (i + 1) + "if True:\n" for i in range(n)) + \
            " " * (n + 1) + "pass\n"
    elif kind == 7:
        body = "x = " + "{1: " * n + "1" + "}" * n
    else:
        body = "x = [1]" + "[0]" * n
    return body + "\ndef build():\n    base(os='debian12', language='python3.11')\n"


def huge(rng: random.Random) -> str:
    n = rng.choice([10_000, 200_000, 1_100_000])
    kind = rng.randrange(4)
    if kind == 0:
        value = repr("x" * n)
    elif kind == 1:
        value = "9" * min(n, 100_000)
    elif kind == 2:
        value = "[" + ", ".join(["'six'"] * (n // 8)) + "]"
    else:
        value = repr("é" * (n // 2))
    return (f"V = {value}\ndef build():\n    base(os='debian12', language='python3.11')\n"
            f"    install.python_packages(name=[V] if type(V) == 'string' else V)\n")


def unicode_input(rng: random.Random) -> str:
    chars = [chr(rng.choice([rng.randrange(0x20, 0x7f), rng.randrange(0x80, 0x800),
                             rng.randrange(0x800, 0xd800), rng.randrange(0xe000, 0x110000)]))
             for _ in range(rng.randrange(1, 200))]
    text = "".join(chars)
    return rng.choice([text, f"def build():\n    {text}\n", f"x = '{text}'\ndef build():\n"
                       f"    install.apt_packages(name=[x])\n", f"def {text}():\n    pass\n"])


def generate(i: int, sources: list[str],
             calls: list[tuple[str, list[tuple[str, str]]]]) -> bytes:
    """Input number ``i``: bytes, because some inputs are not UTF-8 at all."""
    rng = random.Random(f"{SEED}:{i}")
    r = rng.random()
    if r < RANDOM_BYTES:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
    r -= RANDOM_BYTES
    if r < DEEP:
        return deep(rng).encode()
    r -= DEEP
    if r < HUGE:
        return huge(rng).encode()
    r -= HUGE
    if r < UNICODE:
        return unicode_input(rng).encode("utf-8", "surrogatepass")
    r -= UNICODE
    if r < CALLS:
        head = rng.choice(["", "# syntax=v1\n"])
        body = "\n".join("    " + api_call(rng, calls) for _ in range(rng.randrange(1, 6)))
        return f"{head}def build():\n{body}\n".encode()
    return mutate(rng, rng.choice(sources), sources, calls).encode("utf-8", "surrogatepass")


def make_context(directory: Path) -> Path:
    """A context like the corpus's, plus the special files hostile inputs reach for."""
    context = directory / "ctx"
    shutil.copytree(CORPUS / "files", context / "files")
    os.mkfifo(context / "fifo")
    (context / "zero").symlink_to("/dev/zero")
    (context / "deep" / "a" / "b").mkdir(parents=True)
    (context / "deep" / "a" / "b" / "up").symlink_to("../../..")
    (context / "link_up").symlink_to("..")
    return context


# -- the worker (this file run as a script) ------------------------------------------------------
def worker(index: int, count: int, directory: Path) -> int:
    """Evaluate inputs index, index+count, ...; print failures as JSON lines; exit 1 on any."""
    from envnix.core.errors import EnvnixError
    from envnix.frontend import evaluate_spec

    # Generous, but a runaway input must not take the machine with it.
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, resource.RLIM_INFINITY))
    context = make_context(directory / f"w{index}")
    sources, calls = corpus_sources(), api_calls()
    progress = os.open(directory / f"progress-{index}", os.O_WRONLY | os.O_CREAT, 0o644)
    failures = 0
    slowest = (0.0, -1)
    for i in range(index, COUNT, count):
        data = generate(i, sources, calls)
        (context / "build.envd").write_bytes(data)
        os.pwrite(progress, f"{i:>10}\n".encode(), 0)
        start = time.perf_counter()
        problem = None
        try:
            evaluate_spec(context, "build.envd:build", warn=lambda _: None)
        except EnvnixError as exc:
            lines = [str(exc), *([exc.hint] if exc.hint else [])]
            if any("\n" in line or "\r" in line for line in lines):
                problem = f"EnvnixError with more than one line: {lines!r}"
            elif "Traceback" in str(exc):
                problem = f"EnvnixError carrying a traceback: {str(exc)[:300]!r}"
        except BaseException as exc:  # exactly what the fuzz looks for
            problem = f"{type(exc).__name__}: {str(exc)[:300]}"
        slowest = max(slowest, (time.perf_counter() - start, i))
        if problem:
            failures += 1
            print(json.dumps({"seed": SEED, "index": i, "problem": problem,
                              "input": data[:400].decode("utf-8", "replace")}), flush=True)
    print(json.dumps({"done": True, "slowest": slowest}), flush=True)
    return 1 if failures else 0


def test_fuzz_frontend(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(i), str(WORKERS),
                               str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(WORKERS)]
    problems = []
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=600)
        if proc.returncode < 0:
            progress = (tmp_path / f"progress-{i}").read_text().strip()
            data = (tmp_path / f"w{i}" / "ctx" / "build.envd").read_bytes()
            problems.append(f"worker {i} died by {signal.Signals(-proc.returncode).name} on "
                            f"seed {SEED} input {progress}: {data[:400]!r}")
        elif proc.returncode != 0:
            problems.append(f"worker {i} exited {proc.returncode}:\n{out}\n{err[-3000:]}")
        elif '"done": true' not in out:
            problems.append(f"worker {i} did not finish:\n{out}\n{err[-3000:]}")
    assert not problems, "\n".join(problems)


def test_fuzz_sample_through_load_spec(tmp_path: Path) -> None:
    """Every 40th input through load_spec itself (the forked, rlimited child): same rule, and
    no input may end the child by a signal (the parent would say "crashed")."""
    from envnix.core.errors import EnvnixError
    from envnix.frontend import load_spec

    context = make_context(tmp_path)
    sources, calls = corpus_sources(), api_calls()
    for i in range(0, COUNT, 40):
        data = generate(i, sources, calls)
        (context / "build.envd").write_bytes(data)
        try:
            load_spec(context, warn=lambda _: None)
        except EnvnixError as exc:
            assert "\n" not in str(exc) and "crashed" not in str(exc), (SEED, i, data[:400])


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        sys.exit(worker(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])))
    if sys.argv[1] == "--show":
        print(generate(int(sys.argv[2]), corpus_sources(), api_calls()))

"""``python -m envnix.toolchain pin [--version N]``: regenerate the pin file from this
machine's Debian mirror; ``python -m envnix.toolchain ensure``: add the pinned toolchain to
the store and print its path."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from envnix.core.fileio import atomic_write
from envnix.core.progress import REPORTER
from envnix.lock.toolchain_pin import PIN_NAME, load_pin, shipped_pin_data
from envnix.toolchain import ensure, make_emulators, make_pin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m envnix.toolchain")
    sub = parser.add_subparsers(dest="command", required=True)
    pin = sub.add_parser("pin", help="write the pin file from this machine's Debian mirror")
    pin.add_argument("--version", type=int, default=None,
                     help="toolchain version (default: the shipped pin's)")
    pin.add_argument("--out", type=Path, default=Path(__file__).with_name(PIN_NAME))
    pin.add_argument("--emulators-only", action="store_true",
                     help="re-pin only the emulators (qemu-user-static), keeping the "
                          "toolchain's .debs and store path")
    add = sub.add_parser("ensure", help="add the pinned toolchain to the store, print its path")
    add.add_argument("--store", help="a Nix store other than the default (e.g. a directory)")
    args = parser.parse_args(argv)
    if args.command == "pin":
        current = load_pin()
        if args.emulators_only:
            data = {**shipped_pin_data(),
                    "emulators": make_emulators(current.version, progress=REPORTER)}
        else:
            data = make_pin(args.version or current.version, current.stage0,
                            progress=REPORTER)
        atomic_write(args.out, json.dumps(data, indent=2, sort_keys=True) + "\n")
        print(f"{args.out}: {data['storeName']} sha256:{data['narSha256']}")
    else:
        print(ensure(store=args.store, progress=REPORTER))
    return 0


if __name__ == "__main__":
    sys.exit(main())

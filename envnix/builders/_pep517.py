"""A PEP 517 frontend small enough to run on any image Python (3.6 and later): build_sdist.py
copies it into the build root and runs it with the image's interpreter.

Why not pip or build: neither is in every image, and both would try to install the build
requirements from the network; here they are already installed (locked wheels) and the
sandbox has no network. Arguments: BACKEND (``module:object``), BACKEND_PATH (JSON list of
source-relative directories, PEP 517's in-tree backends), OUTDIR. Run from the source tree.
"""

import importlib
import json
import os
import sys


def main():
    backend_name, backend_path, outdir = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    source = os.getcwd()
    if sys.path and sys.path[0] in ("", os.path.dirname(os.path.abspath(__file__))):
        sys.path.pop(0)
    sys.path[:0] = [os.path.join(source, p) for p in backend_path]
    module_name, _, attrs = backend_name.partition(":")
    backend = importlib.import_module(module_name)
    for attr in filter(None, attrs.split(".")):
        backend = getattr(backend, attr)
    os.makedirs(outdir)
    name = backend.build_wheel(outdir, {}, None)
    sys.stdout.write("built " + name + "\n")


if __name__ == "__main__":
    main()

"""The one way envnix writes a file: whole or not at all, with the permissions tools expect.

Every file envnix writes (envnix.lock, the rendered project, caches, exported archives) goes
through here, so a crash or Ctrl-C never leaves half a file behind, and files come out as
``open()`` would make them (0666 minus the umask: 0644 under umask 022), not mkstemp's 0600.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def cache_dir(name: str) -> Path:
    """envnix's cache directory ``name``: ``$XDG_CACHE_HOME/envnix/NAME``, by default
    ``~/.cache/envnix/NAME`` (an empty XDG_CACHE_HOME counts as unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "envnix" / name


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def default_mode(executable: bool = False) -> int:
    """What ``open()`` (or ``chmod +x``) would give a new file under the current umask."""
    return (0o777 if executable else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only when the block finishes without error.

    The temporary file sits beside ``path`` (same file system, so the rename is atomic) and
    is removed on any failure, KeyboardInterrupt included.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), default_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes | str, mode: int | None = None, *,
                 skip_unchanged: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically; True if the file changed.

    ``skip_unchanged`` leaves an identical file alone (keeps mtimes stable for tools that
    watch them). Text is written as UTF-8.
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if skip_unchanged and path.is_file() and not path.is_symlink():
        with contextlib.suppress(OSError):
            if path.read_bytes() == raw and (mode is None or path.stat().st_mode & 0o7777 == mode):
                return False
    with atomic_writer(path, mode) as fh:
        fh.write(raw)
    return True

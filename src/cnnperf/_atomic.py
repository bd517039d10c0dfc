"""Atomic file replacement: write a temporary file beside the target, fsync, rename.

A reader (or a run restarted after a crash) sees either the old file or the complete new one,
never a mix: ``os.replace`` renames atomically within a file system, and the data are on disk
(``fsync``) before the rename. The directory is fsynced afterwards (where the platform allows)
so the rename itself survives a power loss. The temporary file is named
``.<name>.<pid>.<random>.tmp`` in the target's directory; it is removed when the write fails
with an exception, and only a killed process leaves it behind (the target is intact either way).

>>> import os, tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     atomic_write_bytes(os.path.join(d, "a.bin"), b"new")
...     sorted(os.listdir(d)), open(os.path.join(d, "a.bin"), "rb").read()
(['a.bin'], b'new')
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import BinaryIO

__all__ = ["atomic_write_bytes"]


def _write_all(f: BinaryIO, data: bytes) -> None:
    """Write ``data`` to ``f`` (a separate function so tests can simulate a failing disk)."""
    f.write(data)


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable; a no-op where directories cannot be opened."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:  # Windows, or a file system that refuses: the rename is still atomic
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the file at ``path`` by ``data`` atomically (temp file, fsync, rename).

    The new file gets the permissions of a newly created file (``0o666`` less the umask).

    Args:
        path: the file to write; its directory must exist.
        data: the complete new contents.

    Raises:
        OSError: the write failed; ``path`` is unchanged and no temporary file is left.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "x"); atomic_write_bytes(p, b"1"); atomic_write_bytes(p, b"2")
        ...     open(p, "rb").read()
        b'2'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    while True:
        tmp = os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)

"""Atomic file writing: a reader, or a crash, never leaves half a file.

Every file the package writes in place of an older one (results JSON, threshold files, cached
MNIST-C arrays, a study's saved records) goes through :func:`write_atomic` or, for a writer that
streams (``np.save``), :func:`atomic_writer`. The bytes go to a temporary file in the same folder
(``.<name>.<random>.tmp``, so two processes writing the same file never share one), are flushed
and fsynced, and the temporary file is then renamed over ``path`` with :func:`os.replace`, which
is atomic on POSIX and Windows. On any failure the temporary file is removed and the error
propagates; ``path`` is left as it was.

The written file keeps the permissions of the file it replaces, and a new file gets the ones
:func:`open` would give it (``0o666`` less the umask). The folder must exist: callers that create
it do so themselves.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_writer", "write_atomic"]


def write_atomic(
    path: str | os.PathLike[str], data: bytes | str, *, encoding: str = "utf-8"
) -> None:
    """Replace ``path`` atomically with ``data`` (a ``str`` is encoded with ``encoding``, and its
    newlines are written as they are, never translated).

    Raises:
        OSError: the folder does not exist or is not writable, or the disk is full; ``path`` is
            unchanged and no temporary file is left behind.
    """
    payload = data.encode(encoding) if isinstance(data, str) else data
    with atomic_writer(path) as stream:
        stream.write(payload)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary stream whose contents replace ``path`` atomically when the ``with`` block ends
    without an exception; if the block (or the write) raises, ``path`` is unchanged and the
    temporary file is removed::

        with atomic_writer(path) as stream:
            np.save(stream, array, allow_pickle=False)
    """
    path = Path(path)
    mode = _mode_for(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    """The permissions of the file at ``path``, else those a new file would get from open()."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(umask)
    return 0o666 & ~umask

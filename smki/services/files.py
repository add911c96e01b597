"""Files smki writes for an operator: whole or not at all.

A command stopped part-way (Ctrl-C, SIGTERM, a full disk, a bad row late in its input) must not
leave half a CSR batch, extract or backup under the name the operator asked for, where the next
step would take it for a whole one; nor a stray temporary file beside it. A file is flushed to the
disk before it takes its name, so a machine that crashes just after never shows it empty.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_on_success(path: Path, *, private: bool = False, exclusive: bool = False) -> Iterator[Path]:
    """Yield ``<path>.partial`` (beside ``path``, so the rename stays on one file system and is
    atomic) for the caller to write; when the block ends normally it replaces ``path``, and when it
    raises anything (``KeyboardInterrupt`` included) it is removed and ``path`` is left as it was.

    ``private``: the partial file is made owner-only (0600) before anything is written to it, so a
    key or a backup is never readable by others, not even while it is being written.

    ``exclusive``: ``path`` is never replaced — the finished file takes its name only if no file has
    it (a hard link, which fails if one does: ``FileExistsError``), and the partial file's name is
    this run's own (``<path>.<pid>.partial``). Two runs writing the same new file (two backups with
    one ``--out``) shared ``<path>.partial``: the second removed the first's and the later one
    replaced the earlier's finished file.
    """
    if path.is_dir():  # else the rename fails last, naming the .partial file rather than ``path``
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial" if exclusive else f"{path.name}.partial")
    try:
        if private:
            partial.unlink(missing_ok=True)  # a stale one, perhaps another user's: never written through
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        yield partial
        _sync(partial)  # on disk before its name is: a crash after the rename never finds it empty
        if exclusive:
            os.link(partial, path)
            partial.unlink()
        else:
            partial.replace(path)
    except OSError as exc:  # named as the file the operator asked for, not the one beside it
        partial.unlink(missing_ok=True)
        if exc.filename == str(partial) and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _sync(path: Path) -> None:
    """Flush ``path``'s data to the disk (the caller's writes may sit in the page cache)."""
    if not path.exists():  # the caller wrote nothing (a command that had nothing to write)
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_whole(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` through :func:`replaced_on_success`."""
    with replaced_on_success(path, private=private) as partial:
        partial.write_bytes(data)

"""Atomic, durable file writes: every output of tavaal is written here.

A reader (a Snakemake job, the labeling page, a person) sees a file either as it was or as it
is after the write, never half written, even when the writer is killed or the machine loses
power:

- the new content goes to a hidden temporary file in the destination's folder (the same file
  system, so the rename below is atomic), named after the destination, the process and the
  thread, so concurrent writers never share one;
- once written, the temporary file is flushed to disk (`os.fsync`), then renamed over the
  destination (`os.replace`), then the folder is flushed too, since the rename itself is an
  entry of the folder (`fsync_folder`: where the file system allows it);
- when writing fails, the temporary file is removed and the destination stays as it was.

A writer killed outright (SIGKILL) can leave its temporary file behind; its name ends in
``.tmp`` and it is never read.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield the temporary path to write `path`'s new content to; it replaces `path` when the
    block ends without an exception (see the module's rules). The folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_folder(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path`'s content by `data`, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace `path`'s content by `text` in UTF-8, atomically; line endings are written as
    given (no translation)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(folder: str | Path) -> None:
    """Flush `folder`'s entries (a rename into it, a new file) to disk, where the system allows.

    A folder can be opened for this only where os.O_DIRECTORY exists (POSIX), and some file
    systems refuse to flush one (EINVAL); there the entries are left to the file system rather
    than failing a write that has already happened.
    """
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)

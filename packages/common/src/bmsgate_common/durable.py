"""Files that survive a power cut: the one way bmsgate replaces a file a user's action changed.

A rename is atomic, but it is only durable once the directory holding it is written too: without
an fsync of the directory, a power cut soon after can bring back the old file (an acknowledged
password change undone) and leave the temporary file beside it. So: write a temporary file,
fsync it, rename it over the old one, fsync the directory. When ``write_durably`` returns, the
new content is on the storage; a cut at any moment before leaves the old content, never a mix.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def sync_directory(directory: Path) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directory(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each durably recorded in its parent."""
    if directory.is_dir():
        return
    make_directory(directory.parent)
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    sync_directory(directory.parent)


def temporary_path(path: Path) -> Path:
    """Where ``write_durably`` writes before renaming: hidden, beside ``path``."""
    return path.with_name(f".{path.name}.tmp")


def discard_temporary(path: Path) -> None:
    """Remove the temporary file a write of ``path`` cut short left (call before the first write).

    Only the one process that writes ``path`` may call this, at its start: a cut between the
    temporary file's creation and its rename leaves it behind, and nothing else ever removes it.
    """
    with contextlib.suppress(FileNotFoundError):
        temporary_path(path).unlink()


def write_durably(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``, atomically and durably (owner-only by default)."""
    make_directory(path.parent)
    tmp = temporary_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    sync_directory(path.parent)

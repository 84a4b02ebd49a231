"""Versioned SQLite files: ``PRAGMA user_version`` names the layout; older files move forward.

A file's layout version is SQLite's ``user_version`` header field (0 in a file that never set it,
which is what bmsgate 0.1.0 wrote). Opening a file:

- newer than this bmsgate knows: refused with NewerFile, one line, before anything is written;
- older: first a copy into ``backups/`` beside it (SQLite's online backup), then every step up
  to the current version in one transaction (DDL and the header are transactional in SQLite),
  so a failed step leaves the file exactly as it was;
- new (no tables): created at the current version, no backup.

The steps are each file's own (archive.py, influx.py); ``STEPS[n]`` moves version n to n + 1.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from .version import VERSION

log = logging.getLogger(__name__)

Step = Callable[[sqlite3.Connection], None]
BACKUPS: Final = "backups"


class NewerFile(Exception):
    """The file was written by a newer bmsgate; the message says what to do, in one line."""


def file_version(conn: sqlite3.Connection) -> int:
    """The layout version in the file's header."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def statements(script: str) -> list[str]:
    """The statements of a schema script, to run inside a transaction (executescript commits)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def newer_problem(path: Path, steps: Sequence[Step]) -> str | None:
    """Why ``path`` cannot be opened by this version, without changing it; None when it can."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = file_version(conn)
    finally:
        conn.close()
    if found <= len(steps):
        return None
    return (
        f"{path} has layout version {found}, written by a newer bmsgate; this one ({VERSION}) "
        f"reads up to {len(steps)}: install the newer version again, or restore the backup "
        "made before the upgrade (data_dir/backups)"
    )


def migrate(conn: sqlite3.Connection, path: Path, steps: Sequence[Step]) -> int:
    """Bring the open file at ``path`` to version len(steps); returns the version it had.

    ``conn`` is in autocommit mode (isolation_level=None). Raises NewerFile for a newer file.
    """
    target = len(steps)
    found = file_version(conn)
    if found > target:
        raise NewerFile(newer_problem(path, steps) or f"{path}: newer layout {found}")
    if found == target:
        return found
    empty = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    if not empty:
        copy = backup_before(conn, path, found)
        log.warning(
            "%s: layout %d -> %d, a copy of the old file first: %s", path.name, found, target, copy
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in steps[found:]:
            step(conn)
        conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def open_file(path: Path, steps: Sequence[Step], synchronous: str = "full") -> sqlite3.Connection:
    """Open (creating or migrating) the SQLite file at ``path`` in WAL mode, autocommit.

    A file of a newer bmsgate raises NewerFile before anything is written to it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        if file_version(conn) > len(steps):
            raise NewerFile(newer_problem(path, steps) or str(path))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        migrate(conn, path, steps)
    except BaseException:
        conn.close()
        raise
    return conn


def backup_before(conn: sqlite3.Connection, path: Path, found: int) -> Path:
    """A copy of the file as it is, into ``backups/`` beside it, named by its layout and time."""
    folder = path.parent / BACKUPS
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    copy = folder / f"{path.stem}.layout{found}.{stamp}{path.suffix}"
    copy_to(conn, copy)
    return copy


def copy_to(conn: sqlite3.Connection, copy: Path) -> None:
    """A consistent copy of the open database (SQLite's online backup) as one file at ``copy``."""
    target = sqlite3.connect(copy)
    try:
        conn.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no WAL beside it
    finally:
        target.close()

"""The archive's disk full: one clear error, no crash loop, writing resumes when space returns.

The history service's data folder is a small tmpfs (mounted by the test; it needs root or
CAP_SYS_ADMIN, and is skipped with the reason otherwise). A filler file leaves a little room;
states arrive at 100 a second until the archive cannot grow. The service must say so in one line
naming the file and the cause, stay up and keep answering queries, and store states again once
the filler is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.reliability_bench import send_states

from tests.reliability.backbone import ask_history
from tests.reliability.counts import COUNTS
from tests.support.needs import missing
from tests.support.procs import Mosquitto, Proc, start_service, wait_until, write_config

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"
SIZE = "4m"  # the tmpfs
ROOM = 100_000  # [bytes] left free by the filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        missing(f"cannot mount a small tmpfs here ({run.stderr.strip()}); needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """A file taking all the space of ``folder``'s file system but ``leave`` bytes."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    filler = folder / "filler"
    with filler.open("wb") as out:
        out.write(b"\0" * max(0, free - leave))
    return filler


def rows(archive: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{archive}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM raw").fetchone()[0])


def test_archive_disk_full_is_one_clear_error_and_recovers(
    tmp_path: Path, small_disk: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    config = write_config(
        tmp_path,
        {
            "mqtt": {"host": HOST, "port": mosquitto.port, "heartbeat": 1},
            "timezone": "UTC",
            "history": {"archive": {"commit_interval": 0.5}},
            "data_dir": str(small_disk),
        },
    )
    history = start_service(tmp_path, "history", config)
    procs.append(history)
    archive = small_disk / "history" / "archive.sqlite"
    wait_until(lambda: archive.exists(), timeout=20)
    filler = fill(small_disk, ROOM)
    base = 1_577_836_800_000  # 2020-01-01: states an old day of p0..p4
    sent = asyncio.run(send_states(mosquitto.port, 100.0, 8.0, 0, base))
    wait_until(lambda: " ERROR " in history.log() or not history.alive(), 20)
    log = history.log()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert history.alive(), log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert errors and str(archive) in errors[0], errors
    stored_when_full = rows(archive)
    assert 0 < stored_when_full < sent
    query = {
        "transaction": "q-full",
        "pack": "p1",
        "fields": ["soc"],
        "start": "2020-01-01T00:00:00Z",
        "end": "2020-01-20T00:00:00Z",
    }
    assert asyncio.run(ask_history(mosquitto.port, query)).get("status") == "ok"  # reads go on

    filler.unlink()  # space returns
    more = asyncio.run(send_states(mosquitto.port, 50.0, 3.0, sent, base))
    wait_until(lambda: rows(archive) >= stored_when_full + more * 0.9, timeout=20)
    assert history.alive()
    log = history.log()
    COUNTS["disk full: states sent while filling"] += sent
    COUNTS["disk full: rows stored before full"] += stored_when_full
    COUNTS["disk full: error lines"] += len([x for x in log.splitlines() if " ERROR " in x])
    COUNTS["disk full: rows stored after space returned"] += rows(archive) - stored_when_full
    assert len(errors) <= 2, errors  # one when full (and at most one more), not one per state

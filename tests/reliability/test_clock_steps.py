"""The wall clock of the running `bmsgate run` tree is set forward 400 days, back, and an hour back.

Only the tree's processes see it: a small LD_PRELOAD shim (tests/support/wallshift.c, built here
with gcc) shifts CLOCK_REALTIME by the seconds in a file the test rewrites, and leaves the
monotonic clock, sleeps and timers alone, as when NTP or a user sets a real machine's clock.
The simulated pack is served by the test process, on the real clock. What must hold: each process
logs each step once; the archive keeps storing after every step back (never drops a sample); the
notifier plans its daily report from the new time and sends none that a step made "due"; no
traceback.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer
from tests.reliability.counts import COUNTS
from tests.support.needs import needs
from tests.support.procs import find_mosquitto
from tests.support.receiver import receiver
from tests.support.tree import bmsgate_run, write_config

pytestmark = [
    pytest.mark.integration,
    needs(find_mosquitto(), "mosquitto is not installed"),
    needs(shutil.which("gcc"), "gcc is not installed"),
]
SHIM = Path(__file__).resolve().parents[1] / "support" / "wallshift.c"
DAY = 86_400


def build_shim(folder: Path) -> Path:
    """Compile the wall-clock shim."""
    lib = folder / "wallshift.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(SHIM), "-ldl"],
        check=True,
        capture_output=True,
    )
    return lib


def config(work: Path, port: str, notify: int) -> Path:
    # fmt: off
    data: dict[str, Any] = {
        "buses": [{"port": port, "protocol": "daly_classic", "poll_interval": 0.5,
                   "packs": [{"id": "garage"}]}],
        "timezone": "UTC",
        "history": {"archive": {"commit_interval": 0.5}},
        "notifier": {"latitude": 52.52, "longitude": 13.40,
                     "targets": [{"name": "phone", "url": f"json://127.0.0.1:{notify}/notify"}]},
    }
    # fmt: on
    return write_config(work, data)


def rows_near(archive: Path, moment: float, within: float = 60.0) -> int:
    """Raw rows stamped within ``within`` seconds of ``moment`` (epoch seconds)."""
    if not archive.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{archive}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute(
                "SELECT count(*) FROM raw WHERE ts BETWEEN ? AND ?",
                (int((moment - within) * 1000), int((moment + within) * 1000)),
            ).fetchone()
            return int(row[0])
    except sqlite3.Error:
        return 0


async def until(check: Any, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.3)


async def test_clock_steps_of_the_whole_tree(tmp_path: Path) -> None:
    lib = build_shim(tmp_path)
    shift = tmp_path / "wall-offset"
    shift.write_text("0\n")
    archive = tmp_path / "data" / "history" / "archive.sqlite"
    sim = make_bus("daly_classic")
    log_path = tmp_path / "run.log"
    with receiver() as (got, notify):
        async with PtyServer(sim, tmp_path / "ttyGARAGE") as pty:
            path = config(tmp_path, pty.port, notify)
            env = {"LD_PRELOAD": str(lib), "WALLSHIFT_FILE": str(shift), "PATH": "/usr/bin:/bin"}
            async with bmsgate_run(path, log_path, env):
                await until(lambda: rows_near(archive, time.time()) >= 3)
                await until(lambda: "next daily report" in log_path.read_text())
                for offset in (400 * DAY, 0, -3600):  # +400 d, back to the right time, -1 h
                    before = rows_near(archive, time.time() + offset)
                    shift.write_text(f"{offset}\n")
                    # samples at the new time are stored, whatever was stored before
                    await until(
                        lambda o=offset, b=before: rows_near(archive, time.time() + o) >= b + 4
                    )
                shift.write_text("0\n")
                await asyncio.sleep(2.0)
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    steps_logged = re.findall(
        r" \w+ \[([\w-]+)\] bmsgate_common\.clock: the wall clock was set (\w+ \(.*?\))", text
    )
    per_process = Counter(steps_logged)
    for where in ("forward (+400 d 0 h)", "back (-400 d 0 h)", "back (-1 h 0 min)"):
        seen = {service for service, what in per_process if what == where}
        assert {"reader", "history", "notifier", "modbus"} <= seen, (where, per_process)
    assert max(per_process.values()) == 1, per_process  # each step once per process
    assert "the clock was set back): stored at its own time" in text
    plans = re.findall(r"next daily report: (\w+) at (\d{4})-", text)
    assert plans[-1][1] == time.strftime("%Y"), plans  # planned from the right time again
    reports = [b for _, b in got.posts if "report" in json.dumps(b).lower()]
    assert reports == [], reports  # no report caught up after a step
    COUNTS["clock steps: step log lines per process and step"] = max(per_process.values())

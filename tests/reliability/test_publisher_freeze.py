"""The publisher frozen (SIGSTOP) longer than its MQTT keepalive, then resumed (SIGCONT).

`bmsgate run` on the simulator with one publisher target on a second Mosquitto. The publisher
process alone is stopped for 50 s: its broker drops the connection after 1.5 x the 30 s
keepalive. Resumed, it must notice, reconnect on its own and publish again, with one warning
and no traceback (paho's socket watch for the closed connection used to end in
``OSError: [Errno 9] Bad file descriptor`` from asyncio's add_writer).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from tests.reliability.counts import COUNTS
from tests.support.mqtt import listen
from tests.support.procs import Mosquitto
from tests.support.tree import bmsgate_run, with_target

pytestmark = pytest.mark.integration
FROZEN = 50.0  # [s] beyond the broker's 1.5 x 30 s keepalive


def descendant(root: int, name: str) -> int | None:
    """The pid of ``root``'s descendant whose process name is ``name``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    for pid in parents:
        up = pid
        while up in parents and up != root:
            up = parents[up]
        if up == root and pid != root:
            try:
                if (Path(f"/proc/{pid}/comm").read_text().strip()) == name:
                    return pid
            except OSError:
                continue
    return None


async def test_a_frozen_publisher_reconnects_quietly(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = with_target(tmp_path, mosquitto.port)
    log_path = tmp_path / "run.log"
    async with (
        listen(mosquitto.port, "homeassistant/#", "bmsgate/#") as seen,
        bmsgate_run(config, log_path, isolate=True) as proc,  # SIGSTOP freezes a process
    ):
        await seen.wait_for(lambda s: len(s.messages) > 5, within=30)
        publisher = descendant(proc.pid, "bms-publisher")
        assert publisher is not None
        os.kill(publisher, signal.SIGSTOP)
        await asyncio.sleep(FROZEN)
        before = len(seen.messages)
        os.kill(publisher, signal.SIGCONT)
        resumed = time.monotonic()
        await seen.wait_for(lambda s: len(s.messages) > before + 5, within=30)
        back = time.monotonic() - resumed
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert text.count("target home connected") == 2, text[-3000:]
    COUNTS["publisher frozen 50 s: tracebacks"] += text.count("Traceback")
    COUNTS["publisher frozen 50 s: publishing again after [s]"] = round(back)

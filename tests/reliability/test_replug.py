"""The serial adapter unplugged and plugged back in under another device name, as processes.

The reader's port is a stable symlink (like /dev/serial/by-id/...) to a simulator's pty. The
simulator is stopped (the pty disappears, the link with it), a stray pty takes its /dev/pts
number, and a new simulator comes up on another number with the link moved to it, as the kernel
and udev do on a replug that gets ttyUSB1 instead of ttyUSB0. The reader, never restarted, must
report the pack offline while it is gone and follow the link to the new device.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.reliability.counts import COUNTS
from tests.support.mqtt import Listener, listen
from tests.support.procs import (
    Mosquitto,
    Proc,
    garage_config,
    start_service,
    start_simulator,
)

pytestmark = pytest.mark.integration
WINDOW = 3.0  # [s] states are counted this long before the unplug and after the recovery


def states_since(seen: Listener, since: datetime) -> int:
    return sum(
        1
        for m in seen.messages
        if m.topic.endswith("/state")
        and not m.retain
        and datetime.fromisoformat(m.payload["ts"]) > since
    )


def test_reader_follows_a_replugged_adapter_to_its_new_device(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    sim, link = start_simulator(tmp_path)
    procs.append(sim)
    first_device = os.path.realpath(link)
    bus = {"poll_interval": 0.5, "offline_after": 2}
    config = garage_config(tmp_path, mosquitto.port, link, bus=bus, heartbeat=1)
    reader = start_service(tmp_path, "reader", config)
    procs.append(reader)
    stray: tuple[int, int] | None = None

    async def scenario() -> dict[str, float]:
        nonlocal sim, stray
        async with listen(
            mosquitto.port, "bmsgate/bms/garage/#", "bmsgate/service/+/status"
        ) as seen:
            await seen.wait_for(lambda s: states_since(s, datetime.now(UTC)) or s.on("/state"), 30)
            start = datetime.now(UTC)
            await asyncio.sleep(WINDOW)
            before = states_since(seen, start)
            sim.stop()  # unplugged: the pty and the link are gone
            stray = os.openpty()  # takes the freed /dev/pts number, so the new one differs
            unplugged = len(seen.messages)
            await seen.wait_for(
                lambda s: any(
                    m.payload["state"] == "offline"
                    for m in s.messages[unplugged:]
                    if m.topic.endswith("/availability")
                ),
                15,
            )
            sim, _ = start_simulator(tmp_path)  # plugged in again: new pty, link moved to it
            procs.append(sim)
            replugged = datetime.now(UTC)
            t0 = time.monotonic()
            await seen.wait_for(lambda s: states_since(s, replugged), 30)
            recovery = time.monotonic() - t0
            back = datetime.now(UTC)
            await asyncio.sleep(WINDOW)
            after = states_since(seen, back)
            statuses = [m.payload for m in seen.messages if m.topic.endswith("reader-0/status")]
            return {
                "before": before,
                "after": after,
                "recovery": recovery,
                "device": statuses[-1]["detail"]["device"],
            }

    try:
        result = asyncio.run(scenario())
    finally:
        if stray:
            os.close(stray[0])
            os.close(stray[1])
    new_device = os.path.realpath(link)
    COUNTS["replug: states in 3 s before"] += int(result["before"])
    COUNTS["replug: states in 3 s after"] += int(result["after"])
    COUNTS["replug: recovery after re-add [ms]"] += round(result["recovery"] * 1000)
    assert new_device != first_device, (first_device, new_device)
    assert result["device"] == new_device
    assert result["before"] >= 3 and result["after"] >= 3
    assert reader.alive() and "Traceback" not in reader.log(), reader.log()[-2000:]

"""After the publisher's backbone broker comes back, a bank is not published as the first member back.

The publisher runs as a process with a bank of two packs; the test plays both readers on a real
Mosquitto. The broker is killed for longer than ``stale_after`` (both members go stale), started
again, and only the first member reports at once; the second follows 2 s after the publisher is
back. Before, the bank went out as the first member alone until the second reported. Now the
publisher stops judging members out while its connection is lost and waits for them again once
it is back, as after a start (bmsgate_common.liveness.Arrivals.deaf / listen_again).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest
from packages.outputs.tests.states import make_state

from bmsgate_common import topics
from tests.reliability.counts import COUNTS
from tests.support.mqtt import Listener, listen
from tests.support.procs import Mosquitto, Proc, write_config

pytestmark = pytest.mark.integration
STALE = 4.0  # [s] stale_after


@contextlib.asynccontextmanager
async def reader(port: int, packs: list[str]) -> AsyncIterator[list[str]]:
    """Publish a fresh state of each of ``packs`` (a list the test may add to) every second."""

    async def run() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            while True:
                for pack in list(packs):
                    state = make_state(pack=pack, name=pack, ts=datetime.now(UTC))
                    body = state.model_dump_json(exclude_none=True)
                    await client.publish(topics.STATE.topic(pack), body, qos=1, retain=True)
                await asyncio.sleep(1.0)

    task = asyncio.create_task(run())
    try:
        yield packs
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError, TimeoutError):
            await asyncio.wait_for(task, 5)  # a hang here fails the test instead of stalling it


def bank_cells(seen: Listener) -> list[int]:
    return [s["cell_count"] for s in seen.on("bms/house/state") if isinstance(s, dict)]


async def test_a_bank_waits_for_its_members_after_the_broker_came_back(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = {
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "heartbeat": 2},
        "buses": [
            {
                "port": "/dev/null",  # no reader runs: the test publishes the states
                "protocol": "daly_classic",
                "packs": [{"id": "a"}, {"id": "b", "address": 2}],
            }
        ],
        "banks": [{"id": "house", "packs": ["a", "b"]}],
        "stale_after": STALE,
        "data_dir": str(tmp_path / "data"),
    }
    path = write_config(tmp_path, config)
    argv = [sys.executable, "-m", "bmsgate_publisher", "--config", str(path)]
    proc = Proc("publisher", argv, tmp_path)
    try:
        cells = len(make_state().cell_voltages)
        async with (
            listen(mosquitto.port, "bmsgate/bms/house/state") as before,
            reader(mosquitto.port, ["a", "b"]),
        ):
            await before.wait_for(lambda s: 2 * cells in bank_cells(s), within=40)
        mosquitto.stop()
        await asyncio.sleep(2.5 * STALE)  # both members stale; the publisher notices
        mosquitto.start()
        async with (
            listen(mosquitto.port, "bmsgate/bms/house/state", "bmsgate/service/+/status") as after,
            reader(mosquitto.port, ["a"]) as packs,
        ):
            await after.wait_for(lambda s: s.on("service/publisher/status"), within=40)
            await asyncio.sleep(STALE / 2)  # a alone for a while, b not yet stale_after away
            packs.append("b")
            await after.wait_for(lambda s: bank_cells(s), within=20)
            await asyncio.sleep(3.0)
    finally:
        proc.stop()
    shown = bank_cells(after)
    assert shown and set(shown) == {2 * cells}, shown  # never the first member back alone
    text = proc.log()
    assert "Traceback" not in text and "never retrieved" not in text, text[-3000:]
    COUNTS["bank reconnect: bank states after the outage, all with both members"] = len(shown)

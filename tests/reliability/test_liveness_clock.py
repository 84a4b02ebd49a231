"""Setting the wall clock of the consumers neither makes a live pack look stale nor a silent one fresh.

The API, Modbus and the publisher (with a Home Assistant target) run as processes whose wall
clock the LD_PRELOAD shim of test_clock_steps.py shifts; the test plays the reader on the same
machine: pack ``live`` sends a state every 2 s stamped with the shifted clock, pack ``silent``
sent one and then nothing (a hung reader: no "offline" either). Once ``silent`` is stale, the
clock is set an hour back, then 400 days forward. Before, the age was ``now`` minus the stamp:
an hour back made ``silent`` live again for an hour, and a step forward made ``live`` stale until
its next state. Now the age counts on the monotonic clock from the arrival
(bmsgate_common.liveness.Arrivals).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from packages.outputs.tests.states import make_state
from pymodbus.client import AsyncModbusTcpClient

from bmsgate.broker import free_port
from bmsgate_common import topics
from bmsgate_common.models import PackState
from bmsgate_modbus.registers import BASE
from tests.reliability.counts import COUNTS
from tests.reliability.test_clock_steps import build_shim
from tests.support.mqtt import listen
from tests.support.procs import Mosquitto, Proc, write_config

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not shutil.which("gcc"), reason="gcc")]
STALE = 8.0  # [s] stale_after
EVERY = 2.0  # [s] between the live pack's states
FAILURE = BASE + 45  # Modbus failure flag: 1 = offline or stale
HOUR, DAYS_400 = 3600, 400 * 86_400


def config(broker: Mosquitto, api: int, modbus: int) -> dict[str, Any]:
    return {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "heartbeat": 2},
        "buses": [
            {
                "port": "/dev/null",  # no reader runs: the test publishes the states
                "protocol": "daly_classic",
                "packs": [{"id": "live"}, {"id": "silent", "address": 2}],
            }
        ],
        "stale_after": STALE,
        "api": {"host": "127.0.0.1", "port": api},
        "modbus": {"host": "127.0.0.1", "port": modbus},
        "publisher": {
            "targets": [
                {
                    "name": "home",
                    "host": "127.0.0.1",
                    "port": broker.port,
                    "interval": 1,
                    "homeassistant": {"enabled": True},
                }
            ]
        },
        "timezone": "UTC",
    }


class Reader:
    """The packs' reader on this machine: its stamps follow the shifted wall clock."""

    def __init__(self, shift: Path) -> None:
        self.shift = shift

    def offset(self) -> float:
        return float(self.shift.read_text())

    def set(self, offset: float) -> None:
        self.shift.write_text(f"{offset}\n")

    def state(self, pack: str) -> PackState:
        now = datetime.fromtimestamp(time.time() + self.offset(), UTC)
        return make_state(pack=pack, name=pack, ts=now)


async def publish(client: aiomqtt.Client, state: PackState) -> None:
    topic = topics.STATE.topic(state.pack)
    await client.publish(topic, state.model_dump_json(exclude_none=True), qos=1, retain=True)


AGES: list[float] = []  # the live pack's age as the API shows it [s]


async def judged(api: int, modbus: AsyncModbusTcpClient) -> dict[str, tuple[bool, bool]]:
    """pack -> (live in the API, live in Modbus)."""
    async with httpx.AsyncClient(timeout=2) as http:
        packs = (await http.get(f"http://127.0.0.1:{api}/api/packs")).json()
        views = (await http.get(f"http://127.0.0.1:{api}/api/overview")).json()
    AGES.append(next(v["age"] for v in views if v["pack"] == "live"))  # the Status page's
    out = {}
    for unit, pack in ((1, "live"), (2, "silent")):
        reply = await modbus.read_holding_registers(FAILURE, count=1, device_id=unit)
        flag = None if reply.isError() else reply.registers[0] == 0
        out[pack] = (next(p["online"] for p in packs if p["pack"] == pack), flag)
    return out


async def test_a_wall_clock_step_changes_no_pack_liveness(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    lib = build_shim(tmp_path)
    shift = tmp_path / "wall-offset"
    reader = Reader(shift)
    reader.set(0)
    api_port, modbus_port = free_port(), free_port()
    path = write_config(tmp_path, config(mosquitto, api_port, modbus_port))
    env = {"LD_PRELOAD": str(lib), "WALLSHIFT_FILE": str(shift)}
    procs: list[Proc] = []
    samples: list[tuple[float, dict[str, tuple[bool, bool]]]] = []
    async with (
        listen(mosquitto.port, "bmsgate/live/availability", "bmsgate/silent/availability") as ha,
        aiomqtt.Client("127.0.0.1", mosquitto.port) as client,
    ):
        try:
            for service in ("api", "modbus", "publisher"):
                argv = [sys.executable, "-m", f"bmsgate_{service}", "--config", str(path)]
                procs.append(Proc(service, argv, tmp_path, env))
            modbus = AsyncModbusTcpClient("127.0.0.1", port=modbus_port, timeout=2, retries=0)

            async def live_reader() -> None:
                while True:
                    await publish(client, reader.state("live"))
                    await asyncio.sleep(EVERY)

            feeding = asyncio.create_task(live_reader())
            await publish(client, reader.state("silent"))  # its only state
            deadline = time.monotonic() + 40
            while True:  # up: both known; then silent goes stale
                assert time.monotonic() < deadline, samples[-3:]
                try:
                    if not modbus.connected:
                        await modbus.connect()
                    now = await judged(api_port, modbus)
                except (httpx.HTTPError, StopIteration, OSError, TypeError):  # not up yet
                    await asyncio.sleep(0.3)
                    continue
                samples.append((reader.offset(), now))
                if now == {"live": (True, True), "silent": (False, False)}:
                    break
                await asyncio.sleep(0.3)
            await asyncio.sleep(1.5)  # the publisher's target shows silent stale too
            mark = len(ha.messages)
            AGES.clear()
            for offset in (-HOUR, DAYS_400):
                reader.set(offset)
                end = time.monotonic() + 2 * EVERY + 1  # past the live pack's next state
                while time.monotonic() < end:
                    now = await judged(api_port, modbus)
                    samples.append((offset, now))
                    assert now == {"live": (True, True), "silent": (False, False)}, (offset, now)
                    await asyncio.sleep(0.2)
            feeding.cancel()
            modbus.close()
            await asyncio.sleep(1.5)  # the publisher's last ticks
        finally:
            for proc in procs:
                proc.stop()
    logs = {p.name: p.log() for p in procs}
    for name, text in logs.items():
        assert "Traceback" not in text, (name, text[-2000:])
        assert "the wall clock was set back" in text, (name, text[-2000:])  # the shim worked
    shown = [(m.topic.split("/")[1], m.payload) for m in ha.messages]
    before, after = shown[:mark], shown[mark:]
    assert before.count(("live", b"online")) >= 1, before  # Home Assistant, via the target
    assert ("silent", b"offline") in before, before
    assert ("live", b"offline") not in after and ("silent", b"online") not in after, after
    assert AGES and all(0 <= a <= EVERY + 2 for a in AGES), AGES  # the shown age: no step in it
    stepped = [s for s in samples if s[0] != 0]
    COUNTS["liveness clock: judgements after a step (API and Modbus), all unchanged"] = len(stepped)

"""A target broker slower than the packs: it gets each pack's newest state, not a queue.

The target's Mosquitto is stopped (SIGSTOP) for some seconds while a pack's states keep coming:
the publisher's QoS 1 window waits for an acknowledgement that does not come, the newer packets
replace the waiting ones, and the status and the log say so. Once the broker runs again it gets
the newest state, and the publisher says it keeps up again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest
from packages.outputs.tests.states import make_state

from bmsgate_common.models import Availability
from tests.support.procs import Mosquitto, Proc, start_service, wait_until, write_config

pytestmark = pytest.mark.integration

STATUS = "bmsgate/service/publisher/status"


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Mosquitto]:
    (tmp_path / "target").mkdir()
    broker = Mosquitto(tmp_path / "target")
    broker.start()
    yield broker
    if broker.process and broker.process.poll() is None:
        os.kill(broker.process.pid, signal.SIGCONT)  # a failed test must not leave it stopped
    broker.stop()


async def until(check: Callable[[], bool], seconds: float) -> None:
    """Wait until ``check()`` holds, for at most ``seconds`` (a look every 0.1 s)."""
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110 (the values change in other tasks: nothing to await)
            await asyncio.sleep(0.1)


async def feed(port: int, sent: list[int]) -> None:
    """The pack's states, four a second, each numbered by its power [W], until cancelled."""
    async with aiomqtt.Client("127.0.0.1", port) as c:
        now = datetime.now(UTC)
        online = Availability(pack="garage", state="online", ts=now)
        await c.publish("bmsgate/bms/garage/availability", online.model_dump_json(), 1, True)
        while True:
            n = len(sent)
            state = make_state(pack="garage", name="Garage", ts=datetime.now(UTC), power=float(n))
            await c.publish("bmsgate/bms/garage/state", state.model_dump_json(), 1, True)
            sent.append(n)
            await asyncio.sleep(0.25)


async def test_a_stopped_target_gets_the_newest_state_and_the_status_says_what_was_replaced(
    tmp_path: Path, mosquitto: Mosquitto, target: Mosquitto, procs: list[Proc]
) -> None:
    # fmt: off
    cfg = {
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "heartbeat": 1},
        "buses": [{"port": "/dev/null", "protocol": "daly_classic", "packs": [{"id": "garage"}]}],
        "publisher": {"targets": [
            {"name": "slow", "host": "127.0.0.1", "port": target.port, "topic_prefix": "slow",
             "interval": 1, "qos": 1}
        ]},
        "stale_after": 30,
        "log_level": "INFO",
    }
    # fmt: on
    publisher = start_service(tmp_path, "publisher", write_config(tmp_path, cfg))
    procs.append(publisher)
    sent: list[int] = []
    got: list[int] = []  # the number (PWT) of every main packet the target delivered
    status: dict[str, object] = {}

    async def watch_target() -> None:
        async with aiomqtt.Client("127.0.0.1", target.port) as c:
            await c.subscribe("slow/garage", qos=1)
            async for m in c.messages:
                got.append(json.loads(bytes(m.payload))["PWT"])  # type: ignore[arg-type]

    async def watch_status() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
            await c.subscribe(STATUS)
            async for m in c.messages:
                status.update(json.loads(bytes(m.payload))["detail"])  # type: ignore[arg-type]

    tasks = [asyncio.create_task(watch_target()), asyncio.create_task(watch_status())]
    feeder = asyncio.create_task(feed(mosquitto.port, sent))
    try:
        await until(lambda: len(got) >= 2, 60)  # the service's imports, on a loaded machine
        assert target.process is not None
        os.kill(target.process.pid, signal.SIGSTOP)
        paused_from = len(sent)
        await asyncio.sleep(6)  # ~6 ticks, each with a newer state; the first one waits
        paused_to = len(sent)
        os.kill(target.process.pid, signal.SIGCONT)
        seen = len(got)
        await until(lambda: bool(got) and got[-1] >= paused_to, 20)  # a state from after it
        feeder.cancel()
        after = got[seen:]
        during = [s for s in after if paused_from <= s < paused_to]
        # the packet waiting when the broker stopped, then the newest: not one per tick
        assert 1 <= len(during) <= 2, (paused_from, paused_to, got)
        await until(lambda: int(str(status.get("slow_replaced", 0))) >= 3, 20)  # every second
        assert status["slow_expired"] == 0  # nothing waited as long as stale_after (30 s)
        wait_until(lambda: "target slow keeps up again" in publisher.log(), 20)
        log = publisher.log()
        assert "target slow takes messages slower than they come" in log
        assert "Traceback" not in log
    finally:
        feeder.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(feeder, *tasks, return_exceptions=True)

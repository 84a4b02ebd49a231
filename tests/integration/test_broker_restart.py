"""Every service resumes by itself after the broker has been away for long (40 s, longer than the
~31 s after which FastStream, the backbone's former client, gave up for good by default): states
flow again and retained statuses come back."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from bmsgate.broker import free_port
from tests.support.procs import (
    Mosquitto,
    Proc,
    garage_config,
    start_service,
    wait_until,
)

pytestmark = pytest.mark.integration
OUTAGE = 40.0  # [s] longer than the backbone's longest wait between attempts, several times over


def state_ts(base: str) -> datetime | None:
    response = httpx.get(f"{base}/api/packs/garage/state", timeout=2)
    if response.status_code != 200:
        return None
    return datetime.fromisoformat(response.json()["ts"])


async def retained_statuses(port: int) -> dict[str, Any]:
    found: dict[str, Any] = {}
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe("bmsgate/service/+/status", qos=1)
        try:
            async with asyncio.timeout(1.5):
                async for message in client.messages:
                    found[str(message.topic).split("/")[2]] = json.loads(message.payload)  # type: ignore[arg-type]
        except TimeoutError:
            pass
    return found


def test_services_resume_after_a_long_broker_outage(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str, procs: list[Proc]
) -> None:
    http = free_port()
    web = {"host": "127.0.0.1", "port": http}
    config = garage_config(
        tmp_path, mosquitto.port, daly_pty, bus={"poll_interval": 1}, api=web, stale_after=5
    )
    reader = start_service(tmp_path, "reader", config)
    api = start_service(tmp_path, "api", config)
    procs += [reader, api]
    base = f"http://127.0.0.1:{http}"
    wait_until(lambda: state_ts(base), timeout=20)

    mosquitto.stop()
    down_at = datetime.now(UTC)
    time.sleep(OUTAGE)
    assert reader.alive() and api.alive()
    # the API does not pass off the last state as current while nothing new arrives
    assert httpx.get(f"{base}/api/packs/garage/state", timeout=2).status_code == 503
    mosquitto.start()

    fresh = wait_until(lambda: (ts := state_ts(base)) and ts > down_at and ts, timeout=30)
    assert fresh > down_at
    statuses = wait_until(
        lambda: (s := asyncio.run(retained_statuses(mosquitto.port))) and len(s) == 2 and s,
        timeout=20,
    )
    assert {name: s["state"] for name, s in statuses.items()} == {
        "reader-0": "online",
        "api": "online",
    }
    for proc in (reader, api):
        assert "Traceback" not in proc.log(), proc.log()[-2000:]

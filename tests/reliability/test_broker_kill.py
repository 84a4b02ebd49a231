"""The broker killed while commands are in flight: each one answered or failed, none lost.

A real Mosquitto, the simulated DALY board on a pty, the reader and the API with control on. Each
round sends two commands at once, one through the API (``POST /api/packs/garage/commands``) and
one on raw MQTT (``bmsgate/bms/garage/set``, as Home Assistant or a script would), then kills the
broker (SIGKILL) after a few milliseconds to half a second and starts it again two seconds later.

What the caller sees is counted: answered (the value read back), failed with an error (an HTTP
error with a reason, an error result, a refused publish), no result within the caller's own
timeout (MQTT callers only: the request or its result died with the broker). A command is
**lost** when the caller got no answer at all from the API, or when it was told "ok" and the
BMS, read back afterwards, says otherwise. Lost must be 0, and every service (all seven run)
must come back online.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from bmsgate.broker import free_port
from bmsgate_api.auth import hash_password
from bmsgate_common import topics
from tests.reliability.backbone import control_config, statuses
from tests.reliability.counts import COUNTS
from tests.support.procs import Mosquitto, Proc, start_service, wait_until

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"
PASSWORD = "broker-kill-test"
ROUNDS = 4
DOWN = 2.0  # [s] the broker stays away
MQTT_WAIT = 12.0  # [s] a raw MQTT caller waits this long for its result
COMMAND_TIMEOUT = 5.0  # [s] api.command_timeout
SERVICES = ("reader", "api", "publisher", "modbus", "history", "notifier", "tunnel")


async def api_command(client: httpx.AsyncClient, value: bool) -> tuple[str, Any]:
    """The API caller: (outcome, value read back or the reason)."""
    try:
        response = await client.post(
            "/api/packs/garage/commands", json={"action": "set_charge_mos", "value": value}
        )
    except httpx.HTTPError as err:
        return "lost", f"no HTTP answer: {type(err).__name__}"
    if response.status_code == 200:
        return "answered", response.json()["result"]["value"]
    detail = response.json().get("detail")
    return (
        ("failed", detail) if detail else ("lost", f"HTTP {response.status_code} without a reason")
    )


async def mqtt_command(port: int, transaction: str, value: bool) -> tuple[str, Any]:
    """The raw MQTT caller: publish, then wait for the result, reconnecting after the outage."""
    deadline = asyncio.get_running_loop().time() + MQTT_WAIT
    body = json.dumps({"transaction": transaction, "action": "set_discharge_mos", "value": value})
    published = False
    while asyncio.get_running_loop().time() < deadline:
        try:
            async with aiomqtt.Client(HOST, port, timeout=2) as client:
                await client.subscribe(topics.RESULT.topic("garage"), qos=1)
                if not published:
                    try:
                        await client.publish(topics.COMMAND.topic("garage"), body, qos=1)
                    except aiomqtt.MqttError as err:
                        return "failed", f"publish refused: {err}"
                    published = True
                async with asyncio.timeout(deadline - asyncio.get_running_loop().time()):
                    async for message in client.messages:
                        result = json.loads(message.payload)  # type: ignore[arg-type]
                        if result.get("transaction") != transaction:
                            continue
                        if result["status"] == "ok":
                            return "answered", result["value"]
                        return "failed", result.get("error")
        except aiomqtt.MqttError as err:
            if not published:
                return "failed", f"publish failed: {err}"
            await asyncio.sleep(0.2)
        except TimeoutError:
            break
    return "timed out", None


def state(base: str) -> dict[str, Any] | None:
    response = httpx.get(f"{base}/api/packs/garage/state", timeout=2)
    return response.json() if response.status_code == 200 else None


def test_commands_in_flight_when_the_broker_dies_are_answered_or_failed(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str, procs: list[Proc]
) -> None:
    http = free_port()
    config = control_config(
        tmp_path,
        mosquitto.port,
        daly_pty,
        stale_after=5,
        api={
            "host": HOST,
            "port": http,
            "password_hash": hash_password(PASSWORD),
            "command_timeout": COMMAND_TIMEOUT,
        },
        modbus={"host": HOST, "port": free_port()},
        tunnel={"host": HOST, "port": free_port()},
        timezone="UTC",
    )
    running = [start_service(tmp_path, name, config) for name in SERVICES]
    procs += running
    base = f"http://{HOST}:{http}"
    wait_until(lambda: state(base), timeout=30)
    rng = random.Random(13)
    outcomes: Counter[str] = Counter()
    lost: list[Any] = []

    async def one_round(n: int, client: httpx.AsyncClient) -> None:
        value = n % 2 == 0
        via_api = asyncio.create_task(api_command(client, value))
        via_mqtt = asyncio.create_task(mqtt_command(mosquitto.port, f"kill-{n}", value))
        await asyncio.sleep(rng.choice([0.0, 0.02, 0.1, 0.25, 0.5]))
        mosquitto.stop()  # SIGKILL: no will delivered by a clean stop, nothing flushed
        down_at = datetime.now(UTC)
        await asyncio.sleep(DOWN)
        mosquitto.start()
        told = {"api": await via_api, "mqtt": await via_mqtt}
        # the truth afterwards: a fresh state read from the BMS once everything is back
        fresh = await asyncio.to_thread(
            wait_until,
            lambda: (s := state(base)) and datetime.fromisoformat(s["ts"]) > down_at and s,
            30,
        )
        for via, field in (("api", "charge_mos"), ("mqtt", "discharge_mos")):
            outcome, detail = told[via]
            outcomes[f"{via} {outcome}"] += 1
            if outcome == "lost":
                lost.append((n, via, detail))
            elif outcome == "answered" and (detail is not value or fresh[field] is not value):
                lost.append((n, via, f"told {detail}, BMS reads {fresh[field]}"))

    async def all_rounds() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=COMMAND_TIMEOUT + 15) as client:
            (await client.post("/api/auth/login", json={"password": PASSWORD})).raise_for_status()
            for n in range(ROUNDS):
                await one_round(n, client)

    asyncio.run(all_rounds())
    everyone = {"reader-0", *SERVICES[1:]}

    def all_online() -> dict[str, str]:
        found = {name: s["state"] for name, s in asyncio.run(statuses(mosquitto.port)).items()}
        return found if found == dict.fromkeys(everyone, "online") else {}

    wait_until(all_online, timeout=30)  # every service resumed and says so (retained)
    COUNTS["broker killed mid-command: commands sent"] += 2 * ROUNDS
    for key in ("api answered", "api failed", "mqtt answered", "mqtt failed", "mqtt timed out"):
        COUNTS[f"broker killed mid-command: {key}"] += outcomes[key]
    COUNTS["broker killed mid-command: lost"] += len(lost)
    assert not lost, lost
    assert sum(outcomes.values()) == 2 * ROUNDS
    COUNTS["broker killed mid-command: services online again afterwards"] += len(everyone)
    for proc in running:
        assert proc.alive() and "Traceback" not in proc.log(), proc.log()[-2000:]

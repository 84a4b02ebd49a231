"""MQTT commands act only on the configured topics and only with control enabled (processes).

The reader on a simulated DALY board, first with control off: every command on
``bmsgate/bms/garage/set`` gets an error result and the BMS does not change. Then with control
on: commands for a pack no reader has, and command payloads on topics that are not the command
topic, get no answer and change nothing; the same command on the right topic is carried out.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.reliability.backbone import control_config
from tests.reliability.counts import COUNTS
from tests.support.mqtt import Listener, listen
from tests.support.procs import Mosquitto, Proc, start_service

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"
COMMANDS = [
    {"action": "set_charge_mos", "value": False},
    {"action": "set_discharge_mos", "value": False},
    {"action": "set_soc", "value": 12.5},
    {"action": "reset"},
]
WRONG_TOPICS = [
    "bmsgate/bms/nosuch/set",  # a pack no reader has
    "bmsgate/bms/garage/sett",
    "bmsgate/bms/garage/set/x",
    "bmsgate/bms/garage/command",
    "bmsgate/bms/garage",
    "other/bms/garage/set",  # another base topic
    "bmsgate/bms/+/set",  # not a valid topic to publish to: refused by the client or the broker
]


def config(tmp_path: Path, broker: int, port: str, control: bool) -> Path:
    return control_config(tmp_path, broker, port, control=control, name=f"config-{control}.yaml")


async def send(topic: str, body: dict[str, Any], port: int) -> bool:
    """Publish; False when the client or the broker refuses the topic itself."""
    try:
        async with aiomqtt.Client(HOST, port) as client:
            await client.publish(topic, json.dumps(body), qos=1)
    except (aiomqtt.MqttError, ValueError):
        return False
    return True


def results(seen: Listener) -> list[dict[str, Any]]:
    return [m.payload for m in seen.messages if m.topic.endswith("/result")]


def last_state(seen: Listener) -> dict[str, Any]:
    states = [m.payload for m in seen.messages if m.topic.endswith("/garage/state")]
    return states[-1] if states else {}


def reader_online(seen: Listener) -> bool:
    """The reader has said it is online while ``seen`` listened: every subscription is made, so a
    command sent now is heard (one sent before could be lost, and a refusal prove nothing)."""
    return any(
        m.topic.endswith("/service/reader-0/status")
        and not m.retain
        and m.payload["state"] == "online"
        for m in seen.messages
    )


def test_commands_need_control_and_the_command_topic(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str, procs: list[Proc]
) -> None:
    counts: dict[str, int] = {}

    async def control_off() -> None:
        reader = start_service(
            tmp_path, "reader", config(tmp_path, mosquitto.port, daly_pty, False)
        )
        procs.append(reader)
        async with listen(mosquitto.port, "bmsgate/bms/#", "bmsgate/service/#") as seen:
            await seen.wait_for(lambda s: last_state(s) and reader_online(s), 30)
            before = last_state(seen)
            for n, command in enumerate(COMMANDS):
                await send(
                    "bmsgate/bms/garage/set", {"transaction": f"off-{n}", **command}, mosquitto.port
                )
            await seen.wait_for(lambda s: len(results(s)) >= len(COMMANDS), 15)
            assert all(
                r["status"] == "error" and r["error"] == "control is disabled"
                for r in results(seen)
            ), results(seen)
            counts["refused with an error result (control off)"] = len(results(seen))
            now = len(seen.messages)
            await seen.wait_for(
                lambda s: any(m.topic.endswith("/garage/state") for m in s.messages[now:]), 10
            )
            after = last_state(seen)
            assert (after["charge_mos"], after["discharge_mos"]) == (
                before["charge_mos"],
                before["discharge_mos"],
            )
        reader.stop()

    async def control_on() -> None:
        reader = start_service(tmp_path, "reader", config(tmp_path, mosquitto.port, daly_pty, True))
        procs.append(reader)
        async with listen(mosquitto.port, "bmsgate/#", "other/#") as seen:
            await seen.wait_for(lambda s: last_state(s) and reader_online(s), 30)
            sent = 0
            for n, where in enumerate(WRONG_TOPICS):
                body = {"transaction": f"wrong-{n}", "action": "set_charge_mos", "value": False}
                sent += await send(where, body, mosquitto.port)
            await asyncio.sleep(3.0)  # several polls: an action would show in the state
            assert results(seen) == []
            assert last_state(seen)["charge_mos"] is True
            counts["wrong topic or unknown pack: sent"] = sent
            counts["wrong topic or unknown pack: refused by client/broker"] = (
                len(WRONG_TOPICS) - sent
            )
            counts["wrong topic or unknown pack: acted on"] = 0
            body = {"transaction": "right", "action": "set_charge_mos", "value": False}
            await send("bmsgate/bms/garage/set", body, mosquitto.port)
            done = await seen.wait_for(lambda s: results(s), 15)
            assert done[0]["status"] == "ok" and done[0]["value"] is False
            counts["right topic, control on: carried out"] = 1
        assert "Traceback" not in reader.log(), reader.log()[-2000:]

    asyncio.run(control_off())
    asyncio.run(control_on())
    for key, value in counts.items():
        COUNTS[f"mqtt commands: {key}"] += value

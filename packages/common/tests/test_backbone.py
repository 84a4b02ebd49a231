"""The backbone against a real Mosquitto: subscriptions before handlers, reconnects, refusals."""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from bmsgate_common import topics
from bmsgate_common.models import Availability, CommandResult, utcnow
from bmsgate_common.mqtt import BROKER_ERRORS, Backbone
from bmsgate_common.settings import MqttSettings
from tests.support.procs import Mosquitto

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - state of another task, polled
            await asyncio.sleep(0.02)


def online(pack: str) -> str:
    return Availability(pack=pack, state="online", ts=utcnow()).model_dump_json()


def result(pack: str) -> CommandResult:
    return CommandResult(transaction=pack, pack=pack, action="reset", status="ok", ts=utcnow())


async def test_every_subscription_is_made_before_a_retained_message_is_handled(
    mosquitto: Mosquitto,
) -> None:
    async with aiomqtt.Client(HOST, mosquitto.port) as client:
        for pack in ("p1", "p2"):
            await client.publish(f"bmsgate/bms/{pack}/availability", online(pack), 1, retain=True)
    backbone = Backbone(MqttSettings(host=HOST, port=mosquitto.port), "test")
    seen: list[tuple[str, bool]] = []
    results: list[str] = []

    async def on_availability(pack: str, _: Availability) -> None:
        # a handler that asks for something at once hears the answer: every subscription is in
        seen.append((pack, backbone.connected))
        await backbone.publish(topics.RESULT, pack, result(pack))

    async def on_result(pack: str, result: CommandResult) -> None:
        results.append(result.transaction)

    backbone.subscribe(topics.AVAILABILITY, on_availability)
    backbone.subscribe(topics.RESULT, on_result, retained=False)
    async with backbone:
        await until(lambda: len(results) == 2)
    assert sorted(seen) == [("p1", True), ("p2", True)]
    assert sorted(results) == ["p1", "p2"]


async def test_the_backbone_comes_back_after_the_broker_and_says_so_once(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bmsgate_common.mqtt")
    backbone = Backbone(MqttSettings(host=HOST, port=mosquitto.port), "test")
    got: list[str] = []
    events: list[str] = []
    backbone.on_disconnect.append(lambda: events.append("lost"))
    backbone.on_reconnect.append(lambda: events.append("back"))

    async def on_availability(pack: str, _: Availability) -> None:
        got.append(pack)

    backbone.subscribe(topics.AVAILABILITY, on_availability, retained=False)
    async with backbone:
        mosquitto.stop()
        await until(lambda: not backbone.connected)
        assert not await backbone.publish(topics.RESULT, "p1", result("p1"))
        await asyncio.sleep(3)  # several attempts meet a closed port
        mosquitto.start()
        await until(lambda: backbone.connected, 20)
        async with aiomqtt.Client(HOST, mosquitto.port) as client:
            await client.subscribe(topics.SERVICE_STATUS.topic("test"), qos=1)
            await client.publish("bmsgate/bms/p9/availability", online("p9"), 1)
            await until(lambda: got == ["p9"])
            async with asyncio.timeout(10):  # the status is back without waiting for a heartbeat
                async for message in client.messages:
                    assert json.loads(message.payload)["state"] == "online"  # type: ignore[arg-type]
                    break
    assert events == ["lost", "back"]
    assert backbone.connects == 2 and backbone.unsent >= 1  # and the first status, if in flight
    lines = [r.getMessage() for r in caplog.records if r.name == "bmsgate_common.mqtt"]
    assert sum("unreachable" in line for line in lines) == 1, lines
    assert sum("backbone connected" in line for line in lines) == 1, lines
    assert not any(r.exc_info for r in caplog.records)


async def test_a_refused_login_is_an_error_the_caller_sees(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    (tmp_path / "passwd").write_text("")
    broker.conf.write_text(
        # stay this user: as root, mosquitto would switch to one that cannot read the file
        f"user {getpass.getuser()}\nlistener {broker.port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {tmp_path / 'passwd'}\npersistence false\n"
    )
    broker.start()
    try:
        cfg = MqttSettings(host=HOST, port=broker.port, username="nobody", password="wrong")
        backbone = Backbone(cfg, "cli", restartable=False)
        with pytest.raises(BROKER_ERRORS, match=r"not authorized|bad user name"):
            await backbone.connect()
        await backbone.close()
    finally:
        broker.stop()

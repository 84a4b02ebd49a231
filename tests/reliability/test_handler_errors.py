"""A message handler that raises is logged with its traceback, and the next message is handled."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiomqtt
import pytest

from bmsgate_common import topics
from bmsgate_common.models import Command
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import MqttSettings
from tests.reliability.counts import COUNTS
from tests.support.procs import Mosquitto

pytestmark = pytest.mark.integration


async def test_an_exception_in_a_handler_is_logged_and_the_service_goes_on(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[str] = []

    async def handler(name: str, cmd: Command) -> None:
        handled.append(cmd.transaction)
        if cmd.transaction == "bad":
            raise RuntimeError("a bug in a handler")

    backbone = Backbone(MqttSettings(host="127.0.0.1", port=mosquitto.port), "test")
    backbone.subscribe(topics.COMMAND, handler, retained=False)
    async with backbone, aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        for transaction in ("bad", "good"):
            body = f'{{"transaction": "{transaction}", "action": "reset"}}'
            await client.publish("bmsgate/bms/p1/set", body, qos=1)
        async with asyncio.timeout(10):
            while len(handled) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert handled == ["bad", "good"]
    assert len(failed) == 1 and "bmsgate/bms/p1/set" in failed[0].getMessage()
    assert failed[0].exc_info and "a bug in a handler" in str(failed[0].exc_info[1])
    COUNTS["handler exceptions logged with their traceback"] += len(failed)

"""A target's command that gets no result: one warning naming it, the true switch state again.

The publisher in-process on a real Mosquitto backbone (its own target is that broker too); nobody
plays the reader, so a command's result never comes, as when the broker died after taking it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from packages.outputs.tests.states import make_state

from bmsgate_common.models import CommandResult
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import Settings
from bmsgate_outputs.plan import TargetMessage
from bmsgate_publisher.service import Publisher
from tests.support.procs import Mosquitto

pytestmark = pytest.mark.integration
WAIT = 0.5  # [s] the publisher's wait for a result, short for the test
SWITCH = TargetMessage("p/garage/charge_mos", b"ON", 1, True)


def settings(port: int) -> Settings:
    return Settings.model_validate(
        {
            "mqtt": {"host": "127.0.0.1", "port": port},
            "control": {"enabled": True},
            "publisher": {"targets": [{"name": "ha", "topic_prefix": "p", "flat": True}]},
        }
    )


@pytest.fixture
async def publisher(mosquitto: Mosquitto) -> AsyncIterator[Publisher]:
    cfg = settings(mosquitto.port)
    backbone = Backbone(cfg.mqtt, "publisher")
    publisher = Publisher(cfg, backbone, result_wait=WAIT)
    await publisher.on_state("garage", make_state(ts=datetime.now(UTC)))  # charge MOS on
    async with backbone:
        forwarder = asyncio.create_task(publisher.forward_commands())
        yield publisher
        forwarder.cancel()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The publisher's own warnings (not the MQTT client's)."""
    return [r.getMessage() for r in caplog.records if r.name == "bmsgate_publisher.service"]


async def sent(publisher: Publisher) -> list[TargetMessage]:
    """What the target would get next (waits at most a second)."""
    mailbox = publisher.links["ha"].mailbox
    try:
        async with asyncio.timeout(1.0):
            return await mailbox.take()
    except TimeoutError:
        return []


async def test_no_result_is_one_warning_and_the_confirmed_state_again(
    publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    publisher.on_command("ha", "p/garage/charge_mos/set", b"OFF")
    assert publisher.counters()["waiting"] == 1
    _, command = publisher.commands.get_nowait()  # for the reader's log: who sent it, for whom
    assert (
        command.requested_by == f"mqtt-{publisher.backbone.cfg.username or 'anonymous'}:target-ha"
    )
    await asyncio.sleep(WAIT + 0.3)
    assert warnings(caplog) == [
        "garage: set_charge_mos (publisher-ha-1) not confirmed: no result within 0.5 s; "
        "showing the switch as the BMS reports it"
    ]
    out = await sent(publisher)
    assert SWITCH in out  # Home Assistant's switch flips back to the truth
    result = next(m for m in out if m.topic == "p/garage/charge_mos/result")
    body = json.loads(result.payload)  # the switch's attributes say why, until the next command
    assert result.retain and body["result"] == "command failed"
    assert body["error"] == "not confirmed: no result within 0.5 s"
    assert publisher.counters()["waiting"] == 0


async def test_a_result_settles_the_command_and_a_late_one_is_still_shown(
    publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for n in range(1, 4):
        publisher.on_command("ha", "p/garage/charge_mos/set", b"OFF")
        result = CommandResult(
            transaction=f"publisher-ha-{n}",
            pack="garage",
            action="set_charge_mos",
            status="ok",
            value=False,
            ts=datetime.now(UTC),
        )
        await publisher.on_result("garage", result)
    assert publisher.counters()["waiting"] == 0
    await asyncio.sleep(WAIT + 0.3)
    assert not warnings(caplog)  # settled: the timers were stopped
    assert TargetMessage("p/garage/charge_mos", b"OFF", 1, True) in await sent(publisher)
    # a result after the wait (offered again by the reader after a broker outage) still shows
    publisher.on_command("ha", "p/garage/charge_mos/set", b"ON")
    await asyncio.sleep(WAIT + 0.3)
    late = CommandResult(
        transaction="publisher-ha-4",
        pack="garage",
        action="set_charge_mos",
        status="ok",
        value=True,
        ts=datetime.now(UTC),
    )
    await publisher.on_result("garage", late)
    assert SWITCH in await sent(publisher)
    assert len(warnings(caplog)) == 1 and publisher.counters()["waiting"] == 0


async def test_backbone_away_is_one_warning_and_the_confirmed_state_again(
    publisher: Publisher, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.WARNING)
    mosquitto.stop()
    publisher.on_command("ha", "p/garage/charge_mos/set", b"OFF")
    await asyncio.sleep(WAIT + 0.3)
    messages = warnings(caplog)
    assert len(messages) == 1 and "(publisher-ha-1) not confirmed: " in messages[0], messages
    assert SWITCH in await sent(publisher)
    assert publisher.counters()["waiting"] == 0
    mosquitto.start()

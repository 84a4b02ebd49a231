"""The broker killed while Modbus writes and commands from an external broker are in flight.

The two command paths ``test_broker_kill.py`` leaves out, with the same fault: a real Mosquitto
as the backbone, the simulated DALY board on a pty, the services as processes with control on;
each round sends one command, kills the backbone broker (SIGKILL) a few milliseconds to half a
second later and starts it again two seconds later. Each command asks for the opposite of what
the BMS reports before its round, so every command is a real change.

- **Modbus**: a pymodbus client writes the charge MOS register (offset 17), its timeout longer
  than ``modbus.command_timeout``. Answered = the write acknowledged; failed = a Modbus exception
  (0x04, 0x0B). **Lost** = acknowledged while the BMS, read afterwards, says otherwise, or no
  answer at all from the server.
- **Publisher**: a second Mosquitto plays the user's broker (Home Assistant's), a publisher
  target that stays up; the command is ``ON``/``OFF`` on its switch topic. Answered = the switch
  state the publisher shows there afterwards is the commanded value and the BMS agrees; failed
  visibly = it shows the BMS's true, unchanged state and the publisher logged a warning naming
  the command. **Lost** = what the user's broker shows disagrees with the BMS, or the command
  neither took effect nor left a warning.

Lost must be 0, every service must come back online, and no service log holds a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from bmsgate.broker import free_port
from bmsgate_common import topics
from bmsgate_modbus.registers import BASE
from bmsgate_publisher.service import RESULT_WAIT
from tests.reliability.backbone import control_config, statuses
from tests.reliability.counts import COUNTS
from tests.support.mqtt import Listener, listen
from tests.support.procs import Mosquitto, Proc, start_service

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"
ROUNDS = 4
DOWN = 2.0  # [s] the broker stays away
# [s] from the command to the kill: two rounds early, while the command is in flight (the
# simulated board is switched and read back within about 0.1 s), two later
EARLY, LATE = (0.0, 0.02, 0.05), (0.1, 0.25, 0.5)
COMMAND_TIMEOUT = 2.0  # [s] modbus.command_timeout (its default)
CLIENT_TIMEOUT = 6.0  # [s] the Modbus client's own: longer than COMMAND_TIMEOUT
CHARGE_MOS = BASE + 17
SWITCH = "ha/garage/charge_mos"  # the publisher's switch state on the user's broker


def settings(
    tmp_path: Path, backbone: Mosquitto, daly_pty: str, modbus_port: int, **extra: Any
) -> Path:
    modbus = {
        "host": HOST,
        "port": modbus_port,
        "command_timeout": COMMAND_TIMEOUT,
        "write_clients": [HOST],
    }
    return control_config(tmp_path, backbone.port, daly_pty, modbus=modbus, **extra)


async def fresh_state(port: int, after: datetime, within: float = 30.0) -> dict[str, Any]:
    """The first state the reader publishes after ``after`` (a poll of the BMS: the truth)."""
    async with asyncio.timeout(within):
        while True:
            try:
                async with aiomqtt.Client(HOST, port, timeout=2) as client:
                    await client.subscribe(topics.STATE.topic("garage"), qos=1)
                    async for message in client.messages:
                        state: dict[str, Any] = json.loads(message.payload)  # type: ignore[arg-type]
                        if datetime.fromisoformat(state["ts"]) > after:
                            return state
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)  # the broker is starting again


async def until(check: Callable[[], Awaitable[Any]], within: float) -> Any:
    """Poll ``check()`` until it is truthy; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            if result := await check():
                return result
            await asyncio.sleep(0.1)


def kill_delays(seed: int) -> list[float]:
    """One delay per round [s]: half of them early, in random order."""
    rng = random.Random(seed)
    delays = rng.sample(EARLY, ROUNDS // 2) + rng.sample(LATE, ROUNDS - ROUNDS // 2)
    rng.shuffle(delays)
    return delays


async def kill_and_restart(broker: Mosquitto, after: float) -> datetime:
    """SIGKILL the broker ``after`` seconds, start it again after DOWN; when it went down."""
    await asyncio.sleep(after)
    broker.stop()  # SIGKILL: no will delivered by a clean stop, nothing flushed
    down_at = datetime.now(UTC)
    await asyncio.sleep(DOWN)
    broker.start()
    return down_at


def record(
    path: str, sent: str, kinds: tuple[str, ...], outcomes: Counter[str], lost: list[Any]
) -> str:
    """Add a test's outcomes to COUNTS, then check that none was lost; the key of its rows."""
    key = f"broker killed mid-command ({path})"
    COUNTS[f"{key}: {sent}"] += ROUNDS
    for kind in kinds:
        COUNTS[f"{key}: {kind}"] += outcomes[kind]
    COUNTS[f"{key}: lost"] += len(lost)
    assert not lost, lost
    assert sum(outcomes.values()) == ROUNDS, outcomes
    return key


def all_back(broker: Mosquitto, running: list[Proc], names: set[str]) -> int:
    """Every service online again (retained statuses) and no traceback in any log."""

    async def online() -> bool:
        found = {name: s["state"] for name, s in (await statuses(broker.port)).items()}
        return found == dict.fromkeys(names, "online")

    asyncio.run(until(online, 30))
    for proc in running:
        assert proc.alive() and "Traceback" not in proc.log(), proc.log()[-2000:]
    return len(names)


async def modbus_write(client: AsyncModbusTcpClient, value: int) -> tuple[str, Any]:
    """The Modbus caller: (outcome, detail)."""
    try:
        if not client.connected:
            await client.connect()
        reply = await client.write_register(CHARGE_MOS, value, device_id=1)
    except ModbusException as err:
        return "lost", f"no answer from the server: {err}"
    if reply.isError():
        return "failed", f"exception 0x{reply.exception_code:02X}"
    return "answered", value


async def modbus_current(client: AsyncModbusTcpClient) -> bool:
    """The Modbus service has a state from after the outage (state age, offset 59, at most 1 s)."""
    try:
        if not client.connected:
            await client.connect()
        reply = await client.read_holding_registers(BASE + 59, count=1, device_id=1)
    except ModbusException:
        return False
    return not reply.isError() and reply.registers[0] <= 1


def test_modbus_writes_when_the_broker_dies_are_answered_or_failed(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str, procs: list[Proc]
) -> None:
    port = free_port()
    config = settings(tmp_path, mosquitto, daly_pty, port)
    running = [start_service(tmp_path, name, config) for name in ("reader", "modbus")]
    procs += running
    delays = kill_delays(17)
    outcomes: Counter[str] = Counter()
    lost: list[Any] = []

    async def all_rounds() -> None:
        client = AsyncModbusTcpClient(HOST, port=port, timeout=CLIENT_TIMEOUT, retries=0)
        try:
            truth = await fresh_state(mosquitto.port, datetime.now(UTC))
            await until(lambda: modbus_current(client), 30)
            for n in range(ROUNDS):
                value = 0 if truth["charge_mos"] else 1
                write = asyncio.create_task(modbus_write(client, value))
                down_at = await kill_and_restart(mosquitto, delays[n])
                outcome, detail = await write
                truth = await fresh_state(mosquitto.port, down_at)
                outcomes[outcome] += 1
                if outcome == "lost":
                    lost.append((n, detail))
                elif outcome == "answered" and truth["charge_mos"] is not bool(value):
                    lost.append((n, f"acknowledged {value}, BMS reads {truth['charge_mos']}"))
                await until(lambda: modbus_current(client), 30)  # ready for the next round
        finally:
            client.close()

    asyncio.run(all_rounds())
    key = record("modbus", "writes sent", ("answered", "failed"), outcomes, lost)
    COUNTS[f"{key}: services online again afterwards"] += all_back(
        mosquitto, running, {"reader-0", "modbus"}
    )


def switch(seen: Listener) -> bool | None:
    """The charge MOS the user's broker shows last (the publisher's retained ON/OFF)."""
    shown = seen.on(SWITCH)
    return None if not shown else shown[-1] == b"ON"


def test_commands_from_an_external_broker_when_the_backbone_dies_are_answered_or_failed(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str, procs: list[Proc]
) -> None:
    (tmp_path / "ha").mkdir()
    external = Mosquitto(tmp_path / "ha")  # the user's broker: it stays up
    external.start()
    target = {
        "name": "ha",
        "host": HOST,
        "port": external.port,
        "topic_prefix": "ha",
        "interval": 1,
        "flat": True,
        "dongle": {"enabled": False},
    }
    config = settings(tmp_path, mosquitto, daly_pty, free_port(), publisher={"targets": [target]})
    running = [start_service(tmp_path, name, config) for name in ("reader", "publisher")]
    procs += running
    publisher = running[1]
    delays = kill_delays(19)
    outcomes: Counter[str] = Counter()
    lost: list[Any] = []
    unchanged: dict[str, int] = {}  # transaction -> round: no effect, a warning must name it

    def warned(transaction: str) -> bool:
        lines = publisher.log().splitlines()
        return any("WARNING" in line and f"({transaction})" in line for line in lines)

    async def one_round(n: int, truth: dict[str, Any], seen: Listener) -> dict[str, Any]:
        value = not truth["charge_mos"]
        transaction = f"publisher-ha-{n + 1}"  # the publisher counts its commands from 1
        async with aiomqtt.Client(HOST, external.port) as client:
            await client.publish("ha/garage/charge_mos/set", b"ON" if value else b"OFF", qos=1)
        down_at = await kill_and_restart(mosquitto, delays[n])
        truth = await fresh_state(mosquitto.port, down_at)
        try:  # the user's broker shows the BMS's state (new states keep it up to date)
            await seen.wait_for(lambda _: switch(seen) == truth["charge_mos"], 15)
        except AssertionError:
            lost.append((n, f"the user's broker shows {switch(seen)}, BMS {truth['charge_mos']}"))
            return truth
        if f"({transaction})" not in publisher.log():
            lost.append((n, f"{transaction} never reached the publisher"))
        elif truth["charge_mos"] is value:
            outcomes["answered"] += 1
        else:
            unchanged[transaction] = n  # failed visibly once its warning is found below
        return truth

    async def all_rounds() -> None:
        async with listen(external.port, SWITCH) as seen:
            truth = await fresh_state(mosquitto.port, datetime.now(UTC))
            await seen.wait_for(lambda _: switch(seen) == truth["charge_mos"], 30)
            for n in range(ROUNDS):
                truth = await one_round(n, truth, seen)
        # a command with no result is reported after RESULT_WAIT, counted from its sending
        with contextlib.suppress(TimeoutError):  # whatever is missing then is lost
            await until(lambda: asyncio.sleep(0, all(map(warned, unchanged))), RESULT_WAIT + 10)
        for transaction, n in unchanged.items():
            if warned(transaction):
                outcomes["failed visibly"] += 1
            else:
                lost.append((n, f"{transaction}: no effect and no warning"))

    try:
        asyncio.run(all_rounds())
        kinds = ("answered", "failed visibly")
        key = record("publisher", "commands sent", kinds, outcomes, lost)
        COUNTS[f"{key}: services online again afterwards"] += all_back(
            mosquitto, running, {"reader-0", "publisher"}
        )
    finally:
        external.stop()

"""The modbus service as a process: real Mosquitto, states published on the backbone, real clients."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import BaseModel
from pymodbus.client import AsyncModbusTcpClient, ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from services.modbus.tests.known import expected_block, known_daily, known_state

from bmsgate.broker import free_port
from bmsgate_common import topics
from bmsgate_common.models import CommandResult, PackState
from bmsgate_modbus.registers import BASE, SIZE, decode
from tests.support.procs import Mosquitto, Proc, start_service, wait_until, write_config

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"
SYSTEM_OFFSETS = {50, 51, 59}  # free memory, seconds counter, state age: the machine's


async def until(check: Callable[[], Awaitable[Any]], within: float = 10.0) -> Any:
    """Poll ``check()`` until it is truthy; fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            if result := await check():
                return result
            await asyncio.sleep(0.02)


def config(broker: Mosquitto, port: int, **modbus: Any) -> dict[str, Any]:
    return {
        "mqtt": {"host": HOST, "port": broker.port, "heartbeat": 2},
        "buses": [
            {
                "port": "/dev/null",  # the modbus service never opens it
                "protocol": "daly_classic",
                "packs": [
                    {"id": "garage"},
                    {"id": "shed", "address": 2},
                    {"id": "cellar", "address": 3},
                ],
            }
        ],
        "timezone": "UTC",
        "modbus": {"host": HOST, "port": port, "display": {"dashboards": 1}, **modbus},
    }


async def publish(broker: Mosquitto, *messages: tuple[str, str, BaseModel]) -> None:
    async with aiomqtt.Client(HOST, broker.port) as client:
        for kind, name, model in messages:
            spec = topics.TOPICS[kind]
            await client.publish(
                spec.topic(name),
                model.model_dump_json(exclude_none=True),
                qos=1,
                retain=spec.retained,
            )


def now_state(pack: str = "garage", **over: Any) -> PackState:
    return known_state(pack, ts=datetime.now(UTC), **over)


def read(port: int, unit: int, address: int = BASE, count: int = SIZE) -> Any:
    client = ModbusTcpClient(HOST, port=port, timeout=2, retries=0)
    try:
        assert client.connect()
        return client.read_holding_registers(address, count=count, device_id=unit)
    finally:
        client.close()


def start(tmp_path: Path, procs: list[Proc], data: dict[str, Any]) -> Proc:
    proc = start_service(tmp_path, "modbus", write_config(tmp_path, data))
    procs.append(proc)
    return proc


def test_the_map_over_the_backbone(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> None:
    port = free_port()
    proc = start(tmp_path, procs, config(mosquitto, port))
    state = now_state()
    asyncio.run(
        publish(
            mosquitto,
            ("state", "garage", state),
            ("daily", "garage", known_daily().model_copy(update={"day": state.ts.date()})),
            ("state", "shed", now_state("shed", soc=55.0)),
        )
    )

    def complete() -> Any:  # the three messages travel on separate subscriptions: any order
        reply = read(port, 1)
        return not reply.isError() and reply.registers[40] and not read(port, 2).isError() and reply

    reply = wait_until(complete, timeout=20)
    want = expected_block(SIZE)
    got = reply.registers
    for offset in range(SIZE):
        if offset not in SYSTEM_OFFSETS:
            assert got[offset] == want[offset], f"offset {offset}"
    assert got[50] == 65535  # a server always has more free memory than 16 bits show
    assert got[59] <= 5
    assert read(port, 2, count=1).registers == [55]
    assert read(port, 3).exception_code == ExcCodes.GATEWAY_NO_RESPONSE  # cellar: never seen
    assert read(port, 9).exception_code == ExcCodes.GATEWAY_PATH_UNAVIABLE
    assert read(port, 1, BASE + SIZE, 1).exception_code == ExcCodes.ILLEGAL_ADDRESS

    if shutil.which("mbpoll"):
        # fmt: off
        done = subprocess.run(
            ["mbpoll", "-m", "tcp", "-p", str(port), "-0", "-1", "-a", "1", "-t", "4:float",
             "-r", str(BASE + 10), "-c", "1", HOST],
            capture_output=True, text=True, timeout=20, check=False,
        )
        # fmt: on
        assert "[154]: \t53.25" in done.stdout, done.stdout + done.stderr

    # a new state shows up at once (the 100 ms budget is measured in bench/, not here)
    asyncio.run(publish(mosquitto, ("state", "garage", now_state(soc=42.0, pack_voltage=50.0))))
    wait_until(lambda: read(port, 1, count=2).registers == [42, 5000], timeout=10, interval=0.02)

    # control is off: every write is refused, nothing reaches the backbone
    client = ModbusTcpClient(HOST, port=port, timeout=2, retries=0)
    assert client.connect()
    refused = client.write_register(BASE + 17, 1, device_id=1)
    client.close()
    assert refused.isError() and refused.exception_code == ExcCodes.ILLEGAL_FUNCTION
    assert f"write from {HOST} to unit 1 offset 17 values [1] refused: control is off" in proc.log()

    # offline: the last values stay, the failure flag goes up
    asyncio.run(publish(mosquitto, ("availability", "garage", offline("garage"))))
    wait_until(lambda: read(port, 1, BASE + 45, 1).registers == [1], timeout=10)
    assert read(port, 1, count=1).registers == [42]
    assert proc.alive() and "Traceback" not in proc.log()


def offline(pack: str) -> BaseModel:
    from bmsgate_common.models import Availability

    return Availability(pack=pack, state="offline", ts=datetime.now(UTC), reason="no answer")


async def _commands(broker: Mosquitto, seen: list[dict[str, Any]], ready: asyncio.Event) -> None:
    async with aiomqtt.Client(HOST, broker.port) as client:
        await client.subscribe("bmsgate/bms/+/set", qos=1)
        ready.set()
        async for message in client.messages:
            seen.append({"topic": str(message.topic), **json.loads(message.payload)})  # type: ignore[arg-type]


async def watch_commands(
    broker: Mosquitto,
) -> tuple[list[dict[str, Any]], asyncio.Task[None]]:
    """The commands seen on the backbone from now on, and the task to cancel at the end."""
    seen: list[dict[str, Any]] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(_commands(broker, seen, ready))
    await ready.wait()
    return seen, listener


def result_for(command: dict[str, Any], status: str = "ok", **over: Any) -> CommandResult:
    """The reader's answer to ``command`` (as seen on the backbone)."""
    # fmt: off
    data: dict[str, Any] = {
        "transaction": command["transaction"], "pack": command["topic"].split("/")[2],
        "action": command["action"], "status": status, "ts": datetime.now(UTC),
        "value": command["value"] if status == "ok" else None,
        "error": None if status == "ok" else "the BMS reports False afterwards",
    }
    # fmt: on
    return CommandResult(**(data | over))


async def connected(port: int, wait: float = 2) -> AsyncModbusTcpClient:
    """A client (``wait``: its timeout [s]) that has read unit 1's MOS registers once."""
    client = AsyncModbusTcpClient(HOST, port=port, timeout=wait, retries=0)

    async def readable() -> bool:
        if not await client.connect():
            return False
        reply = await client.read_holding_registers(BASE + 16, count=2, device_id=1)
        return not reply.isError()

    await until(readable, 20)
    return client


async def test_mos_write_is_acknowledged_when_the_bms_confirms_it(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    port = free_port()
    data = config(mosquitto, port, units={1: "garage", 2: "bank"}, write_clients=[HOST])
    data["banks"] = [{"id": "bank", "packs": ["garage", "shed"]}]
    data["control"] = {"enabled": True}
    proc = start(tmp_path, procs, data)
    await publish(mosquitto, ("state", "garage", now_state()), ("state", "shed", now_state("shed")))
    seen, listener = await watch_commands(mosquitto)
    writer, reader = await connected(port, wait=5), await connected(port)
    await until(lambda: serving(mosquitto), 20)
    try:
        assert (await reader.read_holding_registers(BASE + 16, count=2, device_id=1)).registers == [
            1,
            0,
        ]
        write = asyncio.create_task(writer.write_register(BASE + 17, 1, device_id=1))  # charge on
        await until(lambda: asyncio.sleep(0, bool(seen)))
        command = seen[0]
        assert command["topic"] == "bmsgate/bms/garage/set"
        assert command["action"] == "set_charge_mos" and command["value"] is True
        assert command["transaction"].startswith("modbus-1-")
        # not confirmed yet: no answer to the writer, the register still shows the BMS's state
        await asyncio.sleep(0.3)
        assert not write.done()
        assert (await reader.read_holding_registers(BASE + 17, count=1, device_id=1)).registers == [
            0
        ]
        await publish(mosquitto, ("result", "garage", result_for(command)))
        ok = await write
        assert not ok.isError(), ok
        # the confirmed state shows at once
        assert (await reader.read_holding_registers(BASE + 17, count=1, device_id=1)).registers == [
            1
        ]

        # one function-16 write of both registers: two commands, acknowledged when both are ok
        both = asyncio.create_task(writer.write_registers(BASE + 16, [0, 1], device_id=1))
        await until(lambda: asyncio.sleep(0, len(seen) == 3))
        assert [(c["action"], c["value"]) for c in seen[1:]] == [
            ("set_discharge_mos", False),
            ("set_charge_mos", True),
        ]
        await publish(mosquitto, ("result", "garage", result_for(seen[1])))
        await asyncio.sleep(0.3)
        assert not both.done()  # one of two confirmed
        await publish(mosquitto, ("result", "garage", result_for(seen[2])))
        assert not (await both).isError()

        for unit, address, value, code in [
            (1, BASE, 1, ExcCodes.ILLEGAL_ADDRESS),  # SOC is read-only
            (1, BASE + 16, 2, ExcCodes.ILLEGAL_VALUE),
            (2, BASE + 16, 0, ExcCodes.ILLEGAL_ADDRESS),  # a bank's registers are read-only
            (9, BASE + 16, 0, ExcCodes.GATEWAY_PATH_UNAVIABLE),
        ]:
            reply = await writer.write_register(address, value, device_id=unit)
            assert reply.isError() and reply.exception_code == code, (unit, address, reply)
        assert len(seen) == 3
        bank = await reader.read_holding_registers(BASE, count=4, device_id=2)
        assert bank.registers[0] == 87 and decode(bank.registers[2:3], "s16", 10, "big") == -25.0
    finally:
        writer.close()
        reader.close()
        listener.cancel()
    assert proc.alive() and "Traceback" not in proc.log()


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # the kernel prints each 32-bit word in host (little-endian) order
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(str(ipaddress.ip_address(words)))
    return found


def mbpoll_write(port: int, address: int, value: int) -> subprocess.CompletedProcess[str]:
    # fmt: off
    return subprocess.run(
        ["mbpoll", "-m", "tcp", "-p", str(port), "-a", "1", "-t", "4", "-r", str(address),
         "-0", "-1", "-o", "5", HOST, str(value)],
        capture_output=True, text=True, timeout=20, check=False,
    )
    # fmt: on


async def test_with_control_on_a_write_from_an_unnamed_client_is_refused_and_logged(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    """The LAN attack: control enabled, one write to the MOS register from any host.

    Only ``modbus.write_clients`` may write (default: nobody); mbpoll and pymodbus from
    127.0.0.1 are refused, a client from 127.0.0.2 (named) is accepted; each write is logged
    with the client's address. By default the server listens on loopback only.
    """
    port = free_port()
    data = config(mosquitto, port)
    del data["modbus"]["host"]  # the default
    data["control"] = {"enabled": True}
    proc = start(tmp_path, procs, data)
    await publish(mosquitto, ("state", "garage", now_state()))
    seen, listener = await watch_commands(mosquitto)
    client = await connected(port)
    try:
        assert listening_addresses(port) == {"127.0.0.1"}
        done = mbpoll_write(port, BASE + 16, 0)  # discharge MOS off, as in the attack
        assert done.returncode != 0 and "Illegal function" in done.stderr, done.stdout
        reply = await client.write_register(BASE + 17, 0, device_id=1)
        assert reply.exception_code == ExcCodes.ILLEGAL_FUNCTION, reply
        log = proc.log()
        for offset, value in ((16, 0), (17, 0)):
            line = f"write from {HOST} to unit 1 offset {offset} values [{value}] refused: "
            assert line + "client not in modbus.write_clients" in log, log
        # a flood of writes: each refused, the first 10 of the client logged one by one
        for _ in range(40):
            flood = await client.write_register(BASE + 16, 0, device_id=1)
            assert flood.exception_code == ExcCodes.ILLEGAL_FUNCTION
        assert proc.log().count(f"write from {HOST} to unit 1") == 10
    finally:
        client.close()

    # named: the same service accepts the write of a client at 127.0.0.2, and logs it
    proc.stop()
    data["modbus"]["write_clients"] = ["127.0.0.2", "192.168.7.0/24"]
    proc = start(tmp_path, procs, data)
    named = AsyncModbusTcpClient(
        HOST, port=port, timeout=5, retries=0, source_address=("127.0.0.2", 0)
    )
    try:
        await until(lambda: named.connect(), 20)
        await until(lambda: readable(named), 20)
        await until(lambda: serving(mosquitto), 20)
        write = asyncio.create_task(named.write_register(BASE + 17, 1, device_id=1))
        await until(lambda: asyncio.sleep(0, bool(seen)))
        assert seen[0]["action"] == "set_charge_mos" and seen[0]["value"] is True
        await publish(mosquitto, ("result", "garage", result_for(seen[0])))
        assert not (await write).isError()
        assert mbpoll_write(port, BASE + 16, 0).returncode != 0  # 127.0.0.1 still is not named
    finally:
        named.close()
        listener.cancel()
    log = proc.log()
    assert "write from 127.0.0.2 to unit 1 offset 17 values [1] accepted for garage" in log
    assert (
        f"set_charge_mos True sent to garage ({seen[0]['transaction']}, asked by 127.0.0.2)" in log
    )
    assert f"write from {HOST} to unit 1 offset 16 values [0] refused" in log
    assert len(seen) == 1 and proc.alive() and "Traceback" not in log


async def readable(client: AsyncModbusTcpClient) -> bool:
    reply = await client.read_holding_registers(BASE + 16, count=2, device_id=1)
    return not reply.isError()


async def serving(broker: Mosquitto) -> bool:
    """Whether the modbus service says it is online: its backbone is up, every subscription made
    (before that it refuses writes, since a command's result could not be heard)."""
    async with aiomqtt.Client(HOST, broker.port) as client:
        await client.subscribe(topics.SERVICE_STATUS.topic("modbus"), qos=1)
        try:
            async with asyncio.timeout(1):
                async for message in client.messages:
                    return bool(json.loads(message.payload)["state"] == "online")  # type: ignore[arg-type]
        except TimeoutError:
            return False
    return False


async def modbus_status(broker: Mosquitto) -> dict[str, Any]:
    """The modbus service's retained status detail."""
    async with aiomqtt.Client(HOST, broker.port) as client:
        await client.subscribe(topics.SERVICE_STATUS.topic("modbus"), qos=1)
        async for message in client.messages:
            detail: dict[str, Any] = json.loads(message.payload)["detail"]  # type: ignore[arg-type]
            return detail
    return {}


async def test_a_failed_or_unanswered_command_is_a_modbus_exception(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    port = free_port()
    data = config(mosquitto, port, command_timeout=0.5, write_clients=[HOST])
    data["control"] = {"enabled": True}
    proc = start(tmp_path, procs, data)
    await publish(mosquitto, ("state", "garage", now_state()))
    seen, listener = await watch_commands(mosquitto)
    client = await connected(port, wait=5)
    await until(lambda: serving(mosquitto), 20)
    try:
        # the reader reports an error: DEVICE_FAILURE, the register keeps the BMS's state
        write = asyncio.create_task(client.write_register(BASE + 17, 1, device_id=1))
        await until(lambda: asyncio.sleep(0, bool(seen)))
        await publish(mosquitto, ("result", "garage", result_for(seen[0], "error", value=False)))
        failed = await write
        assert failed.isError() and failed.exception_code == ExcCodes.DEVICE_FAILURE, failed
        assert (await client.read_holding_registers(BASE + 17, count=1, device_id=1)).registers == [
            0
        ]

        # nobody answers: GATEWAY_NO_RESPONSE after modbus.command_timeout, not the client's 5 s
        started = asyncio.get_running_loop().time()
        silent = await client.write_register(BASE + 16, 0, device_id=1)
        took = asyncio.get_running_loop().time() - started
        assert silent.isError() and silent.exception_code == ExcCodes.GATEWAY_NO_RESPONSE, silent
        assert 0.5 <= took < 2.0, took
        assert len(seen) == 2 and seen[1]["action"] == "set_discharge_mos"
        assert f"no result for {seen[1]['transaction']} within 0.5 s" in proc.log()

        # its result comes late (the reader offers it again after a broker outage): noted, the
        # register shows the confirmed state, nothing waits for it any more
        await publish(mosquitto, ("result", "garage", result_for(seen[1])))
        late = f"garage: result of {seen[1]['transaction']} came after its write was answered"
        await until(lambda: asyncio.sleep(0, late in proc.log()))
        assert (await client.read_holding_registers(BASE + 16, count=1, device_id=1)).registers == [
            0
        ]
        # many unanswered writes leave nothing behind
        for _ in range(5):
            reply = await client.write_register(BASE + 17, 1, device_id=1)
            assert reply.exception_code == ExcCodes.GATEWAY_NO_RESPONSE
        await asyncio.sleep(2.5)  # a heartbeat (mqtt.heartbeat: 2 s) with the counters
        detail = await modbus_status(mosquitto)
        assert detail["waiting"] == 0 and detail["commands"] == 7, detail
    finally:
        client.close()
        listener.cancel()
    assert proc.alive() and "Traceback" not in proc.log()


async def test_a_write_through_the_real_reader(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str, procs: list[Proc]
) -> None:
    port = free_port()
    data = config(mosquitto, port, write_clients=[HOST])
    data["buses"] = [
        {
            "port": daly_pty,
            "protocol": "daly_classic",
            "poll_interval": 0.5,
            "packs": [{"id": "garage"}],
        }
    ]
    data["control"] = {"enabled": True}
    path = write_config(tmp_path, data)
    procs.append(start_service(tmp_path, "reader", path))
    proc = start(tmp_path, procs, data)
    client = await connected(port, wait=5)
    await until(lambda: serving(mosquitto), 20)
    try:
        for value in (0, 1):
            reply = await client.write_register(BASE + 17, value, device_id=1)
            assert not reply.isError(), reply
            got = await client.read_holding_registers(BASE + 17, count=1, device_id=1)
            assert got.registers == [value]  # acknowledged means the BMS reads it back
    finally:
        client.close()
    assert proc.alive() and "Traceback" not in proc.log()


class Sink:
    """A bare pymodbus server standing in for another device that bmsgate pushes to."""

    def __init__(self) -> None:
        self.port = 0  # the system's choice, read once it listens
        self.server = ModbusTcpServer(
            SimDevice(id=5, simdata=[SimData(0, count=400, datatype=DataType.REGISTERS)]),
            address=(HOST, 0),
        )

    async def registers(self, address: int, count: int) -> list[int]:
        return await self.server.async_getValues(5, 3, address, count)  # type: ignore[no-any-return]


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    await s.server.serve_forever(background=True)
    s.port = s.server.transport.sockets[0].getsockname()[1]
    yield s
    await s.server.shutdown()  # type: ignore[no-untyped-call]


async def test_push_to_other_servers_survives_dead_and_silent_ones(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc], sink: Sink
) -> None:
    silent = await asyncio.start_server(lambda r, w: None, HOST, 0)  # accepts, never answers
    silent_port = silent.sockets[0].getsockname()[1]
    values = [
        {"pack": "garage", "value": "soc", "address": 10},
        {"pack": "garage", "value": "pack_voltage", "address": 11, "type": "u16", "scale": 100},
        {"pack": "garage", "value": "current", "address": 12, "type": "float32"},
        {"pack": "shed", "value": "cell_3", "address": 100, "type": "u16"},
    ]
    push = [
        {"host": HOST, "port": free_port(), "unit": 5, "values": values, "timeout": 0.5},  # dead
        {"host": HOST, "port": silent_port, "unit": 5, "values": values, "timeout": 0.5},
        {"host": HOST, "port": sink.port, "unit": 5, "values": values, "timeout": 0.5},
    ]
    proc = start(tmp_path, procs, config(mosquitto, free_port(), enabled=False, push=push))
    await publish(mosquitto, ("state", "garage", now_state()), ("state", "shed", now_state("shed")))

    async def pushed(sink: Sink, address: int, want: list[int]) -> bool:
        return await sink.registers(address, len(want)) == want

    await until(lambda: pushed(sink, 10, [87, 5325, 0xC148, 0x0000]), 20)
    await until(lambda: pushed(sink, 100, [3303]))  # the second write of the same round
    # every state goes out while the other two targets keep failing
    await publish(mosquitto, ("state", "garage", now_state(soc=12.0)))
    await until(lambda: pushed(sink, 10, [12]))
    # the sink restarts: the push reconnects by itself
    await sink.server.shutdown()  # type: ignore[no-untyped-call]
    restarted = Sink()
    restarted.port = sink.port
    restarted.server = ModbusTcpServer(
        SimDevice(id=5, simdata=[SimData(0, count=400, datatype=DataType.REGISTERS)]),
        address=(HOST, sink.port),
    )
    await restarted.server.serve_forever(background=True)
    try:
        async with asyncio.timeout(30):
            n = 20
            while await restarted.registers(10, 1) != [n]:
                n = 20 if n == 21 else 21
                await publish(mosquitto, ("state", "garage", now_state(soc=float(n))))
                await asyncio.sleep(0.3)
    finally:
        await restarted.server.shutdown()  # type: ignore[no-untyped-call]
        silent.close()
    # the silent server is given up on after its timeout, without having held up the sink
    await until(lambda: asyncio.sleep(0, f"push {HOST}:{silent_port}/5 unreachable" in proc.log()))
    assert "Traceback" not in proc.log()


def run_once(tmp_path: Path, data: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp_path, data, "once.yaml")
    # fmt: off
    return subprocess.run(
        [sys.executable, "-m", "bmsgate_modbus", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    # fmt: on


def test_a_busy_port_is_one_line_and_exit_1(tmp_path: Path, mosquitto: Mosquitto) -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_once(tmp_path, config(mosquitto, port))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"bmsgate modbus: cannot listen on {HOST}:{port}: the port is in use by another program "
        f"(see: ss -ltnp 'sport = :{port}'); stop it or set modbus.port"
    )
    assert "Traceback" not in done.stderr


def test_a_bad_modbus_config_is_one_line_and_exit_2(tmp_path: Path, mosquitto: Mosquitto) -> None:
    data = config(mosquitto, free_port(), units={1: "garage", 2: "attic"})
    done = run_once(tmp_path, data)
    assert done.returncode == 2
    assert done.stderr == "bmsgate modbus: modbus.units.2: no pack or bank 'attic' is configured\n"

"""The register server on a real socket, read by pymodbus's client and by Debian's mbpoll."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from services.modbus.tests.known import NOW, expected_block, known_daily, known_state

from bmsgate_common.settings import ModbusDisplaySettings
from bmsgate_modbus.logic import MapOptions, RegisterStore, write_commands
from bmsgate_modbus.registers import BASE, SIZE
from bmsgate_modbus.server import RegisterServer, listen_problem
from tests.support.needs import missing, needs

HOST = "127.0.0.1"
UNITS = {1: "garage", 2: "shed", 3: "cellar"}  # cellar never sends a state
needs_mbpoll = needs(shutil.which("mbpoll"), "mbpoll is not installed")


class Served:
    def __init__(self, store: RegisterStore, server: RegisterServer) -> None:
        self.store = store
        self.server = server
        self.port = server.port
        self.writes: list[tuple[int, int, list[int]]] = []
        self.clients: list[str] = []  # who asked for each write


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    store = RegisterStore(
        UNITS, {}, MapOptions(tz=UTC, display=ModbusDisplaySettings(dashboards=1))
    )
    store.on_state(known_state())
    store.on_daily(known_daily())
    store.on_state(known_state("shed", soc=55.0, pack_voltage=26.5))
    store.set_system(uptime=70000, free_memory=1e9, now=NOW)
    store.refresh(NOW)

    async def on_write(client: str, unit: int, offset: int, values: list[int]) -> ExcCodes | None:
        box.clients.append(client)
        answer = write_commands(offset, values)
        if isinstance(answer, ExcCodes):
            return answer
        box.writes.append((unit, offset, values))
        return None

    server = RegisterServer(store, HOST, 0, on_write)
    await server.start()
    box = Served(store, server)
    yield box
    await server.stop()


@pytest.fixture
async def client(served: Served) -> AsyncIterator[AsyncModbusTcpClient]:
    c = AsyncModbusTcpClient(HOST, port=served.port, timeout=2, retries=0)
    assert await c.connect()
    yield c
    c.close()


async def test_every_register_of_a_known_state_with_pymodbus(client: AsyncModbusTcpClient) -> None:
    reply = await client.read_holding_registers(BASE, count=SIZE, device_id=1)
    assert not reply.isError(), reply
    assert reply.registers == expected_block(SIZE)
    # input registers (function 4) serve the same values
    reply4 = await client.read_input_registers(BASE, count=SIZE, device_id=1)
    assert reply4.registers == expected_block(SIZE)
    # any window of the block reads the same values
    part = await client.read_holding_registers(BASE + 8, count=8, device_id=1)
    assert part.registers == expected_block(SIZE)[8:16]
    assert client.convert_from_registers(
        part.registers[2:4], client.DATATYPE.FLOAT32, word_order="little"
    ) == pytest.approx(53.25)


async def test_units_select_packs(client: AsyncModbusTcpClient) -> None:
    shed = await client.read_holding_registers(BASE, count=2, device_id=2)
    assert shed.registers == [55, 2650]
    never = await client.read_holding_registers(BASE, count=2, device_id=3)
    assert never.isError() and never.exception_code == ExcCodes.GATEWAY_NO_RESPONSE
    for unit in (0, 4, 9, 247, 255):
        unknown = await client.read_holding_registers(BASE, count=2, device_id=unit)
        assert unknown.isError() and unknown.exception_code == ExcCodes.GATEWAY_PATH_UNAVIABLE


@pytest.mark.parametrize(
    ("address", "count"),
    [(0, 1), (BASE - 1, 1), (BASE - 1, 2), (BASE + SIZE, 1), (BASE + SIZE - 1, 2), (65535, 1)],
)
async def test_illegal_addresses(client: AsyncModbusTcpClient, address: int, count: int) -> None:
    for read in (client.read_holding_registers, client.read_input_registers):
        reply = await read(address, count=count, device_id=1)
        assert reply.isError() and reply.exception_code == ExcCodes.ILLEGAL_ADDRESS


async def test_coils_are_not_part_of_the_map(client: AsyncModbusTcpClient) -> None:
    reply = await client.read_coils(BASE, count=1, device_id=1)
    assert reply.isError() and reply.exception_code == ExcCodes.ILLEGAL_FUNCTION


async def test_writes_reach_the_handler_and_the_register_keeps_the_confirmed_state(
    served: Served, client: AsyncModbusTcpClient
) -> None:
    echo = await client.write_register(BASE + 17, 1, device_id=1)  # charge MOS on
    assert not echo.isError() and echo.registers == [1]  # function 6 echoes the request
    assert served.writes == [(1, 17, [1])]
    after = await client.read_holding_registers(BASE + 16, count=2, device_id=1)
    assert after.registers == [1, 0]  # unchanged until the BMS confirms
    both = await client.write_registers(BASE + 16, [0, 1], device_id=1)
    assert not both.isError()
    assert served.writes[-1] == (1, 16, [0, 1])
    bad = await client.write_register(BASE + 16, 7, device_id=1)
    assert bad.isError() and bad.exception_code == ExcCodes.ILLEGAL_VALUE
    elsewhere = await client.write_register(BASE, 50, device_id=1)
    assert elsewhere.isError() and elsewhere.exception_code == ExcCodes.ILLEGAL_ADDRESS
    assert len(served.writes) == 2
    soc = await client.read_holding_registers(BASE, count=1, device_id=1)
    assert soc.registers == [87]


async def test_sixteen_clients_never_see_a_torn_or_mixed_state(served: Served) -> None:
    store = served.store
    states = [known_state(), known_state(pack_voltage=48.5, current=101.3, power=4913.05, soc=12.0)]
    blocks = []
    for state in states:
        store.on_state(state)
        store.refresh(NOW)
        blocks.append(store.block(1))
    stop = asyncio.Event()
    flips = 0

    async def flip() -> None:
        nonlocal flips
        while not stop.is_set():
            store.on_state(states[flips % 2])
            store.refresh(NOW, {"garage"})
            flips += 1
            await asyncio.sleep(0)

    async def reader() -> set[int]:
        seen: set[int] = set()
        c = AsyncModbusTcpClient(HOST, port=served.port, timeout=5, retries=0)
        assert await c.connect()
        try:
            for _ in range(40):
                reply = await c.read_holding_registers(BASE, count=SIZE, device_id=1)
                assert not reply.isError(), reply
                assert reply.registers in blocks, "a block mixing two states"
                seen.add(blocks.index(reply.registers))
        finally:
            c.close()
        return seen

    flipper = asyncio.create_task(flip())
    results = await asyncio.gather(*(reader() for _ in range(16)))
    stop.set()
    await flipper
    assert flips > 10
    assert set().union(*results) == {0, 1}, "both states were served"


async def test_malformed_requests_do_not_hurt_the_server(
    served: Served, client: AsyncModbusTcpClient
) -> None:
    junk = [
        b"\x00",
        b"\xff" * 300,
        struct.pack(">HHHB", 1, 0, 2, 1) + b"\x55",  # unknown function code
        struct.pack(">HHHBBHH", 2, 0, 6, 1, 3, BASE, 0),  # count 0
        struct.pack(">HHHBBHH", 3, 0, 6, 1, 3, BASE, 2000),  # count above 125
        struct.pack(">HHHBBHH", 4, 7, 6, 1, 3, BASE, 1),  # protocol id 7
        struct.pack(">HHHBB", 5, 0, 200, 1, 16) + b"\x00" * 10,  # length lies
    ]
    for data in junk:
        reader, writer = await asyncio.open_connection(HOST, served.port)
        writer.write(data)
        await writer.drain()
        answer = await drain(reader, 0.3)  # an exception reply, a close, or silence
        assert len(answer) < 300
        writer.close()
    reply = await client.read_holding_registers(BASE, count=2, device_id=1)
    assert reply.registers == [87, 5325]


async def drain(reader: asyncio.StreamReader, within: float) -> bytes:
    got = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(within):
            while chunk := await reader.read(1024):
                got += chunk
    return got


def mbpoll(port: int, *args: str, values: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    # mbpoll wants the values after the host (LIBS.md section 3); -0: 0-based, -1: poll once
    return subprocess.run(
        ["mbpoll", "-m", "tcp", "-p", str(port), "-0", "-1", "-o", "2", *args, HOST, *values],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def mbpoll_values(out: str) -> dict[int, str]:
    return {int(a): v for a, v in re.findall(r"^\[(\d+)\]:\s+(\S+)", out, re.MULTILINE)}


async def run_mbpoll(
    port: int, *args: str, values: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(mbpoll, port, *args, values=values)


@needs_mbpoll
async def test_every_register_of_a_known_state_with_mbpoll(served: Served) -> None:
    want = expected_block(SIZE)
    for table in ("4", "3"):  # holding, input
        done = await run_mbpoll(
            served.port, "-a", "1", "-t", table, "-r", str(BASE), "-c", str(SIZE)
        )
        assert done.returncode == 0, done.stderr
        got = {a: int(v) for a, v in mbpoll_values(done.stdout).items()}
        assert got == {BASE + i: v for i, v in enumerate(want)}
    # mbpoll's float default is low word first: the dongle's "little endian" reads right as is
    floats = await run_mbpoll(
        served.port, "-a", "1", "-t", "4:float", "-r", str(BASE + 8), "-c", "4"
    )
    assert mbpoll_values(floats.stdout) == {
        152: "21.5",
        154: "53.25",
        156: "-12.5",
        158: "-665.625",
    }
    shed = await run_mbpoll(served.port, "-a", "2", "-r", str(BASE), "-c", "2")
    assert mbpoll_values(shed.stdout) == {144: "55", 145: "2650"}


@needs_mbpoll
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("-a", "9", "-r", str(BASE)), "Gateway path unavailable"),
        (("-a", "3", "-r", str(BASE)), "Target device failed to respond"),
        (("-a", "1", "-r", str(BASE - 1)), "Illegal data address"),
        (("-a", "1", "-r", str(BASE + SIZE)), "Illegal data address"),
        (("-a", "1", "-t", "0", "-r", str(BASE)), "Illegal function"),
    ],
)
async def test_mbpoll_sees_the_exceptions(
    served: Served, args: tuple[str, ...], error: str
) -> None:
    done = await run_mbpoll(served.port, *args)
    assert done.returncode != 0
    assert error in done.stderr


@needs_mbpoll
async def test_mbpoll_writes_a_mos_register(served: Served) -> None:
    done = await run_mbpoll(served.port, "-a", "1", "-r", str(BASE + 16), values=("0",))
    assert done.returncode == 0, done.stderr
    assert served.writes == [(1, 16, [0])]
    assert served.clients == [HOST]  # the handler learns who asked


async def test_the_write_handler_learns_each_clients_address(served: Served) -> None:
    """Two connections from two loopback addresses: each write carries its own peer."""
    first = AsyncModbusTcpClient(HOST, port=served.port, timeout=2, retries=0)
    other = AsyncModbusTcpClient(
        HOST, port=served.port, timeout=2, retries=0, source_address=("127.0.0.2", 0)
    )
    try:
        assert await first.connect() and await other.connect()
        await asyncio.gather(
            first.write_register(BASE + 16, 1, device_id=1),
            other.write_register(BASE + 17, 1, device_id=1),
        )
        assert not (await other.write_register(BASE + 16, 0, device_id=1)).isError()
    finally:
        first.close()
        other.close()
    assert sorted(zip(served.clients, served.writes, strict=True)) == [
        ("127.0.0.1", (1, 16, [1])),
        ("127.0.0.2", (1, 16, [0])),
        ("127.0.0.2", (1, 17, [1])),
    ]


def test_port_in_use_is_explained() -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        problem = listen_problem(HOST, port)
    assert problem is not None and not problem.lasting
    assert f"cannot listen on {HOST}:{port}" in str(problem)
    assert "in use" in str(problem) and "modbus.port" in str(problem)


def test_unknown_host_is_explained() -> None:
    problem = listen_problem("no-such-host.invalid", 5020)
    assert problem is not None and problem.lasting and "modbus.host" in str(problem)


@needs(shutil.which("setpriv"), "util-linux setpriv is not installed")
def test_privileged_port_without_the_capability_is_explained() -> None:
    # drop CAP_NET_BIND_SERVICE from the bounding set: even root then cannot bind below 1024
    # fmt: off
    probe = subprocess.run(
        ["setpriv", "--bounding-set=-net_bind_service", sys.executable, "-c",
         "from bmsgate_modbus.server import listen_problem as p; e = p('127.0.0.1', 502); "
         "print(e and f'{e.lasting} {e}')"],
        capture_output=True, text=True, check=False, timeout=30,
    )
    # fmt: on
    if probe.returncode != 0:
        missing(f"setpriv cannot drop capabilities here: {probe.stderr.strip()}")
    line = probe.stdout.strip()
    if line == "None" or "in use" in line:
        ports = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        missing(f"port 502 is not privileged here ({ports.read_text().strip()}) or in use")
    assert line.startswith("True ") and "permission denied" in line
    assert "CAP_NET_BIND_SERVICE" in line and "modbus.port" in line

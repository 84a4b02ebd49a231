"""Modbus server throughput and update latency: ``uv run python bench/modbus_bench.py``.

1. Reads per second of a unit's whole block (80 registers, function 3) with 1 and 16 concurrent
   pymodbus clients, against bmsgate's RegisterServer (store refreshed every second, as the
   service does) and against a bare pymodbus server with the same 80 registers and no hook.
   The server runs in its own process, the clients in this one (one core each on 2 cores).
2. Update latency: the modbus service as a process behind a private Mosquitto; a new state is
   published on the backbone and a client polls until the register shows it (median, p95, max).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import yaml
from backbone import local_broker
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from bmsgate.broker import free_port, wait_for_port
from bmsgate_common import topics
from bmsgate_common.models import PackState
from bmsgate_modbus.logic import MapOptions, RegisterStore
from bmsgate_modbus.registers import BASE, SIZE
from bmsgate_modbus.server import RegisterServer

HOST = "127.0.0.1"


def state(soc: float = 64.0) -> PackState:
    """A 16-cell pack with a fresh timestamp."""
    return PackState(
        pack="garage",
        name="Garage",
        protocol="jk_pb",
        ts=datetime.now(UTC),
        pack_voltage=52.9,
        current=-12.5,
        power=-661.2,
        soc=soc,
        cell_voltages=[3.300 + i / 1000 for i in range(16)],
        cell_count=16,
        temperatures=[20.0, 21.5],
        remaining_capacity=180.0,
        charge_mos=True,
        discharge_mos=True,
    )


async def _serve(kind: str, port: int) -> None:
    if kind == "bare":
        device = SimDevice(id=1, simdata=[SimData(BASE, count=SIZE, datatype=DataType.REGISTERS)])
        bare = ModbusTcpServer(device, address=(HOST, port))
        await bare.serve_forever()
        return
    store = RegisterStore({1: "garage"}, {}, MapOptions())
    store.on_state(state())
    store.refresh(datetime.now(UTC))

    async def refuse(unit: int, offset: int, values: list[int]) -> None:
        return None

    server = RegisterServer(store, HOST, port, refuse)
    await server.start()
    while True:  # the service's once-a-second tick
        await asyncio.sleep(1.0)
        store.set_system(uptime=time.monotonic(), free_memory=1e9, now=datetime.now(UTC))
        store.refresh(datetime.now(UTC))


def serve(kind: str, port: int) -> None:
    """Child process: one server until killed."""
    asyncio.run(_serve(kind, port))


async def _hammer(port: int, clients: int, seconds: float) -> int:
    async def one() -> int:
        client = AsyncModbusTcpClient(HOST, port=port, timeout=5, retries=0)
        await client.connect()
        reads = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            reply = await client.read_holding_registers(BASE, count=SIZE, device_id=1)
            assert not reply.isError(), reply
            reads += 1
        client.close()
        return reads

    return sum(await asyncio.gather(*(one() for _ in range(clients))))


def throughput(seconds: float) -> None:
    """Print reads/s for each server and client count."""
    ctx = multiprocessing.get_context("spawn")
    for kind in ("bare", "bmsgate"):
        port = free_port()
        proc = ctx.Process(target=serve, args=(kind, port), daemon=True)
        proc.start()
        try:
            if not wait_for_port(HOST, port, 15):
                raise RuntimeError(f"{kind} server did not start")
            asyncio.run(_hammer(port, 1, 0.5))  # warm-up
            for clients in (1, 16):
                reads = asyncio.run(_hammer(port, clients, seconds))
                rate = reads / seconds
                out(f"{kind:8s} {clients:2d} client(s): {rate:8.0f} reads/s of {SIZE} regs")
        finally:
            proc.kill()
            proc.join()


async def _latency(rounds: int) -> list[float]:
    work = Path(tempfile.mkdtemp(prefix="modbus-bench-"))
    broker = local_broker(work / "mosquitto")
    broker.start()
    port = free_port()
    config = work / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"host": HOST, "port": broker.port},
                "buses": [{"port": "/dev/null", "protocol": "jk_pb", "packs": [{"id": "garage"}]}],
                "modbus": {"host": HOST, "port": port},
                "log_level": "WARNING",
            }
        )
    )
    service = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bmsgate_modbus", "--config", str(config)
    )
    delays: list[float] = []
    try:
        if not await asyncio.to_thread(wait_for_port, HOST, port, 15):
            raise RuntimeError("the modbus service did not start")
        client = AsyncModbusTcpClient(HOST, port=port, timeout=2, retries=0)
        await client.connect()
        async with aiomqtt.Client(HOST, broker.port) as mqtt:
            for n in range(rounds + 1):  # round 0 warms up (first message, first read)
                soc = float(n % 100)
                sent = time.perf_counter()
                # round 0 retained: the service may subscribe after its Modbus port opens
                await mqtt.publish(
                    topics.STATE.topic("garage"),
                    state(soc).model_dump_json(),
                    qos=1,
                    retain=n == 0,
                )
                while True:
                    reply = await client.read_holding_registers(BASE, count=1, device_id=1)
                    if not reply.isError() and reply.registers == [int(soc)]:
                        break
                    if time.perf_counter() - sent > 5:
                        raise RuntimeError("a state did not arrive within 5 s")
                if n:
                    delays.append(time.perf_counter() - sent)
                await asyncio.sleep(0.02)
        client.close()
    finally:
        service.terminate()
        await asyncio.wait_for(service.wait(), 10)
        broker.stop()
    return delays


def latency(rounds: int) -> None:
    """Print publish-to-register delays."""
    delays = sorted(d * 1000 for d in asyncio.run(_latency(rounds)))
    p95 = delays[int(len(delays) * 0.95) - 1]
    median = statistics.median(delays)
    out(
        f"state -> register over Mosquitto, {rounds} states: median {median:.1f} ms,"
        f" p95 {p95:.1f} ms, max {delays[-1]:.1f} ms"
    )


def out(line: str) -> None:
    """One result line on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    """Run both measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput run")
    parser.add_argument("--rounds", type=int, default=200, help="states for the latency run")
    args = parser.parse_args()
    out(f"python {sys.version.split()[0]}, {multiprocessing.cpu_count()} cores")
    throughput(args.seconds)
    latency(args.rounds)


if __name__ == "__main__":
    main()

"""Snapshot time against wire time, per protocol, through the reader's serial link on a pty.

The simulated boards pace their bytes at the protocol's baud rate (requests too: a board hears a
request only once it is on the wire) and answer after ANSWER_DELAY. Wire time is what the bytes
of one snapshot need on the line plus that delay per exchange: no reader can be faster.

Run: uv run python bench/reader_bench.py [--polls N] [--json bench/reader.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from bmsgate_bms.link import Framer
from bmsgate_bms.registry import NAMES, protocol
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer
from bmsgate_serial.link import SerialLink

ANSWER_DELAY = 0.010  # [s] a BMS's own time to answer (DALY boards take 5-20 ms)
PROTOCOLS = NAMES  # every registered protocol


class CountingLink:
    """Wraps the serial link and counts what one snapshot puts on the wire."""

    def __init__(self, link: SerialLink) -> None:
        self.link = link
        self.bytes = 0
        self.exchanges = 0

    async def exchange(
        self, request: bytes, framer: Framer, count: int = 1, *, max_count: int | None = None
    ) -> list[bytes]:
        frames = await self.link.exchange(request, framer, count, max_count=max_count)
        self.bytes += len(request) + sum(len(f) for f in frames)
        self.exchanges += 1
        return frames


async def measure(name: str, polls: int, workdir: Path) -> dict[str, Any]:
    bus = make_bus(name)
    bus.pace, bus.answer_delay = True, ANSWER_DELAY
    async with PtyServer(bus, workdir / f"tty-{name}") as pty:
        link = SerialLink(pty.port, bus.baudrate, timeout=1.0)
        counting = CountingLink(link)
        driver = protocol(name).Driver(counting, 1)
        await driver.read()  # first poll: opens the port and learns the board's habits
        times, wire = [], []
        for _ in range(polls):
            counting.bytes = counting.exchanges = 0
            started = time.perf_counter()
            await driver.read()
            times.append(time.perf_counter() - started)
            wire.append(bus.wire_time(counting.bytes) + counting.exchanges * ANSWER_DELAY)
        await link.close()
    snapshot, limit = statistics.median(times), statistics.median(wire)
    return {
        "protocol": name,
        "baud": bus.baudrate,
        "bytes": counting.bytes,
        "exchanges": counting.exchanges,
        "wire_ms": round(limit * 1000, 1),
        "snapshot_ms": round(snapshot * 1000, 1),
        "p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))] * 1000, 1),
        "ratio": round(snapshot / limit, 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workdir = Path("/tmp") / f"bmsgate-bench-{time.time_ns()}"
    workdir.mkdir(parents=True)
    rows = [await measure(name, args.polls, workdir) for name in PROTOCOLS]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    heads = ("baud", "bytes", "exch", "wire ms", "snap ms", "p90 ms", "ratio")
    print(f"{'protocol':14}" + "".join(f" {h:>8}" for h in heads))
    for r in rows:
        keys = ("baud", "bytes", "exchanges", "wire_ms", "snapshot_ms", "p90_ms", "ratio")
        print(f"{r['protocol']:14}" + "".join(f" {r[k]:>8}" for k in keys))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())

"""Snapshot time against wire time, per protocol, through the reader's serial link on a pty.

The simulated boards pace their bytes at the protocol's baud rate (requests too: a board hears a
request only once it is on the wire) and answer after ANSWER_DELAY. Wire time is what the bytes
of one snapshot need on the line plus that delay per exchange: no reader can be faster.

With ``--every N`` each protocol is measured again with its slow commands read every N polls
(bmsgate_bms.polling; protocols without slow commands give the same figures): the mean snapshot
against the mean wire time. ``--bus BOARDS`` measures one bus of BOARDS DALY classic boards at
9600 Bd polled back to back, everything at every poll against slow commands every N polls:
snapshots a second for the whole bus.

Run: uv run python bench/reader_bench.py [--polls N] [--every N] [--json bench/reader.json]
     uv run python bench/reader_bench.py --bus 16 [--rounds 10] [--every 10]
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

from procstat import loadavg

from bmsgate_bms.link import Framer
from bmsgate_bms.polling import SLOW_EVERY, SlowReads
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


def tier(driver: Any, every: int, phase: int = 0) -> None:
    """Read the driver's slow commands every ``every`` polls, as the reader sets it."""
    slow = getattr(driver, "slow", None)
    if isinstance(slow, SlowReads):
        slow.every, slow.phase = every, phase


async def measure(name: str, polls: int, workdir: Path, every: int = 1) -> dict[str, Any]:
    bus = make_bus(name)
    bus.pace, bus.answer_delay = True, ANSWER_DELAY
    async with PtyServer(bus, workdir / f"tty-{name}-{every}") as pty:
        link = SerialLink(pty.port, bus.baudrate, timeout=1.0)
        counting = CountingLink(link)
        driver = protocol(name).Driver(counting, 1)
        tier(driver, every)
        await driver.read()  # first poll: opens the port and learns the board's habits
        times, wire = [], []
        total = 0
        for _ in range(polls):
            counting.bytes = counting.exchanges = 0
            started = time.perf_counter()
            await driver.read()
            times.append(time.perf_counter() - started)
            wire.append(bus.wire_time(counting.bytes) + counting.exchanges * ANSWER_DELAY)
            total += counting.bytes
        await link.close()
    snapshot, limit = statistics.median(times), statistics.median(wire)
    if every > 1:  # the slow polls are part of the cost: means, not medians
        snapshot, limit = statistics.fmean(times), statistics.fmean(wire)
    return {
        "protocol": name,
        "every": every,
        "bytes_mean": round(total / polls, 1),
        "baud": bus.baudrate,
        "bytes": counting.bytes,
        "exchanges": counting.exchanges,
        "wire_ms": round(limit * 1000, 1),
        "snapshot_ms": round(snapshot * 1000, 1),
        "p90_ms": round(sorted(times)[int(0.9 * (len(times) - 1))] * 1000, 1),
        "ratio": round(snapshot / limit, 3),
    }


async def bus_rate(
    boards: int, rounds: int, every: int, workdir: Path, name: str = "daly_classic"
) -> dict[str, Any]:
    """Snapshots a second of one bus of ``boards`` boards polled back to back for ``rounds``."""
    bus = make_bus(name, boards=boards)
    bus.pace, bus.answer_delay = True, ANSWER_DELAY
    async with PtyServer(bus, workdir / f"tty-bus-{every}") as pty:
        link = SerialLink(pty.port, bus.baudrate, timeout=1.0)
        counting = CountingLink(link)
        drivers = [protocol(name).Driver(counting, n) for n in range(1, boards + 1)]
        for phase, driver in enumerate(drivers):
            tier(driver, every, phase)
            await driver.read()  # the first round reads everything and learns habits
        counting.bytes = counting.exchanges = 0
        requests = bus.requests
        started = time.perf_counter()
        for _ in range(rounds):
            for driver in drivers:
                await driver.read()
        elapsed = time.perf_counter() - started
        await link.close()
    samples = rounds * boards
    wire = bus.wire_time(counting.bytes) + counting.exchanges * ANSWER_DELAY
    return {
        "protocol": name,
        "boards": boards,
        "baud": bus.baudrate,
        "every": every,
        "rounds": rounds,
        "samples_per_s": round(samples / elapsed, 2),
        "round_s": round(elapsed / rounds, 2),
        "bytes_per_sample": round(counting.bytes / samples, 1),
        "requests_per_sample": round((bus.requests - requests) / samples, 2),
        "ratio": round(elapsed / wire, 3),
    }


def print_rows(rows: list[dict[str, Any]]) -> None:
    heads = ("every", "baud", "bytes", "exch", "wire ms", "snap ms", "p90 ms", "ratio")
    print(f"{'protocol':14}" + "".join(f" {h:>8}" for h in heads))
    for r in rows:
        keys = (
            "every",
            "baud",
            "bytes_mean",
            "exchanges",
            "wire_ms",
            "snapshot_ms",
            "p90_ms",
            "ratio",
        )
        print(f"{r['protocol']:14}" + "".join(f" {r[k]:>8}" for k in keys))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=30)
    parser.add_argument("--every", type=int, default=SLOW_EVERY, help="slow commands' interval")
    parser.add_argument("--bus", type=int, default=0, help="boards on one DALY classic bus")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of the bus (--bus)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workdir = Path("/tmp") / f"bmsgate-bench-{time.time_ns()}"
    workdir.mkdir(parents=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    print(f"load average before: {loadavg()}")
    rows: list[dict[str, Any]] = []
    if args.bus:
        # whole cycles of the slow reads in both runs
        tiered = max(args.rounds, 2 * args.every)
        for every, rounds in ((1, args.rounds), (args.every, tiered)):
            r = await bus_rate(args.bus, rounds, every, workdir)
            rows.append(r)
            print(
                f"{r['boards']} x {r['protocol']} @ {r['baud']} Bd, slow every {every}: "
                f"{r['samples_per_s']} snapshots/s (a round {r['round_s']} s, "
                f"{r['bytes_per_sample']} bytes and {r['requests_per_sample']} requests a "
                f"snapshot, {r['ratio']}x the wire)"
            )
        print(f"gain: {rows[1]['samples_per_s'] / rows[0]['samples_per_s']:.2f}x")
    else:
        rows = [await measure(name, args.polls, workdir) for name in PROTOCOLS]
        rows += [await measure(name, args.polls, workdir, args.every) for name in PROTOCOLS]
        print_rows(rows)
    print(f"load average after: {loadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())

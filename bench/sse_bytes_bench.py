"""What the Status page's event stream costs on the wire, plain and gzipped, in MB per hour.

The API under uvicorn on loopback with N packs of C cells in its store (no backbone); two
clients follow ``/api/events``, one accepting gzip and one not, while the bench publishes a pack
view per pack and round, as a state read at each poll does. The bytes each client received
(as sent on the wire, before any decompression) are divided by the events, and scaled to an
hour at a poll interval of 1 s and of 5 s (the default). Each event is flushed on its own, so the
rate at which they are published does not change the bytes.

Run: uv run python bench/sse_bytes_bench.py --packs 2 --cells 16 --rounds 300
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bmsgate_api.app import create_app, make_context  # noqa: E402
from bmsgate_api.store import PackStore  # noqa: E402
from bmsgate_api.views import pack_view  # noqa: E402
from bmsgate_common.models import Availability, PackState, utcnow  # noqa: E402
from bmsgate_common.settings import Settings  # noqa: E402


def state(pack: str, cells: int, n: int) -> PackState:
    """A pack's reading whose every cell, current and power move each round (seeded noise)."""
    noise = random.Random(f"{pack}-{n}")
    volts = [round(3.3 + noise.uniform(-0.008, 0.008), 3) for _ in range(cells)]
    return PackState(
        pack=pack,
        name=pack.title(),
        protocol="jk_pb",
        ts=utcnow(),
        pack_voltage=sum(volts),
        current=round(noise.uniform(-9, -7), 2),
        power=round(noise.uniform(-470, -370), 1),
        soc=58.0 - n / 1000,
        cell_voltages=volts,
        cell_count=cells,
        temperatures=[20.0, 21.0],
        mos_temperature=22.0,
        nominal_capacity=100.0,
        remaining_capacity=58.0,
        cycles=82,
        charge_mos=True,
        discharge_mos=True,
        energy_in=12.5,
        energy_out=9.25 + n / 1e4,
    )


async def follow(base: str, encoding: str, counted: list[int], done: asyncio.Event) -> None:
    """Count the raw bytes of the event stream until ``done``."""
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        http.stream("GET", "/api/events", headers={"Accept-Encoding": encoding}) as stream,
    ):
        async for chunk in stream.aiter_raw():
            counted[0] += len(chunk)
            if done.is_set():
                return


async def main(packs: int, cells: int, rounds: int) -> None:
    store = PackStore()
    names = [f"pack{i + 1}" for i in range(packs)]
    for name in names:
        store.states[name] = state(name, cells, 0)
        store.availability[name] = Availability(pack=name, state="online", ts=utcnow())
    ctx = make_context(store, Settings(), None, persist=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = uvicorn.Config(
        create_app(store, ctx=ctx), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
        await asyncio.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    plain, gzipped, done = [0], [0], asyncio.Event()
    clients = [
        asyncio.create_task(follow(base, "identity", plain, done)),
        asyncio.create_task(follow(base, "gzip", gzipped, done)),
    ]
    while len(ctx.hub.listeners) < 2:  # noqa: ASYNC110 - the hub offers no event for it
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    start = plain[0], gzipped[0]
    for n in range(1, rounds + 1):
        for name in names:
            store.states[name] = state(name, cells, n)
            ctx.hub.publish("pack", pack_view(store, name, utcnow()))
        await asyncio.sleep(0.01)  # let both clients read: one event per flush, as in real life
    await asyncio.sleep(1.0)
    events = rounds * packs
    per_plain = (plain[0] - start[0]) / events
    per_gzip = (gzipped[0] - start[1]) / events
    done.set()
    for client in clients:
        client.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    server.should_exit = True
    await serving
    print(f"{packs} packs x {cells} cells, {events} events")
    print(
        f"bytes per event: plain {per_plain:.0f}, gzip {per_gzip:.0f} "
        f"({100 * per_gzip / per_plain:.0f} %)"
    )
    for poll in (1.0, 5.0):
        hour = 3600 / poll * packs
        print(
            f"poll {poll:g} s: plain {per_plain * hour / 1e6:.2f} MB/h, "
            f"gzip {per_gzip * hour / 1e6:.2f} MB/h"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=int, default=2)
    parser.add_argument("--cells", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.packs, args.cells, args.rounds))

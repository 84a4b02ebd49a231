"""Bad input on the tunnel's TCP port, with the reader and the tunnel as processes.

The tunnel is opened the way the API does it (a TunnelCommand on the backbone; control on),
then its port gets random bytes, connections left half open, a burst of simultaneous
connections, and clients that vanish in the middle of a frame (reset, no FIN). Afterwards a
well-behaved client still gets a DALY answer through it, the tunnel closes on command, the reader
polls again, and neither process logged a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
from pathlib import Path

import aiomqtt
import pytest

from bmsgate.broker import free_port
from bmsgate_bms import daly_classic
from bmsgate_common import topics
from tests.reliability.backbone import control_config
from tests.reliability.counts import COUNTS
from tests.support.mqtt import listen
from tests.support.procs import Mosquitto, Proc, start_service

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"
GARBAGE = 40  # connections sending random bytes
HALF_OPEN = 10  # connections that send nothing and stay
BURST = 100  # simultaneous connections
VANISH = 10  # clients reset in the middle of a request


async def tunnel(port: int, action: str, transaction: str) -> None:
    body = {"transaction": transaction, "action": action}
    async with aiomqtt.Client(HOST, port) as client:
        await client.publish(topics.TUNNEL_COMMAND.topic("garage"), json.dumps(body), qos=1)


async def poke(port: int, payload: bytes, *, reset: bool = False, stay: float = 0.0) -> str:
    """One client: connect, send, maybe wait, then close or reset; how the server treated it."""
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return "refused"
    if reset:  # SO_LINGER 0: closing sends RST, as when a laptop drops off the network
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        if payload:
            writer.write(payload)
            await writer.drain()
        if stay:
            await asyncio.sleep(stay)
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(0.2):
                await reader.read(100)
        return "connected"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def good_client(port: int) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(daly_classic.request(daly_classic.SOC))
        async with asyncio.timeout(5):
            return await reader.readexactly(daly_classic.FRAME_LEN)
    finally:
        writer.close()


def test_the_tunnel_port_survives_garbage_half_open_bursts_and_vanishing_clients(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str, procs: list[Proc]
) -> None:
    tport = free_port()
    listener = {"host": HOST, "port": tport, "idle_timeout": 30}
    config = control_config(tmp_path, mosquitto.port, daly_pty, tunnel=listener)
    reader = start_service(tmp_path, "reader", config)
    service = start_service(tmp_path, "tunnel", config)
    procs += [reader, service]
    rng = random.Random(13)
    outcomes: dict[str, int] = {}

    async def scenario() -> bytes:
        async with listen(mosquitto.port, "bmsgate/bms/garage/#") as seen:
            await seen.wait_for(lambda s: s.on("/garage/state") and s.on("/tunnel/state"), 30)
            # closed until opened (by the API, logged in, with control on): the kernel refuses
            outcomes["before open"] = [await poke(tport, b"\xa5") for _ in range(5)].count(
                "refused"
            )
            await tunnel(mosquitto.port, "open", "fuzz-open")
            await seen.wait_for(lambda s: any(x["open"] for x in s.on("/tunnel/state")), 10)
            for _ in range(GARBAGE):
                got = await poke(tport, rng.randbytes(rng.randrange(1, 500)))
                outcomes[got] = outcomes.get(got, 0) + 1
            half = [asyncio.create_task(poke(tport, b"", stay=1.0)) for _ in range(HALF_OPEN)]
            await asyncio.gather(*half)
            burst = await asyncio.gather(*(poke(tport, b"\xa5") for _ in range(BURST)))
            for got in burst:
                outcomes[got] = outcomes.get(got, 0) + 1
            half_frame = daly_classic.request(daly_classic.SOC)[:6]
            for _ in range(VANISH):
                await poke(tport, half_frame, reset=True)
            answer = b""
            for _ in range(50):  # the last session may still be closing
                with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
                    answer = await good_client(tport)
                    break
                await asyncio.sleep(0.2)
            polled = len(seen.on("/garage/state"))
            await tunnel(mosquitto.port, "close", "fuzz-close")
            await seen.wait_for(lambda s: len(s.on("/garage/state")) > polled + 2, 15)
            return answer

    answer = asyncio.run(scenario())
    assert outcomes["before open"] == 5
    COUNTS["tunnel port: connections refused before the tunnel was opened"] += 5
    COUNTS["tunnel port: connections with random bytes"] += GARBAGE
    COUNTS["tunnel port: half-open connections"] += HALF_OPEN
    COUNTS["tunnel port: simultaneous connections"] += BURST
    COUNTS["tunnel port: clients reset mid-frame"] += VANISH
    log = service.log()
    COUNTS["tunnel port: sessions served (one at a time)"] += log.count("tunnel session of bus")
    COUNTS["tunnel port: connections refused while one was on"] += log.count(" refused ")
    daly_classic.check_frame(answer)  # a valid DALY frame came back through the tunnel
    for proc in (reader, service):
        assert proc.alive(), proc.log()[-2000:]
        assert "Traceback" not in proc.log(), proc.log()[-3000:]

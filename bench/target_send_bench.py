"""A target's send path: ``uv run python bench/target_send_bench.py [--messages N] [--qos Q]``.

Messages a second and client CPU per message for what a publisher target does with a tick:
windows of 500 retained messages of 300 bytes written at once, then one wait until the broker
has acknowledged them, against a private Mosquitto on loopback. Measured with bmsgate's own
client (``Connection.publish`` + ``drain``) and, for comparison, the way the targets did it
before on aiomqtt (paho's ``publish`` on aiomqtt's private client, then polling the last
message of the window). Each runs twice, alternately; say the load (``/proc/loadavg``) with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiomqtt
from backbone import local_broker

from bmsgate_common import mqtt_client

WINDOW = 500
PAYLOAD = b"x" * 300


async def ours(port: int, count: int, qos: int) -> tuple[float, float]:
    conn = await mqtt_client.connect("127.0.0.1", port, client_id="bench-target-send")
    async with conn:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(0, count, WINDOW):
            for j in range(WINDOW):
                conn.publish(f"bench/{j}", PAYLOAD, qos, True)
            await conn.drain()
        return count / (time.perf_counter() - start), (time.process_time() - cpu) / count


async def before(port: int, count: int, qos: int) -> tuple[float, float]:
    async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=100) as client:
        paho = client._client
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(0, count, WINDOW):
            last = None
            for j in range(WINDOW):
                last = paho.publish(f"bench/{j}", PAYLOAD, qos, True)
            while last is not None and not last.is_published():  # noqa: ASYNC110 - as it was
                await asyncio.sleep(0.005)
        return count / (time.perf_counter() - start), (time.process_time() - cpu) / count


async def main(count: int, qos: int) -> None:
    print(f"load {os.getloadavg()[0]:.2f}; {count} messages at QoS {qos}, windows of {WINDOW}")
    with tempfile.TemporaryDirectory() as tmp:
        broker = local_broker(Path(tmp))
        broker.start()
        try:
            for name, run in (("bmsgate mqtt_client", ours), ("aiomqtt + paho", before)) * 2:
                rate, cpu = await run(broker.port, count, qos)
                print(f"{name}: {rate:,.0f} messages/s, {cpu * 1e6:.1f} us CPU a message")
        finally:
            broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.qos))

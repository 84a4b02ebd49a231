"""Long fault runs of the reliability suite (tests/reliability runs the same code, shorter).

``--influx-outage SECONDS``: the history service writes pack states to a real VictoriaMetrics
(Debian's victoria-metrics, the InfluxDB v2 write API) while states arrive at ``--rate`` per
second; the server is stopped for SECONDS and started again; every point written must be read
back (points sent vs read back, the buffer's peak, the time to drain).

``--memory-per-state N``: the api and the notifier alone, fed N pack states of 100 packs as fast
as they take them; their RSS after every eighth of them (a leak per message shows as a slope).

``--asleep SECONDS``: the reader (a process, default bus settings: a poll every 5 s) and a
simulated DALY board that sleeps for SECONDS, then wakes; the same counts as
tests/reliability/test_asleep.py (polls while asleep, states, offline transitions, log lines,
the first state after the wake) and the reader's RSS every ``--every`` seconds.

Run: uv run python bench/reliability_bench.py --influx-outage 600 [--rate 100] [--json FILE]
     uv run python bench/reliability_bench.py --memory-per-state 200000
     uv run python bench/reliability_bench.py --asleep 7200 [--every 300]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from bmsgate.broker import free_port
from bmsgate_common import topics
from bmsgate_common.models import PackState
from bmsgate_common.settings import BusSettings
from bmsgate_history.sample import from_ms, to_ms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.reliability.test_asleep import sleep_through  # noqa: E402
from tests.support.procs import start_service, write_config  # noqa: E402
from tests.support.victoria import VictoriaMetrics  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from backbone import local_broker  # noqa: E402
from procstat import loadavg, memory_mb  # noqa: E402

HOST = "127.0.0.1"
PACKS = 5
DRAIN_LIMIT = 180.0  # [s] after the outage: the writer's backoff (60 s at most) plus the drain


def state(pack: str, ts_ms: int, i: int) -> PackState:
    """A plausible pack state; ``i`` moves the values so no two points are alike."""
    return PackState(
        pack=pack,
        name=pack,
        protocol="daly_classic",
        ts=from_ms(ts_ms),
        pack_voltage=52.0 + (i % 100) / 100,
        current=-3.0,
        power=-156.0,
        soc=60.0,
        cell_voltages=[3.25 + (i % 7) / 1000, 3.26],
        cell_count=2,
        temperatures=[22.0],
    )


async def history_detail(port: int) -> dict[str, Any]:
    """The history service's retained status detail (its InfluxDB counters)."""
    async with aiomqtt.Client(HOST, port) as client:
        await client.subscribe(topics.SERVICE_STATUS.topic("history"), qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                detail: dict[str, Any] = json.loads(message.payload).get("detail") or {}  # type: ignore[arg-type]
                return detail
    return {}


async def send_states(port: int, rate: float, seconds: float, first: int, base: int) -> int:
    """Publish states at ``rate`` per second for ``seconds``, round-robin over PACKS; returns N.

    State ``i`` carries the time ``base + i`` [ms]: unique, and increasing for every pack.
    """
    step = 1.0 / rate
    n = 0
    start = time.monotonic()
    async with aiomqtt.Client(HOST, port) as client:
        while time.monotonic() - start < seconds:
            i = first + n
            pack = f"p{i % PACKS}"
            body = state(pack, base + i, i).model_dump_json()
            await client.publish(topics.STATE.topic(pack), body, qos=1)
            n += 1
            await asyncio.sleep(max(0.0, start + n * step - time.monotonic()))
    return n


async def influx_outage(
    work: Path, outage: float, *, rate: float = 100.0, before: float = 5.0, after: float = 5.0
) -> dict[str, Any]:
    """Run the outage and count; see the module's docstring."""
    broker = local_broker(work / "mosquitto")
    broker.start()
    vm = VictoriaMetrics(work)
    vm.start()
    cfg = {
        "mqtt": {"host": HOST, "port": broker.port, "heartbeat": 1},
        "history": {
            "timezone": "UTC",
            "influx": {
                "enabled": True,
                "url": vm.url,
                "batch_size": 20,
                "flush_interval": 0.5,
                "timeout": 2,
            },
        },
        "data_dir": str(work / "data"),
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = (work / "history.log").open("wb")
    argv = [sys.executable, "-m", "bmsgate_history", "--config", str(path)]
    proc = subprocess.Popen(argv, stdout=log, stderr=log)  # noqa: ASYNC220
    peak = 0
    base = to_ms(from_ms(0).now()) - 3_600_000  # an hour ago: inside VictoriaMetrics' retention
    try:
        while "influx_written" not in await history_detail(broker.port):  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        sent = await send_states(broker.port, rate, before, 0, base)
        vm.stop()
        outage_task = asyncio.create_task(send_states(broker.port, rate, outage, sent, base))
        while not outage_task.done():
            peak = max(peak, int((await history_detail(broker.port)).get("influx_buffered", 0)))
            await asyncio.sleep(1.0)
        sent += outage_task.result()
        vm.start()
        back = time.monotonic()
        sent += await send_states(broker.port, rate, after, sent, base)
        detail: dict[str, Any] = {}
        while time.monotonic() - back < DRAIN_LIMIT:
            detail = await history_detail(broker.port)
            if detail.get("influx_buffered") == 0 and detail.get("influx_written", 0) >= sent:
                break
            await asyncio.sleep(1.0)
        drained = time.monotonic() - back
        series = await asyncio.to_thread(vm.export, '{__name__="bms_soc"}')
        read_back = sum(len(s["values"]) for s in series)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(20)
        vm.stop()
        broker.stop()
    history_log = (work / "history.log").read_text(errors="replace")
    return {
        "outage_s": outage,
        "rate_per_s": rate,
        "points_sent": sent,
        "points_read_back": read_back,
        "lost": sent - read_back,
        "buffer_peak": peak,
        "drained_after_s": round(drained, 1),
        "written": detail.get("influx_written"),
        "overflow": detail.get("influx_overflow"),
        "alive": alive,
        "tracebacks": history_log.count("Traceback"),
    }


async def memory_per_state(
    work: Path, total: int, services: tuple[str, ...] = ("api", "notifier")
) -> dict[str, Any]:
    """RSS [MB] of ``services`` after every eighth of ``total`` states (see the docstring)."""
    broker = local_broker(work / "mosquitto")
    broker.start()
    packs = 100
    # fmt: off
    cfg = {"mqtt": {"host": HOST, "port": broker.port}, "log_level": "WARNING",
           "api": {"host": HOST, "port": free_port()}, "data_dir": str(work / "data"),
           "buses": [{"port": f"/dev/null-{i}", "protocol": "daly_classic",
                      "packs": [{"id": f"p{i}"}]} for i in range(packs)]}
    # fmt: on
    path = write_config(work, cfg)
    procs = {name: start_service(work, name, path) for name in services}
    readings: list[dict[str, float]] = []
    base = to_ms(from_ms(0).now()) - 86_400_000
    try:
        await asyncio.sleep(8.0)  # started and subscribed
        async with aiomqtt.Client(HOST, broker.port) as client:
            for i in range(total):
                pack = f"p{i % packs}"
                body = state(pack, base + i * 10, i).model_dump_json()
                await client.publish(topics.STATE.topic(pack), body, qos=0)
                if i % 500 == 0:
                    await asyncio.sleep(0.3)  # let them keep up: QoS 0 is dropped otherwise
                if (i + 1) % (total // 8) == 0:
                    await asyncio.sleep(3.0)
                    readings.append(
                        {n: round(memory_mb(p.process.pid)[0], 1) for n, p in procs.items()}
                    )
    finally:
        for proc in procs.values():
            proc.stop()
        broker.stop()
    return {"states": total, "packs": packs, "rss_mb_every_eighth": readings}


async def asleep(work: Path, seconds: float, every: float) -> dict[str, Any]:
    """The board asleep for ``seconds`` in real time at the default bus settings (see above)."""
    broker = local_broker(work / "mosquitto")
    broker.start()
    fields = BusSettings.model_fields
    bus = {k: fields[k].default for k in ("poll_interval", "timeout", "retries", "offline_after")}
    load = loadavg()
    try:
        run = await sleep_through(
            broker.port,
            work,
            bus,
            seconds=seconds,
            warmup=30.0,
            every=every,
            note=functools.partial(print, flush=True),
        )
    finally:
        broker.stop()
    return {"bus": bus, "load_average": f"{load} -> {loadavg()}", **run.counts()}


def main() -> None:
    """Run the chosen fault and print its counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--influx-outage", type=float, metavar="SECONDS")
    what.add_argument("--memory-per-state", type=int, metavar="N")
    what.add_argument("--asleep", type=float, metavar="SECONDS")
    parser.add_argument("--rate", type=float, default=100.0, help="states per second")
    parser.add_argument("--every", type=float, default=300.0, help="[s] between RSS readings")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bmsgate-reliability-"))
    if args.memory_per_state:
        result = asyncio.run(memory_per_state(work, args.memory_per_state))
    elif args.asleep:
        result = asyncio.run(asleep(work, args.asleep, args.every))
    else:
        result = asyncio.run(influx_outage(work, args.influx_outage, rate=args.rate))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

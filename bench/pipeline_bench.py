"""N packs at 1 Hz through Mosquitto into every service: latency, CPU, memory, backlog.

Synthetic PackStates go straight onto the backbone (one aiomqtt client, QoS 1, retained, as the
readers publish them), each pack once a second, spread evenly over the second. The real services
run as processes (``python -m bmsgate_<service> --config F``) against a private Mosquitto:
api, publisher (one target: a second private Mosquitto standing in for the external broker),
modbus, history, notifier. A few *probe* packs carry a marker (SOC = a counter mod 100) and are
watched on three paths:

* state -> Modbus register: a client polls the probe's unit every 1 ms after each publish;
* state -> external MQTT packet: the publisher's dongle packet on the external broker (the
  target's ``interval`` is 1 s, the smallest allowed, so this path is dominated by it);
* state -> browser: the ``pack`` event on the API's server-sent event stream (/api/events), the
  one the web UI listens to.

Backlog: the latency trend (first vs last third), each service's RSS at start and end of the
window, and Mosquitto's stored-message count ($SYS, every 10 s).

Run: uv run python bench/pipeline_bench.py [--packs 10 100 1000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import yaml
from pymodbus.client import AsyncModbusTcpClient

from bmsgate.broker import free_port, wait_for_port
from bmsgate_common import topics
from bmsgate_common.models import Availability, PackState
from bmsgate_modbus.registers import BASE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backbone import local_broker
from procstat import cpu_seconds, memory_mb

HOST = "127.0.0.1"
SERVICES = ("api", "publisher", "modbus", "history", "notifier")
SLOTS = 100  # publishing slots per second (every 10 ms)
ACK_WAIT = 10.0  # [s] the generator waits for the broker's last acknowledgements
SENTINEL_TS = datetime(2000, 1, 1, tzinfo=UTC)
QUIET = logging.getLogger("bench.mqtt")
QUIET.setLevel(logging.CRITICAL)


def template(pack: str) -> str:
    """A 16-cell state of ``pack`` as JSON with a sentinel SOC and timestamp to replace."""
    return PackState(
        pack=pack,
        name=pack,
        protocol="jk_pb",
        ts=SENTINEL_TS,
        pack_voltage=52.9,
        current=-12.5,
        power=-661.2,
        soc=12.345,
        cell_voltages=[3.300 + i / 1000 for i in range(16)],
        cell_count=16,
        temperatures=[20.0, 21.5],
        remaining_capacity=180.0,
        charge_mos=True,
        discharge_mos=True,
    ).model_dump_json()


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@dataclass
class Seen:
    """Latencies [ms] seen on one path, with when each was seen."""

    seen: set[tuple[str, int]] = field(default_factory=set)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (time, ms)
    timeouts: int = 0

    def add(self, key: tuple[str, int], sent: float, now: float) -> None:
        if key not in self.seen:
            self.seen.add(key)
            self.samples.append((now, (now - sent) * 1000))

    def summary(self, start: float, end: float) -> dict[str, Any]:
        window = [(t, ms) for t, ms in self.samples if start <= t <= end]
        ms = [m for _, m in window]
        third = (end - start) / 3
        first = [m for t, m in window if t < start + third]
        last = [m for t, m in window if t >= end - third]
        return {
            "count": len(ms),
            "timeouts": self.timeouts,
            "p50_ms": round(pct(ms, 0.5), 1),
            "p99_ms": round(pct(ms, 0.99), 1),
            "max_ms": round(max(ms), 1) if ms else float("nan"),
            "p50_first_third_ms": round(statistics.median(first), 1) if first else None,
            "p50_last_third_ms": round(statistics.median(last), 1) if last else None,
        }


@dataclass
class Bench:
    """Shared state of one run."""

    packs: list[str]
    probes: list[str]
    sent: dict[tuple[str, int], float] = field(default_factory=dict)
    modbus_queues: dict[str, asyncio.Queue[tuple[int, float]]] = field(default_factory=dict)
    modbus: Seen = field(default_factory=Seen)
    mqtt: Seen = field(default_factory=Seen)
    sse: Seen = field(default_factory=Seen)
    published: int = 0
    unacked: int = 0  # publishes the broker had not acknowledged ACK_WAIT after the window
    behind_ms: list[float] = field(default_factory=list)
    store: list[tuple[float, int]] = field(default_factory=list)
    stop: bool = False


async def generate(bench: Bench, port: int, seconds: float) -> None:
    """Every pack once a second, spread over SLOTS slots, until ``seconds`` have passed."""
    texts = [template(p) for p in bench.packs]
    probe = set(bench.probes)
    ts_text = '"ts":"2000-01-01T00:00:00Z"'
    tasks: set[asyncio.Task[None]] = set()
    async with aiomqtt.Client(
        HOST, port, logger=QUIET, max_inflight_messages=1000, identifier="bench-generator"
    ) as client:
        at = datetime.now(UTC)
        await asyncio.gather(
            *(
                client.publish(
                    topics.AVAILABILITY.topic(p),
                    Availability(pack=p, state="online", ts=at).model_dump_json(),
                    qos=1,
                    retain=True,
                )
                for p in bench.packs
            )
        )
        t0 = time.perf_counter()
        k = 0
        while (due := t0 + k / SLOTS) < t0 + seconds:
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            bench.behind_ms.append((time.perf_counter() - due) * 1000)
            second, slot = divmod(k, SLOTS)
            stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            for i in range(slot, len(texts), SLOTS):
                pack = bench.packs[i]
                soc = (second + i) % 100
                payload = texts[i].replace(ts_text, f'"ts":"{stamp}"').replace("12.345", f"{soc}.0")
                sent = time.perf_counter()
                task = asyncio.create_task(
                    client.publish(topics.STATE.topic(pack), payload, qos=1, retain=True)
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                bench.published += 1
                if pack in probe:
                    bench.sent[(pack, soc)] = sent
                    bench.modbus_queues[pack].put_nowait((soc, sent))
            k += 1
        try:
            async with asyncio.timeout(ACK_WAIT):
                await asyncio.gather(*tasks)
        except TimeoutError:
            bench.unacked = sum(not t.done() for t in tasks)


async def watch_modbus(bench: Bench, port: int, unit: int, pack: str) -> None:
    """After each probe publish, poll the unit's SOC register every 1 ms until it shows it."""
    client = AsyncModbusTcpClient(HOST, port=port, timeout=2, retries=0)
    await client.connect()
    queue = bench.modbus_queues[pack]
    try:
        while True:
            soc, sent = await queue.get()
            while True:
                reply = await client.read_holding_registers(BASE, count=1, device_id=unit)
                now = time.perf_counter()
                if not reply.isError() and reply.registers == [soc]:
                    bench.modbus.add((pack, soc), sent, now)
                    break
                if now - sent > 3 or not queue.empty():
                    bench.modbus.timeouts += 1
                    break
                await asyncio.sleep(0.001)
    finally:
        client.close()


async def watch_external(bench: Bench, port: int) -> None:
    """The publisher's dongle packets of the probes on the external broker."""
    async with aiomqtt.Client(HOST, port, logger=QUIET) as client:
        for pack in bench.probes:
            await client.subscribe(f"bench/{pack}")
        async for message in client.messages:
            now = time.perf_counter()
            pack = str(message.topic).split("/", 1)[1]
            body = json.loads(bytes(message.payload))
            soc = body.get("SOC")
            if isinstance(soc, int) and (pack, soc) in bench.sent:
                bench.mqtt.add((pack, soc), bench.sent[(pack, soc)], now)


async def watch_sse(bench: Bench, port: int) -> None:
    """``pack`` events of the probes on /api/events, as the browser gets them."""
    heads = {f'{{"pack":"{p}"' for p in bench.probes}
    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream("GET", f"http://{HOST}:{port}/api/events") as reply,
    ):
        event = ""
        async for line in reply.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "pack":
                data = line[5:].strip()
                if data[: data.find(",")] not in heads:
                    continue
                now = time.perf_counter()
                view = json.loads(data)
                state = view.get("state") or {}
                key = (view["pack"], round(state.get("soc", -1)))
                if key in bench.sent:
                    bench.sse.add(key, bench.sent[key], now)


async def watch_store(bench: Bench, port: int) -> None:
    """Mosquitto's stored messages (retained + queued for subscribers), every 10 s."""
    async with aiomqtt.Client(HOST, port, logger=QUIET) as client:
        await client.subscribe("$SYS/broker/store/messages/count")
        async for message in client.messages:
            bench.store.append((time.perf_counter(), int(bytes(message.payload))))


def config(
    workdir: Path, packs: list[str], probes: list[str], backbone: int, external: int
) -> tuple[Path, int, int]:
    """The services' configuration; returns (file, api port, modbus port)."""
    per_bus = 15  # jk_pb addresses are 1..15
    buses = [
        {
            "port": "/dev/null",
            "protocol": "jk_pb",
            "packs": [{"id": p, "address": j + 1} for j, p in enumerate(packs[i : i + per_bus])],
        }
        for i in range(0, len(packs), per_bus)
    ]
    api_port, modbus_port = free_port(), free_port()
    # fmt: off
    data = {
        "mqtt": {"host": HOST, "port": backbone},
        "buses": buses,
        "api": {"host": HOST, "port": api_port},
        "modbus": {
            "host": HOST, "port": modbus_port, "units": {i + 1: p for i, p in enumerate(probes)}
        },
        "publisher": {
            "targets": [
                {"name": "external", "host": HOST, "port": external, "tls": False,
                 "topic_prefix": "bench", "interval": 1, "qos": 0, "retain": False}
            ]
        },
        "data_dir": str(workdir / "data"),
        "log_level": "WARNING",
    }
    # fmt: on
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, api_port, modbus_port


def start_services(
    workdir: Path, cfg: Path, profile: str | None
) -> dict[str, subprocess.Popen[bytes]]:
    """Every service as its own process; ``profile`` runs under py-spy record."""
    procs = {}
    for name in SERVICES:
        argv = [sys.executable, "-m", f"bmsgate_{name}", "--config", str(cfg)]
        if name == profile:
            spy = Path(sys.executable).parent / "py-spy"
            out = workdir / f"profile-{name}.txt"
            argv = [str(spy), "record", "-f", "raw", "-r", "200", "-o", str(out), "--", *argv]
        log = (workdir / f"{name}.log").open("wb")
        procs[name] = subprocess.Popen(argv, stdout=log, stderr=log)
    return procs


def service_pid(proc: subprocess.Popen[bytes]) -> int:
    """The Python process (under py-spy, its child)."""
    from procstat import children

    kids = children(proc.pid)
    return kids[0] if "py-spy" in " ".join(proc.args) and kids else proc.pid  # type: ignore[arg-type]


async def run(
    n: int,
    seconds: float,
    warmup: float,
    n_probes: int,
    profile: str | None,
    keep: Path | None = None,
) -> dict[str, Any]:
    """One run with ``n`` packs; the result as JSON-ready data."""
    workdir = keep or Path(tempfile.mkdtemp(prefix=f"bmsgate-pipeline-{n}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    packs = [f"p{i:04d}" for i in range(n)]
    probes = packs[:n_probes]
    backbone, external = local_broker(workdir / "backbone"), local_broker(workdir / "external")
    backbone.start()
    external.start()
    cfg, api_port, modbus_port = config(workdir, packs, probes, backbone.port, external.port)
    procs = start_services(workdir, cfg, profile)
    bench = Bench(packs, probes, modbus_queues={p: asyncio.Queue() for p in probes})
    tasks: list[asyncio.Task[None]] = []
    result: dict[str, Any] = {"packs": n, "seconds": seconds, "probes": len(probes)}
    try:
        for port in (api_port, modbus_port):
            if not await asyncio.to_thread(wait_for_port, HOST, port, 20):
                raise RuntimeError(f"a service did not open port {port}; logs in {workdir}")
        await asyncio.sleep(1.0)
        tasks = [
            asyncio.create_task(watch_external(bench, external.port)),
            asyncio.create_task(watch_sse(bench, api_port)),
            asyncio.create_task(watch_store(bench, backbone.port)),
        ]
        tasks += [
            asyncio.create_task(watch_modbus(bench, modbus_port, i + 1, p))
            for i, p in enumerate(probes)
        ]
        pids = {name: service_pid(p) for name, p in procs.items()}
        pids["mosquitto"] = backbone.process.pid if backbone.process else 0
        pids["bench (generator + watchers)"] = 0  # this process
        gen = asyncio.create_task(generate(bench, backbone.port, warmup + seconds))
        tasks.append(gen)
        await asyncio.sleep(warmup)
        pids["bench (generator + watchers)"] = os.getpid()
        start, published0 = time.perf_counter(), bench.published
        cpu0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        rss0 = {k: memory_mb(pid)[0] for k, pid in pids.items()}
        async with asyncio.timeout(seconds + ACK_WAIT + 5):
            await gen
        end = time.perf_counter()
        cpu1 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        rss1 = {k: memory_mb(pid)[0] for k, pid in pids.items()}
        await asyncio.sleep(1.5)  # late arrivals of the last states
        wall = end - start
        result["published_per_s"] = round((bench.published - published0) / wall, 1)
        result["unacknowledged_publishes"] = bench.unacked
        behind = bench.behind_ms[int(warmup * SLOTS) :]
        result["generator_behind_p99_ms"] = round(pct(behind, 0.99), 1)
        result["latency"] = {
            "state->modbus": bench.modbus.summary(start, end),
            "state->external mqtt": bench.mqtt.summary(start, end),
            "state->browser (SSE)": bench.sse.summary(start, end),
        }
        result["services"] = {
            k: {
                "cpu_pct": round(100 * (cpu1[k] - cpu0[k]) / wall, 1),
                "rss_mb_start": round(rss0[k], 1),
                "rss_mb_end": round(rss1[k], 1),
            }
            for k in pids
        }
        per_state = sum(result["services"][k]["cpu_pct"] for k in SERVICES) / 100
        # meaningful while the services keep up (no backlog): CPU they spent per state sent
        result["services_cpu_ms_per_state"] = round(1000 * per_state / result["published_per_s"], 2)
        result["cpu_total_pct_of_2_cores"] = round(
            sum(v["cpu_pct"] for v in result["services"].values()) / 2, 1
        )
        result["mosquitto_stored_messages"] = [c for _, c in bench.store]
        result["alive"] = {k: p.poll() is None for k, p in procs.items()}
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                async with asyncio.timeout(5):
                    await task
        for proc in procs.values():
            # under py-spy, stop the service itself: py-spy writes its profile when it exits
            kid = service_pid(proc)
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        backbone.stop()
        external.stop()
    if profile:
        result["profile"] = top_frames(workdir / f"profile-{profile}.txt")
    result["workdir"] = str(workdir)
    return result


IDLE = ("select (selectors", "Condition.wait", "Event.wait")  # a frame that waits, not works


def top_frames(path: Path, count: int = 12) -> list[str]:
    """Where the profiled service spent its busy samples, from py-spy raw output.

    Samples that wait (the event loop's select, idle worker threads) and the start-up imports are
    left out; each line gives a function's share of the rest: inclusive (it or what it called)
    and self (its own code).
    """
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    busy = 0
    if not path.exists():
        return [f"no profile at {path}"]
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not n.isdigit() or any("importlib" in f for f in frames):
            continue
        if not frames[-1].strip() or any(w in frames[-1] for w in IDLE):
            continue
        busy += int(n)
        own[frames[-1]] = own.get(frames[-1], 0) + int(n)
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + int(n)
    if not busy:
        return ["no busy samples"]
    plumbing = (
        "runpy",
        "asyncio/runners",
        "base_events.py",
        "asyncio/events.py",
        "__main__",
        "service_main",
    )
    ranked = [
        (k, v)
        for k, v in sorted(inclusive.items(), key=lambda kv: -kv[1])
        if not any(p in k for p in plumbing)
    ][:count]
    out = [f"busy samples {busy}; inclusive:"]
    out += [f"{100 * v / busy:5.1f}% {k}" for k, v in ranked]
    out.append("self:")
    out += [
        f"{100 * v / busy:5.1f}% {k}" for k, v in sorted(own.items(), key=lambda kv: -kv[1])[:count]
    ]
    return out


def show(result: dict[str, Any]) -> None:
    """Print one run."""
    print(
        f"--- {result['packs']} packs at 1 Hz, {result['seconds']:.0f} s window: "
        f"{result['published_per_s']} states/s published, generator behind schedule "
        f"p99 {result['generator_behind_p99_ms']} ms"
    )
    for name, lat in result["latency"].items():
        print(
            f"  {name:22} n={lat['count']:4d} p50 {lat['p50_ms']:7.1f} ms  p99 "
            f"{lat['p99_ms']:7.1f} ms  max {lat['max_ms']:7.1f} ms  missed {lat['timeouts']}  "
            f"p50 first/last third {lat['p50_first_third_ms']}/"
            f"{lat['p50_last_third_ms']}"
        )
    for name, s in result["services"].items():
        print(
            f"  {name:30} cpu {s['cpu_pct']:6.1f}%  rss {s['rss_mb_start']:6.1f} -> "
            f"{s['rss_mb_end']:6.1f} MB"
        )
    print(f"  the five services: {result['services_cpu_ms_per_state']} ms CPU per state")
    print(
        f"  total CPU {result['cpu_total_pct_of_2_cores']}% of 2 cores; mosquitto stored "
        f"messages {result['mosquitto_stored_messages']}; alive {result['alive']}"
    )
    for line in result.get("profile", []):
        print(f"    {line}")


def main() -> None:
    """Run each pack count and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--packs", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--profile", choices=SERVICES, help="run this service under py-spy")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for n in args.packs:
        result = asyncio.run(run(n, args.seconds, args.warmup, min(args.probes, n), args.profile))
        show(result)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

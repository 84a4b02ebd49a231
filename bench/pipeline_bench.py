"""N packs at 1 Hz through Mosquitto into every service: latency, CPU, memory, backlog.

Synthetic PackStates go straight onto the backbone (one aiomqtt client, QoS 1, retained, as the
readers publish them), each pack once a second, spread evenly over the second. Every state
carries its second of the run as its power (the dongle's PWT), so any copy of it can be matched
to when it was sent. The real services run as processes (``python -m bmsgate_<service> --config
F``) against a private Mosquitto: api, publisher (one target: a second private Mosquitto standing
in for the external broker), modbus, history, notifier. Watched:

* state -> external MQTT: a subscriber on the external broker (a process of its own) receives
  every pack's main packet; per pack: latency, the gaps between packets, states delivered;
* state -> browser: a client of the API's server-sent event stream (/api/events, what the web UI
  listens to; a process of its own) counts every ``pack`` event and its latency;
* state -> Modbus register: a few *probe* packs (SOC = a counter mod 100), a client polling the
  probe's unit every 1 ms after each publish;
* history: the states archived (its ``stored`` counter in its status, every 5 s) against those
  published, and at the end the rows in the archive;
* backlog: each path's latency and the publisher's waiting messages, first third of the window
  against the last, each service's RSS at start and end, Mosquitto's stored-message count.

Run: uv run python bench/pipeline_bench.py [--packs 10 100 1000] [--seconds 30]
     [--services publisher ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import signal
import sqlite3
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
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.client import MQTTMessageInfo
from pymodbus.client import AsyncModbusTcpClient

from bmsgate.broker import free_port, wait_for_port
from bmsgate_common import topics
from bmsgate_common.models import Availability, PackState
from bmsgate_modbus.registers import BASE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backbone import local_broker
from procstat import cpu_seconds, loadavg, memory_mb

HOST = "127.0.0.1"
SERVICES = ("api", "publisher", "modbus", "history", "notifier")
SLOTS = 100  # publishing slots per second (every 10 ms)
ACK_WAIT = 10.0  # [s] the generator waits for the broker's last acknowledgements
HEARTBEAT = 5.0  # [s] the services' status, which carries their counters
INTERVAL = 1.0  # [s] the external target's interval (the smallest allowed)
SENTINEL_TS = datetime(2000, 1, 1, tzinfo=UTC)
POWER = "-661.2"  # the template's power, replaced by the state's second of the run
QUIET = logging.getLogger("bench.mqtt")
QUIET.setLevel(logging.CRITICAL)


def template(pack: str) -> str:
    """A 16-cell state of ``pack`` as JSON with a sentinel SOC, power and timestamp to replace."""
    return PackState(
        pack=pack,
        name=pack,
        protocol="jk_pb",
        ts=SENTINEL_TS,
        pack_voltage=52.9,
        current=-12.5,
        power=float(POWER),
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


def thirds(window: list[tuple[float, float]], start: float, end: float) -> dict[str, Any]:
    """p50 and p99 of the values in the first and the last third of [start, end]."""
    third = (end - start) / 3
    first = [v for t, v in window if t < start + third]
    last = [v for t, v in window if t >= end - third]
    return {
        "p50_first_third_ms": round(statistics.median(first), 1) if first else None,
        "p50_last_third_ms": round(statistics.median(last), 1) if last else None,
        "p99_first_third_ms": round(pct(first, 0.99), 1) if first else None,
        "p99_last_third_ms": round(pct(last, 0.99), 1) if last else None,
    }


@dataclass
class Seen:
    """Latencies [ms] of the probes on one path, with when each was seen."""

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
        return {
            "count": len(ms),
            "timeouts": self.timeouts,
            "p50_ms": round(pct(ms, 0.5), 1),
            "p99_ms": round(pct(ms, 0.99), 1),
            "max_ms": round(max(ms), 1) if ms else float("nan"),
            **thirds(window, start, end),
        }


@dataclass
class Bench:
    """Shared state of one run."""

    packs: list[str]
    probes: list[str]
    sent_at: list[list[float]] = field(default_factory=list)  # per pack, per second: when
    modbus_queues: dict[str, asyncio.Queue[tuple[int, int, float]]] = field(default_factory=dict)
    modbus: Seen = field(default_factory=Seen)
    published: int = 0
    unacked: int = 0  # publishes the broker had not acknowledged ACK_WAIT after the window
    behind_ms: list[float] = field(default_factory=list)
    store: list[tuple[float, int]] = field(default_factory=list)
    # (time, service, its status counters, states published by then)
    status: list[tuple[float, str, dict[str, Any], int]] = field(default_factory=list)


async def generate(bench: Bench, port: int, seconds: float) -> None:
    """Every pack once a second, spread over SLOTS slots, until ``seconds`` have passed."""
    texts = [template(p) for p in bench.packs]
    probe = set(bench.probes)
    ts_text = '"ts":"2000-01-01T00:00:00Z"'
    power_text = f'"power":{POWER}'
    bench.sent_at = [[] for _ in bench.packs]
    infos: list[MQTTMessageInfo] = []
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
        # published by paho directly, acknowledgements counted at the end: aiomqtt's publish
        # costs O(calls pending) each, which on a loaded machine grows into a spiral
        paho = client._client
        t0 = time.perf_counter()
        k = 0
        # a generator that falls behind (a loaded machine) stops on time all the same
        while (due := t0 + k / SLOTS) < t0 + seconds and time.perf_counter() < t0 + seconds:
            # always yield: paho writes from the event loop, which a late generator must not starve
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            bench.behind_ms.append((time.perf_counter() - due) * 1000)
            second, slot = divmod(k, SLOTS)
            stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            for i in range(slot, len(texts), SLOTS):
                pack = bench.packs[i]
                soc = (second + i) % 100
                payload = (
                    texts[i]
                    .replace(ts_text, f'"ts":"{stamp}"')
                    .replace("12.345", f"{soc}.0")
                    .replace(power_text, f'"power":{second}.0')
                )
                sent = time.perf_counter()
                infos.append(paho.publish(topics.STATE.topic(pack), payload, 1, True))
                bench.published += 1
                bench.sent_at[i].append(sent)
                if pack in probe:
                    bench.modbus_queues[pack].put_nowait((soc, second, sent))
            k += 1
            if len(infos) > 2 * len(texts):
                infos = [i for i in infos if not i.is_published()]
        deadline = time.perf_counter() + ACK_WAIT
        while time.perf_counter() < deadline and not all(i.is_published() for i in infos):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        bench.unacked = sum(not i.is_published() for i in infos)


async def watch_modbus(bench: Bench, port: int, unit: int, pack: str) -> None:
    """After each probe publish, poll the unit's SOC register every 1 ms until it shows it."""
    client = AsyncModbusTcpClient(HOST, port=port, timeout=2, retries=0)
    await client.connect()
    queue = bench.modbus_queues[pack]
    try:
        while True:
            soc, second, sent = await queue.get()
            while True:
                reply = await client.read_holding_registers(BASE, count=1, device_id=unit)
                now = time.perf_counter()
                if not reply.isError() and reply.registers == [soc]:
                    bench.modbus.add((pack, second), sent, now)
                    break
                if now - sent > 3 or not queue.empty():
                    bench.modbus.timeouts += 1
                    break
                await asyncio.sleep(0.001)
    finally:
        client.close()


async def watch_store(bench: Bench, port: int) -> None:
    """Mosquitto's stored messages (every 10 s) and every service's status (its counters)."""
    async with aiomqtt.Client(HOST, port, logger=QUIET) as client:
        await client.subscribe("$SYS/broker/store/messages/count")
        await client.subscribe(topics.SERVICE_STATUS.topic("+"))
        async for message in client.messages:
            now = time.perf_counter()
            body = bytes(message.payload)
            if str(message.topic).startswith("$SYS"):
                bench.store.append((now, int(body)))
                continue
            with contextlib.suppress(ValueError, KeyError):
                status = json.loads(body)
                bench.status.append((now, status["service"], status["detail"], bench.published))


# --- the watchers of the external broker and of the event stream: processes of their own ----

PWT = re.compile(rb'"PWT":(-?\d+)')
SSE_PACK = re.compile(r'^\{"pack":"p(\d+)"')
SSE_POWER = re.compile(r'"state":\{.*?"power":(-?\d+)')


def watcher(kind: str, where: str, out: Path) -> None:
    """Record (pack index, second, time) of every delivery until SIGTERM; write them to ``out``."""
    got: dict[str, list[float]] = {"pack": [], "second": [], "t": []}
    counts = {"messages": 0, "events": 0}

    def external() -> None:
        # paho's own blocking loop: aiomqtt's per-message path (~100 us) starved this process
        # on a loaded machine, and its lag was counted as the publisher's
        host, port = where.split(":")
        subscribed = []

        def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
            now = time.perf_counter()
            counts["messages"] += 1
            match = PWT.search(message.payload)
            if match:
                got["pack"].append(int(message.topic[len("bench/p") :]))
                got["second"].append(int(match[1]))
                got["t"].append(now)

        def on_subscribe(*_: object) -> None:
            subscribed.append(True)
            print("ready", flush=True)

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.on_message, client.on_subscribe = on_message, on_subscribe
        client.connect(host, int(port))
        client.subscribe("bench/+")  # the main packets (status is bench/<pack>/status)
        signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
        client.loop_forever()

    async def sse() -> None:
        async with (
            httpx.AsyncClient(timeout=None) as client,
            client.stream("GET", where) as reply,
        ):
            print("ready", flush=True)
            event = ""
            async for line in reply.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "pack":
                    now = time.perf_counter()
                    counts["events"] += 1
                    data = line[5:].lstrip()
                    pack, power = SSE_PACK.match(data), SSE_POWER.search(data)
                    if pack and power:
                        got["pack"].append(int(pack[1]))
                        got["second"].append(int(power[1]))
                        got["t"].append(now)

    if kind == "external":
        external()
        out.write_text(json.dumps({**got, **counts}))
        return

    async def main() -> None:
        task = asyncio.create_task(sse())
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        out.write_text(json.dumps({**got, **counts}))  # noqa: ASYNC240 (at the end)

    asyncio.run(main())


def start_watcher(kind: str, where: str, out: Path) -> subprocess.Popen[bytes]:
    """A watcher process, returned once it listens."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--watch", kind, where, str(out)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"the {kind} watcher did not start")
    return proc


def stop_watcher(proc: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
    """Stop a watcher; what it recorded."""
    proc.send_signal(signal.SIGTERM)  # it writes what it recorded on the way out
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    return json.loads(out.read_text()) if out.exists() else {"pack": [], "second": [], "t": []}


def deliveries(
    bench: Bench, got: dict[str, Any], start: float, end: float, interval: float
) -> dict[str, Any]:
    """Latency of every pack's states on one path, gaps per pack, and what reached it."""
    sent_at = bench.sent_at
    window: list[tuple[float, float]] = []
    arrivals: dict[int, list[float]] = {}
    delivered: set[tuple[int, int]] = set()
    for pack, second, t in zip(got["pack"], got["second"], got["t"], strict=True):
        if not (0 <= pack < len(sent_at) and 0 <= second < len(sent_at[pack])):
            continue
        sent = sent_at[pack][second]
        if start <= sent <= end and (pack, second) not in delivered:
            delivered.add((pack, second))
            window.append((t, (t - sent) * 1000))
        if start <= t <= end:
            arrivals.setdefault(pack, []).append(t)
    in_window = sum(start <= s <= end for times in sent_at for s in times)
    gaps = [b - a for times in arrivals.values() for a, b in itertools.pairwise(times)]
    ms = [m for _, m in window]
    return {
        "count": len(ms),
        "timeouts": in_window - len(ms),  # states sent in the window that never arrived
        "states_sent": in_window,
        "delivered_pct": round(100 * len(ms) / in_window, 1) if in_window else None,
        "packs_seen": len(arrivals),
        "p50_ms": round(pct(ms, 0.5), 1),
        "p99_ms": round(pct(ms, 0.99), 1),
        "max_ms": round(max(ms), 1) if ms else float("nan"),
        "gap_p99_s": round(pct(gaps, 0.99), 2) if gaps else None,
        "gap_max_s": round(max(gaps), 2) if gaps else None,
        "target_p99_ms": round(1000 * (interval + 1.0)),
        **thirds(window, start, end),
    }


def status_trend(bench: Bench, start: float, end: float) -> dict[str, Any]:
    """The publisher's waiting messages and history's backlog, first third against last."""
    third = (end - start) / 3
    out: dict[str, Any] = {}

    def split(service: str, value: Any) -> None:
        rows = [(t, d, n) for t, s, d, n in bench.status if s == service and start <= t <= end]
        samples = [(t, v) for t, d, n in rows if (v := value(d, n)) is not None]
        out[service] = {
            "first_third": [v for t, v in samples if t < start + third],
            "last_third": [v for t, v in samples if t >= end - third],
        }

    def pub(d: dict[str, Any], _: int) -> Any:
        return {
            k.removeprefix("external_"): d.get(k)
            for k in ("external_waiting", "external_replaced", "external_expired", "external_sent")
        }

    split("publisher", pub)
    split("history", lambda d, n: None if d.get("stored") is None else n - int(d["stored"]))
    return out


def archived_rows(workdir: Path) -> int | None:
    """Rows in history's archive (read after the service stopped and committed)."""
    path = workdir / "data" / "history" / "archive.sqlite"
    if not path.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM raw").fetchone()[0])


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
        "mqtt": {"host": HOST, "port": backbone, "heartbeat": HEARTBEAT},
        "buses": buses,
        "api": {"host": HOST, "port": api_port},
        "modbus": {
            "host": HOST, "port": modbus_port, "units": {i + 1: p for i, p in enumerate(probes)}
        },
        "publisher": {
            "targets": [
                {"name": "external", "host": HOST, "port": external, "tls": False,
                 "topic_prefix": "bench", "interval": INTERVAL, "qos": 0, "retain": False}
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
    workdir: Path, cfg: Path, profile: str | None, services: tuple[str, ...]
) -> dict[str, subprocess.Popen[bytes]]:
    """Every service as its own process; ``profile`` runs under py-spy record."""
    procs = {}
    for name in services:
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
    services: tuple[str, ...] = SERVICES,
) -> dict[str, Any]:
    """One run with ``n`` packs; the result as JSON-ready data."""
    workdir = keep or Path(tempfile.mkdtemp(prefix=f"bmsgate-pipeline-{n}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    packs = [f"p{i:04d}" for i in range(n)]
    probes = packs[:n_probes] if "modbus" in services else []
    backbone, external = local_broker(workdir / "backbone"), local_broker(workdir / "external")
    backbone.start()
    external.start()
    cfg, api_port, modbus_port = config(workdir, packs, probes, backbone.port, external.port)
    procs = start_services(workdir, cfg, profile, services)
    bench = Bench(packs, probes, modbus_queues={p: asyncio.Queue() for p in probes})
    tasks: list[asyncio.Task[None]] = []
    watchers: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    result: dict[str, Any] = {
        "packs": n,
        "seconds": seconds,
        "probes": len(probes),
        "services_run": list(services),
        "load_before": loadavg(),
    }
    try:
        ports = [p for s, p in (("api", api_port), ("modbus", modbus_port)) if s in services]
        for port in ports:
            if not await asyncio.to_thread(wait_for_port, HOST, port, 60):  # imports, when loaded
                raise RuntimeError(f"a service did not open port {port}; logs in {workdir}")
        await asyncio.sleep(1.0)
        if "publisher" in services:
            out = workdir / "watch-external.json"
            where = f"{HOST}:{external.port}"
            watchers["external"] = (
                await asyncio.to_thread(start_watcher, "external", where, out),
                out,
            )
        if "api" in services:
            out = workdir / "watch-sse.json"
            where = f"http://{HOST}:{api_port}/api/events"
            watchers["sse"] = (await asyncio.to_thread(start_watcher, "sse", where, out), out)
        tasks = [asyncio.create_task(watch_store(bench, backbone.port))]
        tasks += [
            asyncio.create_task(watch_modbus(bench, modbus_port, i + 1, p))
            for i, p in enumerate(probes)
        ]
        pids = {name: service_pid(p) for name, p in procs.items()}
        pids["mosquitto"] = backbone.process.pid if backbone.process else 0
        pids["bench (generator, modbus and status watchers)"] = 0  # this process
        for name, (proc, _) in watchers.items():
            pids[f"bench ({name} watcher)"] = proc.pid
        gen = asyncio.create_task(generate(bench, backbone.port, warmup + seconds))
        tasks.append(gen)
        await asyncio.sleep(warmup)
        pids["bench (generator, modbus and status watchers)"] = os.getpid()
        start, published0 = time.perf_counter(), bench.published
        cpu0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        rss0 = {k: memory_mb(pid)[0] for k, pid in pids.items()}
        async with asyncio.timeout(seconds + ACK_WAIT + 60):  # a loaded machine: late, not hung
            await gen
        end = time.perf_counter()
        cpu1 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        rss1 = {k: memory_mb(pid)[0] for k, pid in pids.items()}
        result["load_after"] = loadavg()
        await asyncio.sleep(INTERVAL + 2.0)  # late arrivals of the last states
        got = {k: await asyncio.to_thread(stop_watcher, *w) for k, w in watchers.items()}
        watchers.clear()
        wall = end - start
        result["published_per_s"] = round((bench.published - published0) / wall, 1)
        result["unacknowledged_publishes"] = bench.unacked
        behind = bench.behind_ms[int(warmup * SLOTS) :]
        result["generator_behind_p99_ms"] = round(pct(behind, 0.99), 1)
        latency: dict[str, Any] = {}
        if "modbus" in services:
            latency["state->modbus"] = bench.modbus.summary(start, end)
        if "external" in got:
            latency["state->external mqtt"] = deliveries(
                bench, got["external"], start, end, INTERVAL
            )
            result["external_messages"] = got["external"].get("messages")
        if "sse" in got:
            latency["state->browser (SSE)"] = deliveries(bench, got["sse"], start, end, 0.0)
            result["sse_pack_events"] = got["sse"].get("events")
        result["latency"] = latency
        result["backlog"] = status_trend(bench, start, end)
        result["services"] = {
            k: {
                "cpu_pct": round(100 * (cpu1[k] - cpu0[k]) / wall, 1),
                "rss_mb_start": round(rss0[k], 1),
                "rss_mb_end": round(rss1[k], 1),
            }
            for k in pids
        }
        per_state = sum(result["services"][k]["cpu_pct"] for k in services) / 100
        # meaningful while the services keep up (no backlog): CPU they spent per state sent
        rate = max(result["published_per_s"], 1e-9)
        result["services_cpu_ms_per_state"] = round(1000 * per_state / rate, 2)
        result["cpu_total_pct_of_2_cores"] = round(
            sum(v["cpu_pct"] for v in result["services"].values()) / 2, 1
        )
        result["mosquitto_stored_messages"] = [c for _, c in bench.store]
        result["alive"] = {k: p.poll() is None for k, p in procs.items()}
    finally:
        for proc, out in watchers.values():
            await asyncio.to_thread(stop_watcher, proc, out)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
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
    if "history" in services:
        rows = archived_rows(workdir)
        result["history_archived"] = {"rows": rows, "states_published": bench.published}
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
        f"--- {result['packs']} packs at 1 Hz, {result['seconds']:.0f} s window "
        f"(load {result['load_before']} -> {result.get('load_after')}): "
        f"{result['published_per_s']} states/s published, generator behind schedule "
        f"p99 {result['generator_behind_p99_ms']} ms"
    )
    for name, lat in result["latency"].items():
        print(
            f"  {name:22} n={lat['count']:6d} p50 {lat['p50_ms']:7.1f} ms  p99 "
            f"{lat['p99_ms']:7.1f} ms  max {lat['max_ms']:7.1f} ms  missed {lat['timeouts']}  "
            f"p50 first/last third {lat['p50_first_third_ms']}/{lat['p50_last_third_ms']}  "
            f"p99 first/last third {lat['p99_first_third_ms']}/{lat['p99_last_third_ms']}"
        )
        if "packs_seen" in lat:
            print(
                f"  {'':22} {lat['delivered_pct']}% of {lat['states_sent']} states delivered, "
                f"{lat['packs_seen']} packs seen, gap between a pack's arrivals p99 "
                f"{lat['gap_p99_s']} s max {lat['gap_max_s']} s (target p99 "
                f"{lat['target_p99_ms']} ms)"
            )
    for name, trend in result["backlog"].items():
        print(f"  backlog {name}: first third {trend['first_third']}")
        print(f"  {'':8} {'':{len(name)}}  last third  {trend['last_third']}")
    if "history_archived" in result:
        h = result["history_archived"]
        print(f"  history archive rows {h['rows']} of {h['states_published']} states published")
    for name, s in result["services"].items():
        print(
            f"  {name:46} cpu {s['cpu_pct']:6.1f}%  rss {s['rss_mb_start']:6.1f} -> "
            f"{s['rss_mb_end']:6.1f} MB"
        )
    print(f"  the services run: {result['services_cpu_ms_per_state']} ms CPU per state")
    print(
        f"  total CPU {result['cpu_total_pct_of_2_cores']}% of 2 cores; mosquitto stored "
        f"messages {result['mosquitto_stored_messages']}; alive {result['alive']}"
    )
    for line in result.get("profile", []):
        print(f"    {line}")


def main() -> None:
    """Run each pack count and print the figures."""
    if len(sys.argv) == 5 and sys.argv[1] == "--watch":
        watcher(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--packs", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--services", nargs="+", choices=SERVICES, default=list(SERVICES))
    parser.add_argument("--profile", choices=SERVICES, help="run this service under py-spy")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for n in args.packs:
        result = asyncio.run(
            run(
                n,
                args.seconds,
                args.warmup,
                min(args.probes, n),
                args.profile,
                services=tuple(args.services),
            )
        )
        show(result)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

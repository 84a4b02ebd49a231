"""Soak: N simulated packs through every service for a long time; memory growth and lost rows.

``bmsgate run --config F`` with N buses, each a simulated DALY pack on its own pseudo-terminal
served by this process (the packs' clock runs ``--speed`` times faster than real time, so an
hour of soak walks each pack through many hours of charge and discharge). A listener on the
backbone records every live state published after the warm-up; at the end the supervisor stops
(SIGTERM: history commits), and every recorded state must be a row of the archive.

Figures: RSS of every process after the warm-up and at the end (growth per process, target
≤ 5 %), states published vs archive rows found (target: none lost), CPU seconds of the tree and
the load average (the machine may be shared).

Run: uv run python bench/soak_bench.py --packs 100 --duration 3600 [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from bmsgate.broker import free_port
from bmsgate.services import left_out
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer
from bmsgate_common.models import PackState
from bmsgate_history.sample import to_ms

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support
from backbone import local_broker
from procstat import children, cmdline, comm_name, cpu_seconds, loadavg, memory_mb
from tests.support.receiver import receiver

HOST = "127.0.0.1"
SERVICES = ("api", "publisher", "modbus", "history", "notifier", "tunnel")
STOP_TIMEOUT = 60.0  # [s] for the supervisor to stop every child (history commits on the way)


def label(pid: int) -> str:
    """A name for a process of the tree; with its pid, as forked readers share one name."""
    name = comm_name(pid)
    if name.startswith("bms-"):  # forked from bmsgate run's zygote: named by its service
        return f"{name}#{pid}"
    text = cmdline(pid)
    if m := re.search(r"-m bmsgate_(\w+)", text):
        return f"bms-{m.group(1)}#{pid}"
    if "zygote" in text:
        return f"zygote#{pid}"
    if "bmsgate.cli run" in text:
        return f"supervisor#{pid}"
    return f"{text[:30]}#{pid}"


def snapshot(root: int) -> dict[str, dict[str, float]]:
    """RSS [MB] and CPU [s] of ``root`` and every descendant, by label."""
    return {
        label(pid): {"rss_mb": memory_mb(pid)[0], "cpu_s": cpu_seconds(pid)}
        for pid in [root, *children(root)]
    }


def bus(i: int, port: str) -> dict[str, Any]:
    """One simulated pack's bus, polled every second."""
    return {
        "port": port,
        "protocol": "daly_classic",
        "poll_interval": 1.0,
        "packs": [{"id": f"soak-{i + 1}"}],
    }


def config(work: Path, ports: list[str], broker: int, notify_port: int) -> Path:
    """The configuration: one bus per pack, every service on free local ports, each with work.

    A publisher target (the backbone broker), a notifier target (a local HTTP receiver) and
    control on (the tunnel service runs only then).
    """
    data: dict[str, Any] = {
        "mqtt": {"host": HOST, "port": broker},
        "buses": [bus(i, port) for i, port in enumerate(ports)],
        "control": {"enabled": True},
        "publisher": {"targets": [{"name": "soak", "topic_prefix": "soak", "interval": 5}]},
        "notifier": {"targets": [{"name": "soak", "url": f"json://{HOST}:{notify_port}/notify"}]},
        "api": {"host": HOST, "port": free_port()},
        "modbus": {"host": HOST, "port": free_port()},
        "tunnel": {"host": HOST, "port": free_port()},
        "history": {"timezone": "UTC"},
        "data_dir": str(work / "data"),
        "log_level": "WARNING",
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def record(
    port: int, seen: set[tuple[str, int]], online: set[str], counting: asyncio.Event
) -> None:
    """Note the services online, and (pack, ts [ms]) of every live state while ``counting``."""
    while True:
        try:
            async with aiomqtt.Client(HOST, port) as client:
                await client.subscribe("bmsgate/bms/+/state", qos=1)
                await client.subscribe("bmsgate/service/+/status", qos=1)
                async for message in client.messages:
                    name = str(message.topic).split("/")[2]
                    if "/service/" in str(message.topic):
                        body = json.loads(message.payload)  # type: ignore[arg-type]
                        (online.add if body.get("state") == "online" else online.discard)(name)
                    elif counting.is_set() and not message.retain:
                        state = PackState.model_validate_json(message.payload)  # type: ignore[arg-type]
                        seen.add((name, to_ms(state.ts)))
        except aiomqtt.MqttError:
            await asyncio.sleep(0.5)


def archive_rows(path: Path) -> set[tuple[str, int]]:
    """(pack, ts [ms]) of every raw row in the archive."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT packs.name, raw.ts FROM raw JOIN packs ON packs.id = raw.pack")
        return {(str(name), int(ts)) for name, ts in rows}


async def soak(
    packs: int,
    duration: float,
    *,
    warmup: float = 60.0,
    speed: float = 60.0,
    every: float = 300.0,
    work: Path | None = None,
) -> dict[str, Any]:
    """Run the soak; returns the figures (see the module's docstring)."""
    work = work or Path(tempfile.mkdtemp(prefix="bmsgate-soak-"))
    broker = local_broker(work / "mosquitto")
    broker.start()
    servers: list[PtyServer] = []
    clocks: list[asyncio.Task[None]] = []
    seen: set[tuple[str, int]] = set()
    online: set[str] = set()
    counting = asyncio.Event()
    listener = asyncio.create_task(record(broker.port, seen, online, counting))
    proc: subprocess.Popen[bytes] | None = None
    stack = contextlib.ExitStack()
    try:
        for i in range(packs):
            bus = make_bus("daly_classic", seed=i + 1)
            server = await PtyServer(bus, link=work / f"ttySOAK{i}").__aenter__()
            servers.append(server)
            clocks.append(asyncio.create_task(bus.run_time(speed=speed)))
        notify = stack.enter_context(receiver())[1]
        path = config(work, [s.port for s in servers], broker.port, notify)
        log = (work / "run.log").open("wb")
        launched = time.monotonic()
        argv = [sys.executable, "-m", "bmsgate.cli", "run", "--config", str(path)]
        proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)  # noqa: ASYNC220
        idle = left_out(yaml.safe_load(path.read_text()))  # bmsgate run does not start them
        want = {f"reader-{i}" for i in range(packs)} | set(SERVICES) - set(idle)
        while not want <= online:
            if proc.poll() is not None:
                raise RuntimeError(f"bmsgate run exited; see {work / 'run.log'}")
            await asyncio.sleep(0.5)
        started = time.monotonic()
        await asyncio.sleep(warmup)
        load_start = loadavg()
        counting.set()
        start = snapshot(proc.pid)
        start["mosquitto"] = {"rss_mb": memory_mb(broker.process.pid)[0], "cpu_s": 0.0}
        began = time.monotonic()
        trend: dict[str, list[float]] = {}  # RSS [MB] of each service (not reader) every `every` s
        while (left := duration - (time.monotonic() - began)) > 0:
            await asyncio.sleep(min(every, left))
            for name, figures in snapshot(proc.pid).items():
                if "reader" not in name:
                    trend.setdefault(name, []).append(round(figures["rss_mb"], 1))
        end = snapshot(proc.pid)
        end["mosquitto"] = {"rss_mb": memory_mb(broker.process.pid)[0], "cpu_s": 0.0}
        elapsed = time.monotonic() - began
        load_end = loadavg()
        counting.clear()
        await asyncio.sleep(3.0)  # states already on the wire reach history too
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, STOP_TIMEOUT)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        for clock in clocks:
            clock.cancel()
        for server in servers:
            server.close()
        broker.stop()
        stack.close()
    stored = archive_rows(work / "data" / "history" / "archive.sqlite")
    growth = {
        name: round(100 * (end[name]["rss_mb"] / s["rss_mb"] - 1), 2)
        for name, s in start.items()
        if name in end and s["rss_mb"] > 0
    }
    cpu = sum(e["cpu_s"] - start.get(n, {"cpu_s": 0.0})["cpu_s"] for n, e in end.items())
    lost = seen - stored
    return {
        "packs": packs,
        "all_online_after_s": round(started - launched, 1),
        "seconds": round(elapsed, 1),
        "speed": speed,
        "exit_code": code,
        "states_published": len(seen),
        "states_in_archive": len(seen & stored),
        "lost": len(lost),
        "lost_examples": sorted(lost)[:5],
        "processes": len(start),
        "rss_start_mb": round(sum(s["rss_mb"] for s in start.values()), 1),
        "rss_end_mb": round(sum(e["rss_mb"] for e in end.values()), 1),
        "growth_pct": growth,
        "rss_start_by_process_mb": {
            n: round(v["rss_mb"], 1) for n, v in start.items() if "reader" not in n
        },
        "rss_trend_mb": trend,
        "max_growth": max(growth.items(), key=lambda kv: kv[1]),
        "cpu_share_of_one_core": round(cpu / elapsed, 2),
        "load_start": load_start,
        "load_end": load_end,
        "restarts": (work / "run.log").read_text(errors="replace").count("restarting in"),
        "work": str(work),
    }


def main() -> None:
    """Run the soak and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--packs", type=int, default=100)
    parser.add_argument("--duration", type=float, default=3600.0, help="[s] measured")
    parser.add_argument("--warmup", type=float, default=120.0, help="[s] before the first reading")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second")
    parser.add_argument("--every", type=float, default=300.0, help="[s] between RSS readings")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(
        soak(args.packs, args.duration, warmup=args.warmup, speed=args.speed, every=args.every)
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

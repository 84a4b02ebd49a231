"""Storage writes of the whole `bmsgate run` tree, per service, in MB per hour (SD-card wear).

``bmsgate run --config F`` at the default settings with N simulated DALY packs, each on its own
pseudo-terminal served by this process and polled every second. After a warm-up, the bytes each
process of the tree caused to be written to storage (``write_bytes`` of /proc/PID/io: page cache
pages dirtied and then written, fsyncs included; the filesystem's own journal is not counted)
are read at the start and the end of the measured time, and scaled to an hour.

Targets: one pack ≤ 5 MB/h, 16 packs ≤ 20 MB/h for the whole tree.

Run: uv run python bench/writes_bench.py --packs 1 --duration 600 [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bmsgate.broker import free_port
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer
from bmsgate_common.tasks import stop_tasks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procstat import children, loadavg
from soak_bench import HOST, label

MB: float = 1_000_000.0


def written(pid: int) -> int:
    """Bytes ``pid`` caused to be written to storage so far (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(root: int) -> dict[str, int]:
    """write_bytes of ``root`` and every descendant, by label (readers numbered by pid)."""
    return {label(pid): written(pid) for pid in [root, *children(root)]}


def service(name: str) -> str:
    """The service a process label belongs to (``bms-reader-3#123`` -> ``reader``)."""
    base = name.split("#")[0].removeprefix("bms-")
    return "reader" if base.startswith("reader") else base


def config(work: Path, ports: list[str]) -> Path:
    """Default settings: a bus per pack polled every second, free local ports, a private broker."""
    data: dict[str, Any] = {
        "buses": [
            {
                "port": port,
                "protocol": "daly_classic",
                "poll_interval": 1.0,
                "packs": [{"id": f"pack-{i + 1}"}],
            }
            for i, port in enumerate(ports)
        ],
        "api": {"host": HOST, "port": free_port()},
        "modbus": {"host": HOST, "port": free_port()},
        "data_dir": str(work / "data"),
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def measure(packs: int, duration: float, warmup: float, work: Path) -> dict[str, Any]:
    """Run the tree and return MB/h per service and in total."""
    buses = [make_bus("daly_classic", seed=i + 1) for i in range(packs)]
    async with contextlib.AsyncExitStack() as stack:
        ports = [
            (await stack.enter_async_context(PtyServer(bus, link=work / f"ttyW{i}"))).port
            for i, bus in enumerate(buses)
        ]
        stack.push_async_callback(stop_tasks, [asyncio.create_task(b.run_time()) for b in buses])
        log = stack.enter_context((work / "run.log").open("wb"))
        # --isolate: each service a process of its own, so /proc gives each its own write_bytes
        # (the files written are the same when they share one process)
        argv = [sys.executable, "-m", "bmsgate.cli", "run", "--isolate", "--config"]
        argv.append(str(config(work, ports)))
        proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)  # noqa: ASYNC220
        stack.callback(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        await asyncio.sleep(warmup)
        if proc.poll() is not None:
            raise RuntimeError(f"bmsgate run exited; see {work / 'run.log'}")
        load_start = loadavg()
        start, began = tree(proc.pid), time.monotonic()
        await asyncio.sleep(duration)
        end, elapsed = tree(proc.pid), time.monotonic() - began
        load_end = loadavg()
        proc.send_signal(signal.SIGTERM)  # a clean stop: history commits what it holds
        await asyncio.to_thread(proc.wait, 60)
    per_hour = 3600 / elapsed
    by_service: dict[str, float] = {}
    for name, after in end.items():
        delta = after - start.get(name, 0)
        by_service[service(name)] = by_service.get(service(name), 0.0) + delta * per_hour / MB
    return {
        "packs": packs,
        "seconds": round(elapsed, 1),
        "mb_per_hour": {k: round(v, 3) for k, v in sorted(by_service.items())},
        "total_mb_per_hour": round(sum(by_service.values()), 2),
        "gb_per_year": round(sum(by_service.values()) * 24 * 365 / 1000, 1),
        "load": [load_start, load_end],  # the machine may be shared: its load at start and end
        "work": str(work),
    }


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description="MB/h written by the bmsgate run tree")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--packs", type=int, default=1, help="simulated packs, one bus each")
    parser.add_argument("--duration", type=float, default=600.0, help="[s] measured")
    parser.add_argument("--warmup", type=float, default=30.0, help="[s] before measuring")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bmsgate-writes-"))
    figures = json.dumps(
        asyncio.run(measure(args.packs, args.duration, args.warmup, work)), indent=2
    )
    print(figures)
    if args.json:
        args.json.write_text(figures + "\n")
    with contextlib.suppress(OSError):
        (work / "run.log").unlink(missing_ok=True)


if __name__ == "__main__":
    main()

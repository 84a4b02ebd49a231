"""Every benchmark of bmsgate in one run: prints a table and writes bench/results.json.

Run: uv run python bench/run.py [--quick] [--only reader pipeline modbus history memory peers]

``peers`` (bench/peers.py: bmsgate beside other programs, installed from PyPI into environments
of their own) runs only when named; ``--quick`` runs bmsgate alone there, with no install.

Not a test suite: the figures depend on the machine and its load (the load average is recorded
before and after each section). docs/performance.md explains what limits each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from procstat import cpu_model, loadavg  # noqa: E402

SECTIONS = ("reader", "pipeline", "modbus", "history", "memory")
ON_REQUEST = ("peers",)  # sections run only when named (they install from PyPI)
Row = tuple[str, str, str]  # (section, figure, value)


def reader(quick: bool) -> tuple[list[Row], Any]:
    """Snapshot time against wire time per protocol (reader_bench.measure)."""
    from reader_bench import PROTOCOLS, measure

    work = Path(tempfile.mkdtemp(prefix="bmsgate-bench-reader-"))
    polls = 3 if quick else 30
    names = PROTOCOLS[:1] if quick else PROTOCOLS

    async def all_of() -> list[dict[str, Any]]:
        return [await measure(name, polls, work) for name in names]

    data = asyncio.run(all_of())
    rows = [
        (
            "reader",
            f"{r['protocol']} @ {r['baud']} Bd snapshot / wire",
            f"{r['snapshot_ms']} / {r['wire_ms']} ms = {r['ratio']:.3f}x (target <= 1.15x)",
        )
        for r in data
    ]
    return rows, data


def pipeline(quick: bool) -> tuple[list[Row], Any]:
    """N packs at 1 Hz through every service (pipeline_bench.run)."""
    from pipeline_bench import run

    counts, seconds = ((10,), 5.0) if quick else ((10, 100, 1000), 20.0)
    data = []
    rows: list[Row] = []
    for n in counts:
        r = asyncio.run(run(n, seconds, 3.0 if quick else 5.0, min(8, n), None))
        data.append(r)
        for path, lat in r["latency"].items():
            rows.append(
                (
                    "pipeline",
                    f"{n} packs: {path} p50 / p99",
                    f"{lat['p50_ms']} / {lat['p99_ms']} ms (n={lat['count']}, "
                    f"missed {lat['timeouts']})",
                )
            )
        busiest = max(r["services"].items(), key=lambda kv: kv[1]["cpu_pct"])
        rows.append(
            (
                "pipeline",
                f"{n} packs: CPU all processes",
                f"{r['cpu_total_pct_of_2_cores']}% of 2 cores; busiest {busiest[0]} "
                f"{busiest[1]['cpu_pct']}% of a core",
            )
        )
        rows.append(
            (
                "pipeline",
                f"{n} packs: the five services' CPU per state",
                f"{r['services_cpu_ms_per_state']} ms",
            )
        )
        rows.append(
            (
                "pipeline",
                f"{n} packs: states/s published",
                f"{r['published_per_s']} (generator late p99 {r['generator_behind_p99_ms']} ms)",
            )
        )
    return rows, data


def modbus(quick: bool) -> tuple[list[Row], Any]:
    """Full-map reads/s with 1 and 16 clients, p99, bmsgate against bare pymodbus."""
    from modbus_bench import HOST, serve
    from pymodbus.client import AsyncModbusTcpClient

    from bmsgate.broker import free_port, wait_for_port
    from bmsgate_modbus.registers import BASE, SIZE

    seconds = 1.0 if quick else 5.0

    async def hammer(port: int, clients: int) -> list[float]:
        async def one() -> list[float]:
            client = AsyncModbusTcpClient(HOST, port=port, timeout=5, retries=0)
            await client.connect()
            took = []
            deadline = time.perf_counter() + seconds
            while (t := time.perf_counter()) < deadline:
                reply = await client.read_holding_registers(BASE, count=SIZE, device_id=1)
                took.append(time.perf_counter() - t)
                assert not reply.isError(), reply
            client.close()
            return took

        return [x for xs in await asyncio.gather(*(one() for _ in range(clients))) for x in xs]

    ctx = multiprocessing.get_context("spawn")
    rows: list[Row] = []
    data = []
    for kind in ("bare", "bmsgate"):
        port = free_port()
        proc = ctx.Process(target=serve, args=(kind, port), daemon=True)
        proc.start()
        try:
            if not wait_for_port(HOST, port, 15):
                raise RuntimeError(f"{kind} server did not start")
            asyncio.run(hammer(port, 1))  # warm-up
            for clients in (1, 16):
                took = asyncio.run(hammer(port, clients))
                rate = len(took) / seconds
                p99 = sorted(took)[int(0.99 * (len(took) - 1))] * 1000
                data.append(
                    {
                        "server": kind,
                        "clients": clients,
                        "reads_per_s": round(rate),
                        "p99_ms": round(p99, 2),
                    }
                )
                rows.append(
                    (
                        "modbus",
                        f"{kind} server, {clients} client(s), {SIZE} registers",
                        f"{rate:,.0f} reads/s, p99 {p99:.2f} ms",
                    )
                )
        finally:
            proc.kill()
            proc.join()
    return rows, data


def history(quick: bool) -> tuple[list[Row], Any]:
    """Archive ingest, 24 h chart query, InfluxDB points/s (history_bench's functions)."""
    import history_bench as hb

    from bmsgate_history.archive import Archive

    n = 5_000 if quick else 50_000
    hours = 1.0 if quick else 24.0
    rows: list[Row] = []
    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rate = hb.ingest(folder, hb.samples(n, 1000), "normal")
        data["ingest_cell_samples_per_s"] = round(rate * hb.CELLS)
        rows.append(
            (
                "history",
                "archive ingest (synchronous=normal)",
                f"{rate * hb.CELLS:,.0f} cell-samples/s ({rate:,.0f} samples/s)",
            )
        )
        rate = hb.ingest_states(folder, hb.states(n // 2))
        data["ingest_from_state_cell_samples_per_s"] = round(rate * hb.CELLS)
        rows.append(
            (
                "history",
                "archive ingest from PackState (service path)",
                f"{rate * hb.CELLS:,.0f} cell-samples/s",
            )
        )
        archive = Archive(folder / "chart.sqlite", hb.FOREVER)
        for i, s in enumerate(hb.samples(int(hours * 3600), 1000)):
            archive.add("p1", s)
            if i % 5000 == 4999:
                archive.commit()
        archive.commit()
        q, full, size = hb.query_ms(archive, "auto", hours, ["cells"])
        archive.close()
        data["chart_query_ms"], data["chart_with_json_ms"] = round(q, 1), round(full, 1)
        rows.append(
            (
                "history",
                f"{hours:g} h 16-cell chart at 1 s polls, auto",
                f"{q:.1f} ms query, {full:.1f} ms with JSON ({size / 1e6:.2f} MB)",
            )
        )
        points = 5_000 if quick else 50_000
        build, write = asyncio.run(hb.influx_rate(folder, points))
        data["influx_build_points_per_s"], data["influx_write_points_per_s"] = (
            round(build),
            round(write),
        )
        rows.append(("history", "InfluxDB line building", f"{build:,.0f} points/s"))
        rows.append(
            (
                "history",
                f"InfluxDB write to VictoriaMetrics ({points} points)",
                f"{write:,.0f} points/s" if write else "victoria-metrics not installed",
            )
        )
    return rows, data


def memory(quick: bool) -> tuple[list[Row], Any]:
    """RSS/PSS of ``bmsgate run`` and of each service alone; time to the first state."""
    from startup_bench import alone, run_tree

    tree = run_tree(6.0 if quick else 10.0)
    rows: list[Row] = [
        ("memory", "bmsgate run: start to first state", f"{tree['first_state_s']} s"),
        (
            "memory",
            f"bmsgate run: {len(tree['processes'])} processes, sum",
            f"RSS {tree['rss_sum_mb']} MB, PSS {tree['pss_sum_mb']} MB",
        ),
        (
            "memory",
            "bmsgate run: resident, each page once",
            f"{tree['resident_mb']} MB (target <= 100 MB PSS, bench/footprint.py)",
        ),
    ]
    rows += [
        ("memory", f"  {r['process']}", f"RSS {r['rss_mb']} MB, PSS {r['pss_mb']} MB")
        for r in tree["processes"]
    ]
    single = [] if quick else alone(5.0)
    rows += [
        (
            "memory",
            f"alone: {r['process']}",
            f"RSS {r['rss_mb']} MB"
            + (f" (imports only {r['imports_only_rss_mb']} MB)" if "running" in r else ""),
        )
        for r in single
    ]
    return rows, {"run": tree, "alone": single}


def peers(quick: bool) -> tuple[list[Row], Any]:
    """Peers: bmsgate beside other programs on the same simulated boards (peers.run)."""
    from peers import PROGRAMS, PROTOCOLS, run, summary

    keys, protocols = (["bmsgate"], PROTOCOLS[:1]) if quick else (list(PROGRAMS), PROTOCOLS)
    data = run(keys, list(protocols), 3.0 if quick else 60.0, 1.0 if quick else 10.0, 1.0)
    rows = [("peers", f"{r['protocol']}: {r['program']}", summary(r)) for r in data]
    return rows, data


# fmt: off
RUNNERS: dict[str, Callable[[bool], tuple[list[Row], Any]]] = {
    "reader": reader, "pipeline": pipeline, "modbus": modbus, "history": history,
    "memory": memory, "peers": peers,
}
# fmt: on


def main() -> None:
    """Run the chosen sections, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds each")
    # fmt: off
    parser.add_argument("--only", nargs="+", choices=SECTIONS + ON_REQUEST,
                        default=list(SECTIONS))
    # fmt: on
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    # fmt: off
    machine = {
        "cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(), "kernel": platform.release(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"), "quick": args.quick,
    }
    # fmt: on
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}")
    # sections not run this time keep their last figures (each carries its own date)
    old = json.loads(args.json.read_text()) if args.json.exists() and not args.quick else {}
    results: dict[str, Any] = {**old, "machine": machine}
    rows: list[Row] = []
    for name in args.only:
        before = loadavg()
        started = time.perf_counter()
        section_rows, data = RUNNERS[name](args.quick)
        took = time.perf_counter() - started
        results[name] = {
            "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "load_before": before,
            "load_after": loadavg(),
            "seconds": round(took, 1),
            "data": data,
        }
        rows += section_rows
        rows.append((name, "(load average before -> after)", f"{before} -> {loadavg()}"))
        print(f"[{name} done in {took:.0f} s]", flush=True)
    width = max(len(f) for _, f, _ in rows)
    print(f"\n{'section':9} {'figure':<{width}}  value")
    for section, figure, value in rows:
        print(f"{section:9} {figure:<{width}}  {value}")
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

"""History speed: archive ingest, chart queries, InfluxDB points/s against VictoriaMetrics.

Run: ``uv run python bench/history_bench.py [--hours 24] [--points 50000]``. Prints a table and
the machine. Not a test: figures depend on the machine; docs/history.md records measured ones.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support.victoria

from bmsgate_common.models import HistoryQuery, PackState
from bmsgate_common.settings import ArchiveSettings, InfluxSettings
from bmsgate_history.archive import Archive
from bmsgate_history.influx import InfluxWriter, to_line
from bmsgate_history.query import run_query
from bmsgate_history.sample import Sample, from_ms, from_state

T0 = int(datetime(2024, 3, 4, tzinfo=UTC).timestamp() * 1000)
CELLS = 16
FOREVER = ArchiveSettings(raw_days=10**5, minute_days=10**5, quarter_days=10**5)


def out(text: str) -> None:
    """One line of the report."""
    sys.stdout.write(text + "\n")


def samples(n: int, step_ms: int) -> list[Sample]:
    """``n`` plausible 16-cell samples ``step_ms`` apart."""
    rng = random.Random(1)
    result = []
    for i in range(n):
        cells = tuple(round(3.30 + rng.uniform(-0.01, 0.01), 3) for _ in range(CELLS))
        current = round(20 * rng.uniform(-1, 1), 2)
        result.append(
            Sample(
                T0 + i * step_ms,
                50.0 + (i % 500) / 10,
                round(sum(cells), 3),
                current,
                round(sum(cells) * current, 1),
                cells,
                (21.0, 22.5),
                30.0,
                50.0,
                100.0,
                True,
                True,
                False,
            )
        )
    return result


def states(n: int) -> list[PackState]:
    """``n`` pack states as the backbone delivers them."""
    return [
        PackState(
            pack="p1",
            name="p1",
            protocol="jk_pb",
            ts=from_ms(T0 + i * 1000),
            pack_voltage=s.pack_voltage,
            current=s.current,
            power=s.power,
            soc=s.soc,
            cell_voltages=list(s.cell_voltages),
            cell_count=CELLS,
            temperatures=list(s.temperatures),
        )
        for i, s in enumerate(samples(n, 1000))
    ]


def ingest(folder: Path, data: list[Sample], sync: str) -> float:
    """Samples per second into a fresh archive, committing every 1000 (as every few seconds)."""
    cfg = FOREVER.model_copy(update={"synchronous": sync})
    archive = Archive(folder / f"ingest-{sync}.sqlite", cfg)
    started = time.perf_counter()
    for i, s in enumerate(data):
        archive.add("p1", s)
        if i % 1000 == 999:
            archive.commit()
    archive.commit()
    elapsed = time.perf_counter() - started
    archive.close()
    return len(data) / elapsed


def ingest_states(folder: Path, data: list[PackState]) -> float:
    """The service's path: PackState -> sample -> archive."""
    archive = Archive(folder / "ingest-states.sqlite", FOREVER)
    started = time.perf_counter()
    for i, st in enumerate(data):
        archive.add("p1", from_state(st))
        if i % 1000 == 999:
            archive.commit()
    archive.commit()
    elapsed = time.perf_counter() - started
    archive.close()
    return len(data) / elapsed


def query_ms(
    archive: Archive, resolution: str, hours: float, fields: list[str]
) -> tuple[float, float, int]:
    """Median ms of 5 runs: the query alone, and query + JSON; and the reply size [bytes]."""
    # fmt: off
    q = HistoryQuery.model_validate(
        {"transaction": "b", "pack": "p1", "fields": fields, "start": from_ms(T0),
         "end": from_ms(T0 + int(hours * 3_600_000)), "resolution": resolution,
         "max_points": 2000}
    )
    # fmt: on
    now = T0 + int(hours * 3_600_000)
    plain, full = [], []
    size = 0
    for _ in range(5):
        started = time.perf_counter()
        reply = run_query(q, archive, FOREVER, UTC, now, 120_000)
        middle = time.perf_counter()
        size = len(reply.model_dump_json(exclude_none=True))
        done = time.perf_counter()
        plain.append((middle - started) * 1000)
        full.append((done - started) * 1000)
    return statistics.median(plain), statistics.median(full), size


async def influx_rate(folder: Path, n: int) -> tuple[float, float]:
    """Points/s: building the lines, and writing them to VictoriaMetrics in batches of 5000."""
    from tests.support.victoria import VictoriaMetrics, find_victoria

    if find_victoria() is None:
        return 0.0, 0.0
    data = states(min(n, 20_000))
    started = time.perf_counter()
    lines = [to_line(data[i % len(data)]) for i in range(n)]
    build = n / (time.perf_counter() - started)
    vm = VictoriaMetrics(folder)
    vm.start()
    try:
        cfg = InfluxSettings(enabled=True, url=vm.url, batch_size=5000, timeout=30)
        writer = InfluxWriter(cfg, folder / "buffer.sqlite")
        started = time.perf_counter()
        for text in lines:
            writer.add(text)
        await writer.flush()
        write = n / (time.perf_counter() - started)
        assert writer.written == n, writer.counters()
        await writer.close()
    finally:
        vm.stop()
    return build, write


def machine() -> str:
    """CPU model, cores usable, Python."""
    model = "unknown CPU"
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    return f"{model}, {cores} cores, {platform.python_implementation()} {platform.python_version()}"


def main() -> None:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, default=24.0, help="chart span for the queries")
    parser.add_argument("--points", type=int, default=50_000, help="InfluxDB points to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows: list[tuple[str, str]] = []
        data = samples(50_000, 1000)
        for sync in ("full", "normal"):
            rate = ingest(folder, data, sync)
            speed = f"{rate:,.0f} samples/s = {rate * CELLS:,.0f} cell-samples/s"
            rows.append((f"archive ingest, synchronous={sync}", speed))
        del data
        rate = ingest_states(folder, states(20_000))
        speed = f"{rate:,.0f} samples/s = {rate * CELLS:,.0f} cell-samples/s"
        rows.append(("archive ingest from PackState (service path)", speed))
        for step, label in ((1000, "1 s"), (5000, "5 s")):
            archive = Archive(folder / f"chart-{step}.sqlite", FOREVER)
            n = int(args.hours * 3_600_000 / step)
            for i, s in enumerate(samples(n, step)):
                archive.add("p1", s)
                if i % 5000 == 4999:
                    archive.commit()
            archive.commit()
            gc.collect()  # the bench's own big lists must not bill the queries for collection
            for res in ("auto", "raw"):
                q, full, size = query_ms(archive, res, args.hours, ["cells"])
                took = f"{q:.1f} ms query, {full:.1f} ms with JSON ({size / 1e6:.2f} MB)"
                if size < 1000:
                    took = f"refused in {q:.1f} ms: more than the reply limit, use auto/1m"
                rows.append((f"{args.hours:g} h 16-cell chart, poll {label}, {res}", took))
            if step == 5000:
                q, full, size = query_ms(archive, "auto", args.hours, ["power", "soc"])
                rows.append(
                    (
                        f"{args.hours:g} h power-flow chart (power, soc), auto",
                        f"{q:.1f} ms query, {full:.1f} ms with JSON",
                    )
                )
            archive.close()
        build, write = asyncio.run(influx_rate(folder, args.points))
        rows.append(("InfluxDB line building (16 cells)", f"{build:,.0f} points/s"))
        speed = f"{write:,.0f} points/s" if write else "victoria-metrics not installed"
        rows.append((f"InfluxDB write to VictoriaMetrics ({args.points} points)", speed))
    out(f"machine: {machine()}")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        out(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()

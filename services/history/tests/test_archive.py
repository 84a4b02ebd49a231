"""The archive on a real SQLite file: storing, buckets, queries, gaps, retention, deletion, crashes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bmsgate_bms.sim.model import PackModel
from bmsgate_common.models import HistoryQuery
from bmsgate_common.settings import ArchiveSettings
from bmsgate_history.archive import Archive, Store, pack_cells, unpack_cells
from bmsgate_history.query import parse, run_query
from bmsgate_history.sample import Sample, from_ms
from tests.support.simdrive import T0, cycles

FOREVER = ArchiveSettings(raw_days=10**5, minute_days=10**5, quarter_days=10**5)
HOUR = 3_600_000
DAY_MS = 86_400_000


def flat(ts: int, *, power: float = 100.0, cells: int = 4, soc: float = 50.0) -> Sample:
    return Sample(ts, soc, 13.2, power / 13.2, power, (3.3,) * (cells - 1) + (3.305,), (20.5,))


def query(archive: Store, **kw: object) -> object:
    body = {"transaction": "t1", "pack": "p1", "fields": ["cells", "soc"], **kw}
    q = parse(json.dumps(body, default=str))
    assert isinstance(q, HistoryQuery), q
    return run_query(q, archive, FOREVER, UTC, T0 + 10 * 24 * HOUR, 120_000)


def test_cells_round_trip_exactly() -> None:
    volts = (3.305, 3.3051, 0.0, 4.2, 2.5)
    assert unpack_cells(pack_cells(volts)) == volts


def test_states_become_raw_rows_and_buckets(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a.sqlite", FOREVER)
    for i in range(180):  # 15 minutes at 5 s
        archive.add("p1", flat(T0 + i * 5000))
    archive.commit()
    assert archive.count_raw("p1", T0, T0 + HOUR) == 180
    minute = archive.buckets("1m", "p1", T0, T0 + HOUR)
    assert len(minute) == 15 and minute[0].n == 12
    assert minute[0].cell_voltages is not None and minute[0].cell_voltages.avg[-1] == pytest.approx(
        3.305
    )
    quarter = archive.buckets("15m", "p1", T0, T0 + HOUR)
    assert len(quarter) == 1 and quarter[0].n == 180
    # energy: 100 W for 179 intervals of 5 s
    assert quarter[0].e_in == pytest.approx(100 * 179 * 5 / 3600, rel=1e-3)
    archive.close()


def test_a_replayed_state_is_not_stored_twice(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a.sqlite", FOREVER)
    archive.add("p1", flat(T0 + 5000))
    archive.add("p1", flat(T0 + 5000))
    archive.add("p1", flat(T0 + 6000))
    archive.add("p1", flat(T0 + 5000))  # replayed after a newer one: stored already
    archive.commit()
    assert archive.count_raw("p1", 0, T0 + HOUR) == 2


def test_after_the_clock_is_set_back_samples_are_stored_not_dropped(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a.sqlite", FOREVER)
    for k in range(120):  # two minutes, one sample a second, then the clock goes back an hour
        archive.add("p1", flat(T0 + HOUR + k * 1000))
    for k in range(120):  # the same two minutes again, half a second later each
        archive.add("p1", flat(T0 + HOUR + k * 1000 + 500))
    archive.commit()
    assert archive.count_raw("p1", 0, T0 + 2 * HOUR) == 240
    minutes = archive.buckets("1m", "p1", 0, T0 + 2 * HOUR)
    assert [b.n for b in minutes] == [120, 120]  # the buckets stored before, merged
    # no energy across the step: each run integrates its own 119 s (100 W)
    e_in = sum(s.e_in for s in archive.samples("p1", 0, T0 + 2 * HOUR))
    assert e_in == pytest.approx(2 * 100 * 119 / 3600, rel=1e-3)  # [Wh]
    archive.close()


def test_retention_never_counts_from_a_clock_ahead_of_the_samples(tmp_path: Path) -> None:
    cfg = ArchiveSettings(raw_days=30, minute_days=190, quarter_days=1830)
    archive = Archive(tmp_path / "a.sqlite", cfg)
    for day in range(40):
        archive.add("p1", flat(T0 + day * DAY_MS))
    archive.commit()
    assert archive.purge(T0 + 440 * DAY_MS) == 9  # the clock 400 days ahead: as at the newest
    assert archive.count_raw("p1", 0, T0 + 40 * DAY_MS) == 31
    archive.close()


def test_queries_at_every_resolution(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a.sqlite", FOREVER)
    for s in cycles(PackModel.create(16, 100, soc=50), 1, step=30):
        archive.add("p1", s)
    archive.commit()
    start, end = from_ms(T0), from_ms(T0 + 24 * HOUR)
    replies = {
        res: query(
            archive,
            start=start,
            end=end,
            resolution=res,
            fields=["cells", "soc", "power", "energy_in", "energy_out", "cell_delta"],
        )
        for res in ("raw", "1m", "15m", "1d", "auto")
    }
    raw, minute, quarter, day = (replies[r] for r in ("raw", "1m", "15m", "1d"))
    assert raw.status == "ok" and len(raw.times) == 2879  # type: ignore[attr-defined]
    assert len(minute.times) == 1440 and len(quarter.times) == 96  # type: ignore[attr-defined]
    assert len(day.times) == 1  # type: ignore[attr-defined]
    assert replies["auto"].resolution == "1m"  # type: ignore[attr-defined]
    names = [s.name for s in minute.series]  # type: ignore[attr-defined]
    assert names[:16] == [f"cell_{k}" for k in range(1, 17)] and "cell_delta" in names
    cell1 = minute.series[0]  # type: ignore[attr-defined]
    assert cell1.unit == "V" and cell1.min[0] <= cell1.values[0] <= cell1.max[0]
    # the energy adds up the same at every resolution
    totals = [
        sum(v for v in next(s for s in r.series if s.name == "energy_in").values if v)  # type: ignore[attr-defined]
        for r in (raw, minute, quarter, day)
    ]
    assert max(totals) - min(totals) < 0.001 and totals[0] > 1
    assert not raw.gaps  # type: ignore[attr-defined]


def test_offline_packs_make_gaps_not_repeated_values(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a.sqlite", FOREVER)
    for i in range(60):
        archive.add("p1", flat(T0 + i * 5000))
    archive.gap("p1")  # offline for 10 minutes
    for i in range(60):
        archive.add("p1", flat(T0 + 15 * 60_000 + i * 5000))
    archive.commit()
    reply = query(archive, start=from_ms(T0), end=from_ms(T0 + 20 * 60_000), resolution="raw")
    assert len(reply.times) == 120  # type: ignore[attr-defined]
    (gap,) = [g for g in reply.gaps if g.end < from_ms(T0 + 16 * 60_000)]  # type: ignore[attr-defined]
    assert gap.start == from_ms(T0 + 59 * 5000) and gap.end == from_ms(T0 + 15 * 60_000)
    minute = query(archive, start=from_ms(T0), end=from_ms(T0 + 20 * 60_000), resolution="1m")
    assert len(minute.times) == 10  # type: ignore[attr-defined]
    assert minute.gaps[0].start == from_ms(T0 + 5 * 60_000)  # type: ignore[attr-defined]
    # nothing was integrated across the outage
    energy = query(
        archive, start=from_ms(T0), end=from_ms(T0 + HOUR), resolution="raw", fields=["energy_in"]
    )
    assert energy.series[0].values[60] == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("payload", "needle", "transaction"),
    [
        (b"not json", "invalid query", None),
        (b'{"transaction": "t9", "pack": "p1"}', "fields", "t9"),
        (
            b'{"transaction": "t9", "pack": "../etc", "fields": ["soc"], '
            b'"start": "2024-01-02T00:00:00Z", "end": "2024-01-03T00:00:00Z"}',
            "pack",
            "t9",
        ),
        (
            b'{"transaction": "t9", "pack": "p1", "fields": ["soc"], '
            b'"start": "2024-01-03T00:00:00Z", "end": "2024-01-02T00:00:00Z"}',
            "end must be after",
            "t9",
        ),
        (
            b'{"transaction": "t9", "pack": "p1", "fields": ["bogus"], '
            b'"start": "2024-01-02T00:00:00Z", "end": "2024-01-03T00:00:00Z"}',
            "fields.0",
            "t9",
        ),
        (b'{"transaction": "t 9", "pack": "p1"}', "transaction", None),
        (b"[]", "invalid query", None),
        (b"[" * 5000 + b"]" * 5000, "recursion limit", None),  # json.loads: RecursionError
    ],
)
def test_malformed_queries_get_an_error_reply(
    payload: bytes, needle: str, transaction: str | None
) -> None:
    reply = parse(payload)
    assert reply.status == "error" and needle in (reply.error or "")  # type: ignore[union-attr]
    assert reply.transaction == transaction  # type: ignore[union-attr]


def test_retention_deletes_per_table(tmp_path: Path) -> None:
    cfg = ArchiveSettings(raw_days=1, minute_days=2, quarter_days=3)
    archive = Archive(tmp_path / "a.sqlite", cfg)
    for day in range(4):
        for i in range(3):
            archive.add("p1", flat(T0 + day * 24 * HOUR + i * 60_000))
    archive.commit()
    archive.purge(T0 + 3 * 24 * HOUR + HOUR)
    assert next(s.ts for s in archive.samples("p1", 0, 2**62)) >= T0 + 2 * 24 * HOUR
    assert len(archive.buckets("1m", "p1", 0, 2**62)) == 6
    assert len(archive.buckets("15m", "p1", 0, 2**62)) == 3


def test_delete_a_range_rebuilds_edge_buckets(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a.sqlite", FOREVER)
    for i in range(240):  # 20 minutes at 5 s
        archive.add("p1", flat(T0 + i * 5000))
    archive.commit()
    n = archive.delete_range("p1", T0 + 90_000, T0 + 600_000)  # 1:30 .. 10:00
    assert n == 102
    minutes = archive.buckets("1m", "p1", T0, T0 + HOUR)
    assert [b.start - T0 for b in minutes][:3] == [0, 60_000, 600_000]
    assert minutes[1].n == 6  # the minute 1:00-2:00 keeps its first half
    quarter = archive.buckets("15m", "p1", T0, T0 + HOUR)
    assert quarter[0].n == 180 - 102
    # the writer continues the open buckets correctly after the deletion
    archive.add("p1", flat(T0 + 240 * 5000))
    archive.commit()
    assert archive.buckets("15m", "p1", T0 + 900_000, T0 + HOUR)[0].n == 61


def test_restart_continues_the_open_bucket(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a.sqlite", FOREVER)
    for i in range(6):
        archive.add("p1", flat(T0 + i * 5000))
    archive.close()
    archive = Archive(tmp_path / "a.sqlite", FOREVER)
    for i in range(6, 12):
        archive.add("p1", flat(T0 + i * 5000))
    archive.commit()
    (minute,) = archive.buckets("1m", "p1", T0, T0 + 60_000)
    assert minute.n == 12
    # energy continues across the restart (the previous sample is read back)
    assert minute.e_in == pytest.approx(100 * 11 * 5 / 3600, rel=1e-3)


CRASHER = """
import os, sys
from pathlib import Path
from bmsgate_common.settings import ArchiveSettings
from bmsgate_history.archive import Archive
from bmsgate_history.sample import Sample
archive = Archive(Path(sys.argv[1]), ArchiveSettings())
for i in range(1000):
    archive.add("p1", Sample(1_700_000_000_000 + i * 1000, 50.0, 13.2, 1.0, 13.2, (3.3,) * 4, ()))
    if i == 499:
        archive.commit()
os.kill(os.getpid(), 9)
"""


def test_committed_writes_survive_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(path)], check=False)
    assert proc.returncode == -9
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM raw").fetchone()[0] == 500
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert os.path.exists(path)


def test_unknown_pack_range_is_one_gap(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "a.sqlite", FOREVER)
    reply = query(
        archive,
        pack="nobody",
        start=datetime(2024, 1, 1, tzinfo=UTC),
        end=datetime(2024, 1, 2, tzinfo=UTC),
        resolution="1m",
    )
    assert reply.status == "ok" and reply.times == []  # type: ignore[attr-defined]
    assert reply.gaps[0].end - reply.gaps[0].start == timedelta(days=1)  # type: ignore[attr-defined]


def test_a_full_file_is_one_error_then_writing_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bmsgate_history.archive.QUIET", 0.0)
    archive = Archive(tmp_path / "a.sqlite", ArchiveSettings())
    for i in range(10):
        archive.add("p1", flat(T0 + i * 1000))
    archive.commit()
    pages = archive.conn.execute("PRAGMA page_count").fetchone()[0]
    archive.conn.execute(f"PRAGMA max_page_count={pages}")  # SQLITE_FULL, as on a full disk
    for i in range(10, 2000):
        archive.add("p1", flat(T0 + i * 1000))  # never raises
        if i % 100 == 0:
            archive.commit()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "a.sqlite" in errors[0].getMessage()
    assert "full" in errors[0].getMessage()
    assert archive.unstored > 0 and archive.write_error is not None
    archive.conn.execute("PRAGMA max_page_count=1073741823")  # space returns
    for i in range(2000, 2010):
        archive.add("p1", flat(T0 + i * 1000))
    archive.commit()
    assert archive.write_error is None
    assert archive.count_raw("p1", T0 + 2000 * 1000, T0 + 2010 * 1000) == 10
    assert archive.written + archive.unstored == 2010
    assert archive.count_raw("p1", 0, 2**62) == archive.written


def test_gaps_follow_the_poll_interval_and_a_banks_members(tmp_path: Path) -> None:
    from bmsgate_common.settings import BankSettings, BusSettings
    from bmsgate_history.query import Layout, raw_tolerance

    # two poll intervals; three usual steps where the bus is slower; 5 s at least; max_gap at most
    assert raw_tolerance([0, 5000, 10_000], 5000, 120_000) == 15_000
    assert raw_tolerance([0, 20_000, 40_000], 5000, 120_000) == 60_000
    assert raw_tolerance([0, 500, 1000], 500, 120_000) == 5000
    assert raw_tolerance([0, 60_000, 120_000], 5000, 120_000) == 120_000

    archive = Archive(tmp_path / "a.sqlite", FOREVER)
    for i in range(120):  # 10 minutes at 5 s: the bank and one member throughout
        archive.add("bank", flat(T0 + i * 5000, power=200))
        archive.add("a", flat(T0 + i * 5000))
        if not 40 <= i < 44:  # member b away for 20 s: the bank is a's alone meanwhile
            archive.add("b", flat(T0 + i * 5000))
    archive.commit()
    packs = [{"id": "a", "address": 1}, {"id": "b", "address": 2}]
    buses = [BusSettings.model_validate({"port": "/dev/null", "protocol": "jk_pb", "packs": packs})]
    layout = Layout.of(buses, [BankSettings(id="bank", packs=["a", "b"])])
    assert layout.poll_ms == {"a": 5000, "b": 5000, "bank": 5000}
    body = {"transaction": "t", "fields": ["power"], "resolution": "raw"}
    span = {"start": str(from_ms(T0)), "end": str(from_ms(T0 + 10 * 60_000))}
    now = T0 + 10 * 60_000

    def gaps(pack: str) -> list[tuple[datetime, datetime]]:
        q = parse(json.dumps({**body, **span, "pack": pack}))
        assert isinstance(q, HistoryQuery)
        reply = run_query(q, archive, FOREVER, UTC, now, 120_000, layout)
        return [(g.start, g.end) for g in reply.gaps]

    assert gaps("a") == []
    # 25 s without b at 5 s polls: a gap in b and so in the bank, though the bank kept reporting
    outage = (from_ms(T0 + 39 * 5000), from_ms(T0 + 44 * 5000))
    assert gaps("b") == [outage]
    assert gaps("bank") == [outage]
    archive.close()

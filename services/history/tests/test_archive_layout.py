"""An archive written with the column names before layout 2 opens, renamed, with nothing lost."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date
from pathlib import Path

import pytest

from bmsgate_common.settings import ArchiveSettings
from bmsgate_history.archive import (
    _SCALARS_1,
    AGG_COLUMNS,
    LAYOUT,
    RAW_COLUMNS,
    Archive,
    Store,
    _schema,
    pack_cells,
    pack_temps,
)
from bmsgate_history.export import day_csv
from bmsgate_history.sample import Sample

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
FOREVER = ArchiveSettings(raw_days=10**5, minute_days=10**5, quarter_days=10**5)
CELLS = (3.3051, 3.2949, 3.31, 3.2999)


def _old_archive(path: Path) -> None:
    """Layout 1 as the bmsgate before it wrote it: its own column names, version 1 stamped."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(_schema())
    conn.execute("INSERT INTO packs (id, name) VALUES (1, 'garage')")
    for i in range(30):  # every 5 s, into the first minute buckets
        conn.execute(
            "INSERT INTO raw (pack, ts, soc, voltage, current, power, cells, temps, mos_temp,"
            " remaining, nominal, chg, dsg, bal, energy_in, energy_out, cycles, e_in, e_out)"
            " VALUES (1, ?, ?, 13.2, -2.5, -33.0, ?, ?, 31.5, 80.5, 100.0, 1, 0, ?, 1.25,"
            " 2.5, 7, 0.0, 0.0458)",
            (T0 + i * 5000, 50.0 + i / 10, pack_cells(CELLS), pack_temps((21.5, 22.0)), i % 2),
        )
    scalars = ", ".join(f"{s}_min, {s}_avg, {s}_max" for s in _SCALARS_1)
    conn.execute(
        f"INSERT INTO agg_1m (pack, ts, n, {scalars}, cells_lo, cells_avg, cells_hi, temps_lo,"
        " temps_avg, temps_hi, e_in, e_out) VALUES (1, ?, 12, "
        + ", ".join("?" * (3 * len(_SCALARS_1)))
        + ", ?, ?, ?, ?, ?, ?, 0.0, 0.55)",
        (
            T0 - 60_000,  # a bucket older than the raw rows: only the buckets hold it
            *[v for _ in _SCALARS_1 for v in (1.0, 2.0, 3.0)],
            *(pack_cells(CELLS),) * 3,
            *(pack_temps((21.5, 22.0)),) * 3,
        ),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.close()


def _columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def test_an_archive_of_the_old_names_is_renamed_and_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "history" / "archive.sqlite"
    path.parent.mkdir()
    _old_archive(path)
    assert "voltage" in _columns(path, "raw") and "cells_avg" in _columns(path, "agg_1m")

    store = Store(path)
    try:
        samples = list(store.samples("garage", T0, T0 + 3_600_000))
        minute = store.buckets("1m", "garage", T0 - 60_000, T0)
        text = day_csv(store, "garage", date(2026, 1, 1), UTC)
    finally:
        store.close()
    # the columns now carry the sample's (PackState's) names, in the same rows
    assert [c for c in _columns(path, "raw") if c != "pack"] == list(RAW_COLUMNS)
    assert [c for c in _columns(path, "agg_1m") if c != "pack"] == list(AGG_COLUMNS)
    assert len(samples) == 30
    first = samples[1]
    assert first == Sample(
        ts=T0 + 5000,
        soc=50.1,
        pack_voltage=13.2,
        current=-2.5,
        power=-33.0,
        cell_voltages=CELLS,
        temperatures=(21.5, 22.0),
        mos_temperature=31.5,
        remaining_capacity=80.5,
        nominal_capacity=100.0,
        charge_mos=True,
        discharge_mos=False,
        balancing=True,
        energy_in=1.25,
        energy_out=2.5,
        cycles=7,
        e_in=0.0,
        e_out=0.0458,
    )
    (bucket,) = minute
    assert bucket.n == 12 and bucket.e_out == 0.55
    assert bucket.cell_voltages is not None and bucket.cell_voltages.avg == pytest.approx(CELLS)
    assert bucket.stat(0) == (1.0, 2.0, 3.0)
    assert text.splitlines()[1].startswith("2026-01-01T00:00:00+00:00,3.3051,3.2949,3.3100")
    assert len(list((path.parent / "backups").iterdir())) == 1  # the old file, copied first


def test_writing_goes_on_after_the_rename(tmp_path: Path) -> None:
    path = tmp_path / "archive.sqlite"
    _old_archive(path)
    archive = Archive(path, FOREVER)
    # the open bucket is taken up from the old rows, and new samples join it
    archive.add("garage", Sample(T0 + 150_000, 60.0, 13.3, 1.0, 13.3, CELLS, (22.0,)))
    archive.commit()
    assert archive.count_raw("garage", T0, T0 + 3_600_000) == 31
    quarter = archive.buckets("15m", "garage", T0, T0 + 900_000)
    assert quarter[0].n == 31
    archive.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(LAYOUT)


@pytest.mark.parametrize("table", ["raw", "agg_1m", "agg_15m"])
def test_a_new_archive_has_the_names_too(tmp_path: Path, table: str) -> None:
    Store(tmp_path / "archive.sqlite").close()
    columns = [c for c in _columns(tmp_path / "archive.sqlite", table) if c != "pack"]
    assert columns == list(RAW_COLUMNS if table == "raw" else AGG_COLUMNS)

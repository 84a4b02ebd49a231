"""The archive: one SQLite file (WAL) with every sample, 1-minute and 15-minute buckets.

Tables (docs/history.md has the full schema): ``raw`` (one row per pack state, cells packed as
uint16 in 0.1 mV), ``agg_1m`` and ``agg_15m`` (min/avg/max of every series per bucket, energy per
bucket), ``packs`` (name <-> small integer key). Rows are keyed (pack, ts) WITHOUT ROWID, so a
pack's time range is one index range scan.

Durability: writes go into one open transaction that ``commit()`` closes every
``commit_interval`` seconds; with ``synchronous=FULL`` each commit fsyncs the WAL, so a crash or a
power cut loses at most the last interval, and the file is never corrupt.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from bmsgate_common.clock import span
from bmsgate_common.schema_version import Step, open_file, statements
from bmsgate_common.settings import ArchiveSettings

from .buckets import SCALARS, STEPS, UNITS, Bucket, Vec, bucket_start
from .sample import CELL_SCALE, TEMP_SCALE, Sample, energy

log = logging.getLogger(__name__)

DAY_MS: Final = 86_400_000
REPORT_EVERY: Final = 600.0  # [s] a failing write is logged at most this often
QUIET: Final = 30.0  # [s] without a failed write before writing counts as working again
AGG_TABLES: Final = {"1m": "agg_1m", "15m": "agg_15m"}
# the columns are named as the Sample's fields, which are PackState's: rows are written and read
# by these names, never by position; the units the columns keep where they are not SI
RAW_COLUMNS: Final = Sample._fields
COLUMN_UNITS: Final = {"e_in": "Wh", "e_out": "Wh"}  # energy moved per sample or bucket
# the vector series and the columns of their per-element min/mean/max in a bucket
VECTORS: Final = ("cell_voltages", "temperatures")
AGG_COLUMNS: Final = (
    "ts",
    "n",
    *(f"{s}_{k}" for s in SCALARS for k in ("min", "avg", "max")),
    *(f"{v}_{k}" for v in VECTORS for k in ("lo", "avg", "hi")),
    "e_in",
    "e_out",
)


def _names(columns: Sequence[str]) -> str:
    return ", ".join(columns)


def _insert(table: str, columns: Sequence[str]) -> str:
    """An INSERT OR REPLACE of ``columns`` (and the pack) with named parameters."""
    names = ("pack", *columns)
    return (
        f"INSERT OR REPLACE INTO {table} ({_names(names)}) "
        f"VALUES ({', '.join(':' + c for c in names)})"
    )


# the tables as bmsgate 0.1.0 made them (layout 1); later layouts change them by steps only
# fmt: off
_SCALARS_1: Final = (
    "soc", "pack_voltage", "current", "power", "mos_temperature", "remaining_capacity",
    "cell_min", "cell_max", "cell_delta", "cell_average", "charge_mos", "discharge_mos",
    "balancing",
)
# fmt: on


def _schema() -> str:
    scalar_defs = ", ".join(f"{s}_min REAL, {s}_avg REAL, {s}_max REAL" for s in _SCALARS_1)
    agg = (
        "(pack INTEGER NOT NULL, ts INTEGER NOT NULL, n INTEGER NOT NULL, "
        f"{scalar_defs}, cells_lo BLOB, cells_avg BLOB, cells_hi BLOB, "
        "temps_lo BLOB, temps_avg BLOB, temps_hi BLOB, e_in REAL, e_out REAL, "
        "PRIMARY KEY (pack, ts)) WITHOUT ROWID"
    )
    return f"""
    CREATE TABLE IF NOT EXISTS packs (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE IF NOT EXISTS raw (
        pack INTEGER NOT NULL, ts INTEGER NOT NULL,
        soc REAL, voltage REAL, current REAL, power REAL, cells BLOB, temps BLOB,
        mos_temp REAL, remaining REAL, nominal REAL, chg INTEGER, dsg INTEGER, bal INTEGER,
        energy_in REAL, energy_out REAL, cycles INTEGER, e_in REAL, e_out REAL,
        PRIMARY KEY (pack, ts)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS agg_1m {agg};
    CREATE TABLE IF NOT EXISTS agg_15m {agg};
    CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """


# layout 2: the columns 0.1.0 named otherwise take PackState's names (old -> new, per table)
# fmt: off
_VECTORS_2: Final = {
    f"{old}_{k}": f"{new}_{k}"
    for old, new in (("cells", "cell_voltages"), ("temps", "temperatures"))
    for k in ("lo", "avg", "hi")
}
RENAMED_2: Final[dict[str, dict[str, str]]] = {
    "raw": {
        "voltage": "pack_voltage", "cells": "cell_voltages", "temps": "temperatures",
        "mos_temp": "mos_temperature", "remaining": "remaining_capacity",
        "nominal": "nominal_capacity", "chg": "charge_mos", "dsg": "discharge_mos",
        "bal": "balancing",
    },
    "agg_1m": _VECTORS_2,
    "agg_15m": _VECTORS_2,
}
# fmt: on


def pack_cells(values: tuple[float, ...] | list[float]) -> bytes:
    """Cell voltages [V] as uint16 in 0.1 mV (clamped to 0..6.5535 V)."""
    return array("H", [min(65535, max(0, round(v * CELL_SCALE))) for v in values]).tobytes()


def unpack_cells(blob: bytes | None) -> tuple[float, ...]:
    """Inverse of pack_cells; the division gives the shortest decimal back (3.305, not 3.30499)."""
    if not blob:
        return ()
    return tuple(x / CELL_SCALE for x in array("H", blob))


def pack_temps(values: tuple[float, ...] | list[float]) -> bytes:
    """Temperatures [°C] as int16 in 0.1 °C."""
    return array("h", [min(32767, max(-32768, round(v * TEMP_SCALE))) for v in values]).tobytes()


def unpack_temps(blob: bytes | None) -> tuple[float, ...]:
    """Inverse of pack_temps."""
    if not blob:
        return ()
    return tuple(x / TEMP_SCALE for x in array("h", blob))


def _when(ms: int) -> str:
    """A moment [ms] for the log, in UTC."""
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M} UTC"


def _bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _int(value: bool | None) -> int | None:
    return None if value is None else int(value)


_TO_COLUMN: Final[dict[str, Callable[[Any], Any]]] = {
    "cell_voltages": pack_cells,
    "temperatures": pack_temps,
    "charge_mos": _int,
    "discharge_mos": _int,
    "balancing": _int,
}
_FROM_COLUMN: Final[dict[str, Callable[[Any], Any]]] = {
    "cell_voltages": unpack_cells,
    "temperatures": unpack_temps,
    "charge_mos": _bool,
    "discharge_mos": _bool,
    "balancing": _bool,
    "e_in": lambda v: v or 0.0,
    "e_out": lambda v: v or 0.0,
}
_PACKERS: Final = {
    "cell_voltages": (pack_cells, unpack_cells),
    "temperatures": (pack_temps, unpack_temps),
}
INSERT_RAW: Final = _insert("raw", RAW_COLUMNS)
INSERT_AGG: Final = {table: _insert(table, AGG_COLUMNS) for table in AGG_TABLES.values()}


def raw_row(pack: int, s: Sample) -> dict[str, Any]:
    """The ``raw`` table row of a sample, by column name (``INSERT_RAW``'s parameters)."""
    row: dict[str, Any] = {"pack": pack}
    for column, value in zip(RAW_COLUMNS, s, strict=True):
        encode = _TO_COLUMN.get(column)
        row[column] = value if encode is None else encode(value)
    return row


class NamedRow(Protocol):
    """A row read by column name: ``sqlite3.Row``, or a dict such as ``agg_row`` gives."""

    def __getitem__(self, key: str, /) -> Any: ...


def sample_of(row: NamedRow) -> Sample:
    """The sample of a ``raw`` row read by name (``sqlite3.Row`` of RAW_COLUMNS)."""
    fields: dict[str, Any] = {}
    for column in RAW_COLUMNS:
        decode = _FROM_COLUMN.get(column)
        fields[column] = row[column] if decode is None else decode(row[column])
    return Sample(**fields)


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def agg_row(pack: int, b: Bucket) -> dict[str, Any]:
    """The ``agg_*`` table row of a bucket, by column name (``INSERT_AGG``'s parameters)."""
    row: dict[str, Any] = {"pack": pack, "ts": b.start, "n": b.n}
    for i, name in enumerate(SCALARS):
        digits = UNITS[name][1] + 1  # one digit more than shown, so merged means stay right
        lo, avg, hi = b.stat(i)
        row |= {f"{name}_min": _round(lo, digits), f"{name}_avg": _round(avg, digits)}
        row[f"{name}_max"] = _round(hi, digits)
    for name in VECTORS:
        vec: Vec | None = getattr(b, name)
        packer = _PACKERS[name][0]
        for k in ("lo", "avg", "hi"):
            row[f"{name}_{k}"] = None if vec is None else packer(getattr(vec, k))
    row["e_in"], row["e_out"] = round(b.e_in, 4), round(b.e_out, 4)
    return row


def bucket_of(row: NamedRow) -> Bucket:
    """The bucket of an ``agg_*`` row read by name (sums rebuilt from means)."""
    n = row["n"]
    b = Bucket(row["ts"], n)
    for i, name in enumerate(SCALARS):
        avg = row[f"{name}_avg"]
        if avg is not None:
            # per-scalar counts are not stored; the sample count weights the mean
            b.count[i], b.total[i] = n, avg * n
            b.lo[i], b.hi[i] = row[f"{name}_min"], row[f"{name}_max"]
    for name in VECTORS:
        unpack = _PACKERS[name][1]
        if row[f"{name}_avg"]:
            lo, avg, hi = (list(unpack(row[f"{name}_{k}"])) for k in ("lo", "avg", "hi"))
            setattr(b, name, Vec(lo, [a * n for a in avg], hi, n))
    b.e_in, b.e_out = row["e_in"] or 0.0, row["e_out"] or 0.0
    return b


def _layout_1(conn: sqlite3.Connection) -> None:
    """The tables as bmsgate 0.1.0 made them (that file had no layout version: 0)."""
    for statement in statements(_schema()):
        conn.execute(statement)


def _layout_2(conn: sqlite3.Connection) -> None:
    """Columns named as PackState's fields (RENAMED_2); SQLite renames in place, rows untouched."""
    for table, names in RENAMED_2.items():
        for old, new in names.items():
            conn.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")


# the archive's layout steps (bmsgate_common.schema_version): LAYOUT[n] takes version n to n + 1
LAYOUT: Final[tuple[Step, ...]] = (_layout_1, _layout_2)


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
    """A query whose rows are read by column name."""
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row
    return cursor.execute(sql, params)


def connect(path: Path, synchronous: str = "full") -> sqlite3.Connection:
    """Open (creating or migrating) the archive in WAL mode; autocommit, explicit transactions.

    A file of a newer bmsgate raises NewerFile before anything is written to it.
    """
    return open_file(path, LAYOUT, synchronous)


class Store:
    """Reading the archive; safe to use from one other thread while the writer writes."""

    def __init__(self, path: Path, synchronous: str = "full") -> None:
        self.path = path
        self.conn = connect(path, synchronous)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def pack_id(self, name: str) -> int | None:
        """The table key of pack ``name``, or None if it was never stored."""
        row = self.conn.execute("SELECT id FROM packs WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def packs(self) -> list[str]:
        """Every pack the archive has seen."""
        return [r[0] for r in self.conn.execute("SELECT name FROM packs ORDER BY name")]

    def samples(self, pack: str, start: int, end: int) -> Iterator[Sample]:
        """Stored samples of ``pack`` in [start, end) ms, in time order."""
        pid = self.pack_id(pack)
        if pid is None:
            return
        cursor = _rows(
            self.conn,
            f"SELECT {_names(RAW_COLUMNS)} FROM raw "
            "WHERE pack = ? AND ts >= ? AND ts < ? ORDER BY ts",
            (pid, start, end),
        )
        for row in cursor:
            yield sample_of(row)

    def raw_columns(
        self, pack: str, start: int, end: int, columns: Sequence[str]
    ) -> list[sqlite3.Row]:
        """The raw ``columns`` (of RAW_COLUMNS) of ``pack`` in [start, end) ms, by name."""
        pid = self.pack_id(pack)
        if pid is None:
            return []
        unknown = set(columns) - set(RAW_COLUMNS)
        if unknown:
            raise ValueError(f"not a raw column: {', '.join(sorted(unknown))}")
        return _rows(
            self.conn,
            f"SELECT {_names(columns)} FROM raw WHERE pack = ? AND ts >= ? AND ts < ? ORDER BY ts",
            (pid, start, end),
        ).fetchall()

    def count_raw(self, pack: str, start: int, end: int) -> int:
        """How many samples of ``pack`` lie in [start, end) ms."""
        pid = self.pack_id(pack)
        if pid is None:
            return 0
        row = self.conn.execute(
            "SELECT count(*) FROM raw WHERE pack = ? AND ts >= ? AND ts < ?", (pid, start, end)
        ).fetchone()
        return int(row[0])

    def oldest(self, table: str, pack: str) -> int | None:
        """The earliest ts [ms] of ``pack`` in ``table`` (raw, agg_1m, agg_15m)."""
        pid = self.pack_id(pack)
        if pid is None:
            return None
        row = self.conn.execute(f"SELECT min(ts) FROM {table} WHERE pack = ?", (pid,)).fetchone()
        return None if row[0] is None else int(row[0])

    def buckets(self, resolution: str, pack: str, start: int, end: int) -> list[Bucket]:
        """Stored buckets ("1m" or "15m") of ``pack`` starting in [start, end) ms."""
        pid = self.pack_id(pack)
        if pid is None:
            return []
        return [bucket_of(r) for r in self.agg_rows(resolution, pack, start, end)]

    def agg_rows(self, resolution: str, pack: str, start: int, end: int) -> list[sqlite3.Row]:
        """Stored bucket rows (AGG_COLUMNS, by name) of ``pack`` starting in [start, end) ms."""
        pid = self.pack_id(pack)
        if pid is None:
            return []
        return _rows(
            self.conn,
            f"SELECT {_names(AGG_COLUMNS)} FROM {AGG_TABLES[resolution]} "
            "WHERE pack = ? AND ts >= ? AND ts < ? ORDER BY ts",
            (pid, start, end),
        ).fetchall()

    def energy(self, pack: str, start: int, end: int) -> list[tuple[int, float, float]]:
        """(start [ms], Wh in, Wh out) of ``pack``'s 15-minute buckets starting in [start, end)."""
        pid = self.pack_id(pack)
        if pid is None:
            return []
        rows = self.conn.execute(
            "SELECT ts, e_in, e_out FROM agg_15m WHERE pack = ? AND ts >= ? AND ts < ? ORDER BY ts",
            (pid, start, end),
        )
        return [(int(ts), e_in or 0.0, e_out or 0.0) for ts, e_in, e_out in rows]

    def get(self, key: str) -> str | None:
        """A stored text value (health and daily state)."""
        row = self.conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])


class _Open:
    """What the writer holds per pack between commits: the previous sample, the open buckets."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.prev: Sample | None = None
        self.open: dict[str, Bucket] = {}


class Archive(Store):
    """The single writer: adds samples, keeps buckets current, commits, purges, deletes."""

    def __init__(self, path: Path, cfg: ArchiveSettings, max_gap: float = 120.0) -> None:
        super().__init__(path, cfg.synchronous)
        self.cfg = cfg
        self.max_gap_ms = int(max_gap * 1000)
        self._packs: dict[str, _Open] = {}
        self._in_tx = False
        self.written = 0  # samples stored since start
        self.unstored = 0  # samples lost because the file could not be written
        self._uncommitted = 0  # samples added since the last commit
        self.write_error: str | None = None  # why writing fails right now (disk full, I/O)
        self._failed_at = self._reported_at = -REPORT_EVERY  # [s] monotonic

    def _write_failed(self, err: sqlite3.OperationalError) -> None:
        """Writing failed (disk full, I/O error): roll back, say so once, retry with new data.

        The open transaction is gone (at most the last commit interval), and with it the open
        buckets' newest samples, so they are rebuilt from the file at the next sample.
        """
        with contextlib.suppress(sqlite3.Error):
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        self._in_tx = False
        self._packs.clear()
        self.unstored += self._uncommitted
        self.written -= self._uncommitted
        self._uncommitted = 0
        self._failed_at = now = time.monotonic()
        if now - self._reported_at >= REPORT_EVERY:  # near the limit it flaps: one line, not many
            self._reported_at = now
            log.error(
                "archive %s cannot be written (%s): states are not stored until it can",
                self.path,
                err,
            )
        self.write_error = str(err)

    def _write_works(self) -> None:
        if self.write_error is not None and time.monotonic() - self._failed_at >= QUIET:
            log.warning(
                "archive %s is written again (%d states were not stored)", self.path, self.unstored
            )
            self.write_error = None

    # --- writing -------------------------------------------------------------------------
    def _begin(self) -> None:
        if not self._in_tx:
            self.conn.execute("BEGIN")
            self._in_tx = True

    def _pack(self, name: str) -> _Open:
        known = self._packs.get(name)
        if known is not None:
            return known
        self._begin()
        self.conn.execute("INSERT OR IGNORE INTO packs (name) VALUES (?)", (name,))
        pid = self.pack_id(name)
        assert pid is not None
        state = _Open(pid)
        self._packs[name] = state
        self._resume(name, state)
        return state

    def _resume(self, name: str, state: _Open) -> None:
        """Re-open the newest buckets from raw rows, so a restart continues them, not restarts."""
        row = self.conn.execute("SELECT max(ts) FROM raw WHERE pack = ?", (state.pid,)).fetchone()
        state.open.clear()
        state.prev = None
        if row[0] is None:
            return
        last = int(row[0])
        for res, step in STEPS.items():
            start = bucket_start(last, step)
            bucket = Bucket(start)
            for s in self.samples(name, start, last + 1):
                bucket.add(s)
            state.open[res] = bucket
        state.prev = next(iter(self.samples(name, last, last + 1)), None)

    def add(self, pack: str, sample: Sample) -> Sample:
        """Store one sample (energy since the previous one filled in); returns it as stored.

        A sample already stored (a replay) is skipped, so no value is stored twice. A sample
        older than the pack's previous one (the clock was set back) is stored at its own time,
        its buckets merged with those stored, with nothing integrated across the step. A sample
        the file cannot take (disk full) is counted in ``unstored`` and returned unchanged.
        """
        try:
            return self._add(pack, sample)
        except sqlite3.OperationalError as err:
            self._write_failed(err)
            self.unstored += 1
            return sample

    def _add(self, pack: str, sample: Sample) -> Sample:
        state = self._pack(pack)
        prev = state.prev
        if prev is not None and sample.ts <= prev.ts:
            if sample.ts == prev.ts or self._stored(state.pid, sample.ts):
                return sample  # a replay: stored once
            if prev.ts - sample.ts > self.max_gap_ms:  # small ones: states crossing on the wire
                back = span((sample.ts - prev.ts) / 1000)
                log.warning(
                    "%s: a sample %s older than the previous one (the clock was set back):"
                    " stored at its own time",
                    pack,
                    back,
                )
            prev = None  # nothing is integrated across a step of the clock
        e_in, e_out = energy(prev, sample, self.max_gap_ms)
        sample = sample._replace(e_in=e_in, e_out=e_out)
        self._begin()
        self.conn.execute(INSERT_RAW, raw_row(state.pid, sample))
        for res, step in STEPS.items():
            start = bucket_start(sample.ts, step)
            bucket = state.open.get(res)
            if bucket is None or bucket.start != start:
                if bucket is not None:
                    self._put(res, state.pid, bucket)
                bucket = state.open[res] = self._stored_bucket(res, state.pid, start)
            bucket.add(sample)
        state.prev = sample
        self.written += 1
        self._uncommitted += 1
        return sample

    def _stored(self, pid: int, ts: int) -> bool:
        """Whether a sample of pack ``pid`` at ``ts`` is stored already."""
        row = self.conn.execute("SELECT 1 FROM raw WHERE pack = ? AND ts = ?", (pid, ts)).fetchone()
        return row is not None

    def _stored_bucket(self, res: str, pid: int, start: int) -> Bucket:
        """The bucket starting at ``start`` as stored (after a clock step back), or a new one."""
        row = _rows(
            self.conn,
            f"SELECT {_names(AGG_COLUMNS)} FROM {AGG_TABLES[res]} WHERE pack = ? AND ts = ?",
            (pid, start),
        ).fetchone()
        return Bucket(start) if row is None else bucket_of(row)

    def newest(self) -> int | None:
        """The newest sample of any pack [ms]."""
        row = self.conn.execute("SELECT max(ts) FROM raw").fetchone()
        return None if row[0] is None else int(row[0])

    def gap(self, pack: str) -> None:
        """The pack went offline: the next sample starts afresh (nothing integrated across)."""
        state = self._packs.get(pack)
        if state is not None:
            state.prev = state.prev._replace(ts=-(2**62)) if state.prev else None

    def _put(self, res: str, pid: int, bucket: Bucket) -> None:
        self._begin()
        self.conn.execute(INSERT_AGG[AGG_TABLES[res]], agg_row(pid, bucket))

    def commit(self) -> None:
        """Write the open buckets as they stand and commit (one fsync with synchronous=full)."""
        try:
            for state in self._packs.values():
                for res, bucket in state.open.items():
                    self._put(res, state.pid, bucket)
            if self._in_tx:
                self.conn.execute("COMMIT")
                self._in_tx = False
                self._uncommitted = 0
                self._write_works()
        except sqlite3.OperationalError as err:
            self._write_failed(err)

    def put_value(self, key: str, value: str) -> None:
        """Store a text value (committed with the next commit)."""
        self._begin()
        self.conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))

    def close(self) -> None:
        """Commit what is pending and close."""
        self.commit()
        super().close()

    # --- retention and deletion --------------------------------------------------------------
    def purge(self, now: int) -> int:
        """Delete what is older than each table's retention; returns rows deleted.

        Retention counts back from ``now``, or from the newest sample when ``now`` is more than a
        day ahead of it: a clock set ahead (a Pi's garbage time at boot) must not make the real
        history look old.
        What is deleted is logged, table by table, with the time it was older than.
        """
        self.commit()
        newest = self.newest()
        if newest is None:
            return 0
        if now > newest + DAY_MS:
            log.info(
                "retention counts from the newest sample (%s), not from the clock (%s ahead)",
                _when(newest),
                span((now - newest) / 1000),
            )
            now = newest
        deleted = 0
        self._begin()
        for table, days in (
            ("raw", self.cfg.raw_days),
            ("agg_1m", self.cfg.minute_days),
            ("agg_15m", self.cfg.quarter_days),
        ):
            cutoff = now - int(days * DAY_MS)
            n = sum(
                self.conn.execute(
                    f"DELETE FROM {table} WHERE pack = ? AND ts < ?", (pid, cutoff)
                ).rowcount  # per pack: the (pack, ts) key is the index
                for (pid,) in self.conn.execute("SELECT id FROM packs").fetchall()
            )
            if n:
                log.info("retention: %d rows of %s older than %s deleted", n, table, _when(cutoff))
            deleted += n
        self.commit()
        return deleted

    def delete_range(self, pack: str, start: int, end: int) -> int:
        """Delete ``pack``'s data in [start, end) ms from every table; returns samples deleted.

        Buckets wholly inside the range go; buckets straddling an edge are rebuilt from the raw
        samples left when raw data covers them, and kept as they are otherwise.
        """
        pid = self.pack_id(pack)
        if pid is None:
            return 0
        self.commit()
        self._begin()
        n = self.conn.execute(
            "DELETE FROM raw WHERE pack = ? AND ts >= ? AND ts < ?", (pid, start, end)
        ).rowcount
        raw_from = self.oldest("raw", pack)
        for res, step in STEPS.items():
            table = AGG_TABLES[res]
            first_full = -(-start // step) * step  # first bucket starting at or after start
            self.conn.execute(
                f"DELETE FROM {table} WHERE pack = ? AND ts >= ? AND ts + ? <= ?",
                (pid, first_full, step, end),
            )
            for edge in {bucket_start(start, step), bucket_start(end - 1, step)}:
                if raw_from is None or raw_from > edge:
                    continue  # no raw data to rebuild from: keep the stored bucket
                bucket = Bucket(edge)
                for s in self.samples(pack, edge, edge + step):
                    bucket.add(s)
                if bucket.n:
                    self._put(res, pid, bucket)
                else:
                    self.conn.execute(f"DELETE FROM {table} WHERE pack = ? AND ts = ?", (pid, edge))
        state = self._packs.get(pack)
        if state is not None:
            self._resume(pack, state)
        self.commit()
        return int(n)

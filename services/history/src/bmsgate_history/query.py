"""Answering HistoryQuery from the archive: resolution, series, gaps; malformed input -> error."""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from itertools import pairwise
from typing import Final

from pydantic import ValidationError

from bmsgate_common.invalid import in_words
from bmsgate_common.models import (
    CellStats,
    HistoryErrorCode,
    HistoryGap,
    HistoryQuery,
    HistoryReply,
    HistorySeries,
)
from bmsgate_common.settings import ArchiveSettings, BankSettings, BusSettings
from bmsgate_common.units import convert

from .archive import COLUMN_UNITS, DAY_MS, NamedRow, Store, agg_row
from .buckets import STEPS, UNITS, Bucket
from .sample import CELL_SCALE, TEMP_SCALE, day_bounds, from_ms, local_day, to_ms

_TRANSACTION: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_REPLY_VALUES: Final = 2_000_000  # numbers in one reply; more is refused, not truncated


def error_reply(
    transaction: str | None, message: str, code: HistoryErrorCode = "invalid"
) -> HistoryReply:
    """A reply saying why a query could not be answered."""
    return HistoryReply(transaction=transaction, status="error", error=message, code=code)


def refusal(payload: bytes | str, err: ValidationError) -> tuple[str | None, str]:
    """The id (when it is readable) and the one-line reason of a request that failed validation."""
    transaction = None
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # deep nesting: json's stack, not pydantic's limit
        data = None
    if isinstance(data, dict):
        candidate = data.get("transaction")
        if isinstance(candidate, str) and _TRANSACTION.match(candidate):
            transaction = candidate
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    return transaction, f"{where}: {in_words(first)}"


def parse(payload: bytes | str) -> HistoryQuery | HistoryReply:
    """The query in ``payload``, or the error reply to send (echoing the id when readable)."""
    try:
        return HistoryQuery.model_validate_json(payload)
    except ValidationError as err:
        transaction, why = refusal(payload, err)
        return error_reply(transaction, f"invalid query: {why}")


def choose_resolution(q: HistoryQuery, store: Store, cfg: ArchiveSettings, now: int) -> str:
    """The finest resolution still retained at the range's start that fits ``max_points``."""
    if q.resolution != "auto":
        return q.resolution
    start, end = to_ms(q.start), to_ms(q.end)
    span = end - start
    if start >= now - cfg.raw_days * DAY_MS and store.count_raw(q.pack, start, end) <= q.max_points:
        return "raw"
    if start >= now - cfg.minute_days * DAY_MS and span / STEPS["1m"] <= q.max_points:
        return "1m"
    if start >= now - cfg.quarter_days * DAY_MS and span / STEPS["15m"] <= q.max_points:
        return "15m"
    return "1d"


def _holes(
    points: Sequence[tuple[int, int]], start: int, end: int, tolerance: int
) -> list[tuple[int, int]]:
    """Stretches of [start, end) not covered by ``points`` (start, end) beyond ``tolerance`` ms."""
    out: list[tuple[int, int]] = []
    cursor = start
    for p_start, p_end in points:
        if p_start - cursor > tolerance:
            out.append((cursor, p_start))
        cursor = max(cursor, p_end)
    if end - cursor > tolerance:
        out.append((cursor, end))
    return out


def _merged(holes: Sequence[tuple[int, int]]) -> list[HistoryGap]:
    """Overlapping or touching stretches joined, in time order, as reply gaps."""
    out: list[list[int]] = []
    for h_start, h_end in sorted(holes):
        if out and h_start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], h_end)
        else:
            out.append([h_start, h_end])
    return [HistoryGap(start=from_ms(a), end=from_ms(b)) for a, b in out]


MIN_TOLERANCE_MS: Final = 5_000  # jitter of a loaded machine is not an outage


def raw_tolerance(times: Sequence[int], poll_ms: int, max_gap_ms: int) -> int:
    """How far apart two raw samples may be and still be joined on a chart [ms].

    Two poll intervals; three usual steps (the median) where the bus reads slower than its
    interval (many packs, slow baud rate); at least MIN_TOLERANCE_MS and at most ``max_gap``.
    """
    steps = sorted(b - a for a, b in pairwise(times))
    usual = steps[len(steps) // 2] if steps else 0
    return min(max_gap_ms, max(2 * poll_ms, 3 * usual, MIN_TOLERANCE_MS))


def _columns(blobs: Sequence[bytes | None], code: str, scale: int) -> list[list[float | None]]:
    """Packed vectors (one per row) turned into one list per element, scaled to units."""
    arrays = [array(code, b) if b else None for b in blobs]
    width = max((len(a) for a in arrays if a is not None), default=0)
    if all(a is not None and len(a) == width for a in arrays):
        # the common case: same geometry in every row; ints / scale give the shortest decimals
        return [[x / scale for x in col] for col in zip(*arrays, strict=True)]
    return [
        [a[k] / scale if a is not None and k < len(a) else None for a in arrays]
        for k in range(width)
    ]


# a query's series and the archive column each is read from: the series' own name (PackState's),
# except the vectors and the energy moved (kept per sample and bucket, in Wh)
COLUMN_OF: Final = {
    "cells": "cell_voltages",
    "temperatures": "temperatures",
    "energy_in": "e_in",
    "energy_out": "e_out",
}
# the cell statistics of a stored row (cells kept as integers of 1/CELL_SCALE V), by CellStats
_DERIVED: Final[dict[str, Callable[[CellStats], float]]] = {
    "cell_min": lambda c: c.low / CELL_SCALE,
    "cell_max": lambda c: c.high / CELL_SCALE,
    "cell_delta": lambda c: c.delta / CELL_SCALE,
    "cell_average": lambda c: c.average / CELL_SCALE,
}
_VECTORS: Final = {"cells": ("H", CELL_SCALE, "cell"), "temperatures": ("h", TEMP_SCALE, "temp")}


def _column(name: str) -> str:
    return COLUMN_OF.get(name, name)


def _value(row: NamedRow, column: str, unit: str, digits: int) -> float | None:
    """A stored value in the series' ``unit`` (the column's own unit: COLUMN_UNITS)."""
    x = row[column]
    if x is None:
        return None
    return round(convert(float(x), COLUMN_UNITS.get(column, unit), unit), digits)


def raw_select(fields: Sequence[str]) -> list[str]:
    """The raw columns a query of ``fields`` reads (cell statistics come from the cells)."""
    wanted = ["ts"]
    for name in fields:
        column = "cell_voltages" if name in _DERIVED else _column(name)
        if column not in wanted:
            wanted.append(column)
    return wanted


def _raw_series(fields: Sequence[str], rows: Sequence[NamedRow]) -> list[HistorySeries]:
    """Series from raw rows read by name (raw_select)."""
    out: list[HistorySeries] = []
    for name in fields:
        unit, digits = UNITS[name]
        if name in _VECTORS:
            code, scale, prefix = _VECTORS[name]
            blobs = [r[_column(name)] for r in rows]
            for k, col in enumerate(_columns(blobs, code, scale), 1):
                out.append(HistorySeries(name=f"{prefix}_{k}", unit=unit, values=col))
        elif name in _DERIVED:
            fn = _DERIVED[name]
            cells = [r["cell_voltages"] for r in rows]
            stats = [CellStats.of(array("H", c)) if c else None for c in cells]
            values = [None if c is None else round(fn(c), digits) for c in stats]
            out.append(HistorySeries(name=name, unit=unit, values=values))
        else:
            values = [_value(r, _column(name), unit, digits) for r in rows]
            out.append(HistorySeries(name=name, unit=unit, values=values))
    return out


def _agg_series(fields: Sequence[str], rows: Sequence[NamedRow]) -> list[HistorySeries]:
    """Series from agg_* rows read by name (AGG_COLUMNS)."""
    out: list[HistorySeries] = []
    for name in fields:
        unit, digits = UNITS[name]
        if name in _VECTORS:
            code, scale, prefix = _VECTORS[name]
            column = _column(name)
            lo, avg, hi = (
                _columns([r[f"{column}_{k}"] for r in rows], code, scale)
                for k in ("lo", "avg", "hi")
            )
            for k in range(len(avg)):
                out.append(
                    HistorySeries(
                        name=f"{prefix}_{k + 1}", unit=unit, values=avg[k], min=lo[k], max=hi[k]
                    )
                )
        elif name in COLUMN_OF:
            values = [_value(r, _column(name), unit, digits) for r in rows]
            out.append(HistorySeries(name=name, unit=unit, values=values))
        else:
            lo_v, avg_v, hi_v = (
                [_value(r, f"{name}_{k}", unit, digits) for r in rows]
                for k in ("min", "avg", "max")
            )
            out.append(HistorySeries(name=name, unit=unit, values=avg_v, min=lo_v, max=hi_v))
    return out


def by_day(buckets: list[Bucket], tz: tzinfo) -> list[tuple[int, int, Bucket]]:
    """15-minute buckets merged per local day: (day start, day end, merged) [ms]."""
    days: list[tuple[int, int, Bucket]] = []
    for b in buckets:
        d_start, d_end = day_bounds(local_day(b.start, tz), tz)
        if not days or days[-1][0] != d_start:
            days.append((d_start, d_end, Bucket(d_start)))
        days[-1][2].merge(b)
    return days


@dataclass(frozen=True)
class Layout:
    """What the configuration says about the packs a query may name (the gap rule reads it)."""

    poll_ms: Mapping[str, int] = field(default_factory=dict)  # a pack's bus poll interval
    members: Mapping[str, Sequence[str]] = field(default_factory=dict)  # a bank's member packs

    @classmethod
    def of(cls, buses: Sequence[BusSettings], banks: Sequence[BankSettings]) -> Layout:
        """The layout of a configuration's buses and banks."""
        poll = {p.id: int(b.poll_interval * 1000) for b in buses for p in b.packs}
        members = {b.id: list(b.packs) for b in banks}
        for bank, packs in members.items():  # a bank polls as slowly as its slowest member
            poll[bank] = max((poll.get(p, 0) for p in packs), default=0)
        return cls(poll, members)


def _spans(
    store: Store, pack: str, resolution: str, start: int, end: int
) -> tuple[list[tuple[int, int]], int]:
    """The (start, end) [ms] ``pack`` has data for at ``resolution`` (not 1d), and the first."""
    if resolution == "raw":
        times = [r["ts"] for r in store.raw_columns(pack, start, end, ["ts"])]
        return [(t, t) for t in times], start
    step = STEPS[resolution]
    rows = store.agg_rows(resolution, pack, start - start % step, end)
    spans = [(r["ts"], r["ts"] + step) for r in rows]
    return spans, max(start, spans[0][0]) if spans else start


def run_query(
    q: HistoryQuery,
    store: Store,
    cfg: ArchiveSettings,
    tz: tzinfo,
    now: int,
    max_gap_ms: int,
    layout: Layout | None = None,
) -> HistoryReply:
    """Answer a valid query from ``store``.

    ``gaps`` is the one rule of where a chart breaks its lines: raw samples further apart than
    :func:`raw_tolerance`, a missing bucket, and for a bank also every gap of a member that has
    data in the range, so a member dropping out and rejoining is a break in the bank's line, not
    a dip in its sum.
    """
    layout = layout or Layout()
    resolution = choose_resolution(q, store, cfg, now)
    start, end = to_ms(q.start), to_ms(q.end)
    horizon = min(end, now)  # the future is not a gap

    def tolerance(pack: str, spans: Sequence[tuple[int, int]]) -> int:
        if resolution != "raw":
            return 0
        return raw_tolerance([s for s, _ in spans], layout.poll_ms.get(pack, 0), max_gap_ms)

    if resolution == "raw":
        width = sum(32 if f in _VECTORS else 1 for f in q.fields)
        if store.count_raw(q.pack, start, end) * width > MAX_REPLY_VALUES:
            return error_reply(q.transaction, "too much data at raw resolution: narrow the range")
        rows = store.raw_columns(q.pack, start, end, raw_select(q.fields))
        times = [r["ts"] for r in rows]
        series = _raw_series(q.fields, rows)
        spans, first = [(t, t) for t in times], start
    else:
        if resolution == "1d":
            d_start = day_bounds(local_day(start, tz), tz)[0]
            days = by_day(store.buckets("15m", q.pack, d_start, end), tz)
            agg: Sequence[NamedRow] = [agg_row(0, b) for _, _, b in days]
            spans = [(s, e) for s, e, _ in days]
        else:
            step = STEPS[resolution]
            agg = store.agg_rows(resolution, q.pack, start - start % step, end)
            spans = [(r["ts"], r["ts"] + step) for r in agg]
        times = [r["ts"] for r in agg]
        series = _agg_series(q.fields, agg)
        first = max(start, spans[0][0]) if spans else start
    holes = _holes(spans, first, horizon, tolerance(q.pack, spans))
    if resolution != "1d":
        for member in layout.members.get(q.pack, ()):
            m_spans, m_first = _spans(store, member, resolution, start, end)
            if m_spans:  # a member without data in the range was never part of this stretch
                holes += _holes(m_spans, m_first, horizon, tolerance(member, m_spans))
    return HistoryReply(
        transaction=q.transaction,
        status="ok",
        pack=q.pack,
        resolution=resolution,
        times=times,
        series=series,
        gaps=_merged(holes),
    )

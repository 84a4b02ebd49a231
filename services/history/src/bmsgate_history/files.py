"""The archive's files and figures asked for over the backbone: days, CSV, zip, daily energy.

Pure over a ``Store``: a request in, reply messages out. Deleting a day needs the writer and
the service's in-memory figures, so the service does it (``History.delete_day``); the reply is
made here. Every refusal is an error reply with a ``code`` the API maps to an HTTP status once.
"""

from __future__ import annotations

import base64
import io
from datetime import date, tzinfo
from typing import Final

from pydantic import ValidationError

from bmsgate_common.models import (
    DailyStats,
    EnergyDay,
    HistoryDay,
    HistoryErrorCode,
    HistoryFileReply,
    HistoryFileRequest,
)
from bmsgate_common.units import to_kwh

from .archive import Store
from .export import ExportError, day_csv, day_file_name, month_days, write_month_zip
from .query import refusal
from .sample import day_bounds, local_day

PART_BYTES: Final = 192 * 1024  # of the file per reply message: 256 KiB once in base64


class FileError(Exception):
    """A request that cannot be answered; ``code`` says which kind."""

    def __init__(self, code: HistoryErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: HistoryErrorCode = code


def error(transaction: str | None, code: HistoryErrorCode, message: str) -> HistoryFileReply:
    """An error reply."""
    return HistoryFileReply(transaction=transaction, status="error", code=code, error=message)


def parse(payload: bytes | str) -> HistoryFileRequest | HistoryFileReply:
    """The request in ``payload``, or the error reply to send (echoing the id when readable)."""
    try:
        return HistoryFileRequest.model_validate_json(payload)
    except ValidationError as err:
        transaction, why = refusal(payload, err)
        return error(transaction, "invalid", f"invalid request: {why}")


def bounds(day: date, tz: tzinfo) -> tuple[int, int]:
    """[start, end) of a local day in ms; FileError for a day the calendar cannot end."""
    try:
        return day_bounds(day, tz)
    except (ValueError, OverflowError):  # 9999-12-31 has no next day
        raise FileError("invalid", f"day {day.isoformat()} is out of range") from None


def _month(text: str | None) -> tuple[int, int]:
    year, month = (text or "").split("-")
    return int(year), int(month)


def _days(store: Store, pack: str, text: str | None, tz: tzinfo) -> list[HistoryDay]:
    out = []
    for day in month_days(*_month(text)):
        start, end = bounds(day, tz)
        n = store.count_raw(pack, start, end) or len(store.buckets("1m", pack, start, end))
        if n:
            out.append(HistoryDay(day=day, samples=n, file=day_file_name(pack, day)))
    return out


def _energy_days(
    store: Store, pack: str, q: HistoryFileRequest, tz: tzinfo, today: DailyStats | None
) -> list[EnergyDay]:
    """The energy of each local day of the month or year asked that has data, oldest first.

    A day is the sum of its 15-minute buckets (their energy counts on the day of the sample that
    closes it, as the daily statistics count it); a day without a bucket is absent, not 0.
    ``today``: the daily statistics of the day so far, which hold what the archive has not
    committed yet; the larger of the two stands for their day (after the clock was set back the
    statistics start afresh, the archive does not), so this agrees with the retained figures.
    """
    if q.year is not None:
        first, last = date(q.year, 1, 1), date(q.year, 12, 31)
    else:
        year, month = _month(q.month)
        days = list(month_days(year, month))
        first, last = days[0], days[-1]
    start, end = bounds(first, tz)[0], bounds(last, tz)[1]
    wh: dict[date, list[float]] = {}
    for ts, e_in, e_out in store.energy(pack, start, end):
        totals = wh.setdefault(local_day(ts, tz), [0.0, 0.0])
        totals[0] += e_in
        totals[1] += e_out
    out = {
        day: EnergyDay(day=day, energy_in=round(to_kwh(i), 4), energy_out=round(to_kwh(o), 4))
        for day, (i, o) in wh.items()
    }
    if today is not None and first <= today.day <= last:
        stored = out.get(today.day)
        out[today.day] = EnergyDay(
            day=today.day,
            energy_in=max(today.energy_in or 0.0, stored.energy_in if stored else 0.0),
            energy_out=max(today.energy_out or 0.0, stored.energy_out if stored else 0.0),
        )
    return [out[day] for day in sorted(out)]


def file_parts(transaction: str, name: str, data: bytes) -> list[HistoryFileReply]:
    """A file as reply messages of at most PART_BYTES each (one, empty, for an empty file)."""
    chunks = [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)] or [b""]
    out = []
    for n, chunk in enumerate(chunks):
        text = base64.b64encode(chunk).decode("ascii")
        out.append(
            HistoryFileReply(
                transaction=transaction,
                status="ok",
                file=name,
                part=n,
                parts=len(chunks),
                data=text,
            )
        )
    return out


def answer(
    store: Store, q: HistoryFileRequest, tz: tzinfo, today: DailyStats | None = None
) -> list[HistoryFileReply]:
    """The reply messages to a days, csv, zip or energy request (a worker thread may run this).

    ``today``: the pack's daily statistics so far, for ``energy``.
    """
    try:
        if q.action == "energy":
            energy = _energy_days(store, q.pack, q, tz, today)
            return [HistoryFileReply(transaction=q.transaction, status="ok", energy=energy)]
        if q.action == "days":
            days = _days(store, q.pack, q.month, tz)
            return [HistoryFileReply(transaction=q.transaction, status="ok", days=days)]
        if q.action == "csv":
            assert q.day is not None  # the model requires it
            bounds(q.day, tz)
            text = day_csv(store, q.pack, q.day, tz)
            return file_parts(q.transaction, day_file_name(q.pack, q.day), text.encode())
        if q.action == "zip":
            year, month = _month(q.month)
            for day in month_days(year, month):
                bounds(day, tz)
            buf = io.BytesIO()
            write_month_zip(store, q.pack, year, month, tz, buf)
            return file_parts(q.transaction, f"{q.pack}_{q.month}.zip", buf.getvalue())
    except FileError as err:
        return [error(q.transaction, err.code, str(err))]
    except ExportError as err:
        return [error(q.transaction, "invalid", str(err))]
    return [error(q.transaction, "invalid", f"{q.action} is not answered here")]


def deleted(q: HistoryFileRequest, samples: int) -> HistoryFileReply:
    """The reply to a deletion."""
    return HistoryFileReply(transaction=q.transaction, status="ok", samples=samples)

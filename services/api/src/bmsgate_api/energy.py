"""The Energy page's figures: a pack's or bank's energy per day of a month or month of a year; pure.

The days come from the history service (``HistoryFileRequest`` action ``energy``: each local
day with data); a bank's are its members' summed by the one bank rule
(:func:`bmsgate_common.bank.bank_energy`), each member once, never the bank's own archive.
The CSV download is the same report written as rows (:func:`report_csv`), never a second sum.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from bmsgate_common.bank import Energy, bank_energy
from bmsgate_common.models import EnergyDay
from bmsgate_common.settings import BankSettings

By = Literal["day", "month"]
DIGITS = 4  # [kWh] 0.1 Wh, as the daily statistics give them


class EnergyRow(BaseModel):
    """The energy of one day or month."""

    period: str = Field(description="the local day (YYYY-MM-DD) or month (YYYY-MM)")
    energy_in: float | None = Field(description="[kWh] charged; null: no data (absent, not 0)")
    energy_out: float | None = Field(description="[kWh] discharged; null: no data")
    days: int = Field(description="days with data in the period (a bank: of any member)")
    missing: list[str] = Field(
        default_factory=list, description="a bank: the members without data in the period"
    )
    future: bool = Field(default=False, description="begins after the site's today: no data yet")


class EnergyReport(BaseModel):
    """A pack's or bank's energy in and out by day of a month or by month of a year."""

    pack: str
    name: str
    bank: bool = Field(description="a bank: its members' figures summed, each once")
    members: list[str] = Field(default_factory=list, description="a bank's member packs")
    by: By = Field(description="day: the days of a month; month: the months of a year")
    period: str = Field(description="the month (YYYY-MM) or year (YYYY) shown")
    previous: str | None = Field(description="the period before, null before year 1000")
    next: str | None = Field(description="the period after, null when it has not begun")
    energy_in: float | None = Field(description="[kWh] the period's total; null: no data")
    energy_out: float | None = Field(description="[kWh] the period's total; null: no data")
    rows: list[EnergyRow] = Field(description="every day or month of the period, in order")


def _add(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else a + b


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, DIGITS)


def row_keys(by: By, period: str) -> list[str]:
    """Every day (YYYY-MM-DD) of the month ``period``, or every month (YYYY-MM) of the year."""
    if by == "month":
        return [f"{period}-{m:02d}" for m in range(1, 13)]
    year, month = (int(x) for x in period.split("-"))
    day = date(year, month, 1)
    out = []
    while day.month == month:
        out.append(day.isoformat())
        day = date.fromordinal(day.toordinal() + 1)
    return out


def neighbours(by: By, period: str, today: date) -> tuple[str | None, str | None]:
    """The period before and after ``period``; None past the calendar or after ``today``."""
    if by == "month":
        year = int(period)
        before = str(year - 1) if year > 1000 else None
        return before, (str(year + 1) if year < today.year else None)
    year, month = (int(x) for x in period.split("-"))
    before = f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"
    after = f"{year + 1}-01" if month == 12 else f"{year}-{month + 1:02d}"
    return (before if year > 1000 or month > 1 else None), (
        after if after <= today.isoformat()[:7] else None
    )


def _by_period(days: Sequence[EnergyDay], by: By) -> dict[str, tuple[Energy, set[date]]]:
    """One member's figures per row key, with the days that had data."""
    out: dict[str, tuple[Energy, set[date]]] = {}
    for d in days:
        key = d.day.isoformat()[:7] if by == "month" else d.day.isoformat()
        total, seen = out.get(key, (Energy(), set()))
        out[key] = (
            Energy(_add(total.energy_in, d.energy_in), _add(total.energy_out, d.energy_out)),
            seen | {d.day},
        )
    return out


def report(
    pack: str,
    name: str,
    bank: BankSettings | None,
    days: Mapping[str, Sequence[EnergyDay]],
    by: By,
    period: str,
    today: date,
) -> EnergyReport:
    """The report of ``pack`` (or ``bank``) from each pack's days with data (``days``)."""
    per_pack = {p: _by_period(found, by) for p, found in days.items()}
    figures: dict[str, tuple[Energy, int, list[str]]] = {}
    if bank is None:
        for key, (energy, seen) in per_pack.get(pack, {}).items():
            figures[key] = (energy, len(seen), [])
    else:
        summed = bank_energy(
            bank, {p: {k: e for k, (e, _) in f.items()} for p, f in per_pack.items()}
        )
        for key, found in summed.items():
            seen = set().union(*(f[key][1] for f in per_pack.values() if key in f))
            figures[key] = (found.energy, len(seen), list(found.missing))
    rows = []
    total_in: float | None = None
    total_out: float | None = None
    for key in row_keys(by, period):
        energy, n, missing = figures.get(key, (Energy(), 0, []))
        total_in, total_out = _add(total_in, energy.energy_in), _add(total_out, energy.energy_out)
        rows.append(
            EnergyRow(
                period=key,
                energy_in=_round(energy.energy_in),
                energy_out=_round(energy.energy_out),
                days=n,
                missing=missing if n else [],
                future=key > today.isoformat()[: len(key)],
            )
        )
    previous, after = neighbours(by, period, today)
    return EnergyReport(
        pack=pack,
        name=name,
        bank=bank is not None,
        members=list(dict.fromkeys(bank.packs)) if bank else [],
        by=by,
        period=period,
        previous=previous,
        next=after,
        energy_in=_round(total_in),
        energy_out=_round(total_out),
        rows=rows,
    )


def _cell(x: float | None) -> str:
    return "" if x is None else f"{x:.{DIGITS}f}"


def csv_name(report: EnergyReport) -> str:
    """``<pack>_energy_<YYYY-MM>.csv`` or ``<pack>_energy_<YYYY>.csv`` (ISO periods sort)."""
    return f"{report.pack}_energy_{report.period}.csv"


def report_csv(report: EnergyReport) -> str:
    """``report`` as CSV: a row per day (or month) exactly as its JSON rows say.

    Columns: ``day`` (or ``month``), ``energy_in_kwh``, ``energy_out_kwh``, ``days_with_data``,
    and for a bank ``missing_members`` (space-separated). No data is an empty cell, never 0;
    days still to come are listed, empty. No total row: a sum over the column gives it.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    extra = ["missing_members"] if report.bank else []
    writer.writerow([report.by, "energy_in_kwh", "energy_out_kwh", "days_with_data", *extra])
    for r in report.rows:
        row = [r.period, _cell(r.energy_in), _cell(r.energy_out), r.days]
        writer.writerow(row + ([" ".join(r.missing)] if report.bank else []))
    return buf.getvalue()

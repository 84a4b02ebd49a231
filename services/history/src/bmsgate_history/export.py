"""CSV per pack and local day, a month as a zip; file names that cannot leave their folder."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO

from bmsgate_common.models import PACK_ID_PATTERN, CellStats

from .archive import Store
from .buckets import Bucket
from .sample import Sample, day_bounds

_PACK = re.compile(PACK_ID_PATTERN)


class ExportError(ValueError):
    """A pack id, date or path that cannot be exported; the message says which."""


def check_pack(pack: str) -> str:
    """``pack`` if it is a valid pack id (so it is safe in a file name)."""
    if not _PACK.match(pack):
        raise ExportError(f"not a pack id: {pack!r}")
    return pack


def safe_path(folder: Path, name: str) -> Path:
    """``folder/name``, refusing any name that would land outside ``folder``."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise ExportError(f"refusing file name {name!r}")
    base = folder.resolve()
    path = (base / name).resolve()
    if path.parent != base:
        raise ExportError(f"refusing file name {name!r}: outside {base}")
    return path


def day_file_name(pack: str, day: date) -> str:
    """``<pack>_<YYYY-MM-DD>.csv``."""
    return f"{check_pack(pack)}_{day.isoformat()}.csv"


def _flag(value: bool | None) -> str:
    return "" if value is None else str(int(value))


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _at(values: tuple[float, ...], k: int) -> float | None:
    return values[k] if k < len(values) else None


def _from_bucket(b: Bucket) -> Sample:
    """A 1-minute bucket's means as a sample (for days older than the raw retention)."""

    def flag(name: str) -> bool | None:
        mean = b.mean(name)
        return None if mean is None else mean >= 0.5

    return Sample(
        ts=b.start,
        soc=b.mean("soc") or 0.0,
        pack_voltage=b.mean("pack_voltage") or 0.0,
        current=b.mean("current") or 0.0,
        power=b.mean("power") or 0.0,
        cell_voltages=tuple(b.cell_voltages.avg) if b.cell_voltages else (),
        temperatures=tuple(b.temperatures.avg) if b.temperatures else (),
        mos_temperature=b.mean("mos_temperature"),
        remaining_capacity=b.mean("remaining_capacity"),
        charge_mos=flag("charge_mos"),
        discharge_mos=flag("discharge_mos"),
        balancing=flag("balancing"),
    )


def day_samples(store: Store, pack: str, day: date, tz: tzinfo) -> tuple[str, list[Sample]]:
    """The day's samples at full resolution, or 1-minute means when raw data has expired."""
    start, end = day_bounds(day, tz)
    raw = list(store.samples(check_pack(pack), start, end))
    if raw:
        return "raw", raw
    return "1m", [_from_bucket(b) for b in store.buckets("1m", pack, start, end)]


def write_day(store: Store, pack: str, day: date, tz: tzinfo, out: TextIO) -> int:
    """Write one day as CSV to ``out``; returns the number of data rows."""
    _, samples = day_samples(store, pack, day, tz)
    cells = max((len(s.cell_voltages) for s in samples), default=0)
    temps = max((len(s.temperatures) for s in samples), default=0)
    writer = csv.writer(out, lineterminator="\n")
    # fmt: off
    writer.writerow(
        ["time", *(f"cell_{k}" for k in range(1, cells + 1)), "soc", "voltage", "current",
         "power", *(f"temp_{k}" for k in range(1, temps + 1)), "mos_temperature",
         "cell_delta", "charge_mos", "discharge_mos", "balancing", "remaining_capacity"]
    )
    # fmt: on
    for s in samples:
        stats = CellStats.of(s.cell_voltages)
        delta = stats.delta if stats else None
        row: list[Any] = [datetime.fromtimestamp(s.ts / 1000, tz).isoformat(timespec="seconds")]
        row += [_num(_at(s.cell_voltages, k), 4) for k in range(cells)]
        row += [_num(s.soc, 1), _num(s.pack_voltage, 3), _num(s.current, 3), _num(s.power, 1)]
        row += [_num(_at(s.temperatures, k), 1) for k in range(temps)]
        row += [_num(s.mos_temperature, 1), _num(delta, 4), _flag(s.charge_mos)]
        row += [_flag(s.discharge_mos), _flag(s.balancing), _num(s.remaining_capacity, 3)]
        writer.writerow(row)
    return len(samples)


def day_csv(store: Store, pack: str, day: date, tz: tzinfo) -> str:
    """One day as CSV text."""
    buf = io.StringIO()
    write_day(store, pack, day, tz, buf)
    return buf.getvalue()


def month_days(year: int, month: int) -> Iterator[date]:
    """Every day of a month."""
    day = date(year, month, 1)
    while day.month == month:
        yield day
        day = date.fromordinal(day.toordinal() + 1)


def write_month_zip(
    store: Store, pack: str, year: int, month: int, tz: tzinfo, out: io.BufferedIOBase | Any
) -> list[str]:
    """A zip of the month's day files (days with data only) to ``out``; returns their names."""
    names = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for day in month_days(year, month):
            buf = io.StringIO()
            if write_day(store, pack, day, tz, buf):
                name = day_file_name(pack, day)
                archive.writestr(name, buf.getvalue())
                names.append(name)
    return names


def export_day(store: Store, pack: str, day: date, tz: tzinfo, folder: Path) -> Path:
    """Write ``<pack>_<day>.csv`` into ``folder``; returns its path."""
    path = safe_path(folder, day_file_name(pack, day))
    with path.open("w", encoding="utf-8", newline="") as out:
        write_day(store, pack, day, tz, out)
    return path


def export_month(store: Store, pack: str, year: int, month: int, tz: tzinfo, folder: Path) -> Path:
    """Write ``<pack>_<YYYY-MM>.zip`` into ``folder``; returns its path."""
    path = safe_path(folder, f"{check_pack(pack)}_{year:04d}-{month:02d}.zip")
    with path.open("wb") as out:
        write_month_zip(store, pack, year, month, tz, out)
    return path

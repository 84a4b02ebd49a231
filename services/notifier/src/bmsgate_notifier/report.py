"""Daily reports at sunrise and sunset: when they are due, and what they say. Pure, offline.

The times are in the site's zone (bmsgate_common.timezones). Where the sun neither rises nor sets
on a day (polar day or night), that day gets one report at solar noon instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, tzinfo
from typing import Final, Literal

from astral import Observer
from astral.sun import noon, sunrise, sunset

from bmsgate_common.models import DailyStats, PackState

from .events import Event

ReportKind = Literal["sunrise", "sunset", "noon"]
SEARCH_DAYS: Final = 3  # every day has at least one report, so the next is always this close


def reports_on(
    day: date, latitude: float, longitude: float, tz: tzinfo, wanted: Iterable[str]
) -> list[tuple[datetime, ReportKind]]:
    """The day's report times (aware, local): sunrise and/or sunset, or noon in polar light."""
    observer = Observer(latitude=latitude, longitude=longitude)
    out: list[tuple[datetime, ReportKind]] = []
    events = (("sunrise", sunrise), ("sunset", sunset))
    polar = True
    for kind, fn in events:
        try:
            at = fn(observer, date=day, tzinfo=tz)
        except ValueError:
            continue  # "the sun is always above/below the horizon" that day
        polar = False
        if kind in wanted:
            out.append((at, kind))  # type: ignore[arg-type]
    if polar:
        out.append((noon(observer, date=day, tzinfo=tz), "noon"))
    return sorted(out)


def next_report(
    now: datetime, latitude: float, longitude: float, tz: tzinfo, wanted: Iterable[str]
) -> tuple[datetime, ReportKind] | None:
    """The first report strictly after ``now``; None only if no kind is wanted."""
    wanted = list(wanted)
    if not wanted:
        return None
    today = now.astimezone(tz).date()
    for offset in range(-1, SEARCH_DAYS + 1):
        for at, kind in reports_on(today + timedelta(days=offset), latitude, longitude, tz, wanted):
            if at > now:
                return at, kind
    return None  # only if both wanted events never happen within days: cannot with noon fallback


def _num(value: float | None, fmt: str, unit: str) -> str:
    return "?" if value is None else f"{value:{fmt}} {unit}"


def pack_line(name: str, state: PackState | None, daily: DailyStats | None, tz: tzinfo) -> str:
    """One pack's figures: SOC now, max SOC today and when, energy in/out, min/max cell."""
    parts = [f"{name}: SOC {_num(state.soc if state else None, '.0f', '%')} now"]
    if daily is not None:
        if daily.max_soc is not None:
            when = f" at {daily.max_soc_at.astimezone(tz):%H:%M}" if daily.max_soc_at else ""
            parts.append(f"max {daily.max_soc:.0f} %{when}")
        parts.append(
            f"in {_num(daily.energy_in, '.2f', 'kWh')}, out {_num(daily.energy_out, '.2f', 'kWh')}"
        )
        if daily.min_cell_voltage is not None or daily.max_cell_voltage is not None:
            parts.append(
                f"cells {_num(daily.min_cell_voltage, '.3f', 'V')}"
                f" to {_num(daily.max_cell_voltage, '.3f', 'V')}"
            )
    return "; ".join(parts)


def daily_report(
    kind: ReportKind,
    at: datetime,
    tz: tzinfo,
    names: Mapping[str, str],
    states: Mapping[str, PackState],
    dailies: Mapping[str, DailyStats],
    alarms: list[tuple[datetime, str]],
) -> Event:
    """The report as an event: one line per pack, then the alarms since the last report."""
    local = at.astimezone(tz)
    label = {"sunrise": "Sunrise", "sunset": "Sunset", "noon": "Midday"}[kind]
    packs = sorted(set(states) | set(dailies), key=lambda p: names.get(p, p))
    lines = [pack_line(names.get(p, p), states.get(p), dailies.get(p), tz) for p in packs]
    if not lines:
        lines = ["no pack has reported yet"]
    if alarms:
        lines.append(f"Alarms since the last report ({len(alarms)}):")
        lines += [f"{ts.astimezone(tz):%d.%m. %H:%M} {text}" for ts, text in alarms[-20:]]
        if len(alarms) > 20:
            lines.append(f"... and {len(alarms) - 20} earlier")
    else:
        lines.append("No alarms since the last report.")
    title = f"bmsgate: {label.lower()} report {local:%H:%M}"
    return Event(
        "report",
        f"report:{local:%Y-%m-%d}:{kind}",
        kind,
        title,
        "\n".join(lines),
        "low",
        "info",
        at,
    )

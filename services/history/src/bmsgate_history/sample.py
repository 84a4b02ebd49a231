"""One stored reading of a pack, the unit every part of the history works on; pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from typing import Final, NamedTuple

from bmsgate_common.models import PackState
from bmsgate_common.units import to_wh

CELL_SCALE = 10_000  # cells are kept in 0.1 mV: 3.3051 V <-> 33051 (uint16, up to 6.5535 V)
TEMP_SCALE = 10  # temperatures in 0.1 °C (int16)


class Sample(NamedTuple):
    """A pack state as the archive keeps it; ``ts`` in ms since the epoch (UTC).

    Fields are named as PackState's, and the archive's columns as the fields: a row is written
    and read by these names. Only ``e_in``/``e_out`` are the archive's own.
    """

    ts: int
    soc: float
    pack_voltage: float  # [V]
    current: float  # [A], + = charging
    power: float  # [W], + = charging
    cell_voltages: tuple[float, ...]  # [V], cell 1 first
    temperatures: tuple[float, ...]  # [°C]
    mos_temperature: float | None = None  # [°C]
    remaining_capacity: float | None = None  # [Ah]
    nominal_capacity: float | None = None  # [Ah]
    charge_mos: bool | None = None
    discharge_mos: bool | None = None
    balancing: bool | None = None
    energy_in: float | None = None  # [kWh] the BMS's or reader's counter, when it has one
    energy_out: float | None = None  # [kWh]
    cycles: int | None = None
    e_in: float = 0.0  # [Wh] charged since the previous sample (0 after a gap)
    e_out: float = 0.0  # [Wh] discharged since the previous sample


# the fields a sample shares with a pack state, by name (ts and balancing are told apart below)
_SHARED: Final = tuple(f for f in Sample._fields if f in PackState.model_fields and f != "ts")


def to_ms(ts: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    return int(ts.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime of ``ms`` since the epoch."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def local_day(ms: int, tz: tzinfo) -> date:
    """The calendar day in ``tz`` that the instant ``ms`` falls on."""
    return datetime.fromtimestamp(ms / 1000, tz).date()


def day_bounds(day: date, tz: tzinfo) -> tuple[int, int]:
    """[start, end) of a local day in ms; 23 or 25 hours long on DST changes."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    nxt = date.fromordinal(day.toordinal() + 1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
    return to_ms(start), to_ms(end)


def from_state(state: PackState) -> Sample:
    """The sample of a pack state (energy since the previous sample is filled in by energy())."""
    fields = {name: getattr(state, name) for name in _SHARED}
    fields["cell_voltages"] = tuple(state.cell_voltages)
    fields["temperatures"] = tuple(state.temperatures)
    if state.balancing_cells:
        fields["balancing"] = True
    return Sample(ts=to_ms(state.ts), **fields)


def energy(prev: Sample | None, cur: Sample, max_gap_ms: int) -> tuple[float, float]:
    """Wh charged and discharged between two samples; (0, 0) across a gap.

    The pack's own counters win when both samples have them and they moved forward; otherwise
    power is integrated with the trapezoid rule, its positive and negative parts apart.
    """
    if prev is None:
        return 0.0, 0.0
    dt = cur.ts - prev.ts
    if dt <= 0 or dt > max_gap_ms:
        return 0.0, 0.0
    if (
        cur.energy_in is not None
        and cur.energy_out is not None
        and prev.energy_in is not None
        and prev.energy_out is not None
    ):
        d_in, d_out = cur.energy_in - prev.energy_in, cur.energy_out - prev.energy_out
        if d_in >= 0 and d_out >= 0:  # a counter reset falls back to integration
            return to_wh(d_in), to_wh(d_out)  # e_in/e_out are Wh (archive.COLUMN_UNITS)
    hours = dt / 3_600_000
    e_in = (max(prev.power, 0.0) + max(cur.power, 0.0)) / 2 * hours
    e_out = (max(-prev.power, 0.0) + max(-cur.power, 0.0)) / 2 * hours
    return e_in, e_out

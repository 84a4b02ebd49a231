"""One stored reading of a pack, the unit every part of the history works on; pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from typing import NamedTuple

from bmsgate_common.models import PackState
from bmsgate_common.units import to_wh

CELL_SCALE = 10_000  # cells are kept in 0.1 mV: 3.3051 V <-> 33051 (uint16, up to 6.5535 V)
TEMP_SCALE = 10  # temperatures in 0.1 °C (int16)


class Sample(NamedTuple):
    """A pack state as the archive keeps it; ``ts`` in ms since the epoch (UTC)."""

    ts: int
    soc: float
    voltage: float  # [V]
    current: float  # [A], + = charging
    power: float  # [W], + = charging
    cells: tuple[float, ...]  # [V], cell 1 first
    temps: tuple[float, ...]  # [°C]
    mos_temp: float | None = None  # [°C]
    remaining: float | None = None  # [Ah]
    nominal: float | None = None  # [Ah]
    charge_mos: bool | None = None
    discharge_mos: bool | None = None
    balancing: bool | None = None
    energy_in: float | None = None  # [kWh] the BMS's or reader's counter, when it has one
    energy_out: float | None = None  # [kWh]
    cycles: int | None = None
    e_in: float = 0.0  # [Wh] charged since the previous sample (0 after a gap)
    e_out: float = 0.0  # [Wh] discharged since the previous sample


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
    balancing = state.balancing
    if state.balancing_cells:
        balancing = True
    return Sample(
        ts=to_ms(state.ts),
        soc=state.soc,
        voltage=state.pack_voltage,
        current=state.current,
        power=state.power,
        cells=tuple(state.cell_voltages),
        temps=tuple(state.temperatures),
        mos_temp=state.mos_temperature,
        remaining=state.remaining_capacity,
        nominal=state.nominal_capacity,
        charge_mos=state.charge_mos,
        discharge_mos=state.discharge_mos,
        balancing=balancing,
        energy_in=state.energy_in,
        energy_out=state.energy_out,
        cycles=state.cycles,
    )


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
            return to_wh(d_in), to_wh(d_out)  # the archive's energy columns are Wh
    hours = dt / 3_600_000
    e_in = (max(prev.power, 0.0) + max(cur.power, 0.0)) / 2 * hours
    e_out = (max(-prev.power, 0.0) + max(-cur.power, 0.0)) / 2 * hours
    return e_in, e_out

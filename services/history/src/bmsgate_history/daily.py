"""Daily statistics of a pack over its local calendar day; pure (samples in, DailyStats out)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, tzinfo

from bmsgate_common.models import CellStats, DailyStats
from bmsgate_common.units import to_kwh

from .sample import Sample, from_ms, local_day


@dataclass
class DailyTracker:
    """Max SOC and when, min and max cell, latest residual capacity, energy in and out [kWh]."""

    pack: str
    tz: tzinfo
    day: date | None = None
    max_soc: float | None = None
    max_soc_at: int | None = None  # [ms]
    min_cell: float | None = None  # [V]
    max_cell: float | None = None  # [V]
    remaining: float | None = None  # [Ah]
    energy_in: float = 0.0  # [Wh]
    energy_out: float = 0.0  # [Wh]
    last_ts: int | None = None  # [ms]

    def add(self, s: Sample) -> DailyStats | None:
        """Take in a stored sample; returns the previous day's figures when a new day starts."""
        day = local_day(s.ts, self.tz)
        finished = None
        if self.day is not None and day != self.day:
            if day > self.day:
                finished = self.stats()
            # an earlier day: the clock was set back (it was wrong, e.g. ahead after a boot);
            # the figures follow the clock and start afresh, nothing is published for the day
            self._reset()
        self.day = day
        if self.max_soc is None or s.soc > self.max_soc:
            self.max_soc, self.max_soc_at = s.soc, s.ts
        stats = CellStats.of(s.cell_voltages)
        if stats is not None:
            lo, hi = stats.low, stats.high
            self.min_cell = lo if self.min_cell is None else min(self.min_cell, lo)
            self.max_cell = hi if self.max_cell is None else max(self.max_cell, hi)
        if s.remaining_capacity is not None:
            self.remaining = s.remaining_capacity
        # energy since the previous sample counts on the day of the sample that closes it
        self.energy_in += s.e_in
        self.energy_out += s.e_out
        self.last_ts = s.ts
        return finished

    def _reset(self) -> None:
        self.max_soc = self.max_soc_at = self.min_cell = self.max_cell = None
        self.remaining = None
        self.energy_in = self.energy_out = 0.0
        self.last_ts = None

    def stats(self) -> DailyStats | None:
        """The day so far, or None before the first sample."""
        if self.day is None or self.last_ts is None:
            return None
        return DailyStats(
            pack=self.pack,
            day=self.day,
            ts=from_ms(self.last_ts),
            max_soc=self.max_soc,
            max_soc_at=from_ms(self.max_soc_at) if self.max_soc_at is not None else None,
            min_cell_voltage=self.min_cell,
            max_cell_voltage=self.max_cell,
            remaining_capacity=self.remaining,
            energy_in=round(to_kwh(self.energy_in), 4),
            energy_out=round(to_kwh(self.energy_out), 4),
        )

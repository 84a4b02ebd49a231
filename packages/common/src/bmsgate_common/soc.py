"""bmsgate's own state of charge: coulombs counted, re-synced where the charge is known.

Counted on the corrected current, re-synced at the two points a pack's charge is known: full
(cell voltage high and the charge current tapered off for a while) and empty (the lowest cell
at the BMS's own under-voltage cut-off).

A BMS's counter drifts (shunt offset, self-discharge it does not see, a board that never
re-syncs), and some cannot even be set (DALY new 0x81). This one is counted beside it, from the
same current, and re-synced by the pack's own physics. Pure: the reader feeds it one sample a
poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Resync = Literal["full", "empty"]


@dataclass(frozen=True)
class SocRules:
    """When a pack counts as full or empty (per pack, docs/reader.md)."""

    full_cell_voltage: float = 3.45  # [V] highest cell at or above this while charging...
    full_current: float = 2.0  # [A] ...with the current at or below this (tapered)...
    full_time: float = 300.0  # [s] ...for this long: 100 %
    empty_cell_voltage: float = 2.8  # [V] the BMS's own cell cut-off (UVP)
    # [V] a cell recovers a little once the BMS has cut the load off: within this of the
    # cut-off, not discharging, the pack is empty
    empty_margin: float = 0.05
    max_gap: float = 60.0  # [s] a longer gap between samples is not integrated


@dataclass
class SocEstimator:
    """One pack's own SOC; ``soc`` is None until it was seeded."""

    soc: float | None = None  # [%]
    last_mono: float | None = None  # [s] monotonic time of the previous sample
    last_current: float = 0.0  # [A]
    full_since: float | None = None  # [s] monotonic time the full condition began

    def update(
        self,
        mono: float,
        current: float,
        capacity: float | None,
        cell_max: float,
        cell_min: float,
        bms_soc: float,
        rules: SocRules,
    ) -> Resync | None:
        """Take one sample (current positive when charging); return a re-sync if one happened.

        Unseeded, it starts from the BMS's SOC; without a capacity nothing can be counted.
        """
        if self.soc is None:
            self.soc = bms_soc
        elif capacity and self.last_mono is not None and 0 < mono - self.last_mono <= rules.max_gap:
            hours = (mono - self.last_mono) / 3600
            average = (current + self.last_current) / 2  # trapezoid, as the energy counter
            self.soc = min(100.0, max(0.0, self.soc + 100 * average * hours / capacity))
        self.last_mono, self.last_current = mono, current
        if cell_min <= rules.empty_cell_voltage + rules.empty_margin and current <= 0:
            self.full_since = None
            return self._resync(0.0, "empty")
        if cell_max >= rules.full_cell_voltage and 0 <= current <= rules.full_current:
            if self.full_since is None:
                self.full_since = mono
            if mono - self.full_since >= rules.full_time:
                return self._resync(100.0, "full")
        else:
            self.full_since = None
        return None

    def _resync(self, soc: float, why: Resync) -> Resync | None:
        already = self.soc == soc
        self.soc = soc
        return None if already else why

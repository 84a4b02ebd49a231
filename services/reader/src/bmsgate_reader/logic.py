"""The reader's pure logic: readings to pack states, online/offline tracking, alarm transitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bmsgate_bms.alarms import ALARMS, describe
from bmsgate_bms.reading import BmsReading
from bmsgate_common.models import AlarmEvent, Availability, PackState, ProtocolName
from bmsgate_common.settings import PackSettings
from bmsgate_common.units import to_kwh


def to_state(
    reading: BmsReading, pack: PackSettings, protocol: ProtocolName, ts: datetime
) -> PackState:
    """Normalize a reading into the pack state: invert option, current correction, power.

    The current is corrected per pack (I x scale + offset, after the invert option); the power
    is V x I when the BMS gives none or the current was corrected.
    """
    sign = -1.0 if pack.invert_current else 1.0
    corrected = pack.current_scale != 1.0 or pack.current_offset != 0.0
    current = round(sign * reading.current * pack.current_scale + pack.current_offset, 3)
    power = (
        round(sign * reading.power, 1)
        if reading.power is not None and not corrected
        else round(reading.pack_voltage * current, 1)
    )
    extras = {k: v for k, v in reading.extras.items() if isinstance(v, str | int | float | bool)}
    return PackState(
        pack=pack.id,
        name=pack.display_name,
        protocol=protocol,
        ts=ts,
        pack_voltage=reading.pack_voltage,
        current=current,
        power=power,
        soc=min(100.0, max(0.0, reading.soc)),
        cell_voltages=reading.cell_voltages,
        cell_count=reading.cell_count,
        temperatures=reading.temperatures,
        mos_temperature=reading.mos_temperature,
        cycles=reading.cycles,
        remaining_capacity=reading.remaining_capacity,
        nominal_capacity=reading.nominal_capacity or pack.nominal_capacity,
        charge_mos=reading.charge_mos,
        discharge_mos=reading.discharge_mos,
        balancing=reading.balancing,
        balancing_cells=reading.balancing_cells,
        alarms=reading.alarms,
        extras=extras,
        ages=reading.ages,
    )


@dataclass
class EnergyCounter:
    """kWh and Ah charged and discharged, integrated from the pack's V and A between polls.

    A gap longer than ``max_gap`` (the pack was offline, the reader stopped) is not integrated:
    nothing is known about what flowed then, and inventing it would be worse than a gap.
    """

    energy_in: float = 0.0  # [kWh]
    energy_out: float = 0.0  # [kWh]
    charge_in: float = 0.0  # [Ah]
    charge_out: float = 0.0  # [Ah]
    last_ts: datetime | None = None
    last_power: float = 0.0  # [W]
    last_current: float = 0.0  # [A]
    max_gap: float = 60.0  # [s]
    last_mono: float | None = None  # [s] monotonic time of the previous sample in this process

    def add(self, ts: datetime, power: float, current: float, mono: float | None = None) -> None:
        """Integrate from the previous sample to this one (trapezoid rule).

        The time between them is measured on the monotonic clock ``mono`` when both have it, so
        a step of the wall clock adds or removes nothing; ``ts`` bridges only a restart.
        """
        if self.last_mono is not None and mono is not None:
            dt: float | None = mono - self.last_mono
        elif self.last_ts is not None:
            dt = (ts - self.last_ts).total_seconds()
        else:
            dt = None
        if dt is not None and 0 < dt <= self.max_gap:
            watt_hours = (self.last_power + power) / 2 * dt / 3600
            amp_hours = (self.last_current + current) / 2 * dt / 3600
            if watt_hours >= 0:
                self.energy_in += to_kwh(watt_hours)
            else:
                self.energy_out -= to_kwh(watt_hours)
            if amp_hours >= 0:
                self.charge_in += amp_hours
            else:
                self.charge_out -= amp_hours
        self.last_ts, self.last_power, self.last_current = ts, power, current
        self.last_mono = mono

    def at_least(self, state: PackState) -> bool:
        """Go on from a published state's totals where they are ahead; True if any was.

        The file is saved every few minutes, so after a crash it can be behind what was already
        published; counting on from it would step the totals down (a meter reset for Home
        Assistant). The counters only go up.
        """
        ahead = False
        for key in ("energy_in", "energy_out", "charge_in", "charge_out"):
            published = getattr(state, key)
            if published is not None and published > getattr(self, key):
                setattr(self, key, float(published))
                ahead = True
        return ahead

    def totals(self) -> dict[str, float]:
        """The counters as pack-state fields, rounded to what the values can claim."""
        return {
            "energy_in": round(self.energy_in, 4),
            "energy_out": round(self.energy_out, 4),
            "charge_in": round(self.charge_in, 3),
            "charge_out": round(self.charge_out, 3),
        }


@dataclass
class PackTracker:
    """Counts missed polls of one pack and says when its availability changes."""

    pack: str
    offline_after: int
    online: bool | None = None  # unknown until the first poll
    misses: int = 0
    alarms: frozenset[str] = field(default_factory=frozenset)
    last: Availability | None = None  # the last availability published, to repeat it

    def seen(self, ts: datetime) -> Availability | None:
        """A poll succeeded; the availability to publish if it changed."""
        self.misses = 0
        if self.online is True:
            return None
        self.online = True
        self.last = Availability(pack=self.pack, state="online", ts=ts)
        return self.last

    def missed(self, ts: datetime, reason: str) -> Availability | None:
        """A poll failed; ``offline`` once ``offline_after`` polls in a row have failed."""
        self.misses += 1
        if self.misses < self.offline_after or self.online is False:
            return None
        self.online = False
        self.alarms = frozenset()  # an offline pack has no known alarms; they re-raise on return
        self.last = Availability(
            pack=self.pack, state="offline", ts=ts, reason=f"{reason} ({self.misses} polls)"
        )
        return self.last

    def alarm_changes(self, state: PackState) -> list[AlarmEvent]:
        """Events for alarms raised or cleared since the last state."""
        now = frozenset(state.alarms)
        events = [
            AlarmEvent(
                pack=self.pack,
                ts=state.ts,
                code=code,
                level=ALARMS[code].level if code in ALARMS else "alarm",
                text=describe(code, state.cell_voltages, state.temperatures),
                active=active,
            )
            for active, codes in ((True, now - self.alarms), (False, self.alarms - now))
            for code in sorted(codes)
        ]
        self.alarms = now
        return events

"""The reader's pure logic: readings to pack states, online/offline tracking, alarm transitions.

Without pydantic: the lean reader (lean.py) builds its messages as plain data with the same
rules; the full reader makes them the models of bmsgate_common.models (imported when used).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from bmsgate_bms.alarms import ALARMS, describe
from bmsgate_bms.reading import BmsReading
from bmsgate_common.units import to_kwh

if TYPE_CHECKING:
    from bmsgate_common.models import PackState


class PackConfig(Protocol):
    """What the state rules read of a pack's settings (PackSettings, or a PackSection)."""

    @property
    def id(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def invert_current(self) -> bool: ...
    @property
    def current_scale(self) -> float: ...
    @property
    def current_offset(self) -> float: ...
    @property
    def nominal_capacity(self) -> float | None: ...


def to_state(reading: BmsReading, pack: PackConfig, protocol: str, ts: datetime) -> PackState:
    """The pack state model of a reading (state_fields)."""
    from bmsgate_common.models import PackState

    return PackState(**state_fields(reading, pack, protocol, ts))


def state_fields(
    reading: BmsReading, pack: PackConfig, protocol: str, ts: datetime
) -> dict[str, Any]:
    """Normalize a reading into the pack state's fields: invert option, current correction, power.

    The current is corrected per pack (I x scale + offset, after the invert option); the power
    is V x I when the BMS gives none or the current was corrected. The energy counters and the
    own SOC are the reader's to add.
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
    return dict(
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

    def at_least(self, state: PackState | Mapping[str, Any]) -> bool:
        """Go on from a published state's totals where they are ahead; True if any was.

        The file is saved every few minutes, so after a crash it can be behind what was already
        published; counting on from it would step the totals down (a meter reset for Home
        Assistant). The counters only go up.
        """
        ahead = False
        for key in ("energy_in", "energy_out", "charge_in", "charge_out"):
            published = state.get(key) if isinstance(state, Mapping) else getattr(state, key)
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


def _availability(**fields: Any) -> Any:
    from bmsgate_common.models import Availability

    return Availability(**fields)


def _alarm_event(**fields: Any) -> Any:
    from bmsgate_common.models import AlarmEvent

    return AlarmEvent(**fields)


@dataclass
class PackTracker:
    """Counts missed polls of one pack and says when its availability changes.

    Its messages are made by ``availability`` and ``alarm`` from their fields: the models by
    default, plain data in the lean reader (bmsgate_common.plain).
    """

    pack: str
    offline_after: int
    online: bool | None = None  # unknown until the first poll
    misses: int = 0
    alarms: frozenset[str] = field(default_factory=frozenset)
    last: Any = None  # the last availability published, to repeat it
    reason: str | None = None  # why it went offline last
    availability: Callable[..., Any] = _availability
    alarm: Callable[..., Any] = _alarm_event

    def seen(self, ts: datetime) -> Any:
        """A poll succeeded; the availability to publish if it changed."""
        self.misses = 0
        if self.online is True:
            return None
        self.online = True
        self.last = self.availability(pack=self.pack, state="online", ts=ts)
        return self.last

    def missed(self, ts: datetime, reason: str) -> Any:
        """A poll failed; ``offline`` once ``offline_after`` polls in a row have failed."""
        self.misses += 1
        if self.misses < self.offline_after or self.online is False:
            return None
        self.online = False
        self.alarms = frozenset()  # an offline pack has no known alarms; they re-raise on return
        self.reason = f"{reason} ({self.misses} polls)"
        self.last = self.availability(pack=self.pack, state="offline", ts=ts, reason=self.reason)
        return self.last

    def alarm_changes(
        self, alarms: list[str], ts: datetime, cells: list[float], temperatures: list[float]
    ) -> list[Any]:
        """Events for alarms raised or cleared since the last state (its fields given)."""
        now = frozenset(alarms)
        events = [
            self.alarm(
                pack=self.pack,
                ts=ts,
                code=code,
                level=ALARMS[code].level if code in ALARMS else "alarm",
                text=describe(code, cells, temperatures),
                active=active,
            )
            for active, codes in ((True, now - self.alarms), (False, self.alarms - now))
            for code in sorted(codes)
        ]
        self.alarms = now
        return events

"""The reader's pure logic: readings to pack states, online/offline tracking, alarm transitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bmsgate_bms.alarms import ALARMS, describe
from bmsgate_bms.reading import BmsReading
from bmsgate_common.models import AlarmEvent, Availability, PackState, ProtocolName
from bmsgate_common.settings import PackSettings


def to_state(
    reading: BmsReading, pack: PackSettings, protocol: ProtocolName, ts: datetime
) -> PackState:
    """Normalize a reading into the pack state: the per-pack invert option, power from V x I."""
    sign = -1.0 if pack.invert_current else 1.0
    current = round(sign * reading.current, 3)
    power = (
        round(sign * reading.power, 1)
        if reading.power is not None
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
    )


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

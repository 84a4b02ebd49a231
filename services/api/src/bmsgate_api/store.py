"""What the API knows: the latest messages of every pack seen on the backbone."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bmsgate_common.models import (
    AlarmEvent,
    Availability,
    DailyStats,
    HealthReport,
    PackState,
    ServiceStatus,
    SniffedFrame,
    SniffState,
    TunnelStatus,
)


@dataclass
class PackStore:
    """Latest messages per pack; online only when the reader says so and the state is fresh."""

    stale_after: timedelta = timedelta(seconds=120)
    states: dict[str, PackState] = field(default_factory=dict)
    availability: dict[str, Availability] = field(default_factory=dict)
    daily: dict[str, DailyStats] = field(default_factory=dict)
    health: dict[str, HealthReport] = field(default_factory=dict)
    alarms: dict[str, dict[str, AlarmEvent]] = field(default_factory=dict)
    services: dict[str, ServiceStatus] = field(default_factory=dict)
    tunnels: dict[str, TunnelStatus] = field(default_factory=dict)
    sniffed: deque[SniffedFrame] = field(default_factory=lambda: deque(maxlen=100))
    sniffers: dict[str, SniffState] = field(default_factory=dict)  # reader -> sniffer on/off

    def packs(self) -> list[str]:
        """Every pack id seen, sorted."""
        return sorted(self.states.keys() | self.availability.keys())

    def is_online(self, pack: str, now: datetime) -> bool:
        """True when the last availability is online and the last state is not stale."""
        avail, state = self.availability.get(pack), self.states.get(pack)
        if avail is None or avail.state != "online" or state is None:
            return False
        return now - state.ts <= self.stale_after

    def offline_reason(self, pack: str, now: datetime) -> str:
        """Why a pack counts as offline, in words."""
        avail, state = self.availability.get(pack), self.states.get(pack)
        if avail is not None and avail.state == "offline":
            return avail.reason or "the reader reports it offline"
        if state is None:
            return "no state received yet"
        if now - state.ts > self.stale_after:
            return f"no new state since {state.ts.isoformat()}"
        return "no availability received yet"

    def on_alarm(self, event: AlarmEvent) -> None:
        """Keep the active alarm events of a pack (raised ones added, cleared ones removed)."""
        active = self.alarms.setdefault(event.pack, {})
        if event.active:
            active[event.code] = event
        else:
            active.pop(event.code, None)

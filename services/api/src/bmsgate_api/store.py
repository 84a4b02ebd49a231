"""What the API knows: the latest messages of every pack seen on the backbone."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo

from bmsgate_common.liveness import Arrivals, liveness
from bmsgate_common.models import (
    AlarmEvent,
    Availability,
    BmsSettings,
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
    """Latest messages per pack; live by the one rule (bmsgate_common.liveness)."""

    stale_after: float = 60.0  # [s] the top-level stale_after
    tz: tzinfo = UTC  # the site's zone (bmsgate_common.timezones.site_zone): its days
    states: dict[str, PackState] = field(default_factory=dict)
    availability: dict[str, Availability] = field(default_factory=dict)
    daily: dict[str, DailyStats] = field(default_factory=dict)
    settings: dict[str, BmsSettings] = field(default_factory=dict)  # the BMS's own, as read
    health: dict[str, HealthReport] = field(default_factory=dict)
    alarms: dict[str, dict[str, AlarmEvent]] = field(default_factory=dict)
    services: dict[str, ServiceStatus] = field(default_factory=dict)
    tunnels: dict[str, TunnelStatus] = field(default_factory=dict)
    sniffed: deque[SniffedFrame] = field(default_factory=lambda: deque(maxlen=100))
    sniffers: dict[str, SniffState] = field(default_factory=dict)  # reader -> sniffer on/off
    arrivals: Arrivals = field(default_factory=Arrivals)  # states' ages on the monotonic clock

    order: list[str] = field(default_factory=list)  # the configuration's packs, then banks

    def packs(self) -> list[str]:
        """Every pack id seen: configured ones in the configuration's order, then the rest sorted.

        Cards and pickers list the packs as the owner wrote them down.
        """
        seen = self.states.keys() | self.availability.keys()
        rank = {pack: i for i, pack in enumerate(self.order)}
        return sorted(seen, key=lambda p: (rank.get(p, len(rank)), p))

    def today(self, now: datetime) -> date:
        """The site's local day at ``now`` (the history service's days are in the same zone)."""
        return now.astimezone(self.tz).date()

    def daily_today(self, pack: str, now: datetime) -> DailyStats | None:
        """The pack's daily figures if they are of today; yesterday's are not today's."""
        found = self.daily.get(pack)
        return found if found is not None and found.day == self.today(now) else None

    def live(self, pack: str, now: datetime) -> tuple[bool, str]:
        """``(live, reason)`` of a pack by the one rule."""
        state, avail = self.states.get(pack), self.availability.get(pack)
        return liveness(state, avail, now, self.stale_after, self.arrivals)

    def is_online(self, pack: str, now: datetime) -> bool:
        """True when the pack is live."""
        return self.live(pack, now)[0]

    def offline_reason(self, pack: str, now: datetime) -> str:
        """Why a pack counts as offline, in words."""
        return self.live(pack, now)[1]

    def on_state(self, pack: str, state: PackState) -> None:
        """Keep a pack's new state (its age counts from now on the monotonic clock)."""
        self.arrivals.heard(pack, state)
        self.states[pack] = state

    def on_availability(self, pack: str, availability: Availability) -> None:
        """Keep a pack's new availability."""
        self.arrivals.heard(pack, availability)
        self.availability[pack] = availability

    def on_alarm(self, event: AlarmEvent) -> None:
        """Keep the active alarm events of a pack (raised ones added, cleared ones removed)."""
        active = self.alarms.setdefault(event.pack, {})
        if event.active:
            active[event.code] = event
        else:
            active.pop(event.code, None)

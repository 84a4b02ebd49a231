"""From backbone messages to events worth telling a person: pure, no clock of its own, no I/O.

Each ``on_*`` method takes one message and returns the events it causes (often none). Conditions
with two sides (SOC, cell delta, online) fire on the edge only, with hysteresis where it matters.
A problem already present the first time a subject is seen (a retained message at start) is
reported once; a good state seen first is the baseline and stays silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from bmsgate_common.models import (
    AlarmEvent,
    Availability,
    DailyStats,
    HealthReport,
    PackState,
    ServiceStatus,
)
from bmsgate_common.service import READER_STOPPED
from bmsgate_common.settings import NotifierSettings, NotifyEvent, NotifyPriority
from bmsgate_common.units import to_mv

PRIORITIES: Final[tuple[NotifyPriority, ...]] = ("low", "normal", "high", "emergency")
Tone = Literal["info", "success", "warning", "failure"]  # Apprise's notify types
TONES: Final[tuple[Tone, ...]] = ("success", "info", "warning", "failure")  # mildest first
OWN_SERVICE: Final = "notifier"
ALARM_LOG_MAX: Final = 200  # alarms kept for the next daily report


def rank(priority: NotifyPriority) -> int:
    """0 for low up to 3 for emergency."""
    return PRIORITIES.index(priority)


@dataclass(frozen=True)
class Event:
    """Something to tell: what it is about (``subject``), its new ``state``, and the words."""

    kind: NotifyEvent
    subject: str  # e.g. "alarm:garage:cell_overvoltage"; the repeat gate's key
    state: str  # e.g. "raised"; a repeat is the same subject in the same state
    title: str
    body: str
    priority: NotifyPriority
    tone: Tone
    ts: datetime
    pack: str | None = None


@dataclass
class _Pack:
    name: str
    full_armed: bool | None = None  # None: no state seen yet
    low_armed: bool | None = None
    delta_high: bool | None = None
    online: bool | None = None
    findings: set[tuple[str, int | None]] | None = None


class Detector:
    """Remembers what each pack and service last looked like and turns changes into events."""

    def __init__(
        self,
        cfg: NotifierSettings,
        names: dict[str, str] | None = None,
        own_service: str = OWN_SERVICE,
    ) -> None:
        self.cfg = cfg
        self.own_service = own_service
        self.packs = {pack: _Pack(name=name) for pack, name in (names or {}).items()}
        self.states: dict[str, PackState] = {}
        self.dailies: dict[str, DailyStats] = {}
        self.alarm_log: list[tuple[datetime, str]] = []  # (when, "Garage: text") since last report
        # service -> (since [s] on the monotonic clock, lost)
        self._down_since: dict[str, tuple[float, bool]] = {}
        self._down_told: set[str] = set()

    def name(self, pack: str) -> str:
        """The display name of a pack (its id until a state has named it)."""
        known = self.packs.get(pack)
        return known.name if known else pack

    def _pack(self, pack: str) -> _Pack:
        return self.packs.setdefault(pack, _Pack(name=pack))

    def on_state(self, pack: str, state: PackState) -> list[Event]:
        """SOC full and low, cell delta high and back in line."""
        p = self._pack(pack)
        p.name = state.name or pack
        self.states[pack] = state
        cfg, out, name, ts = self.cfg, [], p.name, state.ts
        soc = state.soc
        # full: fires when reached; re-armed once the SOC has dropped by the hysteresis
        if p.full_armed is None:
            p.full_armed = soc < cfg.full_soc
        elif p.full_armed and soc >= cfg.full_soc:
            p.full_armed = False
            out.append(
                self._ev(
                    "soc_full",
                    pack,
                    "full",
                    f"{name}: full",
                    f"{name}: SOC reached {soc:.0f} %",
                    "low",
                    "success",
                    ts,
                )
            )
        elif not p.full_armed and soc <= cfg.full_soc - cfg.soc_hysteresis:
            p.full_armed = True
        if cfg.low_soc is not None:
            first = p.low_armed is None
            if (first or p.low_armed) and soc <= cfg.low_soc:
                p.low_armed = False
                out.append(
                    self._ev(
                        "soc_low",
                        pack,
                        "low",
                        f"{name}: SOC low",
                        f"{name}: SOC down to {soc:.0f} % (alert at {cfg.low_soc:g} %)",
                        "high",
                        "warning",
                        ts,
                    )
                )
            elif first or (not p.low_armed and soc >= cfg.low_soc + cfg.soc_hysteresis):
                p.low_armed = True
        stats = state.cells
        if cfg.cell_delta is not None and stats is not None:
            delta = stats.delta
            high, low = f"{stats.high:.3f} V", f"{stats.low:.3f} V"
            spread = f"cell {stats.high_cell} {high}, cell {stats.low_cell} {low}"
            if not p.delta_high and delta >= cfg.cell_delta:
                p.delta_high = True
                out.append(
                    self._ev(
                        "cell_delta",
                        pack,
                        "high",
                        f"{name}: cells out of line",
                        f"{name}: cell delta {to_mv(delta):.0f} mV ({spread}), "
                        f"alert at {to_mv(cfg.cell_delta):.0f} mV",
                        "normal",
                        "warning",
                        ts,
                    )
                )
            elif p.delta_high and delta <= cfg.cell_delta_clear:
                p.delta_high = False
                out.append(
                    self._ev(
                        "cell_delta_ok",
                        pack,
                        "ok",
                        f"{name}: cells back in line",
                        f"{name}: cell delta {to_mv(delta):.0f} mV ({spread})",
                        "low",
                        "success",
                        ts,
                    )
                )
            elif p.delta_high is None:
                p.delta_high = False
        return out

    def on_availability(self, pack: str, avail: Availability) -> list[Event]:
        """BMS offline, and back online after it was offline.

        A pack whose reader stopped is unknown, not offline: the reader's own service status
        tells if it stays away, and a reader restarted for a new configuration is no news.
        """
        p = self._pack(pack)
        if avail.state == "offline" and avail.reason == READER_STOPPED:
            if p.online:  # an offline pack stays so: its return is still news
                p.online = None
            return []
        online = avail.state == "online"
        before, p.online = p.online, online
        name = p.name
        if not online and before is not False:
            why = f" ({avail.reason})" if avail.reason else ""
            return [
                self._ev(
                    "offline",
                    pack,
                    "offline",
                    f"{name}: BMS offline",
                    f"{name}: the BMS does not answer{why}",
                    "high",
                    "failure",
                    avail.ts,
                )
            ]
        if online and before is False:
            return [
                self._ev(
                    "online",
                    pack,
                    "online",
                    f"{name}: BMS back online",
                    f"{name}: the BMS answers again",
                    "low",
                    "success",
                    avail.ts,
                )
            ]
        return []

    def on_alarm(self, pack: str, alarm: AlarmEvent) -> list[Event]:
        """An alarm raised or cleared, in the BMS's words with the pack's name."""
        name = self.name(pack)
        subject = f"alarm:{pack}:{alarm.code}"
        if alarm.active:
            self.alarm_log.append((alarm.ts, f"{name}: {alarm.text}"))
            del self.alarm_log[:-ALARM_LOG_MAX]
            priority: NotifyPriority = "normal" if alarm.level == "warning" else "high"
            return [
                Event(
                    "alarm",
                    subject,
                    "raised",
                    f"{name}: {alarm.level}",
                    f"{name}: {alarm.text}",
                    priority,
                    "warning" if alarm.level == "warning" else "failure",
                    alarm.ts,
                    pack,
                )
            ]
        return [
            Event(
                "alarm_cleared",
                subject,
                "cleared",
                f"{name}: {alarm.level} cleared",
                f"{name}: {alarm.text} (cleared)",
                "low",
                "success",
                alarm.ts,
                pack,
            )
        ]

    def on_daily(self, pack: str, daily: DailyStats) -> list[Event]:
        """Keep the day's figures for the daily report."""
        self.dailies[pack] = daily
        return []

    def on_health(self, pack: str, report: HealthReport) -> list[Event]:
        """Each battery-health finding once, when it first appears."""
        p = self._pack(pack)
        now: set[tuple[str, int | None]] = {(f.kind, f.cell) for f in report.findings}
        known, p.findings = p.findings or set(), now
        out = []
        for f in report.findings:
            if (f.kind, f.cell) in known:
                continue
            what = f.kind.replace("_", " ")
            where = f" cell {f.cell}" if f.cell is not None else ""
            out.append(
                Event(
                    "health",
                    f"health:{pack}:{f.kind}:{f.cell}",
                    "found",
                    f"{p.name}: battery health",
                    f"{p.name}: {what}{where}: {f.evidence}",
                    "normal",
                    "warning",
                    report.ts,
                    pack,
                )
            )
        return out

    def on_service(
        self, service: str, status: ServiceStatus, now: datetime, mono: float
    ) -> list[Event]:
        """A service back after it was reported down; a going-down waits for ``tick``.

        A service ``bmsgate run`` stopped because the configuration leaves it nothing to do
        (``left_out`` in its status) is not down: nothing to report.
        """
        if service == self.own_service:
            return []
        if status.state == "offline" and status.detail.get("left_out"):
            self._down_since.pop(service, None)
            self._down_told.discard(service)
            return []
        if status.state == "offline":
            if service not in self._down_since:
                self._down_since[service] = (mono, status.ts is None)
            return []
        self._down_since.pop(service, None)
        if service in self._down_told:
            self._down_told.discard(service)
            return [
                Event(
                    "service_up",
                    f"service:{service}",
                    "up",
                    f"bmsgate {service} is back",
                    f"bmsgate: the {service} service runs again",
                    "low",
                    "success",
                    now,
                )
            ]
        return []

    def tick(self, now: datetime, mono: float) -> list[Event]:
        """Services that stayed offline past the grace time (a restart does not count).

        The grace time is measured on the monotonic clock ``mono`` [s]; ``now`` dates the event.
        """
        out = []
        for service, (since, lost) in list(self._down_since.items()):
            if service in self._down_told or mono - since < self.cfg.service_grace:
                continue
            self._down_told.add(service)
            how = "went away without a goodbye (crash or lost connection)" if lost else "stopped"
            out.append(
                Event(
                    "service_down",
                    f"service:{service}",
                    "down",
                    f"bmsgate {service} is down",
                    f"bmsgate: the {service} service {how} and has not come back",
                    "high",
                    "failure",
                    now,
                )
            )
        return out

    def take_alarm_log(self) -> list[tuple[datetime, str]]:
        """The alarms raised since the last call (for a daily report), oldest first."""
        log, self.alarm_log = self.alarm_log, []
        return log

    @staticmethod
    def _ev(
        kind: NotifyEvent,
        pack: str,
        state: str,
        title: str,
        body: str,
        priority: NotifyPriority,
        tone: Tone,
        ts: datetime,
    ) -> Event:
        group = kind.removesuffix("_ok") if kind != "online" else "offline"
        return Event(kind, f"{group}:{pack}", state, title, body, priority, tone, ts, pack)

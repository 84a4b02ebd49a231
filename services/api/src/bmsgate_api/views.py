"""Pure shaping of what the pages show: a pack or bank at a glance, alarms in words."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from bmsgate_bms.alarms import describe
from bmsgate_common.bank import Member, combine, counters_of, energy_today, exclusion, pending
from bmsgate_common.models import AlarmEvent, DailyStats, HealthFinding, PackState
from bmsgate_common.settings import BankSettings

from .store import PackStore

IDLE_AMPS = 0.5  # [A] below this the pack counts as relaxing (idle)

Activity = Literal["charging", "discharging", "idle"]


class Alarm(BaseModel):
    """An active alarm in words."""

    code: str
    text: str
    level: Literal["warning", "alarm", "fault"] | None = None


class PackView(BaseModel):
    """A pack at a glance (the Status page): the state, figures derived from it, the day so far."""

    pack: str
    name: str
    online: bool
    reason: str | None = Field(default=None, description="why offline")
    age: float | None = Field(default=None, description="[s] since the BMS was last read")
    last_seen: datetime | None = Field(
        default=None, description="when last read (a bank: its latest member reading)"
    )
    activity: Activity | None = None
    cell_average: float | None = Field(default=None, description="[V]")
    cell_delta: float | None = Field(default=None, description="[V]")
    cell_min_index: int | None = Field(default=None, description="lowest cell (1-based)")
    cell_max_index: int | None = Field(default=None, description="highest cell (1-based)")
    alarms: list[Alarm] = Field(default_factory=list)
    state: PackState | None = Field(default=None, description="null while offline")
    daily: DailyStats | None = Field(
        default=None, description="the daily figures of the site's today (max SOC and when...)"
    )
    energy_in_today: float | None = Field(
        default=None, description="[kWh] charged today (daily figures; a bank: its members' sum)"
    )
    energy_out_today: float | None = Field(
        default=None, description="[kWh] discharged today (daily figures; a bank: its members' sum)"
    )
    findings: list[HealthFinding] = Field(default_factory=list)
    health_checked: datetime | None = Field(default=None, description="when health last ran")


def activity(current: float, idle: float = IDLE_AMPS) -> Activity:
    """Charging, discharging or idle (relaxing) from the current [A]."""
    if current >= idle:
        return "charging"
    if current <= -idle:
        return "discharging"
    return "idle"


def alarms_in_words(state: PackState, events: dict[str, AlarmEvent]) -> list[Alarm]:
    """The state's alarm codes as text; the reader's own event text where it sent one."""
    out = []
    for code in state.alarms:
        event = events.get(code)
        if event is not None:
            out.append(Alarm(code=code, text=event.text, level=event.level))
        else:
            text = describe(code, state.cell_voltages, state.temperatures)
            out.append(Alarm(code=code, text=text))
    return out


def pack_view(store: PackStore, pack: str, now: datetime) -> PackView:
    """Everything the Status page shows of one pack; old values are never shown as live."""
    state = store.states.get(pack)
    online = store.is_online(pack, now)
    health = store.health.get(pack)
    today = store.daily_today(pack, now)  # an offline pack's figures of yesterday are not today's
    view = PackView(
        pack=pack,
        name=state.name if state else pack,
        online=online,
        reason=None if online else store.offline_reason(pack, now),
        age=store.arrivals.age(pack, state, now) if state else None,  # a clock step left out
        last_seen=state.ts if state else None,
        daily=today,
        energy_in_today=today.energy_in if today else None,
        energy_out_today=today.energy_out if today else None,
        findings=list(health.findings) if health else [],
        health_checked=health.ts if health else None,
    )
    if not online or state is None:
        return view
    _show(view, state, store.alarms.get(pack, {}))
    return view


def _show(view: PackView, state: PackState, events: dict[str, AlarmEvent]) -> None:
    """Fill in a live state and the figures derived from it."""
    stats = state.cells
    view.state = state
    view.activity = activity(state.current)
    view.alarms = alarms_in_words(state, events)
    if stats is not None:
        view.cell_average = round(stats.average, 4)
        view.cell_delta = round(stats.delta, 4)
        view.cell_min_index = stats.low_cell
        view.cell_max_index = stats.high_cell


class BankMember(BaseModel):
    """A member pack of a bank and whether it counts in the bank right now."""

    pack: str
    name: str
    counted: bool
    reason: str | None = Field(default=None, description="why it does not count")
    cells: int = Field(
        default=0, description="its cells in the bank's cell list (members in order); 0 uncounted"
    )


class BankView(PackView):
    """A bank (packs in parallel) at a glance: the combined state and its members."""

    members: list[BankMember] = Field(default_factory=list)


def _why_no_bank(
    bank: BankSettings, members: dict[str, Member], store: PackStore, now: datetime
) -> str:
    waiting = pending(bank, members, now, store.stale_after, store.arrivals)
    return f"waiting for {', '.join(waiting)}" if waiting else "no member pack counts"


def bank_view(
    store: PackStore, bank: BankSettings, names: dict[str, str], now: datetime
) -> BankView:
    """The bank combined from its members' latest states, as the publisher combines it."""
    members: dict[str, Member] = {}
    listed = []
    for pack in bank.packs:
        member = Member(store.states.get(pack), store.availability.get(pack))
        members[pack] = member
        why = exclusion(member, now, store.stale_after, store.arrivals)
        cells = len(member.state.cell_voltages) if why is None and member.state else 0
        listed.append(
            BankMember(
                pack=pack, name=names.get(pack, pack), counted=why is None, reason=why, cells=cells
            )
        )
    # the counters are the publisher's (it keeps them; they never go down)
    counters = counters_of(store.states.get(bank.id))
    state = combine(bank, members, now, store.stale_after, counters, store.arrivals)
    # offline, the bank was last seen when its newest member reading came (not "never")
    read = [m.state.ts for m in members.values() if m.state is not None]
    seen = state.ts if state else max(read, default=None)
    view = BankView(
        pack=bank.id,
        name=bank.name or bank.id,
        online=state is not None,
        reason=None if state is not None else _why_no_bank(bank, members, store, now),
        age=(now - seen).total_seconds() if seen else None,
        last_seen=seen,
        daily=store.daily_today(bank.id, now),
        members=listed,
    )
    # the members' own days summed: the bank's counters miss what a member moved uncounted
    view.energy_in_today, view.energy_out_today = energy_today(bank, store.daily, store.today(now))
    if state is not None:
        events = {c: e for p in bank.packs for c, e in store.alarms.get(p, {}).items()}
        _show(view, state, events)
    return view

"""Packs in parallel as one more pack: the one bank combiner (pure).

The publisher, the API and Modbus all call :func:`combine` on the members they hold, so a bank has
the same values on MQTT, in Home Assistant, in the web UI and in the registers.

A bank's counters (energy and charge in/out, cycles) are not the sum of the members' lifetime
counters, which falls when a member drops out and jumps when it returns (Home Assistant reads
each fall as a meter reset). :class:`BankTotals` adds each member's *increments* while it counts:
a member that leaves and comes back adds what it moves from its return on. The publisher keeps
the totals on disk and publishes them in the bank's state; the API and Modbus take them from that
state (:func:`counters_of`), so the counters too are the same everywhere and never go down.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, TypeVar

from bmsgate_common.liveness import Arrivals, liveness
from bmsgate_common.models import Availability, DailyStats, PackState
from bmsgate_common.settings import BankSettings


@dataclass
class Member:
    """What a service knows of one member pack: its latest state and availability."""

    state: PackState | None = None
    availability: Availability | None = None


def exclusion(
    member: Member, now: datetime, stale_after: float, arrivals: Arrivals | None = None
) -> str | None:
    """Why a member does not count in the bank right now, or None if it does."""
    state = member.state
    live, why = liveness(state, member.availability, now, stale_after, arrivals)
    if not live or state is None:
        return why
    if state.charge_mos is False and state.discharge_mos is False:
        return "cut off"  # both MOSFETs open: it carries no current in either direction
    return None


def _sum_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


COUNTERS: Final = ("energy_in", "energy_out", "charge_in", "charge_out", "cycles")
Counters = Mapping[str, float]  # a bank's counters by PackState field name; absent = unknown


def counted(
    bank: BankSettings,
    members: Mapping[str, Member],
    now: datetime,
    stale_after: float,
    arrivals: Arrivals | None = None,
) -> list[PackState]:
    """The latest states of the members that count now, in config order."""
    used: list[PackState] = []
    for pack_id in bank.packs:
        member = members.get(pack_id, Member())
        if exclusion(member, now, stale_after, arrivals) is None and member.state is not None:
            used.append(member.state)
    return used


def pending(
    bank: BankSettings,
    members: Mapping[str, Member],
    now: datetime,
    stale_after: float,
    arrivals: Arrivals,
) -> list[str]:
    """The members not judged yet since this process began listening (Arrivals.undecided).

    While any is, the bank is not combined: a bank of two with one member still unknown
    would be shown as a bank of one, as if that were the truth.
    """
    out = []
    for pack_id in bank.packs:
        member = members.get(pack_id, Member())
        if arrivals.undecided(pack_id, member.state, member.availability, now, stale_after):
            out.append(pack_id)
    return out


def counters_of(state: PackState | None) -> dict[str, float]:
    """The counters of a published bank state (the publisher's totals); empty without one."""
    if state is None:
        return {}
    return {name: float(v) for name in COUNTERS if (v := getattr(state, name)) is not None}


def cycle_shares(bank: BankSettings, members: Mapping[str, Member]) -> dict[str, float]:
    """Each member's part of a bank cycle: its share of the bank's capacity, else 1/n."""
    states = [members.get(p, Member()).state for p in bank.packs]
    caps = [s.nominal_capacity if s else None for s in states]
    if all(caps):
        total = sum(c for c in caps if c)
        return {p: (c or 0.0) / total for p, c in zip(bank.packs, caps, strict=True)}
    return dict.fromkeys(bank.packs, 1 / len(bank.packs))


@dataclass
class BankTotals:
    """A bank's counters that never go down: the sum of its members' increments while counted."""

    totals: dict[str, float] = field(default_factory=dict)
    # the reading each counting member had at its last counted state: where its increment starts
    last: dict[str, dict[str, float]] = field(default_factory=dict)
    # the counters published before a restart: never shown lower (not kept on disk)
    floor: dict[str, float] = field(default_factory=dict)

    def heard(self, published: Counters, *, first_run: bool) -> None:
        """The bank's counters as published before this process started (its retained state).

        On a first run (no saved totals: a new data directory, or counters that were once
        the members' lifetime sums) the totals continue from them; otherwise they are a floor
        until the members' increments since the last save have come in again.
        """
        for name, value in published.items():
            if first_run:
                self.totals[name] = self.totals.get(name, 0.0) + value
            else:
                self.floor[name] = max(self.floor.get(name, 0.0), value)

    def shown(self) -> dict[str, float]:
        """The counters to publish: the totals, never below what was published before."""
        return {k: max(v, self.floor.get(k, 0.0)) for k, v in self.totals.items()} | {
            k: v for k, v in self.floor.items() if k not in self.totals
        }

    def update(
        self,
        used: Sequence[PackState],
        shares: Mapping[str, float],
        unheard: Collection[str] = (),
    ) -> bool:
        """Add what each counting member moved since its last counted state.

        A member not counting now loses its start, so on return it adds only what it moves from
        then on. A reading below the start (the BMS's counter was reset) starts again from it.
        A member ``unheard`` of since this process started keeps its start (after a restart its
        first state adds what it moved meanwhile). Returns True when a member started or stopped
        counting: saved then, the starts on disk stay valid until the next save, so a crash in
        between loses nothing.
        """
        counting = {s.pack for s in used}
        gone = set(self.last) - counting - set(unheard)
        joined_or_left = bool(gone or counting - set(self.last))
        for pack in gone:
            del self.last[pack]
        for state in used:
            start = self.last.setdefault(state.pack, {})
            for name in COUNTERS:
                value = getattr(state, name)
                if value is None:
                    continue
                before = start.get(name)
                start[name] = float(value)
                self.totals.setdefault(name, 0.0)
                if before is not None and value > before:
                    weight = shares.get(state.pack, 1.0) if name == "cycles" else 1.0
                    self.totals[name] += (value - before) * weight
        return joined_or_left

    def to_json(self) -> dict[str, Any]:
        """What is kept on disk."""
        return {"totals": self.totals, "last": self.last}

    @classmethod
    def from_json(cls, data: Any) -> BankTotals:
        """The totals read back; ValueError when ``data`` is not what :meth:`to_json` wrote."""
        try:
            totals = {str(k): float(v) for k, v in data["totals"].items() if k in COUNTERS}
            last = {
                str(pack): {str(k): float(v) for k, v in start.items() if k in COUNTERS}
                for pack, start in data["last"].items()
            }
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise ValueError(f"not bank totals: {err}") from None
        if any(v < 0 for v in totals.values()):
            raise ValueError("not bank totals: a negative counter")
        return cls(totals, last)


def combine(
    bank: BankSettings,
    members: Mapping[str, Member],
    now: datetime,
    stale_after: float,
    counters: Counters,
    arrivals: Arrivals | None = None,
) -> PackState | None:
    """The bank's state from its members' latest states; None when no member counts.

    None too while a member is not judged yet (:func:`pending`, with ``arrivals``).

    SOC is weighted by nominal capacity (equal weights unless every member's is known); current,
    power and capacities add up; the voltage is the members' mean (parallel); cells are the
    members' cells joined in config order, and ``extras`` names the pack and the cell (1-based,
    within that pack) of the lowest and highest cell. The counters are ``counters``: the
    publisher's :class:`BankTotals`, or what it published (:func:`counters_of`).
    """
    if arrivals is not None and pending(bank, members, now, stale_after, arrivals):
        return None
    used = counted(bank, members, now, stale_after, arrivals)
    if not used:
        return None
    caps = [s.nominal_capacity for s in used]
    weights = [c for c in caps if c is not None] if all(caps) else [1.0] * len(used)
    soc = sum(s.soc * w for s, w in zip(used, weights, strict=True)) / sum(weights)
    cells = [v for s in used for v in s.cell_voltages]
    extras: dict[str, str | int | float | bool | None] = {
        "bank": True,
        "bank_members": ",".join(s.pack for s in used),
        "bank_excluded": ",".join(p for p in bank.packs if p not in {s.pack for s in used}),
    }
    with_cells = [(s.pack, stats) for s in used if (stats := s.cells) is not None]
    if with_cells:
        low_pack, low = min(with_cells, key=lambda p: p[1].low)
        high_pack, high = max(with_cells, key=lambda p: p[1].high)
        extras |= {
            "cell_min_pack": low_pack,
            "cell_min_cell": low.low_cell,
            "cell_max_pack": high_pack,
            "cell_max_cell": high.high_cell,
        }
    mos_temps = [s.mos_temperature for s in used if s.mos_temperature is not None]
    cycles = counters.get("cycles")
    balancing = [s.balancing for s in used if s.balancing is not None]
    alarms: list[str] = []
    for pack_id in bank.packs:  # a cut-off member's alarms explain the cut-off: keep them
        seen = members.get(pack_id)
        live = seen and liveness(seen.state, seen.availability, now, stale_after, arrivals)[0]
        if seen and seen.state and live:
            alarms += [a for a in seen.state.alarms if a not in alarms]
    return PackState(
        pack=bank.id,
        name=bank.name or bank.id,
        protocol=used[0].protocol,
        ts=max(s.ts for s in used),
        pack_voltage=round(sum(s.pack_voltage for s in used) / len(used), 3),
        current=round(sum(s.current for s in used), 3),
        power=round(sum(s.power for s in used), 1),
        soc=round(min(100.0, max(0.0, soc)), 1),
        cell_voltages=cells,
        cell_count=len(cells),
        temperatures=[t for s in used for t in s.temperatures],
        mos_temperature=max(mos_temps) if mos_temps else None,
        cycles=None if cycles is None else int(cycles),  # a whole bank cycle once complete
        remaining_capacity=_sum_or_none([s.remaining_capacity for s in used]),
        nominal_capacity=_sum_or_none([s.nominal_capacity for s in used]),
        balancing=any(balancing) if balancing else None,
        energy_in=counters.get("energy_in"),
        energy_out=counters.get("energy_out"),
        charge_in=counters.get("charge_in"),
        charge_out=counters.get("charge_out"),
        alarms=alarms,
        extras=extras,
    )


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Energy:
    """Energy moved in one period (a day, a month) [kWh]; None where not known."""

    energy_in: float | None = None
    energy_out: float | None = None


@dataclass(frozen=True)
class BankEnergy:
    """A bank's energy in one period: its members' figures summed, and who had none."""

    energy: Energy
    missing: tuple[str, ...]  # members without a figure for the period (offline, not archived)


def _total(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def bank_energy(
    bank: BankSettings, figures: Mapping[str, Mapping[K, Energy]]
) -> dict[K, BankEnergy]:
    """A bank's energy per period: its members' figures summed, each member once.

    ``figures`` holds each member's figures by period (a day, a month); only periods where at
    least one member has a figure are in the result: a period no member has is absent, not 0.
    Never the bank's own figures (the history keeps them too, from the bank's counters, which
    miss what a member moved while it did not count).
    """
    packs = list(dict.fromkeys(bank.packs))
    periods = dict.fromkeys(k for p in packs for k in figures.get(p, {}))
    out: dict[K, BankEnergy] = {}
    for period in periods:
        found = {p: e for p in packs if (e := figures.get(p, {}).get(period)) is not None}
        out[period] = BankEnergy(
            Energy(
                _total([e.energy_in for e in found.values()]),
                _total([e.energy_out for e in found.values()]),
            ),
            tuple(p for p in packs if p not in found),
        )
    return out


def energy_today(
    bank: BankSettings, daily: Mapping[str, DailyStats], today: date
) -> tuple[float | None, float | None]:
    """``(in, out)`` [kWh] of a bank ``today``: its members' daily figures summed (bank_energy).

    A member's figures of another day (one offline since yesterday, or not yet in the new day)
    are left out; None where no member has that figure today.
    """
    figures = {
        p: {d.day: Energy(d.energy_in, d.energy_out)}
        for p in bank.packs
        if (d := daily.get(p)) is not None
    }
    found = bank_energy(bank, figures).get(today)
    return (None, None) if found is None else (found.energy.energy_in, found.energy.energy_out)


def availability(bank: BankSettings, state: PackState | None, now: datetime) -> Availability:
    """The bank is online while at least one member counts."""
    if state is None:
        return Availability(pack=bank.id, state="offline", ts=now, reason="no member pack counts")
    return Availability(pack=bank.id, state="online", ts=now)

"""Packs in parallel as one more pack: the one bank combiner (pure).

The publisher, the API and Modbus all call :func:`combine` on the members they hold, so a bank has
the same values on MQTT, in Home Assistant, in the web UI and in the registers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bmsgate_common.liveness import liveness
from bmsgate_common.models import Availability, PackState
from bmsgate_common.settings import BankSettings


@dataclass
class Member:
    """What a service knows of one member pack: its latest state and availability."""

    state: PackState | None = None
    availability: Availability | None = None


def exclusion(member: Member, now: datetime, stale_after: float) -> str | None:
    """Why a member does not count in the bank right now, or None if it does."""
    state = member.state
    live, why = liveness(state, member.availability, now, stale_after)
    if not live or state is None:
        return why
    if state.charge_mos is False and state.discharge_mos is False:
        return "cut off"  # both MOSFETs open: it carries no current in either direction
    return None


def _sum_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def combine(
    bank: BankSettings, members: dict[str, Member], now: datetime, stale_after: float
) -> PackState | None:
    """The bank's state from its members' latest states; None when no member counts.

    SOC is weighted by nominal capacity (equal weights unless every member's is known); current,
    power, capacities and energy counters add up; the voltage is the members' mean (parallel);
    cells are the members' cells joined in config order, and ``extras`` names the pack and the
    cell (1-based, within that pack) of the lowest and highest cell.
    """
    used: list[PackState] = []
    for pack_id in bank.packs:
        member = members.get(pack_id, Member())
        if exclusion(member, now, stale_after) is None and member.state is not None:
            used.append(member.state)
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
    with_cells = [s for s in used if s.cell_voltages]
    if with_cells:
        low = min(with_cells, key=lambda s: min(s.cell_voltages))
        high = max(with_cells, key=lambda s: max(s.cell_voltages))
        extras |= {
            "cell_min_pack": low.pack,
            "cell_min_cell": low.cell_voltages.index(min(low.cell_voltages)) + 1,
            "cell_max_pack": high.pack,
            "cell_max_cell": high.cell_voltages.index(max(high.cell_voltages)) + 1,
        }
    mos_temps = [s.mos_temperature for s in used if s.mos_temperature is not None]
    cycles = [s.cycles for s in used if s.cycles is not None]
    balancing = [s.balancing for s in used if s.balancing is not None]
    alarms: list[str] = []
    for pack_id in bank.packs:  # a cut-off member's alarms explain the cut-off: keep them
        seen = members.get(pack_id)
        if seen and seen.state and liveness(seen.state, seen.availability, now, stale_after)[0]:
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
        cycles=max(cycles) if cycles else None,
        remaining_capacity=_sum_or_none([s.remaining_capacity for s in used]),
        nominal_capacity=_sum_or_none([s.nominal_capacity for s in used]),
        balancing=any(balancing) if balancing else None,
        energy_in=_sum_or_none([s.energy_in for s in used]),
        energy_out=_sum_or_none([s.energy_out for s in used]),
        charge_in=_sum_or_none([s.charge_in for s in used]),
        charge_out=_sum_or_none([s.charge_out for s in used]),
        alarms=alarms,
        extras=extras,
    )


def availability(bank: BankSettings, state: PackState | None, now: datetime) -> Availability:
    """The bank is online while at least one member counts."""
    if state is None:
        return Availability(pack=bank.id, state="offline", ts=now, reason="no member pack counts")
    return Availability(pack=bank.id, state="online", ts=now)

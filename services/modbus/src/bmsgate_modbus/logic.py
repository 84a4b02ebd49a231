"""Pure logic of the Modbus service: backbone messages in, register blocks and commands out.

No sockets and no clock here: the service passes ``now`` and the system figures in.
"""

from __future__ import annotations

import ipaddress
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Final, Literal

from pymodbus.constants import ExcCodes

from bmsgate_common.bank import Member, combine, counters_of
from bmsgate_common.liveness import Arrivals, liveness
from bmsgate_common.models import Availability, CommandAction, CommandResult, DailyStats, PackState
from bmsgate_common.settings import (
    BankSettings,
    ModbusDisplaySettings,
    ModbusPushTarget,
    ModbusPushValue,
    Settings,
)
from bmsgate_common.units import convert

from .registers import (
    MAX_CELLS,
    MOS_OFFSETS,
    REGISTERS,
    SIZE,
    WIDTH,
    WordOrder,
    encode,
    encode_block,
)

Quantities = dict[str, float]

# every quantity a register or a push value can carry, with its unit: SI as PackState has it
QUANTITY_UNITS: Final[dict[str, str]] = {
    "soc": "%",
    "pack_voltage": "V",
    "current": "A",
    "power": "W",
    "cell_delta": "V",
    "cell_average": "V",
    "cell_max": "V",
    "cell_min": "V",
    "temperature": "°C or °F",
    "mos_temperature": "°C or °F",
    "discharge_mos": "0/1",
    "charge_mos": "0/1",
    **{f"cell_{n}": "V" for n in range(1, MAX_CELLS + 1)},
    "cell_count": "cells",
    "daily_max_soc": "%",
    "daily_max_soc_hour": "h",
    "daily_max_soc_minute": "min",
    "remaining_capacity": "Ah",
    "nominal_capacity": "Ah",
    "cycles": "cycles",
    "energy_in": "kWh",
    "energy_out": "kWh",
    "charge_in": "Ah",
    "charge_out": "Ah",
    "failure": "0/1",
    "alarm_count": "alarms",
    "state_age": "s",
    "free_memory": "bytes",
    "uptime": "s",
    "time_zone": "h",
    "dashboard_id": "id",
    "display_word_1": "bits",
    "display_word_2": "bits",
}
# a push value's ``scale`` multiplies the quantity in this unit (docs/modbus.md: cells in mV)
PUSH_UNITS: Final[dict[str, str]] = {
    name: "mV" if unit == "V" and name.startswith("cell_") else unit
    for name, unit in QUANTITY_UNITS.items()
}
SYSTEM_QUANTITIES: Final = frozenset(
    {"free_memory", "uptime", "time_zone", "dashboard_id", "display_word_1", "display_word_2"}
)

BIT_FUNCTIONS: Final = frozenset({1, 2, 5, 15})  # coils and discrete inputs: not in this map
MOS_ACTIONS: Final[dict[str, CommandAction]] = {
    "discharge_mos": "set_discharge_mos",
    "charge_mos": "set_charge_mos",
}


@dataclass(frozen=True)
class MapOptions:
    """How states become registers."""

    word_order: WordOrder = "little"
    temperature_unit: Literal["C", "F"] = "C"
    stale_after: float = 60.0  # [s] the top-level stale_after
    tz: tzinfo | None = None  # the site's zone of registers 41, 42, 52; None = the machine's
    display: ModbusDisplaySettings = field(default_factory=ModbusDisplaySettings)


def _temperature(celsius: float, unit: Literal["C", "F"]) -> float:
    return celsius * 9 / 5 + 32 if unit == "F" else celsius


def pack_quantities(
    state: PackState,
    daily: DailyStats | None,
    *,
    offline: bool,
    now: datetime,
    opts: MapOptions,
    age: float | None = None,
) -> Quantities:
    """Every quantity of one pack, in the units of QUANTITY_UNITS.

    ``age`` [s] of the state (bmsgate_common.liveness.Arrivals.age); ``now`` minus its stamp
    when not given.
    """
    age = max(0.0, (now - state.ts).total_seconds() if age is None else age)
    q: Quantities = {
        "soc": state.soc,
        "pack_voltage": state.pack_voltage,
        "current": state.current,
        "power": state.power,
        "cell_count": state.cell_count,
        "alarm_count": len(state.alarms),
        "state_age": age,
        "failure": 1.0 if offline else 0.0,
    }
    stats = state.cells
    if stats is not None:
        q.update(
            cell_delta=stats.delta,
            cell_average=stats.average,
            cell_max=stats.high,
            cell_min=stats.low,
        )
        cells = state.cell_voltages[:MAX_CELLS]
        q.update({f"cell_{n}": v for n, v in enumerate(cells, start=1)})
    if state.temperatures:
        q["temperature"] = _temperature(statistics.fmean(state.temperatures), opts.temperature_unit)
    elif state.mos_temperature is not None:
        q["temperature"] = _temperature(state.mos_temperature, opts.temperature_unit)
    if state.mos_temperature is not None:
        q["mos_temperature"] = _temperature(state.mos_temperature, opts.temperature_unit)
    optional = {
        "discharge_mos": state.discharge_mos,
        "charge_mos": state.charge_mos,
        "remaining_capacity": state.remaining_capacity,
        "nominal_capacity": state.nominal_capacity,
        "cycles": state.cycles,
        "energy_in": state.energy_in,
        "energy_out": state.energy_out,
        "charge_in": state.charge_in,
        "charge_out": state.charge_out,
    }
    q.update({k: float(v) for k, v in optional.items() if v is not None})
    local_now = now.astimezone(opts.tz)
    if daily is not None and daily.day == local_now.date() and daily.max_soc is not None:
        q["daily_max_soc"] = daily.max_soc
        if daily.max_soc_at is not None:
            at = daily.max_soc_at.astimezone(opts.tz)
            q["daily_max_soc_hour"], q["daily_max_soc_minute"] = at.hour, at.minute
    return q


def display_words(display: ModbusDisplaySettings, units: int) -> tuple[int, int]:
    """Registers 54 and 56: 0xAABBCCDD and 0xAABBBCCC as the dongle's manual packs them.

    Word 1: AA = dashboards (high nibble) | 0x2 auto-rolling | 0x1 auto-brightness, BB/CC/DD =
    brightness max/avg/min. Word 2: AA = rolling seconds, BBB/CCC = seconds at max/avg level.
    """
    dashboards = min(15, display.dashboards or max(1, units))
    flags = (0x2 if display.auto_rolling else 0) | (0x1 if display.auto_brightness else 0)
    word1 = (
        ((dashboards << 4 | flags) << 24)
        | display.brightness_max << 16
        | display.brightness_avg << 8
        | display.brightness_min
    )
    word2 = display.rolling_seconds << 24 | display.seconds_at_max << 12 | display.seconds_at_avg
    return word1, word2


def default_units(cfg: Settings) -> dict[int, str]:
    """The unit map in use: ``modbus.units``, else packs in config order from 1, then banks."""
    if cfg.modbus.units:
        return dict(cfg.modbus.units)
    return {unit: pack for unit, pack in enumerate(cfg.pack_ids(), start=1)}


def config_problem(cfg: Settings) -> str | None:
    """One line naming what in the modbus settings cannot work, or None."""
    packs = {p.id for bus in cfg.buses for p in bus.packs}
    known = packs | {b.id for b in cfg.banks}
    for unit, pack in sorted(cfg.modbus.units.items()):
        if pack not in known:
            return f"modbus.units.{unit}: no pack or bank {pack!r} is configured"
    for t, target in enumerate(cfg.modbus.push):
        used: dict[int, int] = {}
        for v, value in enumerate(target.values):
            where = f"modbus.push.{t}.values.{v}"
            if value.value not in QUANTITY_UNITS:
                return f"{where}.value: unknown quantity {value.value!r} (see docs/modbus.md)"
            if value.pack not in known:
                return f"{where}.pack: no pack or bank {value.pack!r} is configured"
            for address in range(value.address, value.address + WIDTH[value.type]):
                if address > 0xFFFF:
                    return f"{where}.address: {value.type} does not fit below 65536"
                if address in used:
                    other = used[address]
                    return f"{where}.address: register {address} is also written by value {other}"
                used[address] = v
    return None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_may_write(client: str, allowed: Sequence[Network]) -> bool:
    """Whether the client at address ``client`` is in one of the ``allowed`` networks.

    An IPv4 client reaching an IPv6 listener shows as ``::ffff:a.b.c.d``; it matches IPv4 rules.
    """
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False  # not an IP peer: nobody named it
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowed)


@dataclass
class RefusalLog:
    """Which refused writes are logged one by one: the first ``per_window`` of each client.

    A host on the network can send thousands of writes a second; each is still accounted for:
    the ones past the budget are counted and reported in one line per client and window.
    """

    per_window: int = 10
    window: float = 60.0  # [s]
    _open: dict[str, list[float]] = field(default_factory=dict)  # client -> [start, logged, more]

    def note(self, client: str, now: float) -> bool:
        """Count a refused write of ``client`` at ``now`` [s]; True when it gets its own line."""
        entry = self._open.setdefault(client, [now, 0, 0])
        if entry[1] < self.per_window:
            entry[1] += 1
            return True
        entry[2] += 1
        return False

    def summaries(self, now: float) -> list[tuple[str, int, float]]:
        """(client, writes not logged one by one, seconds) of each window that has ended."""
        out = []
        for client, (start, _, more) in list(self._open.items()):
            if now - start >= self.window:
                del self._open[client]
                if more:
                    out.append((client, int(more), now - start))
        return out


def write_commands(
    offset: int, values: Sequence[int]
) -> list[tuple[CommandAction, bool]] | ExcCodes:
    """The MOS commands a write of ``values`` at block ``offset`` asks for, or the exception.

    Only the MOS registers are writable: anything else is ILLEGAL_ADDRESS; a value other than
    0 or 1 is ILLEGAL_VALUE. Nothing is sent unless the whole request is valid.
    """
    commands: list[tuple[CommandAction, bool]] = []
    for i, value in enumerate(values):
        quantity = MOS_OFFSETS.get(offset + i)
        if quantity is None:
            return ExcCodes.ILLEGAL_ADDRESS
        if value not in (0, 1):
            return ExcCodes.ILLEGAL_VALUE
        commands.append((MOS_ACTIONS[quantity], value == 1))
    return commands


class RegisterStore:
    """The latest messages per pack and the register block of every unit, rebuilt on change.

    A block is replaced by a new list in one assignment, so a reader sees either the old or the
    new state of a unit, never a mix (the event loop runs one request at a time).
    """

    def __init__(
        self,
        units: Mapping[int, str],
        banks: Mapping[str, Sequence[str]],
        opts: MapOptions,
    ) -> None:
        """Serve ``units`` (unit id -> pack or bank id); ``banks`` lists each bank's members."""
        self.units = dict(units)
        self.banks = {
            bank: BankSettings.model_construct(id=bank, packs=list(members))
            for bank, members in banks.items()
        }
        self._bank_last: dict[str, PackState] = {}  # shown, failure flag up, when none counts
        self.arrivals = Arrivals()  # states' ages on the monotonic clock
        self.opts = opts
        self.states: dict[str, PackState] = {}
        self.availability: dict[str, Availability] = {}
        self.daily: dict[str, DailyStats] = {}
        self.blocks: dict[int, list[int] | None] = dict.fromkeys(self.units)
        self._encoded: dict[int, Quantities] = {}  # the values each block was encoded from
        self.system: Quantities = {}
        word1, word2 = display_words(opts.display, len(self.units))
        self._dashboards = {u: i for i, u in enumerate(sorted(self.units), start=1)}
        self._words = {"display_word_1": float(word1), "display_word_2": float(word2)}

    def members(self, target: str) -> tuple[str, ...]:
        """The packs behind a pack or bank id."""
        bank = self.banks.get(target)
        return tuple(bank.packs) if bank else (target,)

    def packs(self) -> set[str]:
        """Every pack any unit shows."""
        return {p for target in self.units.values() for p in self.members(target)}

    def on_state(self, state: PackState) -> None:
        """Take a new state."""
        self.arrivals.heard(state.pack, state)
        self.states[state.pack] = state

    def on_availability(self, availability: Availability) -> None:
        """Take an availability change."""
        self.arrivals.heard(availability.pack, availability)
        self.availability[availability.pack] = availability

    def on_daily(self, daily: DailyStats) -> None:
        """Take the day's figures."""
        self.daily[daily.pack] = daily

    def on_result(self, result: CommandResult) -> bool:
        """Show a confirmed MOS state at once (the next state would confirm it again).

        Returns True when a state changed.
        """
        state = self.states.get(result.pack)
        quantity = {a: q for q, a in MOS_ACTIONS.items()}.get(result.action)
        if state is None or quantity is None or result.status != "ok":
            return False
        if not isinstance(result.value, bool):
            return False
        self.states[result.pack] = state.model_copy(update={quantity: result.value})
        return True

    def online(self, pack: str, now: datetime) -> bool:
        """Live by the one rule (bmsgate_common.liveness)."""
        state, avail = self.states.get(pack), self.availability.get(pack)
        return liveness(state, avail, now, self.opts.stale_after, self.arrivals)[0]

    def bank_state(self, bank: str, now: datetime) -> tuple[PackState | None, bool]:
        """The bank combined as everywhere else (bmsgate_common.bank), and whether it is live.

        When no member counts, the last combined state is shown with the failure flag up.
        """
        cfg = self.banks[bank]
        members = {p: Member(self.states.get(p), self.availability.get(p)) for p in cfg.packs}
        counters = counters_of(self.states.get(bank))  # the publisher's, never going down
        state = combine(cfg, members, now, self.opts.stale_after, counters, self.arrivals)
        if state is None:
            return self._bank_last.get(bank), False
        self._bank_last[bank] = state
        return state, True

    def quantities(self, target: str, now: datetime) -> Quantities | None:
        """A pack's or bank's quantities; None when it (any member) has never sent a state."""
        if target in self.banks:
            state, live = self.bank_state(target, now)
        else:
            state = self.states.get(target)
            live = self.online(target, now)
        if state is None:
            return None
        daily = self.daily.get(target)
        age = None if target in self.banks else self.arrivals.age(target, state, now)
        return pack_quantities(state, daily, offline=not live, now=now, opts=self.opts, age=age)

    def refresh(self, now: datetime, packs: Iterable[str] | None = None) -> None:
        """Rebuild the blocks of the units showing any of ``packs`` (all units when None)."""
        wanted = None if packs is None else set(packs)
        for unit, target in self.units.items():
            if wanted is not None and wanted.isdisjoint(self.members(target)):
                continue
            q = self.quantities(target, now)
            if q is None:
                self.blocks[unit] = None
                continue
            q.update(self.system)
            q.update(self._words)
            q["dashboard_id"] = self._dashboards[unit]
            last, block = self._encoded.get(unit), self.blocks[unit]
            before = (last, block) if last is not None and block is not None else None
            self.blocks[unit] = encode_block(q, self.opts.word_order, before)
            self._encoded[unit] = q

    def set_system(self, *, uptime: float, free_memory: float, now: datetime) -> None:
        """Registers 50-52: the service's seconds counter, free memory, local UTC offset."""
        offset = now.astimezone(self.opts.tz).utcoffset()
        hours = int(offset.total_seconds() / 3600) if offset is not None else 0  # toward zero
        self.system = {
            "uptime": float(int(uptime) % 0x10000),  # wraps like the dongle's counter
            "free_memory": free_memory,
            "time_zone": float(hours),
        }

    def block(self, unit: int) -> list[int] | None:
        """The unit's registers (SIZE of them), None when its pack was never seen."""
        return self.blocks.get(unit)


def push_writes(
    target: ModbusPushTarget, quantities: Mapping[str, Quantities | None]
) -> list[tuple[int, list[int]]]:
    """The FC16 writes for a push target: (first address, registers), neighbours merged.

    Values of packs never seen (or quantities the pack does not report) are left out.
    """
    items: list[tuple[int, list[int]]] = []
    for value in target.values:
        q = quantities.get(value.pack)
        if q is None or value.value not in q:
            continue
        items.append((value.address, _encode_push(value, q[value.value])))
    items.sort()
    writes: list[tuple[int, list[int]]] = []
    for address, regs in items:
        if writes:
            start, merged = writes[-1]
            if start + len(merged) == address and len(merged) + len(regs) <= MAX_WRITE:
                merged.extend(regs)
                continue
        writes.append((address, list(regs)))
    return writes


MAX_WRITE: Final = 123  # registers in one function-16 request (Modbus application protocol 6.12)


def _encode_push(value: ModbusPushValue, number: float) -> list[int]:
    shown = convert(number, QUANTITY_UNITS[value.value], PUSH_UNITS[value.value])
    return encode(shown, value.type, value.scale, value.word_order)


assert SIZE <= 125, "one read (function 3) must be able to fetch a unit's whole block"
assert all(QUANTITY_UNITS.get(r.quantity) == r.unit for r in REGISTERS), "one unit per quantity"

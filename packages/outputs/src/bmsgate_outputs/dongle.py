"""The SmartBMS dongle's MQTT packets, byte for byte (SEED.md feature 2; docs/publisher.md).

Existing dashboards parse these with fixed keys and value types: PMV/PMA are strings with two
decimals, PDV a number written with two decimals, the rest integers. Pure functions only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final, NamedTuple

from bmsgate_bms.daly_classic import FAILURE_BITS
from bmsgate_common.models import DailyStats, PackState
from bmsgate_common.settings import DongleField
from bmsgate_common.units import whole_mv


class Fixed(NamedTuple):
    """A number written with a fixed count of decimals (``30.00``), which json.dumps cannot do."""

    value: float
    decimals: int


Value = int | str | Fixed | dict[str, int]


def render(pairs: Sequence[tuple[str, Value]]) -> bytes:
    """Compact JSON in the given key order, as the dongle writes it (no spaces)."""
    return _object(pairs).encode()


def _object(pairs: Sequence[tuple[str, Value]]) -> str:
    return "{" + ",".join(f"{_key(k)}:{_value(v)}" for k, v in pairs) + "}"


@functools.cache
def _key(key: str) -> str:
    return json.dumps(key)  # a few dozen keys (fields, cell numbers): each encoded once


def _value(value: Value) -> str:
    if type(value) is int:  # most values; json.dumps writes an int as str() does, only slower
        return str(value)
    if isinstance(value, Fixed):
        return f"{value.value:.{value.decimals}f}"
    if isinstance(value, dict):
        return _object(list(value.items()))
    return json.dumps(value)


mv = whole_mv  # the dongle's cells and deltas are whole millivolts


# The dongle's ALM field is DALY's 0x98 failure bytes 0..6 in decimal. Every protocol's alarm
# codes share one vocabulary, so a JK pack's alarms land on the same bits.
ALM_BITS: Final = FAILURE_BITS
_ALM_POSITION: Final = {
    code: (byte, bit)
    for byte, names in enumerate(ALM_BITS)
    for bit, code in enumerate(names)
    if code is not None
}


def alarm_bytes(codes: Sequence[str]) -> list[int]:
    """The seven DALY failure bytes for a list of alarm codes (unknown codes set no bit)."""
    out = [0] * len(ALM_BITS)
    for code in codes:
        where = _ALM_POSITION.get(code)
        if where is None and code.startswith("daly_bit_"):  # a reserved bit the reader passed on
            byte_s, _, bit_s = code.removeprefix("daly_bit_").partition("_")
            if byte_s.isdigit() and bit_s.isdigit() and int(byte_s) < 7 and int(bit_s) < 8:
                where = (int(byte_s), int(bit_s))
        if where is not None:
            out[where[0]] |= 1 << where[1]
    return out


def _temperature(state: PackState) -> float | None:
    if state.temperatures:
        return sum(state.temperatures) / len(state.temperatures)
    return state.mos_temperature


def _cells(state: PackState, style: str) -> list[tuple[str, Value]]:
    cells = [mv(v) for v in state.cell_voltages]
    if style == "type1":
        return [(f"b{i}", c) for i, c in enumerate(cells)]
    return [("bat", {str(i): c for i, c in enumerate(cells)})]


def _delta(state: PackState) -> list[tuple[str, Value]]:
    return [("PDV", Fixed(mv(state.cell_delta), 2))] if state.cell_voltages else []


def _average(state: PackState) -> list[tuple[str, Value]]:
    return [("AMV", mv(state.cell_average))] if state.cell_voltages else []


def _temp(state: PackState) -> list[tuple[str, Value]]:
    t = _temperature(state)
    return [] if t is None else [("TMP", round(t))]


def _alarms(state: PackState) -> list[tuple[str, Value]]:
    alm = ",".join(str(b) for b in alarm_bytes(state.alarms))
    return [("ALM", alm), ("ALMF", 1 if state.alarms else 0)]


def _mos(state: PackState) -> list[tuple[str, Value]]:
    out: list[tuple[str, Value]] = []
    if state.discharge_mos is not None:
        out.append(("DMS", int(state.discharge_mos)))
    if state.charge_mos is not None:
        out.append(("CMS", int(state.charge_mos)))
    return out


# the main packet, in the dongle's key order; one row per selectable field of its config page
Build = Callable[[PackState, str], list[tuple[str, Value]]]  # (state, style) -> key/value pairs
# fmt: off
MAIN_FIELDS: Final[tuple[tuple[DongleField, Build], ...]] = (
    ("cells", _cells),
    ("soc", lambda s, _: [("SOC", round(s.soc))]),
    # whole watts cut toward zero: 47.20 V x 6.20 A = 292.6 W is "PWT":292 in the manual
    ("power", lambda s, _: [("PWT", int(s.power))]),
    ("voltage", lambda s, _: [("PMV", f"{s.pack_voltage:.2f}")]),
    ("current", lambda s, _: [("PMA", f"{s.current:.2f}")]),
    ("delta", lambda s, _: _delta(s)),
    ("average", lambda s, _: _average(s)),
    ("temperature", lambda s, _: _temp(s)),
    ("alarms", lambda s, _: _alarms(s)),
    ("mos", lambda s, _: _mos(s)),
)
# fmt: on


def main_packet(state: PackState, style: str = "type2", fields: Sequence[str] = ()) -> bytes:
    """The main packet of ``state`` with the selected fields (all when ``fields`` is empty)."""
    pairs: list[tuple[str, Value]] = []
    for name, build in MAIN_FIELDS:
        if not fields or name in fields:
            pairs += build(state, style)
    return render(pairs)


def status_packet(online: bool, sent_at: datetime, uptime: float, free_memory: int) -> bytes:
    """The status packet, sent every interval whatever the BMS does.

    ``sent_at`` is local time (the manual: "time stamp of the last MQTT frame sent"); ``cnt`` is
    whole seconds since the publisher started, wrapped at 65536 like the dongle's 16-bit counter.
    """
    return render(
        [
            ("Status", 1 if online else 0),
            ("ts", sent_at.strftime("%m/%d/%y %H:%M:%S")),
            ("cnt", int(uptime) % 65536),
            ("mem", free_memory),
        ]
    )


def daily_packet(daily: DailyStats) -> bytes | None:
    """The daily packet (max SOC today, min/max cell mV today, residual Ah); None if empty."""
    pairs: list[tuple[str, Value]] = []
    if daily.max_soc is not None:
        pairs.append(("SCM", round(daily.max_soc)))
    if daily.min_cell_voltage is not None:
        pairs.append(("MIC", mv(daily.min_cell_voltage)))
    if daily.max_cell_voltage is not None:
        pairs.append(("MAC", mv(daily.max_cell_voltage)))
    if daily.remaining_capacity is not None:
        pairs.append(("RCP", round(daily.remaining_capacity)))
    return render(pairs) if pairs else None

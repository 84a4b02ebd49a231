"""The dongle's register map, as data: the only place that says which register holds what.

Every row names a quantity (a PackState field, or a figure of one: see ``logic.QUANTITY_UNITS``),
its wire type, the quantity's unit (SI, as PackState has it) and the register's scale: a 16-bit
pack voltage is V x 100, a cell V x 1000. The conversion happens here, in ``encode``, and nowhere
else. docs/modbus.md shows the same table (a test keeps them equal).
Offsets count from BASE; the dongle's manual gives BASE = 0x90 (SEED.md feature 6).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Final, Literal, NamedTuple

from bmsgate_common.units import MV_PER_V, step

RegType = Literal["u16", "s16", "u32", "s32", "float32"]
WordOrder = Literal["big", "little"]
Origin = Literal["dongle", "chosen", "bmsgate"]

BASE: Final = 0x90  # 144, protocol (0-based) address of offset 0
WIDTH: Final[dict[RegType, int]] = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "float32": 2}
_LIMITS: Final[dict[RegType, tuple[int, int]]] = {
    "u16": (0, 0xFFFF),
    "s16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFF_FFFF),
    "s32": (-0x8000_0000, 0x7FFF_FFFF),
}
MAX_CELLS: Final = 32  # cells 1-16 where the dongle has them, 17-32 in bmsgate's extension rows
MOS_OFFSETS: Final[dict[int, str]] = {16: "discharge_mos", 17: "charge_mos"}  # writable


class Reg(NamedTuple):
    """One row of the map: ``register(s) = encode(quantity [unit] x scale)``."""

    offset: int
    quantity: str
    type: RegType
    unit: str  # the quantity's unit (SI)
    scale: float  # register steps per ``unit``
    text: str
    origin: Origin  # dongle: legible in the manual; chosen: illegible there; bmsgate: extension

    @property
    def step(self) -> str:
        """What one register step means (mV, 0.01 V, ...)."""
        return step(self.unit, self.scale)


def _cells(first: int, offset: int, count: int, origin: Origin) -> tuple[Reg, ...]:
    return tuple(
        Reg(offset + i, f"cell_{first + i}", "u16", "V", MV_PER_V, f"cell {first + i}", origin)
        for i in range(count)
    )


# fmt: off
REGISTERS: Final[tuple[Reg, ...]] = (
    Reg(0, "soc", "u16", "%", 1, "state of charge", "dongle"),
    Reg(1, "pack_voltage", "u16", "V", 100, "pack voltage", "chosen"),
    Reg(2, "current", "s16", "A", 10, "pack current, + = charging", "chosen"),
    Reg(3, "power", "s16", "W", 1, "pack power, + = charging", "dongle"),
    Reg(4, "cell_delta", "u16", "V", MV_PER_V, "highest minus lowest cell", "dongle"),
    Reg(5, "cell_average", "u16", "V", MV_PER_V, "average cell", "dongle"),
    Reg(6, "cell_max", "u16", "V", MV_PER_V, "highest cell", "dongle"),
    Reg(7, "cell_min", "u16", "V", MV_PER_V, "lowest cell", "dongle"),
    Reg(8, "temperature", "float32", "°C or °F", 1, "average of the sensors", "dongle"),
    Reg(10, "pack_voltage", "float32", "V", 1, "pack voltage", "dongle"),
    Reg(12, "current", "float32", "A", 1, "pack current, + = charging", "dongle"),
    Reg(14, "power", "float32", "W", 1, "pack power, + = charging", "dongle"),
    Reg(16, "discharge_mos", "u16", "0/1", 1, "discharge MOS on (writable)", "chosen"),
    Reg(17, "charge_mos", "u16", "0/1", 1, "charge MOS on (writable)", "chosen"),
    *_cells(1, 18, 16, "chosen"),
    Reg(35, "cell_count", "u16", "cells", 1, "number of cells", "dongle"),
    Reg(40, "daily_max_soc", "u16", "%", 1, "highest SOC today", "dongle"),
    Reg(41, "daily_max_soc_hour", "u16", "h", 1, "local hour of it", "dongle"),
    Reg(42, "daily_max_soc_minute", "u16", "min", 1, "local minute of it", "dongle"),
    Reg(44, "remaining_capacity", "u16", "Ah", 10, "remaining capacity", "chosen"),
    Reg(45, "failure", "u16", "0/1", 1, "1 = pack offline or state stale", "dongle"),
    Reg(50, "free_memory", "u16", "bytes", 1, "free memory, saturates at 65535", "dongle"),
    Reg(51, "uptime", "u16", "s", 1, "seconds counter, wraps at 65536", "dongle"),
    Reg(52, "time_zone", "s16", "h", 1, "local UTC offset, whole hours", "dongle"),
    Reg(53, "dashboard_id", "u16", "id", 1, "colour display: this dashboard", "dongle"),
    Reg(54, "display_word_1", "u32", "bits", 1, "0xAABBCCDD display word 1", "dongle"),
    Reg(56, "display_word_2", "u32", "bits", 1, "0xAABBBCCC display word 2", "dongle"),
    Reg(58, "alarm_count", "u16", "alarms", 1, "active alarms", "bmsgate"),
    Reg(59, "state_age", "u16", "s", 1, "age of the state, saturates at 65535", "bmsgate"),
    *_cells(17, 64, 16, "bmsgate"),
)
# fmt: on
SIZE: Final = max(r.offset + WIDTH[r.type] for r in REGISTERS)  # registers in one unit's block
BY_OFFSET: Final[dict[int, Reg]] = {r.offset: r for r in REGISTERS}


def encode(value: float, reg_type: RegType, scale: float, word_order: WordOrder) -> list[int]:
    """``value x scale`` as registers: integers rounded and clamped to the type, never wrapped.

    Not-a-number becomes 0 for integer types. 32-bit types honour ``word_order``
    ("big": high word first, ABCD; "little": low word first, CDAB).
    """
    scaled = value * scale
    if reg_type == "float32":
        try:
            raw = struct.pack(">f", scaled)
        except OverflowError:  # beyond float32: the nearest is infinity
            raw = struct.pack(">f", math.copysign(math.inf, scaled))
    else:
        low, high = _LIMITS[reg_type]
        number = 0 if math.isnan(scaled) else min(high, max(low, _round(scaled)))
        if reg_type in ("u16", "s16"):
            return [number & 0xFFFF]
        raw = (number & 0xFFFF_FFFF).to_bytes(4, "big")
    high_word, low_word = int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")
    return [high_word, low_word] if word_order == "big" else [low_word, high_word]


def decode(regs: list[int], reg_type: RegType, scale: float, word_order: WordOrder) -> float:
    """The inverse of ``encode`` (up to rounding): registers back to the quantity's unit."""
    if reg_type in ("u16", "s16"):
        raw = regs[0].to_bytes(2, "big")
    else:
        words = regs[:2] if word_order == "big" else [regs[1], regs[0]]
        raw = words[0].to_bytes(2, "big") + words[1].to_bytes(2, "big")
    if reg_type == "float32":
        number: float = struct.unpack(">f", raw)[0]
    else:
        number = int.from_bytes(raw, "big", signed=reg_type.startswith("s"))
    return number / scale


def _round(x: float) -> int:
    """Half away from zero (Python's round() is half-to-even: 0.5 mV -> 0)."""
    if math.isinf(x):
        return int(math.copysign(2**40, x))  # clamped by the caller
    return int(math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1))


def encode_block(
    values: Mapping[str, float],
    word_order: WordOrder,
    before: tuple[Mapping[str, float], list[int]] | None = None,
) -> list[int]:
    """One unit's whole block (SIZE registers); quantities missing from ``values`` read 0.

    ``before``: the values and block of the last call (same ``word_order``); only the
    quantities that changed are encoded again (the seconds tick changes two or three of ~60).
    """
    if before is None:
        old: Mapping[str, float] = {}
        block = [0] * SIZE
    else:
        old, block = before[0], list(before[1])
    for reg in REGISTERS:
        value = values.get(reg.quantity)
        if before is not None and value == old.get(reg.quantity):
            continue  # unchanged (never true for NaN, which is encoded each time)
        if value is not None:
            regs = encode(value, reg.type, reg.scale, word_order)
            block[reg.offset : reg.offset + len(regs)] = regs
        elif before is not None:
            block[reg.offset : reg.offset + WIDTH[reg.type]] = [0] * WIDTH[reg.type]
    return block


def markdown_table() -> str:
    """The map as the Markdown table of docs/modbus.md."""
    lines = [
        "| offset | address (dec / hex) | quantity | type | unit | meaning | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for reg in REGISTERS:
        span = f"{reg.offset}" if WIDTH[reg.type] == 1 else f"{reg.offset}-{reg.offset + 1}"
        address = BASE + reg.offset
        lines.append(
            f"| {span} | {address} / 0x{address:04X} | `{reg.quantity}` | {reg.type.upper()} "
            f"| {reg.step} | {reg.text} | {reg.origin} |"
        )
    return "\n".join(lines) + "\n"

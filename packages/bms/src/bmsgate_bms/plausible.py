"""Plausibility of a snapshot: values no battery can have mean the board lied, checksum or not.

A frame can pass every framing and checksum test and still carry nonsense (a board's firmware
fault, a half-updated register block, another device answering on the address). Such a snapshot
must not be published as the pack's truth, archived or integrated into energy counters. The
limits are the same for every protocol except the current, which depends on the make's class;
each protocol module states its class as ``LIMITS`` in its ``INFO`` (driver.ProtocolInfo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .reading import BmsReading

CELL_VOLTS: Final = (0.5, 5.0)  # [V] below: no cell there or a wire off; above: no Li chemistry
TEMPERATURES: Final = (-40.0, 120.0)  # [°C] beyond what any sensor on a pack can see and survive
SOC: Final = (0.0, 100.0)  # [%]
PACK_TOLERANCE: Final = (1.0, 0.1)  # [V], [1] pack voltage may differ from the sum of its cells


@dataclass(frozen=True)
class Limits:
    """What a board of one make can report; ``max_current`` is the make's class."""

    max_current: float  # [A] magnitude, charging or discharging


def _outside(value: float, bounds: tuple[float, float]) -> bool:
    return not bounds[0] <= value <= bounds[1]


def implausible(reading: BmsReading, limits: Limits) -> str | None:
    """The first impossible value of ``reading`` in words, or None when every value is possible."""
    if _outside(reading.soc, SOC):
        return f"SOC {reading.soc:g} % (possible: 0-100 %)"
    for n, volts in enumerate(reading.cell_voltages, 1):
        if _outside(volts, CELL_VOLTS):
            return f"cell {n} at {volts:g} V (possible: {CELL_VOLTS[0]:g}-{CELL_VOLTS[1]:g} V)"
    if reading.cell_voltages:
        total = sum(reading.cell_voltages)
        slack = max(PACK_TOLERANCE[0], PACK_TOLERANCE[1] * total)
        if abs(reading.pack_voltage - total) > slack:
            return f"pack {reading.pack_voltage:g} V but its cells sum to {total:.3f} V"
    elif _outside(reading.pack_voltage, (0.0, CELL_VOLTS[1] * 32)):
        return f"pack {reading.pack_voltage:g} V"
    if abs(reading.current) > limits.max_current:
        return f"current {reading.current:g} A (this make: at most ±{limits.max_current:g} A)"
    named = [(f"temperature {n}", t) for n, t in enumerate(reading.temperatures, 1)]
    if reading.mos_temperature is not None:
        named.append(("MOS temperature", reading.mos_temperature))
    for name, celsius in named:
        if _outside(celsius, TEMPERATURES):
            return f"{name} {celsius:g} °C (possible: {TEMPERATURES[0]:g}-{TEMPERATURES[1]:g} °C)"
    return None

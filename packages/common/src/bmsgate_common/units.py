"""Unit conversions, declared once.

Inside bmsgate values are SI as the message contract has them (V, A, W, Ah, kWh, °C).
Millivolts and watt-hours exist only at the edges that need them (the dongle's packets, Modbus
registers, Home Assistant's mV sensors, messages to people, the archive's energy columns). An
edge declares the unit it shows next to the unit of the value it takes (an entity row, a
register row, an archive column), and the conversion between the two comes from ``SCALES``.
"""

from __future__ import annotations

from typing import Final

# how many of the second unit make one of the first; the reverse divides by the same number
SCALES: Final[dict[tuple[str, str], float]] = {
    ("V", "mV"): 1000.0,
    ("kWh", "Wh"): 1000.0,
}
# units shown in whole steps: a cell is shown in whole millivolts (Home Assistant, the dongle)
WHOLE: Final = frozenset({"mV"})
MV_PER_V: Final = SCALES["V", "mV"]
WH_PER_KWH: Final = SCALES["kWh", "Wh"]


class UnitError(ValueError):
    """Two units with no declared conversion between them."""


def factor(native: str, shown: str) -> float:
    """How many ``shown`` one ``native`` is (1 for the same unit)."""
    if native == shown:
        return 1.0
    scale = SCALES.get((native, shown))
    if scale is not None:
        return scale
    scale = SCALES.get((shown, native))
    if scale is not None:
        return 1.0 / scale
    raise UnitError(f"no conversion from {native} to {shown}")


def convert(value: float, native: str, shown: str) -> float:
    """``value`` [native] in ``shown``; unknown pairs raise UnitError."""
    if native == shown:
        return value
    scale = SCALES.get((native, shown))
    if scale is not None:
        return value * scale
    scale = SCALES.get((shown, native))
    if scale is not None:
        return value / scale  # divided, not times 1/scale: 1234.5 Wh is 1.2345 kWh exactly
    raise UnitError(f"no conversion from {native} to {shown}")


def shown(value: float, native: str, unit: str) -> float | int:
    """``value`` [native] as shown in ``unit``: converted, and whole where ``unit`` is (WHOLE)."""
    out = convert(value, native, unit)
    return round(out) if unit in WHOLE else out


def to_mv(volts: float) -> float:
    """[V] -> [mV]."""
    return convert(volts, "V", "mV")


def whole_mv(volts: float) -> int:
    """[V] -> whole [mV], as the dongle and Home Assistant show a cell."""
    return round(convert(volts, "V", "mV"))


def from_mv(millivolts: float) -> float:
    """[mV] -> [V]."""
    return convert(millivolts, "mV", "V")


def to_wh(kwh: float) -> float:
    """[kWh] -> [Wh]."""
    return convert(kwh, "kWh", "Wh")


def to_kwh(wh: float) -> float:
    """[Wh] -> [kWh]."""
    return convert(wh, "Wh", "kWh")


def step(unit: str, scale: float) -> str:
    """One step of ``value [unit] x scale``: ``("V", 1000)`` -> mV, ``("V", 100)`` -> 0.01 V."""
    if scale == 1:
        return unit
    for (a, b), k in SCALES.items():
        if a == unit and k == scale:
            return b
    return f"{1 / scale:g} {unit}"

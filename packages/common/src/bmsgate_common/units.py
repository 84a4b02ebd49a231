"""Unit conversions, declared once.

Inside bmsgate values are SI as the message contract has them (V, A, W, Ah, kWh, °C).
Millivolts and watt-hours exist only at the edges that need them (the dongle's packets, Modbus
registers, Home Assistant's mV sensors, messages to people, the archive's energy columns), and
they convert here.
"""

from __future__ import annotations

from typing import Final

MV_PER_V: Final = 1000.0
WH_PER_KWH: Final = 1000.0


def to_mv(volts: float) -> float:
    """[V] -> [mV]."""
    return volts * MV_PER_V


def whole_mv(volts: float) -> int:
    """[V] -> whole [mV], as the dongle and Home Assistant show a cell."""
    return round(volts * MV_PER_V)


def from_mv(millivolts: float) -> float:
    """[mV] -> [V]."""
    return millivolts / MV_PER_V


def to_wh(kwh: float) -> float:
    """[kWh] -> [Wh]."""
    return kwh * WH_PER_KWH


def to_kwh(wh: float) -> float:
    """[Wh] -> [kWh]."""
    return wh / WH_PER_KWH

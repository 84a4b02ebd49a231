"""The BMS's own settings (protection limits, balancing, capacity): described once per protocol.

Each protocol module lists ``SETPOINTS``: every setting its documentation names, with the unit
it is decoded in, and for the few bmsgate may write (balancing, capacity, current limits) the
range it accepts. Ranges are bmsgate's own safe bounds, narrowed by the BMS's other settings as
read (a balance start voltage between the cell under- and over-voltage protection, say). Cell
count, calibration, protection voltages and anything not listed as writable are never written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple


class SettingError(ValueError):
    """A write that bmsgate refuses before anything is sent: unknown, read-only or out of range."""


class Setpoint(NamedTuple):
    """One setting of a BMS; ``low``/``high`` set only for the ones bmsgate may write."""

    key: str  # the name the protocol decodes it as
    unit: str  # SI: V, A, Ah, s, °C, %, or "" for counts and codes
    low: float | None = None  # writable range (inclusive), in ``unit``
    high: float | None = None
    above: str | None = None  # must be at least this other setting's value, as read
    below: str | None = None  # must be at most this other setting's value, as read
    step: float = 0.001  # the resolution the BMS stores; a read-back this close is the value

    @property
    def writable(self) -> bool:
        """Whether bmsgate may write it."""
        return self.low is not None and self.high is not None

    @property
    def label(self) -> str:
        """A readable name: ``balance_start_voltage`` -> ``Balance start voltage``."""
        return self.key.replace("_", " ").capitalize()


def by_key(table: Iterable[Setpoint]) -> dict[str, Setpoint]:
    """The table by key."""
    return {s.key: s for s in table}


def bounds(point: Setpoint, current: Mapping[str, Any]) -> tuple[float, float]:
    """The range a write of ``point`` must fall in, narrowed by the other settings as read."""
    if point.low is None or point.high is None:
        raise SettingError(f"{point.key} is read-only: bmsgate never writes it")
    low, high = point.low, point.high
    if point.above is not None and isinstance(current.get(point.above), int | float):
        low = max(low, float(current[point.above]))
    if point.below is not None and isinstance(current.get(point.below), int | float):
        high = min(high, float(current[point.below]))
    return low, high


def check_write(
    table: Iterable[Setpoint], current: Mapping[str, Any], key: str, value: float
) -> Setpoint:
    """The setpoint ``key`` if ``value`` may be written; SettingError says why not."""
    points = by_key(table)
    point = points.get(key)
    if point is None:
        raise SettingError(f"unknown setting {key!r}: this BMS has no such setting")
    low, high = bounds(point, current)
    if isinstance(value, bool) or not low <= value <= high:
        unit = f" {point.unit}" if point.unit else ""
        raise SettingError(f"{key} must be {low:g}..{high:g}{unit}, not {value!r}")
    return point


def pick(table: Iterable[Setpoint], parts: Mapping[str, Any]) -> dict[str, Any]:
    """The settings among decoded values, in the table's order."""
    return {s.key: parts[s.key] for s in table if s.key in parts}


def table_of(module: Any, variant: str | None = None) -> tuple[Setpoint, ...]:
    """A protocol module's settings table for ``variant`` (its default one when None)."""
    table = getattr(module, "SETPOINTS", ())
    if isinstance(table, Mapping):
        key = variant if variant is not None else next(iter(module.INFO.variants))
        return tuple(table[key])
    return tuple(table)

"""What every driver returns: one normalized snapshot of a pack, named as the pack state is."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from .errors import FrameError

Direction = Literal["charging", "discharging", "idle"]


@dataclass(frozen=True, kw_only=True)
class BmsReading:
    """A complete snapshot decoded from one poll of one BMS. Current is positive when charging."""

    pack_voltage: float  # [V]
    current: float  # [A], positive = charging
    soc: float  # [%]
    cell_voltages: list[float]  # [V], cell 1 first
    temperatures: list[float] = field(default_factory=list)  # [°C], sensor 1 first
    power: float | None = None  # [W], positive = charging; computed from V*I when absent
    mos_temperature: float | None = None  # [°C]
    cycles: int | None = None
    remaining_capacity: float | None = None  # [Ah]
    nominal_capacity: float | None = None  # [Ah]
    charge_mos: bool | None = None
    discharge_mos: bool | None = None
    balancing: bool | None = None
    balancing_cells: list[int] = field(default_factory=list)  # 1-based cell numbers
    alarms: list[str] = field(default_factory=list)  # codes from bmsgate_bms.alarms.ALARMS
    extras: dict[str, Any] = field(default_factory=dict)  # protocol-specific values
    # [s] values kept from an earlier, slow read (bmsgate_bms.polling), by field or extras key,
    # with their age at this snapshot; a field not listed was read for this snapshot
    ages: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_parts(
        cls,
        parts: Mapping[str, Any],
        *,
        extras: Iterable[str] | None = None,
        ages: Mapping[str, float] | None = None,
        **derived: Any,
    ) -> BmsReading:
        """A snapshot from decoded pack-state names, the one way every protocol builds it.

        ``derived`` replaces values the protocol works out (e.g. a current signed by a state
        register); the other names go to ``extras``, all of them or only those listed. ``ages``
        (by decoded name) keeps the names that reach the snapshot; cell_count goes with the cells.
        """
        values = {k: parts[k] for k in READING_FIELDS if k in parts} | derived
        missing = [k for k in REQUIRED if k not in values]
        if missing:
            raise FrameError(f"the answer lacks {', '.join(missing)}")
        if values.get("cycles") is not None:
            values["cycles"] = int(values["cycles"])
        keep = None if extras is None else set(extras)
        values["extras"] = {
            k: v
            for k, v in parts.items()
            if k not in READING_FIELDS and k not in NOT_EXTRAS and (keep is None or k in keep)
        }
        shown = values.keys() | values["extras"].keys()
        values["ages"] = {k: a for k, a in (ages or {}).items() if k in shown}
        if "cell_voltages" in values["ages"]:
            values["ages"]["cell_count"] = values["ages"]["cell_voltages"]
        return cls(**values)

    @property
    def cell_count(self) -> int:
        """Number of cells in series."""
        return len(self.cell_voltages)

    @property
    def direction(self) -> Direction:
        """Charging, discharging or idle, from the sign of the current."""
        if self.current > 0:
            return "charging"
        return "discharging" if self.current < 0 else "idle"


def signed_current(magnitude: float, direction: Direction | None) -> float:
    """Apply a protocol's own direction field to a current whose sign is unreliable."""
    if direction is None:
        return magnitude
    if direction == "idle":
        return (
            magnitude  # keep what the BMS measured; a board may report idle while a trickle flows
        )
    return abs(magnitude) if direction == "charging" else -abs(magnitude)


READING_FIELDS: frozenset[str] = frozenset(f.name for f in fields(BmsReading)) - {"extras", "ages"}
REQUIRED = ("pack_voltage", "current", "soc", "cell_voltages")
NOT_EXTRAS = frozenset({"cell_count"})  # derived from cell_voltages

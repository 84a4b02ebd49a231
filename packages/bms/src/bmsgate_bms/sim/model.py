"""A physical model of a LiFePO4 pack, so simulated boards answer with plausible, moving values.

Cells have their own capacity and internal resistance; SOC is coulomb-counted per cell; a cell's
terminal voltage is its open-circuit voltage (an LFP curve) plus I x R. A day/night profile charges
by day (solar) and discharges at night. Balancing bleeds the highest cells near the top; limits
raise alarms and open the MOSFETs as a real BMS would. Time is injected, so tests can step it.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Final, cast

# LiFePO4 open-circuit voltage [V] against SOC [%] (typical curve of 280 Ah prismatic cells)
# fmt: off
OCV_CURVE: Final = (
    (0.0, 2.50), (2.0, 2.90), (5.0, 3.05), (10.0, 3.20), (20.0, 3.25), (30.0, 3.28),
    (40.0, 3.29), (50.0, 3.30), (60.0, 3.31), (70.0, 3.32), (80.0, 3.33), (90.0, 3.34),
    (95.0, 3.36), (98.0, 3.40), (99.5, 3.50), (100.0, 3.60),
)
# fmt: on

CELL_OVP: Final = 3.65  # [V] protection thresholds (typical LFP settings)
CELL_OVP_WARN: Final = 3.55
CELL_UVP: Final = 2.60
CELL_UVP_WARN: Final = 2.90
BALANCE_START: Final = 3.40  # [V] balancing only near the top
BALANCE_DELTA: Final = 0.010  # [V] start when a cell is this much above the lowest
BALANCE_CURRENT: Final = 0.06  # [A] passive bleed
CHARGE_OTP: Final = 55.0  # [°C]


def ocv(soc: float) -> float:
    """Open-circuit voltage [V] of an LFP cell at ``soc`` [%], linear between curve points."""
    soc = min(100.0, max(0.0, soc))
    socs = [p[0] for p in OCV_CURVE]
    i = max(1, bisect_left(socs, soc))
    (s0, v0), (s1, v1) = OCV_CURVE[i - 1], OCV_CURVE[i]
    return v0 + (v1 - v0) * (soc - s0) / (s1 - s0)


@dataclass
class Cell:
    """One cell: its own capacity, resistance and state of charge."""

    capacity: float  # [Ah]
    resistance: float  # [Ω]
    soc: float  # [%]
    drift: float = 0.0  # [%/h] self-discharge beyond normal: a "drifting" cell

    def voltage(self, current: float) -> float:
        """Terminal voltage [V] at ``current`` [A, + = charging]."""
        return ocv(self.soc) + current * self.resistance


@dataclass
class PackModel:
    """The pack behind a simulated board. ``step`` advances time; boards read the attributes."""

    cells: list[Cell]
    nominal_capacity: float  # [Ah]
    temperatures: list[float]  # [°C] sensors
    mos_temperature: float = 25.0  # [°C]
    current: float = 0.0  # [A], + = charging (what flows, after the MOSFETs)
    demand: float = 0.0  # [A] what the charger/load want, before the MOSFETs
    charge_mos: bool = True
    discharge_mos: bool = True
    cycles: int = 0
    clock: float = 0.0  # [s] simulated time of day offset
    profile: bool = True  # follow the day/night charge profile in step()
    seed: int = 1
    balancing_cells: list[int] = field(default_factory=list)
    soc_drift: float = 0.0  # [%/h] how fast the BMS's own SOC counter drifts from the truth
    taper: bool = False  # a charger with a constant-voltage phase: the current fades near full
    soc_error: float = 0.0  # [%] the BMS's counter minus the true SOC, so far
    _throughput: float = 0.0  # [Ah] discharged, for cycle counting
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def create(
        cls,
        cells: int = 16,
        capacity: float = 100.0,
        soc: float = 60.0,
        sensors: int = 2,
        seed: int = 1,
    ) -> PackModel:
        """A pack of ``cells`` LFP cells with a little spread in capacity and resistance."""
        rng = random.Random(seed)
        pack = cls(
            cells=[
                Cell(
                    capacity=capacity * rng.uniform(0.97, 1.03),
                    resistance=rng.uniform(0.0008, 0.0012),
                    soc=soc + rng.uniform(-0.5, 0.5),
                )
                for _ in range(cells)
            ],
            nominal_capacity=capacity,
            temperatures=[20.0 + rng.uniform(0, 2) for _ in range(sensors)],
            cycles=rng.randint(5, 200),
            seed=seed,
        )
        pack._rng = rng
        return pack

    # --- what a board reports ------------------------------------------------------------
    @property
    def cell_voltages(self) -> list[float]:
        """Terminal voltage of every cell [V], rounded to the BMS's mV resolution."""
        return [round(c.voltage(self.current), 3) for c in self.cells]

    @property
    def pack_voltage(self) -> float:
        """Sum of the cell voltages [V]."""
        return round(sum(self.cell_voltages), 3)

    @property
    def true_soc(self) -> float:
        """The charge actually in the pack [%], capacity-weighted over the cells."""
        return round(sum(c.soc * c.capacity for c in self.cells) / self.total_capacity, 1)

    @property
    def soc(self) -> float:
        """The SOC the BMS reports [%]: its coulomb counter, off by ``soc_error``."""
        return round(min(100.0, max(0.0, self.true_soc + self.soc_error)), 1)

    @property
    def total_capacity(self) -> float:
        """Capacity weighted over all cells [Ah]."""
        return sum(c.capacity for c in self.cells)

    @property
    def remaining_capacity(self) -> float:
        """Remaining charge [Ah]."""
        return round(self.nominal_capacity * self.soc / 100, 3)

    @property
    def power(self) -> float:
        """Pack power [W], + = charging."""
        return round(self.pack_voltage * self.current, 1)

    @property
    def alarms(self) -> list[str]:
        """Alarm codes (bmsgate_bms.alarms) for limits crossed right now."""
        volts = self.cell_voltages
        codes: list[str] = []
        if max(volts) >= CELL_OVP:
            codes.append("cell_overvoltage")
        elif max(volts) >= CELL_OVP_WARN:
            codes.append("cell_overvoltage_warning")
        if min(volts) <= CELL_UVP:
            codes.append("cell_undervoltage")
        elif min(volts) <= CELL_UVP_WARN:
            codes.append("cell_undervoltage_warning")
        if self.current > 0 and max(self.temperatures) >= CHARGE_OTP:
            codes.append("charge_overtemp")
        return codes

    # --- commands a board obeys ------------------------------------------------------------
    def set_mos(self, charge: bool, on: bool) -> None:
        """Switch the charge or discharge MOSFET."""
        if charge:
            self.charge_mos = on
        else:
            self.discharge_mos = on
        self._apply_mos()

    def set_soc(self, soc: float) -> None:
        """Recalibrate the BMS's coulomb counter to ``soc`` [%] (the cells keep their charge)."""
        self.soc_error = min(100.0, max(0.0, soc)) - self.true_soc

    def weaken(self, index: int, factor: float = 0.8) -> None:
        """Make cell ``index`` (0-based) lose capacity: a weak cell."""
        self.cells[index].capacity *= factor

    def drift(self, index: int, percent_per_hour: float = 2.0) -> None:
        """Make cell ``index`` self-discharge: a drifting cell."""
        self.cells[index].drift = percent_per_hour

    # --- time ------------------------------------------------------------------------------
    def profile_demand(self) -> float:
        """Charger/load demand [A] at the model's time of day: solar by day, load at night."""
        hour = (self.clock / 3600) % 24
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 12))  # 06:00..18:00
        return round(0.4 * self.nominal_capacity * sun - 0.08 * self.nominal_capacity, 1)

    def _apply_mos(self) -> None:
        current = self.demand
        if self.taper and current > 0:
            # CV phase: full current up to 3.45 V open-circuit on the fullest cell, none at 3.58
            fullest = ocv(max(c.soc for c in self.cells))
            current = round(current * min(1.0, max(0.0, (3.58 - fullest) / 0.13)), 2)
        if (current > 0 and not self.charge_mos) or (current < 0 and not self.discharge_mos):
            current = 0.0
        self.current = current

    def step(self, dt: float) -> None:
        """Advance ``dt`` seconds: count coulombs, balance, protect, warm up, cool down."""
        self.clock += dt
        self.soc_error += self.soc_drift * dt / 3600
        if self.profile:
            self.demand = self.profile_demand()
        self._apply_mos()
        hours = dt / 3600
        for i, cell in enumerate(self.cells):
            bleed = BALANCE_CURRENT if (i + 1) in self.balancing_cells else 0.0
            cell.soc += 100 * (self.current - bleed) * hours / cell.capacity
            cell.soc -= cell.drift * hours
            cell.soc = min(100.0, max(0.0, cell.soc))
        if self.current < 0:
            self._throughput -= self.current * hours
            if self._throughput >= self.nominal_capacity:
                self._throughput -= self.nominal_capacity
                self.cycles += 1
        self._protect()
        self._balance()
        heat = abs(self.current) ** 2 * 0.0005  # [°C] rise above ambient
        self.temperatures = [round(20.0 + heat + 0.5 * i, 1) for i in range(len(self.temperatures))]
        self.mos_temperature = round(22.0 + 2 * heat, 1)

    def _protect(self) -> None:
        volts = self.cell_voltages
        if max(volts) >= CELL_OVP and self.current > 0:
            self.charge_mos = False
        if min(volts) <= CELL_UVP and self.current < 0:
            self.discharge_mos = False
        self._apply_mos()

    def _balance(self) -> None:
        volts = self.cell_voltages
        low = min(volts)
        self.balancing_cells = [
            i + 1 for i, v in enumerate(volts) if v >= BALANCE_START and v - low >= BALANCE_DELTA
        ]


class _Lying:
    """A pack model whose board reports some values of its own choosing (see ``lying``)."""

    def __init__(self, model: PackModel, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        values: dict[str, Any] = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        return getattr(object.__getattribute__(self, "_model"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_model"), name, value)


def lying(model: PackModel, **values: Any) -> PackModel:
    """``model`` as a board that lies reports it: ``values`` (e.g. ``soc=250``) in valid frames.

    Commands and time still act on ``model``; only what the board reads back is replaced.
    """
    return cast(PackModel, _Lying(model, values))

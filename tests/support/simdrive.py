"""Drive the simulator's pack model through charge/discharge cycles in simulated time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from bmsgate_bms.sim.model import PackModel
from bmsgate_common.models import PackState
from bmsgate_history.sample import Sample, from_state

T0 = int(datetime(2024, 3, 4, tzinfo=UTC).timestamp() * 1000)


def state_of(pack: PackModel, ts: int, pack_id: str = "sim") -> PackState:
    """The state a board on ``pack`` reports at ``ts`` [ms]."""
    return PackState(
        pack=pack_id,
        name=pack_id,
        protocol="daly_classic",
        ts=datetime.fromtimestamp(ts / 1000, UTC),
        pack_voltage=pack.pack_voltage,
        current=pack.current,
        power=pack.power,
        soc=pack.soc,
        cell_voltages=pack.cell_voltages,
        cell_count=len(pack.cells),
        temperatures=pack.temperatures,
        mos_temperature=pack.mos_temperature,
        remaining_capacity=pack.remaining_capacity,
        nominal_capacity=pack.nominal_capacity,
        charge_mos=pack.charge_mos,
        discharge_mos=pack.discharge_mos,
        balancing=bool(pack.balancing_cells),
        balancing_cells=pack.balancing_cells,
    )


def sample_of(pack: PackModel, ts: int) -> Sample:
    """The archive sample of the pack at ``ts`` [ms], through the same path a live state takes."""
    return from_state(state_of(pack, ts))


def drive(
    pack: PackModel,
    days: float,
    *,
    step: float = 60.0,
    amps: float = 50.0,
    top_hold_h: float = 3.0,
    rest_h: float = 1.0,
    start: int = T0,
    low_soc: float = 0.0,
    on_cycle: object = None,
) -> Iterator[int]:
    """Charge to a cell at 3.55 V, float at 2 A, discharge to a cell at 2.85 V, rest; repeat.

    Yields the time [ms] after each step; the pack holds the state at that time.
    """
    pack.profile = False
    phase, until = "charge", 0.0
    t = 0.0
    while t < days * 86400:
        volts = pack.cell_voltages
        if phase == "charge" and max(volts) >= 3.55:
            phase, until = "float", t + top_hold_h * 3600
        elif phase == "float" and t >= until:
            phase = "discharge"
        elif phase == "discharge" and (min(volts) <= 2.85 or pack.soc <= low_soc):
            phase, until = "rest", t + rest_h * 3600
            if callable(on_cycle):
                on_cycle(pack)
        elif phase == "rest" and t >= until:
            phase = "charge"
        pack.charge_mos = pack.discharge_mos = True
        pack.demand = {"charge": amps, "float": 2.0, "discharge": -amps, "rest": 0.0}[phase]
        pack.step(step)
        t += step
        yield start + int(t * 1000)


def cycles(pack: PackModel, days: float, **drive_with: Any) -> Iterator[Sample]:
    """The archive samples of ``drive`` (same arguments)."""
    for ts in drive(pack, days, **drive_with):
        yield sample_of(pack, ts)

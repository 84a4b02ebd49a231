"""bmsgate's own SOC on the simulator's physical pack model, whose BMS counter drifts."""

from __future__ import annotations

import pytest

from bmsgate_bms.sim.model import CELL_UVP, PackModel
from bmsgate_common.soc import SocEstimator, SocRules

RULES = SocRules(
    full_cell_voltage=3.45, full_current=2.0, full_time=300, empty_cell_voltage=CELL_UVP
)


def _run(
    model: PackModel,
    soc: SocEstimator,
    t: float,
    seconds: float,
    *,
    offset: float = 0.0,
    correction: float = 0.0,
) -> tuple[float, list[str]]:
    """Step the model ``seconds`` in 10 s polls; the estimator sees the BMS's current."""
    events = []
    for _ in range(int(seconds / 10)):
        model.step(10)
        t += 10
        volts = model.cell_voltages
        seen = model.current + offset + correction  # the BMS's shunt error, then the correction
        event = soc.update(
            t, seen, model.nominal_capacity, max(volts), min(volts), model.soc, RULES
        )
        if event:
            events.append(event)
    return t, events


def test_own_soc_follows_the_charge_while_the_bms_counter_drifts() -> None:
    model = PackModel.create(capacity=100, soc=50)
    model.profile, model.soc_drift, model.demand = False, 4.0, 20.0  # BMS gains 4 %/h
    model.taper = True  # the charger's constant-voltage phase
    soc = SocEstimator()
    t, events = _run(model, soc, 0.0, 2 * 3600)
    assert events == []
    assert soc.soc == pytest.approx(model.true_soc, abs=1.0)
    assert model.soc - model.true_soc == pytest.approx(8.0, abs=0.5)  # the BMS is 8 % off
    # on to full: near the top the charger's current tapers off
    t, events = _run(model, soc, t, 3 * 3600)
    assert events == ["full"]
    assert soc.soc == 100.0
    # and down to the BMS's own low cut-off
    model.demand = -40.0
    _, events = _run(model, soc, t, 4 * 3600)
    assert events == ["empty"]
    assert soc.soc == 0.0
    assert model.soc > 5.0  # the drifting BMS still believes there is charge


def test_a_shunt_offset_is_corrected_before_counting() -> None:
    """The BMS reads 1.5 A too much; a per-pack offset of -1.5 A brings the count back."""
    wrong, right = SocEstimator(), SocEstimator()
    for estimator, correction in ((wrong, 0.0), (right, -1.5)):
        model = PackModel.create(capacity=100, soc=50)
        model.profile, model.demand = False, -10.0
        _run(model, estimator, 0.0, 3 * 3600, offset=1.5, correction=correction)
        truth = model.true_soc
        if estimator is right:
            assert estimator.soc == pytest.approx(truth, abs=0.5)
        else:
            assert estimator.soc - truth == pytest.approx(4.5, abs=0.5)  # 1.5 A x 3 h of 100 Ah


def test_no_capacity_no_count_and_a_gap_is_not_integrated() -> None:
    soc = SocEstimator()
    soc.update(0, 50.0, None, 3.3, 3.3, 60.0, RULES)
    soc.update(10, 50.0, None, 3.3, 3.3, 60.0, RULES)
    assert soc.soc == 60.0  # seeded from the BMS, nothing counted without a capacity
    soc.update(1000, 50.0, 100.0, 3.3, 3.3, 60.0, RULES)  # 990 s later: a gap
    assert soc.soc == 60.0

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bmsgate_bms.reading import BmsReading
from bmsgate_common.models import PackState
from bmsgate_common.settings import PackSettings
from bmsgate_reader.logic import PackTracker, to_state

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def fields(state: PackState) -> tuple[list[str], datetime, list[float], list[float]]:
    """What the tracker reads of a state."""
    return state.alarms, state.ts, state.cell_voltages, state.temperatures


def reading(**over: object) -> BmsReading:
    fields: dict[str, object] = {
        "pack_voltage": 52.0,
        "current": -10.0,
        "soc": 55.0,
        "cell_voltages": [3.25] * 15 + [3.66],
        "temperatures": [21.0, 22.0],
    }
    return BmsReading(**(fields | over))  # type: ignore[arg-type]


def test_state_takes_pack_identity_and_computes_power() -> None:
    state = to_state(reading(), PackSettings(id="garage", name="Garage"), "daly_classic", T0)
    assert (state.pack, state.name, state.protocol, state.ts) == (
        "garage",
        "Garage",
        "daly_classic",
        T0,
    )
    assert state.current == -10.0 and state.power == -520.0
    assert state.cell_count == 16


def test_invert_current_flips_current_and_power() -> None:
    pack = PackSettings(id="garage", invert_current=True)
    state = to_state(reading(power=-520.0), pack, "jk_pb", T0)
    assert state.current == 10.0 and state.power == 520.0
    assert state.name == "garage"


def test_current_correction_scales_then_offsets_and_recomputes_power() -> None:
    pack = PackSettings(id="garage", current_scale=1.1, current_offset=0.5)
    state = to_state(reading(power=-520.0), pack, "jk_pb", T0)
    assert state.current == pytest.approx(-10.5)  # -10 A x 1.1 + 0.5 A
    assert state.power == pytest.approx(52.0 * -10.5)  # the BMS's own power is not corrected
    inverted = PackSettings(id="garage", invert_current=True, current_offset=-0.2)
    assert to_state(reading(), inverted, "jk_pb", T0).current == pytest.approx(9.8)


def test_nominal_capacity_falls_back_to_the_setting() -> None:
    pack = PackSettings(id="garage", nominal_capacity=280)
    assert to_state(reading(), pack, "jk_uart", T0).nominal_capacity == 280
    assert to_state(reading(nominal_capacity=100.0), pack, "jk_uart", T0).nominal_capacity == 100.0


def test_offline_only_after_n_misses_and_back_online_by_itself() -> None:
    tracker = PackTracker("garage", offline_after=3)
    assert tracker.seen(T0) is not None  # first contact: online
    assert tracker.seen(T0) is None  # no change, nothing to publish
    assert tracker.missed(T0, "no answer") is None
    assert tracker.missed(T0, "no answer") is None
    offline = tracker.missed(T0, "no answer")
    assert offline is not None and offline.state == "offline"
    assert offline.reason == "no answer (3 polls)"
    assert tracker.missed(T0, "no answer") is None  # already offline: said once
    back = tracker.seen(T0 + timedelta(seconds=9))
    assert back is not None and back.state == "online"
    assert tracker.last == back


def test_alarm_events_raise_and_clear_once_with_the_cell_named() -> None:
    tracker = PackTracker("garage", offline_after=3)
    pack = PackSettings(id="garage")
    raised = tracker.alarm_changes(
        *fields(to_state(reading(alarms=["cell_overvoltage"]), pack, "daly_classic", T0))
    )
    assert [(e.code, e.active, e.level) for e in raised] == [("cell_overvoltage", True, "alarm")]
    assert raised[0].text == "cell 16 over-voltage, 3.66 V"
    assert (
        tracker.alarm_changes(
            *fields(to_state(reading(alarms=["cell_overvoltage"]), pack, "daly_classic", T0))
        )
        == []
    )
    cleared = tracker.alarm_changes(*fields(to_state(reading(), pack, "daly_classic", T0)))
    assert [(e.code, e.active) for e in cleared] == [("cell_overvoltage", False)]


@pytest.mark.parametrize("soc", [-3.0, 104.0])
def test_soc_is_clamped_to_a_valid_percentage(soc: float) -> None:
    state = to_state(reading(soc=soc), PackSettings(id="p"), "daly_classic", T0)
    assert 0 <= state.soc <= 100


def test_energy_ignores_a_wall_clock_step_between_polls() -> None:
    from bmsgate_reader.logic import EnergyCounter

    counter = EnergyCounter()
    counter.add(T0, 1000.0, 20.0, mono=100.0)
    counter.add(T0 + timedelta(seconds=30), 1000.0, 20.0, mono=101.0)  # set forward 29 s
    counter.add(T0 - timedelta(hours=1), 1000.0, 20.0, mono=102.0)  # then back an hour
    assert counter.energy_in == pytest.approx(2 / 3600)  # [kWh] 1 kW for the 2 s that passed
    fresh = EnergyCounter(last_ts=T0)  # loaded from the file: the wall clock bridges a restart
    fresh.add(T0 + timedelta(seconds=10), 360.0, 1.0, mono=5.0)
    assert fresh.energy_in == pytest.approx(0.5 / 1000)

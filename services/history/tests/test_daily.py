"""Daily statistics over the local day, energy from states or from the pack's counters."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from bmsgate_history.daily import DailyTracker
from bmsgate_history.sample import Sample, energy, to_ms

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, **kw: object) -> Sample:
    base = {
        "soc": 50.0,
        "pack_voltage": 53.0,
        "current": 10.0,
        "power": 530.0,
        "cell_voltages": (3.3, 3.31),
        "temperatures": (),
    }
    base.update(kw)
    return Sample(ts=to_ms(datetime.fromisoformat(text)), **base)  # type: ignore[arg-type]


def feed(tracker: DailyTracker, samples: list[Sample]) -> list[object]:
    finished = []
    prev = None
    for s in samples:
        e_in, e_out = energy(prev, s, 120_000)
        s = s._replace(e_in=e_in, e_out=e_out)
        done = tracker.add(s)
        if done:
            finished.append(done)
        prev = s
    return finished


def test_local_day_figures_and_rollover_at_local_midnight() -> None:
    tracker = DailyTracker("p1", BERLIN)
    # fmt: off
    samples = [
        at("2024-03-04T22:58:00+00:00", soc=70.0, power=600.0, cell_voltages=(3.30, 3.35)),
        at("2024-03-04T22:59:00+00:00", soc=80.0, power=600.0, cell_voltages=(3.28, 3.36),
           remaining_capacity=80.0),
        at("2024-03-04T23:00:00+00:00", soc=60.0, power=-300.0),  # 00:00 in Berlin
        at("2024-03-04T23:01:00+00:00", soc=59.0, power=-300.0, remaining_capacity=59.0),
    ]
    # fmt: on
    (finished,) = feed(tracker, samples)
    assert finished.day == date(2024, 3, 4)  # type: ignore[attr-defined]
    assert finished.max_soc == 80.0  # type: ignore[attr-defined]
    assert finished.max_soc_at == datetime(2024, 3, 4, 22, 59, tzinfo=UTC)  # type: ignore[attr-defined]
    assert finished.min_cell_voltage == 3.28 and finished.max_cell_voltage == 3.36  # type: ignore[attr-defined]
    assert finished.remaining_capacity == 80.0  # type: ignore[attr-defined]
    assert finished.energy_in == pytest.approx(0.01)  # type: ignore[attr-defined]  # 600 W x 1 min
    today = tracker.stats()
    assert today is not None and today.day == date(2024, 3, 5)
    assert today.max_soc == 60.0 and today.remaining_capacity == 59.0
    # the minute across midnight: +600 W to -300 W, split by sign (trapezoid)
    assert today.energy_in == pytest.approx(300 / 60 / 1000, abs=1e-4)
    assert today.energy_out == pytest.approx((150 + 300) / 60 / 1000, abs=1e-4)


def test_pack_counters_win_over_integration() -> None:
    prev = at("2024-03-04T10:00:00+00:00", energy_in=1.0, energy_out=2.0)
    cur = at("2024-03-04T10:01:00+00:00", energy_in=1.5, energy_out=2.0)
    assert energy(prev, cur, 120_000) == pytest.approx((500.0, 0.0))
    reset = cur._replace(energy_in=0.0)  # a counter reset falls back to integration
    assert energy(prev, reset, 120_000) == pytest.approx((530 / 60, 0.0))


def test_nothing_is_integrated_across_a_gap() -> None:
    prev = at("2024-03-04T10:00:00+00:00")
    assert energy(prev, at("2024-03-04T10:05:00+00:00"), 120_000) == (0.0, 0.0)

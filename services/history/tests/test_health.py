"""Health rules against the simulator's weak-cell and drift models, stepped in simulated time."""

from __future__ import annotations

import json
from datetime import UTC, timedelta

from bmsgate_bms.sim.model import PackModel
from bmsgate_common.models import HealthFinding
from bmsgate_common.settings import HealthSettings
from bmsgate_history.health import HealthTracker
from bmsgate_history.sample import day_bounds, local_day
from tests.support.simdrive import T0, cycles


def run(pack: PackModel, days: float, **drive: object) -> tuple[HealthTracker, list]:  # type: ignore[type-arg]
    tracker = HealthTracker("p1", HealthSettings(), UTC)
    last = T0
    for s in cycles(pack, days, **drive):  # type: ignore[arg-type]
        tracker.add(s)
        last = s.ts
    return tracker, tracker.findings(local_day(last, UTC))


def test_a_healthy_pack_has_no_findings() -> None:
    _, findings = run(PackModel.create(16, 100, soc=50, seed=3), 4)
    assert findings == []
    _, findings = run(PackModel.create(16, 100, soc=50, seed=5), 4, low_soc=30)
    assert findings == []


def test_a_weak_cell_is_named_with_its_evidence_and_first_day() -> None:
    pack = PackModel.create(16, 100, soc=50, seed=3)
    pack.weaken(4, 0.8)
    _, findings = run(pack, 4)
    (weak,) = [f for f in findings if f.kind == "weak_cell"]
    assert weak.cell == 5
    assert weak.since == local_day(T0, UTC)
    assert "cell 5 sagged first" in weak.evidence and "rose first on charge" in weak.evidence
    assert weak.value is not None and weak.value > 30
    assert not [f for f in findings if f.kind == "balancing_fault"]


def test_a_drifting_cell_is_a_balancing_fault_out_of_band() -> None:
    pack = PackModel.create(16, 100, soc=50, seed=3)
    pack.drift(2, 0.3)
    _, findings = run(pack, 4)
    (fault,) = [f for f in findings if f.kind == "balancing_fault"]
    assert fault.cell == 3
    assert "while balancing was on" in fault.evidence
    assert not [f for f in findings if f.kind == "weak_cell"]  # reported as what it is


def test_a_delta_growing_day_after_day_is_a_balancing_fault() -> None:
    pack = PackModel.create(16, 100, soc=50, seed=3)
    pack.drift(2, 0.1)
    _, findings = run(pack, 6, top_hold_h=0, low_soc=30)
    (fault,) = [f for f in findings if f.kind == "balancing_fault"]
    assert fault.cell == 3
    assert "grew every day" in fault.evidence
    assert fault.since == local_day(T0, UTC)


def test_capacity_fade_trend() -> None:
    pack = PackModel.create(16, 100, soc=50, seed=3)

    def age(p: PackModel) -> None:
        for cell in p.cells:
            cell.capacity *= 0.99  # 1 % per full cycle

    tracker, findings = run(pack, 4, on_cycle=age)
    (fade,) = [f for f in findings if f.kind == "capacity_fade"]
    assert fade.cell is None and fade.value is not None and fade.value > 3
    assert len(tracker.capacity) >= 8
    assert tracker.capacity[-1][1] < tracker.capacity[0][1]
    _, steady = run(PackModel.create(16, 100, soc=50, seed=3), 4)
    assert not [f for f in steady if f.kind == "capacity_fade"]


def test_evidence_survives_a_restart() -> None:
    pack = PackModel.create(16, 100, soc=50, seed=3)
    pack.weaken(4, 0.8)
    samples = list(cycles(pack, 4))
    half = len(samples) // 2
    first = HealthTracker("p1", HealthSettings(), UTC)
    for s in samples[:half]:
        first.add(s)
    second = HealthTracker("p1", HealthSettings(), UTC)
    second.load(first.dump())
    for s in samples:  # replaying from the start: what was seen is skipped
        second.add(s)
    whole = HealthTracker("p1", HealthSettings(), UTC)
    for s in samples:
        whole.add(s)
    today = local_day(samples[-1].ts, UTC)
    assert second.findings(today) == whole.findings(today)
    assert second.capacity == whole.capacity


def test_evidence_saved_with_the_sample_as_a_list_still_loads() -> None:
    samples = list(cycles(PackModel.create(4, 100, soc=50, seed=3), 1))
    first = HealthTracker("p1", HealthSettings(), UTC)
    for s in samples[:50]:
        first.add(s)
    saved = json.loads(first.dump())
    assert saved["prev"]["cell_voltages"]  # saved by name
    saved["prev"] = list(saved["prev"].values())  # as an earlier bmsgate saved it
    second = HealthTracker("p1", HealthSettings(), UTC)
    second.load(json.dumps(saved))
    assert second.prev == first.prev == samples[49]


def test_a_deleted_day_leaves_the_evidence() -> None:
    pack = PackModel.create(16, 100, soc=50, seed=3)
    pack.weaken(4, 0.8)
    samples = list(cycles(pack, 4))
    tracker = HealthTracker("p1", HealthSettings(), UTC)
    for s in samples:
        tracker.add(s)
    first, today = local_day(T0, UTC), local_day(samples[-1].ts, UTC)

    def bounds(n: int) -> tuple[int, int]:
        return day_bounds(first + timedelta(days=n), UTC)

    def weak(t: HealthTracker) -> list[HealthFinding]:
        return [f for f in t.findings(today) if f.kind == "weak_cell"]

    assert [f.since for f in weak(tracker)] == [first]
    # the first day deleted; the days after taken in again from what the archive has left
    start, end = bounds(0)
    again = tracker.without(start, end, end, [s for s in samples if s.ts >= end])
    assert [f.since for f in weak(again)] == [first + timedelta(days=1)]
    assert first.isoformat() not in again.days
    assert again.capacity == [(t, ah) for t, ah in tracker.capacity if t >= end]
    # days older than the replay keep their figures; only the deleted day's go
    kept = tracker.without(start, end, bounds(4)[1], [])
    assert set(kept.days) == set(tracker.days) - {first.isoformat()}
    # three of four days deleted: one day of evidence is not enough
    gone = bounds(2)[1]
    left = tracker.without(start, gone, gone, [s for s in samples if s.ts >= gone])
    assert weak(left) == []

"""A bank's counters never go down: members' increments while counted, kept across restarts."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import pytest
from packages.outputs.tests.states import T0, make_state

from bmsgate_common.bank import COUNTERS, BankTotals
from bmsgate_common.models import Availability, PackState
from bmsgate_common.settings import BankSettings
from bmsgate_publisher.service import BankBook, BankTracker

BANK = BankSettings(id="bank", packs=["a", "b"])
STALE = 60.0


class Pack:
    """A member whose BMS counters move on by its own flow every second, counted or not."""

    def __init__(self, name: str, kwh_in: float, kwh_out: float, capacity: float) -> None:
        self.name, self.kwh_in, self.kwh_out, self.capacity = name, kwh_in, kwh_out, capacity
        self.values = {
            "energy_in": 100.0,
            "energy_out": 90.0,
            "charge_in": 2000.0,
            "charge_out": 1800.0,
            "cycles": 40.0,
        }
        self.cut = False

    def step(self) -> None:
        self.values["energy_in"] += self.kwh_in
        self.values["energy_out"] += self.kwh_out
        self.values["charge_in"] += self.kwh_in * 20
        self.values["charge_out"] += self.kwh_out * 20
        self.values["cycles"] += 1

    def state(self, at: int) -> PackState:
        return make_state(
            pack=self.name,
            ts=T0 + timedelta(seconds=at),
            nominal_capacity=self.capacity,
            charge_mos=not self.cut,
            discharge_mos=not self.cut,
            **{k: (int(v) if k == "cycles" else v) for k, v in self.values.items()},
        )


def offline(pack: str, at: int) -> Availability:
    return Availability(pack=pack, state="offline", ts=T0 + timedelta(seconds=at), reason="gone")


def online(pack: str, at: int) -> Availability:
    return Availability(pack=pack, state="online", ts=T0 + timedelta(seconds=at))


def test_out_and_back_offline_cut_off_restarts_never_down_and_sums_counted_increments(
    tmp_path: Path,
) -> None:
    book = BankBook(tmp_path / "publisher" / "bank-counters.json")
    packs = {"a": Pack("a", 0.010, 0.002, 100.0), "b": Pack("b", 0.004, 0.006, 300.0)}
    tracker = BankTracker(BANK)
    expected = dict.fromkeys(COUNTERS, 0.0)
    before: dict[str, dict[str, float]] = {}  # each counted member's previous counted reading
    shown: list[dict[str, float | None]] = []
    # (second, event): a goes offline 10-20, b cut off 30-40, a's reader restarts 50-55,
    # the publisher restarts at 60 and at 75 (after a save, and from the same save again)
    for t in range(1, 90):
        for p in packs.values():
            p.step()
        if t == 10:
            tracker.members["a"].availability = offline("a", t)
        if t == 30:
            packs["b"].cut = True
        if t == 40:
            packs["b"].cut = False
        if t == 50:
            tracker.members["a"].availability = offline("a", t)  # the reader stops
        if t in (60, 75):
            book.save({"bank": tracker.totals})
            tracker = BankTracker(BANK, book.load()["bank"])  # the publisher starts again
        counting = set()
        for name, p in packs.items():
            away = (10 <= t < 20 and name == "a") or (50 <= t < 55 and name == "a")
            if not away:
                tracker.members[name].state = p.state(t)
                if t in (20, 55) and name == "a":
                    tracker.members["a"].availability = online("a", t)
            if not away and not p.cut:
                counting.add(name)
        state, _ = tracker.update(T0 + timedelta(seconds=t), STALE)
        # the rule, written out: a member adds what it moved since its previous counted reading
        for name in packs:
            if name not in counting:
                before.pop(name, None)
                continue
            now_values = packs[name].values
            if name in before:
                for k in COUNTERS:
                    share = packs[name].capacity / 400 if k == "cycles" else 1.0
                    if k == "cycles":
                        moved = int(now_values[k]) - int(before[name][k])
                    else:
                        moved = now_values[k] - before[name][k]
                    expected[k] += moved * share
            before[name] = dict(now_values)
        combined = state or tracker.state
        assert combined is not None
        shown.append({k: getattr(combined, k) for k in COUNTERS})
        for k in ("energy_in", "energy_out", "charge_in", "charge_out"):
            assert getattr(combined, k) == pytest.approx(expected[k], abs=1e-9), (t, k)
        assert combined.cycles == int(expected["cycles"] + 1e-9), t
    for k in COUNTERS:
        values = [s[k] for s in shown]
        assert all(b >= a for a, b in itertools.pairwise(values)), k  # never down
    # the lifetime sum would have fallen by a's 100 kWh when it left; the bank moved far less
    assert (
        shown[-1]["energy_in"] == pytest.approx(expected["energy_in"])
        and expected["energy_in"] < 2.0
    )
    saved = json.loads(book.path.read_text())
    assert set(saved["banks"]["bank"]["last"]) == {"a", "b"}


def test_a_bms_counter_reset_is_a_new_start_not_a_fall(tmp_path: Path) -> None:
    tracker = BankTracker(BANK)
    a = Pack("a", 0.5, 0.0, 100.0)
    for t, energy in enumerate([10.0, 11.0, 0.2, 0.7], start=1):  # the BMS was reset after 11
        a.values["energy_in"] = energy
        tracker.members["a"].state = a.state(t)
        tracker.update(T0 + timedelta(seconds=t), STALE)
    assert tracker.totals.totals["energy_in"] == pytest.approx(1.0 + 0.5)


def test_a_damaged_counter_file_is_set_aside_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bank-counters.json"
    path.write_text('{"banks": {"bank": {"totals": {"energy_in": "lots"}}}}')
    assert BankBook(path).load() == {}
    assert path.with_suffix(".damaged").exists() and not path.exists()
    assert len(caplog.records) == 1 and "unreadable" in caplog.records[0].getMessage()


def test_after_a_restart_never_below_what_was_published_and_a_first_run_continues() -> None:
    published = {"energy_in": 5.0, "energy_out": 4.0}
    restarted = BankTracker(BANK, BankTotals({"energy_in": 4.5, "energy_out": 3.0}, {}))
    restarted.totals.heard(published, first_run=restarted.first_run)
    a = Pack("a", 0.1, 0.1, 100.0)
    for t in (1, 2):
        a.step()
        restarted.members["a"].state = a.state(t)
        restarted.update(T0 + timedelta(seconds=t), STALE)
    assert restarted.state is not None  # the saved 4.5 plus 0.1 is below the 5.0 published
    assert (restarted.state.energy_in, restarted.state.energy_out) == (5.0, 4.0)
    upgraded = BankTracker(BANK)  # no saved totals: the lifetime sums published once go on
    upgraded.totals.heard({"energy_in": 250.0}, first_run=upgraded.first_run)
    for t in (1, 2):
        a.step()
        upgraded.members["a"].state = a.state(t)
        upgraded.update(T0 + timedelta(seconds=t), STALE)
    assert upgraded.state is not None and upgraded.state.energy_in == pytest.approx(250.1)


def test_a_member_not_yet_heard_after_a_restart_keeps_its_start(tmp_path: Path) -> None:
    book = BankBook(tmp_path / "bank-counters.json")
    packs = {"a": Pack("a", 0.1, 0.0, 100.0), "b": Pack("b", 0.2, 0.0, 100.0)}
    before = BankTracker(BANK)
    for name, p in packs.items():
        before.members[name].state = p.state(1)
    before.update(T0 + timedelta(seconds=1), STALE)
    book.save({"bank": before.totals})  # both count: their starts are on disk
    for p in packs.values():
        p.step()  # what they move while the publisher is down
    after = BankTracker(BANK, book.load()["bank"])
    after.members["a"].state = packs["a"].state(2)  # b's retained state comes a moment later
    after.update(T0 + timedelta(seconds=2), STALE)
    after.members["b"].state = packs["b"].state(2)
    after.update(T0 + timedelta(seconds=2), STALE)
    assert after.totals.totals["energy_in"] == pytest.approx(0.1 + 0.2)

"""The bank's combined state."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from packages.outputs.tests.states import T0, make_state

from bmsgate_common.bank import (
    BankEnergy,
    Energy,
    Member,
    availability,
    bank_energy,
    combine,
    energy_today,
    exclusion,
)
from bmsgate_common.models import Availability, DailyStats
from bmsgate_common.settings import BankSettings

BANK = BankSettings(id="bank", name="House bank", packs=["a", "b", "c"])


def on(pack: str) -> Availability:
    return Availability(pack=pack, state="online", ts=T0 - timedelta(seconds=30))


def off(pack: str) -> Availability:
    return Availability(pack=pack, state="offline", ts=T0)


def members(**over: Member) -> dict[str, Member]:
    out = {
        "a": Member(
            make_state(
                pack="a",
                soc=80,
                current=10,
                power=520,
                nominal_capacity=100,
                cell_voltages=[3.30, 3.31],
                remaining_capacity=80,
                energy_in=1.0,
                energy_out=2.0,
                alarms=[],
            ),
            on("a"),
        ),
        "b": Member(
            make_state(
                pack="b",
                soc=20,
                current=-4,
                power=-208,
                nominal_capacity=300,
                cell_voltages=[3.25, 3.40],
                remaining_capacity=60,
                energy_in=0.5,
                energy_out=0.5,
                alarms=["soc_low"],
                ts=T0 - timedelta(seconds=5),
            ),
            on("b"),
        ),
    }
    out.update(over)
    return out


def test_capacity_weighted_soc_summed_current_and_extreme_cells_named() -> None:
    state = combine(BANK, members(), T0, 60, {"energy_in": 1.5, "energy_out": 2.5})
    assert state is not None
    assert state.pack == "bank" and state.name == "House bank" and state.ts == T0
    assert state.soc == pytest.approx((80 * 100 + 20 * 300) / 400)
    assert (state.current, state.power) == (6, 312)
    assert state.remaining_capacity == 140 and state.nominal_capacity == 400
    assert (state.energy_in, state.energy_out) == (1.5, 2.5)  # the counters given, not sums
    assert state.charge_in is None and state.cycles is None
    assert state.cell_voltages == [3.30, 3.31, 3.25, 3.40] and state.cell_count == 4
    assert state.extras["cell_min_pack"] == "b" and state.extras["cell_min_cell"] == 1
    assert state.extras["cell_max_pack"] == "b" and state.extras["cell_max_cell"] == 2
    assert state.extras["bank_members"] == "a,b" and state.extras["bank_excluded"] == "c"
    assert state.alarms == ["soc_low"]
    assert state.charge_mos is None  # a bank has no switch


def test_equal_weights_unless_every_capacity_is_known() -> None:
    m = members()
    m["a"] = Member(m["a"].state.model_copy(update={"nominal_capacity": None}), on("a"))  # type: ignore[union-attr]
    state = combine(BANK, m, T0, 60, {})
    assert state is not None and state.soc == 50 and state.nominal_capacity is None


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (Member(None, None), "no state received yet"),
        (Member(make_state(pack="b"), off("b")), "the reader reports it offline"),
        (
            Member(make_state(pack="b", ts=T0 - timedelta(seconds=61)), on("b")),
            "no new state since 2025-12-22T12:11:46+00:00",
        ),
        (
            Member(make_state(pack="b", charge_mos=False, discharge_mos=False), on("b")),
            "cut off",
        ),
        (Member(make_state(pack="b", charge_mos=False, discharge_mos=True), None), None),
    ],
)
def test_who_counts(member: Member, reason: str | None) -> None:
    assert exclusion(member, T0, 60) == reason


def test_a_cut_off_pack_is_excluded_but_its_alarms_stay() -> None:
    cut = make_state(pack="b", charge_mos=False, discharge_mos=False, alarms=["cell_undervoltage"])
    state = combine(BANK, members(b=Member(cut, on("b"))), T0, 60, {})
    assert state is not None and state.soc == 80 and state.current == 10
    assert state.extras["bank_members"] == "a" and state.extras["bank_excluded"] == "b,c"
    assert state.alarms == ["cell_undervoltage"]


def test_no_member_no_state_and_the_bank_is_offline() -> None:
    none_online = {k: Member(m.state, off(k)) for k, m in members().items()}
    assert combine(BANK, none_online, T0, 60, {}) is None
    assert availability(BANK, None, T0).state == "offline"


def test_energy_today_sums_each_member_once_on_that_day() -> None:
    def day(pack: str, when: date, e_in: float | None, e_out: float | None) -> DailyStats:
        return DailyStats(pack=pack, day=when, ts=T0, energy_in=e_in, energy_out=e_out)

    today, yesterday = date(2026, 6, 2), date(2026, 6, 1)
    twice = BankSettings(id="bank", packs=["a", "b", "a"])  # a member named twice counts once
    daily = {
        "a": day("a", today, 1.5, 0.25),
        "b": day("b", today, 2.0, None),
        "bank": day("bank", today, 9.0, 9.0),
    }
    assert energy_today(twice, daily, today) == (3.5, 0.25)  # never the bank's own on top
    daily["b"] = day("b", yesterday, 7.0, 7.0)  # not yet in the new day: left out
    assert energy_today(BANK, daily, today) == (1.5, 0.25)
    # every member still on yesterday (offline since): nothing today, not yesterday's figures
    assert energy_today(BANK, {"b": daily["b"]}, today) == (None, None)
    assert energy_today(BANK, {}, today) == (None, None)


def test_bank_energy_per_period_sums_members_once_and_names_the_missing() -> None:
    d1, d2, d3 = date(2026, 6, 1), date(2026, 6, 2), date(2026, 6, 3)
    twice = BankSettings(id="bank", packs=["a", "b", "a", "c"])
    figures = {
        "a": {d1: Energy(1.0, 2.0), d2: Energy(0.5, 0.0)},
        "b": {d1: Energy(3.0, None), d3: Energy(0.0, 0.0)},
        "bank": {d1: Energy(99.0, 99.0), date(2026, 6, 4): Energy(5.0, 5.0)},
    }
    got = bank_energy(twice, figures)
    assert got == {
        d1: BankEnergy(Energy(4.0, 2.0), ("c",)),
        d2: BankEnergy(Energy(0.5, 0.0), ("b", "c")),
        d3: BankEnergy(Energy(0.0, 0.0), ("a", "c")),  # a true zero: b was there and idle
    }  # 2026-06-04: no member has it, absent (the bank's own figures never count)

"""The one liveness rule, and every consumer (web UI, Modbus, MQTT targets, banks) following it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bmsgate_api.store import PackStore
from bmsgate_common.bank import Member, exclusion
from bmsgate_common.liveness import Arrivals, liveness
from bmsgate_common.models import Availability, PackState
from bmsgate_common.settings import ConfigError, load_settings
from bmsgate_modbus.logic import MapOptions, RegisterStore
from bmsgate_outputs.plan import HeardPack

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
STALE = 60.0


def state(ts: datetime = T0) -> PackState:
    return PackState(
        pack="garage",
        name="Garage",
        protocol="daly_classic",
        ts=ts,
        pack_voltage=53.0,
        current=1.0,
        power=53.0,
        soc=50.0,
        cell_voltages=[3.3] * 16,
        cell_count=16,
        charge_mos=True,
        discharge_mos=True,
    )


def avail(kind: str, at: datetime, reason: str | None = None) -> Availability:
    return Availability(pack="garage", state=kind, ts=at, reason=reason)  # type: ignore[arg-type]


# fmt: off
CASES = [
    # (state, availability, seconds after T0, live, reason)
    (None, None, 0, False, "no state received yet"),
    (None, avail("online", T0), 0, False, "no state received yet"),
    (state(), None, 0, True, ""),  # a fresh state is proof enough without an availability
    (state(), avail("online", T0), 0, True, ""),
    (state(), avail("online", T0), 60, True, ""),  # exactly stale_after old: still live
    (state(), avail("online", T0), 61, False, "no new state since 2026-06-01T12:00:00+00:00"),
    (state(), avail("offline", T0 + timedelta(seconds=5), "no answer 3 times"), 6, False,
     "no answer 3 times"),
    (state(), avail("offline", T0), 1, False, "the reader reports it offline"),
    # a state read after the offline message: the pack answers again before its "online"
    (state(T0 + timedelta(seconds=10)), avail("offline", T0), 11, True, ""),
]
# fmt: on


@pytest.mark.parametrize(("st", "av", "after", "live", "reason"), CASES)
def test_one_rule_and_every_consumer_follows_it(
    st: PackState | None, av: Availability | None, after: float, live: bool, reason: str
) -> None:
    now = T0 + timedelta(seconds=after)
    assert liveness(st, av, now, STALE) == (live, reason)

    api = PackStore(stale_after=STALE)  # the web UI and REST API
    modbus = RegisterStore({1: "garage"}, {}, MapOptions(stale_after=STALE))
    if st is not None:
        api.states["garage"] = st
        modbus.on_state(st)
    if av is not None:
        api.availability["garage"] = av
        modbus.on_availability(av)
    assert api.live("garage", now) == (live, reason)
    assert modbus.online("garage", now) is live
    assert HeardPack(state=st, availability=av).online(now, STALE) is live  # MQTT targets, HA
    assert exclusion(Member(st, av), now, STALE) == (None if live else reason)  # banks


@pytest.mark.parametrize("section", ["api", "modbus", "publisher"])
def test_one_staleness_setting_the_old_keys_name_it(section: str) -> None:
    with pytest.raises(ConfigError, match=f"'{section}.stale_after' is now the top-level key"):
        load_settings(None, **{section: {"stale_after": 30}})
    assert load_settings(None, stale_after=30).stale_after == 30


class Clocks:
    """A wall clock and a monotonic clock a test moves: ``run`` moves both, ``step`` the wall."""

    def __init__(self) -> None:
        self.wall_s, self.mono_s = T0.timestamp(), 1000.0

    def run(self, seconds: float) -> None:
        self.wall_s += seconds
        self.mono_s += seconds

    def step(self, seconds: float) -> None:
        self.wall_s += seconds

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall_s, UTC)

    def arrivals(self) -> Arrivals:
        return Arrivals(mono=lambda: self.mono_s, wall=lambda: self.wall_s)


@pytest.mark.parametrize("step", [400 * 86_400, 3600, -3600, -400 * 86_400])
def test_a_wall_clock_step_after_arrival_changes_no_judgement(step: float) -> None:
    clocks = Clocks()
    arrivals = clocks.arrivals()
    arrivals.heard("garage", state(clocks.now()))  # the live pack's newest state, just read
    clocks.run(2)
    clocks.step(step)
    assert liveness(state(T0), None, clocks.now(), STALE, arrivals) == (True, "")
    # the same pack silent since: stale after stale_after, however the clock was set
    clocks.run(STALE)
    assert not liveness(state(T0), None, clocks.now(), STALE, arrivals)[0]
    # without the arrival the wall clock alone decides, and the step fools it one way
    assert liveness(state(T0), None, clocks.now(), STALE)[0] is (step < 0)


def test_a_retained_state_is_as_old_as_its_stamp_says() -> None:
    clocks = Clocks()
    arrivals = clocks.arrivals()
    clocks.run(600)  # the tree was down for ten minutes: the broker kept the last state
    arrivals.heard("garage", state(T0))
    assert liveness(state(T0), None, clocks.now(), STALE, arrivals)[1].startswith("no new state")


def test_an_offline_that_came_later_counts_even_when_the_clock_was_set_back_between() -> None:
    clocks = Clocks()
    arrivals = clocks.arrivals()
    arrivals.heard("garage", state(clocks.now()))
    clocks.run(5)
    clocks.step(-3600)  # the reader's offline is stamped an hour before the state
    gone = avail("offline", clocks.now(), "no answer 3 times")
    arrivals.heard("garage", gone)
    assert liveness(state(T0), gone, clocks.now(), STALE, arrivals) == (False, "no answer 3 times")


def test_a_member_is_undecided_until_heard_said_offline_or_stale_after_passed() -> None:
    clocks = Clocks()
    before = avail("offline", clocks.now(), "reader stopped")  # retained from the last run
    clocks.run(30)
    arrivals = clocks.arrivals()  # this process starts listening
    assert arrivals.undecided("garage", None, None, clocks.now(), STALE)
    arrivals.heard("garage", before)
    assert arrivals.undecided("garage", None, before, clocks.now(), STALE)  # from before: no
    said_again = clocks.arrivals()  # another process: the reader repeats its word, unchanged
    said_again.heard("garage", before)
    clocks.run(5)
    assert said_again.undecided("garage", None, before, clocks.now(), STALE)
    said_again.heard("garage", before)  # on its heartbeat, long after the retained ones
    assert not said_again.undecided("garage", None, before, clocks.now(), STALE)
    clocks.run(1)
    fresh = state(clocks.now())
    arrivals.heard("garage", fresh)
    assert not arrivals.undecided("garage", fresh, before, clocks.now(), STALE)

    other = clocks.arrivals()
    clocks.run(15)
    gone = avail("offline", clocks.now(), "no answer 3 times")  # its reader's verdict, now
    other.heard("garage", gone)
    assert not other.undecided("garage", None, gone, clocks.now(), STALE)

    silent = clocks.arrivals()
    clocks.run(STALE - 1)
    assert silent.undecided("garage", None, None, clocks.now(), STALE)
    clocks.run(1)
    assert not silent.undecided("garage", None, None, clocks.now(), STALE)

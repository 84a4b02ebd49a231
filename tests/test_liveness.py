"""The one liveness rule, and every consumer (web UI, Modbus, MQTT targets, banks) following it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bmsgate_api.store import PackStore
from bmsgate_common.bank import Member, exclusion
from bmsgate_common.liveness import liveness
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

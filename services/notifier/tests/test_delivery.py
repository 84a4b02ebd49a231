"""Through the real Apprise library to a local receiver standing in for Pushover and Pushsafer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bmsgate_common.models import ServiceStatus
from bmsgate_notifier.service import Notifier
from tests.support.notify import POVER, PSAFER, Clock, alarm, avail, settings, state
from tests.support.receiver import Received, receiver

PO = "/1/messages.json"
PS = "/api"


@pytest.fixture
def api() -> Iterator[tuple[Received, int]]:
    with receiver() as got:
        yield got


def tuner(port: int) -> Any:
    def tune(plugin: Any) -> None:
        path = PO if type(plugin).__name__ == "NotifyPushover" else PS
        plugin.notify_url = f"http://127.0.0.1:{port}{path}"
        plugin.request_rate_per_sec = 0  # Apprise's own pacing sleeps in real time

    return tune


def make(port: int, clock: Clock, **kw: Any) -> Notifier:
    targets = kw.pop("targets", None) or [
        {"name": "phone", "url": POVER},
        {"name": "tablet", "url": PSAFER, "min_priority": "high"},
    ]
    return Notifier(
        settings(targets=targets, **kw),
        clock,
        tuner(port),
        {"garage": "Garage"},
        ZoneInfo("UTC"),
        mono=clock.mono,
    )


async def test_alarm_reaches_pushover_and_pushsafer(api: tuple[Received, int]) -> None:
    got, port = api
    clock = Clock()
    n = make(port, clock)
    await n.on_state("garage", state())
    await n.on_alarm("garage", alarm())
    await n.tick()
    [po] = got.on(PO)
    assert po["title"] == "Garage: alarm"
    assert po["message"] == "Garage: cell 12 over-voltage, 3.65 V"
    assert po["priority"] == "1"  # high
    [ps] = got.on(PS)
    assert (ps["t"], ps["m"], ps["pr"]) == (
        "Garage: alarm",
        "Garage: cell 12 over-voltage, 3.65 V",
        "1",
    )
    # the clearing is low priority: Pushover gets it (moderate = -1), the tablet (high+) does not
    await n.on_alarm("garage", alarm(active=False, text="cell 12 over-voltage, 3.50 V"))
    await n.tick(clock.advance(1))
    assert [p["priority"] for p in got.on(PO)] == ["1", "-1"]
    assert got.on(PO)[1]["message"] == "Garage: cell 12 over-voltage, 3.50 V (cleared)"
    assert len(got.on(PS)) == 1


async def test_event_filter_and_packs(api: tuple[Received, int]) -> None:
    got, port = api
    clock = Clock()
    n = make(
        port,
        clock,
        targets=[
            {"name": "a", "url": POVER, "events": ["offline", "online"]},
            {"name": "b", "url": PSAFER, "packs": ["shed"]},
        ],
    )
    await n.on_alarm("garage", alarm())
    await n.on_availability("garage", avail(False))
    await n.tick()
    assert [p["title"] for p in got.on(PO)] == ["Garage: BMS offline"]
    assert got.on(PS) == []


async def test_repeat_within_interval_is_dropped_and_flapping_settles(
    api: tuple[Received, int],
) -> None:
    got, port = api
    clock = Clock()
    n = make(port, clock, repeat_after=600, targets=[{"name": "a", "url": POVER}])
    for _ in range(5):  # the same alarm raised again and again
        await n.on_alarm("garage", alarm())
        await n.tick(clock.advance(10))
    assert len(got.on(PO)) == 1
    # a clearing is a change: told at once
    await n.on_alarm("garage", alarm(active=False))
    await n.tick(clock.advance(10))
    assert len(got.on(PO)) == 2
    # flapping inside the interval: raised, cleared, raised -> nothing now; the final state later
    for active in (True, False, True):
        await n.on_alarm("garage", alarm(active=active))
        await n.tick(clock.advance(10))
    assert len(got.on(PO)) == 2
    await n.tick(clock.advance(600))
    titles = [p["title"] for p in got.on(PO)]
    assert titles == ["Garage: alarm", "Garage: alarm cleared", "Garage: alarm"]
    assert n.gate.suppressed == 7
    # cleared (last told 10 min ago: goes), raised again (told just now: waits), then settles
    for active in (False, True, False):
        await n.on_alarm("garage", alarm(active=active))
        await n.tick(clock.advance(10))
    await n.tick(clock.advance(4000))
    assert len(got.on(PO)) == 4  # ended where it was told last: nothing more


async def test_storm_becomes_a_digest(api: tuple[Received, int]) -> None:
    got, port = api
    clock = Clock()
    n = make(port, clock, gather=2, targets=[{"name": "a", "url": POVER}])
    codes = [
        "cell_overvoltage",
        "charge_overcurrent",
        "mos_overtemp",
        "cell_undervoltage",
        "x1",
        "x2",
    ]
    for code in codes:
        await n.on_alarm("garage", alarm(code=code, text=code.replace("_", " ")))
    await n.tick(clock.advance(1))
    assert got.posts == []  # gathering
    await n.tick(clock.advance(1.5))
    [digest] = got.on(PO)
    assert digest["title"] == "Garage: 6 events"
    assert digest["message"].count("\n") == 5 and "12:00 Garage: mos overtemp" in digest["message"]
    assert digest["priority"] == "1"


async def test_burst_limit_then_one_digest(api: tuple[Received, int]) -> None:
    got, port = api
    clock = Clock()
    n = make(port, clock, burst=2, burst_window=300, targets=[{"name": "a", "url": POVER}])
    for i in range(6):
        await n.on_alarm("garage", alarm(code=f"c{i}", text=f"thing {i}"))
        await n.tick(clock.advance(5))
    assert [p["message"] for p in got.on(PO)] == ["Garage: thing 0", "Garage: thing 1"]
    await n.tick(clock.advance(300))
    assert len(got.on(PO)) == 3 and got.on(PO)[2]["title"] == "Garage: 4 events"


async def test_target_down_queue_and_backoff(
    api: tuple[Received, int], caplog: pytest.LogCaptureFixture
) -> None:
    got, port = api
    clock = Clock()
    n = make(
        port, clock, queue_size=3, retry_min=10, retry_max=40, targets=[{"name": "a", "url": POVER}]
    )
    got.failing = True
    caplog.set_level(logging.INFO)
    await n.on_alarm("garage", alarm(code="c0", text="thing 0"))
    await n.tick()
    assert n.channels[0].failures == 1
    for i, wait in enumerate([5, 6, 20, 40]):  # retries due at +10, +30 (20 later), +70 (40)
        await n.on_alarm("garage", alarm(code=f"c{i + 1}", text=f"thing {i + 1}"))
        await n.tick(clock.advance(wait))
    assert n.channels[0].failures == 4  # at 0, 11, 31, 71: 10, 20, 40 s apart
    assert n.channels[0].backoff == 40
    got.failing = False
    await n.tick(clock.advance(40))
    [msg] = got.on(PO)
    assert msg["title"] == "Garage: 3 events"  # bounded: the oldest two gave way
    assert (
        "thing 2" in msg["message"]
        and "thing 4" in msg["message"]
        and "thing 0" not in msg["message"]
    )
    assert "(2 older events were dropped: the queue was full)" in msg["message"]
    secret = POVER.split("//")[1].split("@")[0]
    assert "not delivered" in caplog.text and secret not in caplog.text
    assert "pover://****@****" in caplog.text


async def test_quiet_hours_hold_until_the_end(api: tuple[Received, int]) -> None:
    got, port = api
    clock = Clock(datetime(2026, 6, 1, 21, 59, tzinfo=Clock().now.tzinfo))
    quiet = {"start": "22:00", "end": "07:00", "let_through": "high"}
    n = make(port, clock, quiet_hours=quiet, targets=[{"name": "a", "url": POVER}])
    clock.advance(120)  # 22:01
    await n.on_state("garage", state(soc=100))  # baseline: full
    await n.on_state("garage", state(soc=90))
    await n.on_state("garage", state(soc=100))  # low priority: held
    await n.on_availability("garage", avail(False))  # high: goes
    await n.tick(clock.advance(1))
    assert [p["title"] for p in got.on(PO)] == ["Garage: BMS offline"]
    clock.now = clock.now.replace(hour=6, minute=59)
    await n.tick(clock.advance(86400))
    assert len(got.on(PO)) == 1
    clock.now = clock.now.replace(hour=7, minute=0)
    await n.tick()
    assert got.on(PO)[1]["title"] == "Garage: full"
    assert n.channels[0].quiet(clock.now.replace(hour=23)) and not n.channels[0].quiet(clock.now)


async def test_service_down_reaches_the_phone(api: tuple[Received, int]) -> None:
    got, port = api
    clock = Clock()
    n = make(port, clock, service_grace=60, targets=[{"name": "a", "url": POVER}])
    await n.on_service("history", ServiceStatus(service="history", state="offline", ts=clock.now))
    await n.tick(clock.advance(30))
    assert got.posts == []
    await n.tick(clock.advance(31))
    [msg] = got.on(PO)
    assert msg["title"] == "bmsgate history is down" and msg["priority"] == "1"
    assert msg["message"] == "bmsgate: the history service stopped and has not come back"


async def test_json_target_and_emergency(api: tuple[Received, int]) -> None:
    got, port = api
    clock = Clock()
    n = make(
        port,
        clock,
        targets=[
            {"name": "hook", "url": f"json://127.0.0.1:{port}/hook"},
            {"name": "po", "url": POVER + "?priority=emergency"},
        ],
    )
    await n.on_availability("garage", avail(False))
    await n.tick()
    [hook] = got.on("/hook")
    assert hook["title"] == "Garage: BMS offline" and hook["type"] == "failure"
    [po] = got.on(PO)
    assert po["priority"] == "2"  # the URL's own priority wins


async def test_a_wall_clock_step_neither_stretches_nor_cuts_grace_repeat_or_retry(
    api: tuple[Received, int],
) -> None:
    """Grace times, the repeat gate and retries count real seconds, whatever the clock is set to."""
    got, port = api
    clock = Clock()
    n = make(
        port,
        clock,
        repeat_after=600,
        service_grace=60,
        retry_min=10,
        retry_max=40,
        targets=[{"name": "a", "url": POVER}],
    )
    await n.on_alarm("garage", alarm())
    await n.tick(clock.advance(1))
    assert len(got.on(PO)) == 1
    # set forward an hour: the same alarm 10 s later is still a repeat inside the 10 minutes
    clock.set(3600)
    await n.on_alarm("garage", alarm())
    await n.tick(clock.advance(10))
    assert len(got.on(PO)) == 1 and n.gate.suppressed == 1
    # a service goes down, the clock is set forward an hour: not down yet (5 s of 60 s grace)
    await n.on_service("reader-0", ServiceStatus(service="reader-0", state="offline"))
    clock.set(3600)
    await n.tick(clock.advance(5))
    assert len(got.on(PO)) == 1
    # set back two hours: the grace still ends 60 s after the service went down
    clock.set(-7200)
    await n.tick(clock.advance(56))
    assert got.on(PO)[-1]["title"] == "bmsgate reader-0 is down"
    # a failed send is retried 10 s later, though the clock was set back an hour meanwhile
    got.failing = True
    await n.on_alarm("garage", alarm(active=False))
    await n.tick(clock.advance(1))
    assert n.channels[0].failures == 1
    got.failing = False
    clock.set(-3600)
    await n.tick(clock.advance(11))
    assert got.on(PO)[-1]["title"] == "Garage: alarm cleared"

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from bmsgate_common.models import DailyStats
from bmsgate_notifier.report import next_report, reports_on
from bmsgate_notifier.service import Notifier
from tests.support.notify import POVER, Clock, alarm, settings, state
from tests.support.receiver import receiver

VIENNA = (48.21, 16.37)


def test_vienna_midwinter() -> None:
    tz = ZoneInfo("Europe/Vienna")
    [(rise, k1), (sset, k2)] = reports_on(date(2026, 12, 21), *VIENNA, tz, ["sunrise", "sunset"])
    assert (k1, k2) == ("sunrise", "sunset")
    assert f"{rise:%H:%M}" == "07:42" and f"{sset:%H:%M}" == "16:02"


def test_next_report_rolls_to_tomorrow() -> None:
    tz = ZoneInfo("Europe/Vienna")
    evening = datetime(2026, 12, 21, 20, 0, tzinfo=tz)
    at, kind = next_report(evening, *VIENNA, tz, ["sunrise", "sunset"]) or (None, None)
    assert kind == "sunrise" and at is not None and at.date() == date(2026, 12, 22)
    at, kind = next_report(evening, *VIENNA, tz, ["sunset"]) or (None, None)
    assert kind == "sunset" and at is not None and at.date() == date(2026, 12, 22)
    assert next_report(evening, *VIENNA, tz, []) is None


def test_polar_day_and_night_fall_back_to_noon() -> None:
    tz = ZoneInfo("Arctic/Longyearbyen")
    for day in (date(2026, 6, 21), date(2026, 12, 21)):  # midnight sun, polar night
        [(at, kind)] = reports_on(day, 78.22, 15.65, tz, ["sunrise", "sunset"])
        assert kind == "noon" and at.date() == day
    now = datetime(2026, 6, 21, 15, 0, tzinfo=tz)
    at, kind = next_report(now, 78.22, 15.65, tz, ["sunrise"]) or (None, None)
    assert kind == "noon" and at is not None and at > now
    # a whole year at the pole, day by day: never an error, always a next report within 2 days
    t = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(0, 365, 3):
        nxt = next_report(t, 89.9, 0.0, ZoneInfo("UTC"), ["sunrise", "sunset"])
        assert nxt is not None and timedelta(0) < nxt[0] - t <= timedelta(days=2)
        t += timedelta(days=3)


async def test_report_at_sunrise_with_the_days_figures() -> None:
    tz = ZoneInfo("Europe/Vienna")
    clock = Clock(datetime(2026, 12, 21, 3, 0, tzinfo=tz).astimezone(UTC))
    with receiver() as (got, port):

        def tune(plugin: object) -> None:
            plugin.notify_url = f"http://127.0.0.1:{port}/1/messages.json"  # type: ignore[attr-defined]
            plugin.request_rate_per_sec = 0  # type: ignore[attr-defined]

        cfg = settings(
            latitude=VIENNA[0],
            longitude=VIENNA[1],
            targets=[{"name": "phone", "url": POVER, "events": ["report"]}],
        )
        n = Notifier(cfg, clock, tune, {"garage": "Garage"})
        assert n.next is not None and n.next[1] == "sunrise"
        await n.on_state("garage", state(soc=84.4, ts=clock.now))
        await n.on_daily(
            "garage",
            DailyStats(
                pack="garage",
                day=date(2026, 12, 21),
                ts=clock.now,
                max_soc=97.0,
                max_soc_at=datetime(2026, 12, 20, 12, 5, tzinfo=UTC),
                min_cell_voltage=3.212,
                max_cell_voltage=3.451,
                energy_in=5.24,
                energy_out=3.1,
            ),
        )
        await n.on_alarm("garage", alarm(ts=datetime(2026, 12, 21, 2, 30, tzinfo=UTC)))
        await n.tick(clock.advance(3600))  # 04:00: nothing yet
        assert got.posts == []
        clock.now = n.next[0]
        await n.tick()
        [msg] = got.on("/1/messages.json")
        assert msg["title"] == "bmsgate: sunrise report 07:42"
        assert msg["priority"] == "-1"
        lines = msg["message"].split("\n")
        assert lines[0] == (
            "Garage: SOC 84 % now; max 97 % at 13:05; in 5.24 kWh, out 3.10 kWh; "
            "cells 3.212 V to 3.451 V"
        )
        assert lines[1:] == [
            "Alarms since the last report (1):",
            "21.12. 03:30 Garage: cell 12 over-voltage, 3.65 V",
        ]
        assert n.next[1] == "sunset" and f"{n.next[0].astimezone(tz):%H:%M}" == "16:02"
        clock.now = n.next[0] + timedelta(seconds=1)
        await n.tick()
        assert got.on("/1/messages.json")[1]["message"].endswith("No alarms since the last report.")

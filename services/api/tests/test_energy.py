"""The Energy page's API against a real archive: history and the API as processes over Mosquitto.

States of known power go over the backbone into the history service's archive; the API's daily
and monthly figures must be what they moved, day by day in the site's zone, a bank its members
summed once (never the bank's own archive), days without data absent, bad parameters a 4xx.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import httpx
import pytest

from bmsgate_api.energy import neighbours, row_keys
from bmsgate_common import topics
from bmsgate_common.models import PackState
from tests.support.procs import Mosquitto, Proc, start_history_and_api

pytestmark = pytest.mark.integration

ZONE = "America/New_York"  # local days are not UTC's
PASSWORD = "energy counts"
STEP = 10  # [s] between states
BUSES = [
    {
        "port": "/dev/null",
        "protocol": "jk_pb",
        "packs": [{"id": "east", "address": 1}, {"id": "west", "address": 2}],
    }
]
BANK = {"id": "house", "name": "House bank", "packs": ["east", "west"]}


def states(pack: str, start: datetime, power: float, seconds: int) -> list[PackState]:
    """A state every STEP s for ``seconds`` at a constant ``power`` [W]: it moves exactly
    power * seconds (the trapezoid of a constant), on the local day of ``start``."""
    return [
        PackState(
            pack=pack,
            name=pack.title(),
            protocol="jk_pb",
            ts=start + timedelta(seconds=k * STEP),
            pack_voltage=53.0,
            current=power / 53.0,
            power=power,
            soc=50.0,
            cell_voltages=[3.3] * 4,
            cell_count=4,
        )
        for k in range(seconds // STEP + 1)
    ]


async def publish(port: int, sent: Sequence[PackState]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for s in sent:
            await client.publish(topics.STATE.topic(s.pack), s.model_dump_json(), qos=1)


def past_days(today: date) -> dict[tuple[str, date], tuple[float, float]]:
    """What each pack moves on the days before today [kWh in, out]: east on three days, west on
    one; the bank's own states on one (their figures must never count)."""
    d = [date.fromordinal(today.toordinal() - k) for k in (1, 2, 4)]
    return {
        ("east", d[2]): (1.0, 0.0),
        ("east", d[0]): (0.5, 0.25),
        ("west", d[0]): (0.0, 2.0),
        ("east", d[1]): (0.0, 0.0),  # online, idle: a true zero, not absent
        ("house", d[0]): (50.0, 0.0),
    }


def states_of_days(days: dict[tuple[str, date], tuple[float, float]], zone: str) -> list[PackState]:
    """States that move ``days``' figures: charging from 09:00 local, discharging from 13:00."""
    tz = ZoneInfo(zone)
    out: list[PackState] = []
    for (pack, day), (e_in, e_out) in sorted(days.items(), key=lambda kv: kv[0][1]):
        nine = datetime(day.year, day.month, day.day, 9, tzinfo=tz).astimezone(UTC)
        out += states(pack, nine, 1000.0 * e_in if e_in else 0.0, 3600)
        if e_out:
            one = nine + timedelta(hours=4)
            out += states(pack, one, -1000.0 * e_out, 3600)
    return out


@pytest.fixture
def api(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> str:
    """History and the API as processes on one backbone; the API's base URL."""
    settings = {"buses": BUSES, "banks": [BANK], "timezone": ZONE}
    return start_history_and_api(tmp_path, mosquitto, procs, settings)


def row(report: dict[str, Any], period: str) -> dict[str, Any]:
    return next(r for r in report["rows"] if r["period"] == period)


async def test_daily_and_monthly_energy_of_packs_and_a_bank_from_the_archive(
    api: str, mosquitto: Mosquitto
) -> None:
    tz = ZoneInfo(ZONE)
    now = datetime.now(tz)
    today = now.date()
    days = past_days(today)
    # today: east charges at 600 W for the last minute (never before local midnight)
    since = max(
        now - timedelta(seconds=60), datetime(today.year, today.month, today.day, tzinfo=tz)
    )
    seconds = int((now - since).total_seconds()) // STEP * STEP
    live = states("east", since.astimezone(UTC), 600.0, seconds)
    await publish(mosquitto.port, [*states_of_days(days, ZONE), *live])
    today_in = round(0.6 * seconds / 3600, 4)

    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        setup = await http.post("/api/auth/setup", json={"password": PASSWORD})
        assert setup.status_code == 204, setup.text

        async def report(pack: str, path: str) -> dict[str, Any]:
            got = await http.get(f"/api/packs/{pack}/energy/{path}")
            assert got.status_code == 200, got.text
            return got.json()  # type: ignore[no-any-return]

        async def month_of(pack: str, day: date) -> dict[str, Any]:
            return await report(pack, f"days/{day.isoformat()[:7]}")

        async def stored() -> None:
            while True:
                east = await month_of("east", today)
                if row(east, today.isoformat())["energy_in"] == today_in:
                    return
                await asyncio.sleep(0.3)

        await asyncio.wait_for(stored(), 30)
        for (pack, day), (e_in, e_out) in days.items():
            if pack == "house":
                continue  # a bank's figures are its members' (below)
            got = row(await month_of(pack, day), day.isoformat())
            assert (got["energy_in"], got["energy_out"], got["days"]) == (e_in, e_out, 1), (
                pack,
                day,
            )

        # the bank: its members summed once a day, the missing named; never its own archive
        d1, d2, d4 = (date.fromordinal(today.toordinal() - k) for k in (1, 2, 4))
        bank = await month_of("house", d1)
        assert bank["bank"] and bank["name"] == "House bank" and bank["members"] == BANK["packs"]
        assert row(bank, d1.isoformat()) == {
            "period": d1.isoformat(),
            "energy_in": 0.5,
            "energy_out": 2.25,
            "days": 1,
            "missing": [],
            "future": False,
        }
        assert row(await month_of("house", d4), d4.isoformat())["missing"] == ["west"]
        assert row(await month_of("house", d2), d2.isoformat())["energy_in"] == 0.0
        assert row(await month_of("house", today), today.isoformat())["energy_in"] == today_in

        # every day of the month is listed; one without data is null (absent), not 0
        month = await month_of("east", today)
        assert [r["period"][:7] for r in month["rows"]] == [today.isoformat()[:7]] * len(
            month["rows"]
        )
        d3 = date.fromordinal(today.toordinal() - 3)
        if d3.month == today.month:
            assert row(month, d3.isoformat()) == {
                "period": d3.isoformat(),
                "energy_in": None,
                "energy_out": None,
                "days": 0,
                "missing": [],
                "future": False,
            }
        future = [r["period"] for r in month["rows"] if r["future"]]
        assert future == [r["period"] for r in month["rows"] if r["period"] > today.isoformat()]
        assert month["next"] is None  # nothing after the running month
        assert month["previous"] < today.isoformat()[:7]

        # a year's months: each its days with data summed, and the year's total
        years = {d.year for (_, d) in days} | {today.year}
        total_in = 0.0
        for year in sorted(years):
            rep = await report("house", f"months/{year}")
            assert [r["period"] for r in rep["rows"]] == [f"{year}-{m:02d}" for m in range(1, 13)]
            for r in rep["rows"]:
                want = [
                    e[0]
                    for (p, d), e in days.items()
                    if p != "house" and d.isoformat()[:7] == r["period"]
                ]
                if r["period"] == today.isoformat()[:7]:
                    want.append(today_in)
                assert r["energy_in"] == (round(sum(want), 4) if want else None), r
            total_in += rep["energy_in"] or 0.0
        assert round(total_in, 4) == round(1.5 + today_in, 4)

        # bad parameters: one-line 4xx, never a 500
        for path, status, what in (
            ("east/energy/days/2026-13", 422, "month"),
            ("east/energy/months/abc", 422, "year"),
            ("east/energy/months/999", 422, "year"),
            ("east/energy/months/9999", 422, "day 9999-12-31 is out of range"),
            ("nobody/energy/days/2026-01", 404, "unknown pack 'nobody'"),
        ):
            got = await http.get(f"/api/packs/{path}")
            assert got.status_code == status, (path, got.text)
            detail = got.json()["detail"]  # one line that names what is wrong
            assert what in detail.lower() and "\n" not in detail, (path, detail)
        # and no reading without a login
        got = await httpx.AsyncClient(base_url=api).get("/api/packs/east/energy/months/2026")
        assert got.status_code == 401


def test_previous_and_next_stop_at_the_calendar_and_at_today() -> None:
    today = date(2026, 12, 6)
    assert neighbours("day", "2026-01", today) == ("2025-12", "2026-02")
    assert neighbours("day", "2026-12", today) == ("2026-11", None)
    assert neighbours("day", "1000-01", today) == (None, "1000-02")
    assert neighbours("month", "2025", today) == ("2024", "2026")
    assert neighbours("month", "2026", today) == ("2025", None)
    assert neighbours("month", "1000", today) == (None, "1001")
    assert len(row_keys("day", "2024-02")) == 29 and row_keys("month", "2024")[-1] == "2024-12"

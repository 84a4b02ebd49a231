"""The Energy page's API against a real archive: history and the API as processes over Mosquitto.

States of known power go over the backbone into the history service's archive; the API's daily
and monthly figures must be what they moved, day by day in the site's zone, a bank its members
summed once (never the bank's own archive), days without data absent, bad parameters a 4xx.
The CSV download of a month or year must be those JSON rows, cell for cell.
"""

from __future__ import annotations

import asyncio
import csv
import io
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


def csv_matches(text: str, report: dict[str, Any]) -> None:
    """``text`` is ``report`` (an ``EnergyReport``'s JSON) as CSV: header, rows, every cell."""
    rows = list(csv.reader(io.StringIO(text)))
    head = [report["by"], "energy_in_kwh", "energy_out_kwh", "days_with_data"]
    assert rows[0] == head + (["missing_members"] if report["bank"] else [])
    assert len(rows) == len(report["rows"]) + 1
    for cells, want in zip(rows[1:], report["rows"], strict=True):
        assert cells[0] == want["period"]
        for cell, value in zip(cells[1:3], (want["energy_in"], want["energy_out"]), strict=True):
            assert (cell == "") if value is None else (float(cell) == value), (cells, want)
        assert int(cells[3]) == want["days"], (cells, want)
        if report["bank"]:
            assert cells[4].split() == want["missing"], (cells, want)


def served_as_csv(got: httpx.Response, report: dict[str, Any]) -> None:
    """``got`` is the file of ``report``: named by pack and period, CSV of its rows."""
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "text/csv; charset=utf-8"
    name = f"{report['pack']}_energy_{report['period']}.csv"
    assert got.headers["content-disposition"] == f'attachment; filename="{name}"'
    csv_matches(got.text, report)


async def test_the_csv_download_is_the_json_row_for_row(api: str, mosquitto: Mosquitto) -> None:
    today = datetime.now(ZoneInfo(ZONE)).date()
    days = past_days(today)
    await publish(mosquitto.port, states_of_days(days, ZONE))
    d1, d3, d4 = (date.fromordinal(today.toordinal() - k) for k in (1, 3, 4))
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        setup = await http.post("/api/auth/setup", json={"password": PASSWORD})
        assert setup.status_code == 204, setup.text

        async def stored() -> None:
            while True:
                got = await http.get(f"/api/packs/house/energy/days/{d1.isoformat()[:7]}")
                if got.status_code == 200 and row(got.json(), d1.isoformat())["energy_out"]:
                    return
                await asyncio.sleep(0.3)

        await asyncio.wait_for(stored(), 30)
        paths = {f"days/{d.isoformat()[:7]}" for d in (today, d1, d4)}
        paths |= {f"months/{d.year}" for d in (today, d4)}
        for pack in ("east", "west", "house"):
            for path in sorted(paths):
                report = (await http.get(f"/api/packs/{pack}/energy/{path}")).json()
                served_as_csv(await http.get(f"/api/packs/{pack}/energy/{path}.csv"), report)

        # the bank's day: its members once (0.5 in, 0.25 + 2.00 out), never its own 50 kWh
        text = (await http.get(f"/api/packs/house/energy/days/{d1.isoformat()[:7]}.csv")).text
        assert f"{d1.isoformat()},0.5000,2.2500,1,\n" in text
        if d4.month == d1.month:  # east alone that day
            assert f"\n{d4.isoformat()},1.0000,0.0000,1,west\n" in text
            # the day between without data: empty cells, not 0
            assert f"\n{d3.isoformat()},,,0,\n" in text
        # a script with a read token limited to the bank: its file, nobody else's
        made = await http.post("/api/auth/tokens", json={"name": "sheet", "packs": ["house"]})
        assert made.status_code == 201, made.text
        token = {"Authorization": f"Bearer {made.json()['token']}"}
        async with httpx.AsyncClient(base_url=api, headers=token) as script:
            got = await script.get(f"/api/packs/house/energy/months/{d1.year}.csv")
            assert got.status_code == 200 and got.text.startswith("month,"), got.text
            assert (
                await script.get(f"/api/packs/east/energy/months/{d1.year}.csv")
            ).status_code == 403
        # no file without a login; a bad period is the JSON's one-line 422
        async with httpx.AsyncClient(base_url=api) as anyone:
            got = await anyone.get(f"/api/packs/house/energy/days/{d1.isoformat()[:7]}.csv")
            assert got.status_code == 401 and "csv" not in got.headers["content-type"]
        for path in ("east/energy/days/2026-13.csv", "east/energy/months/999.csv"):
            got = await http.get(f"/api/packs/{path}")
            assert got.status_code == 422 and "\n" not in got.json()["detail"], got.text
        assert (await http.get("/api/packs/nobody/energy/months/2026.csv")).status_code == 404


def test_previous_and_next_stop_at_the_calendar_and_at_today() -> None:
    today = date(2026, 12, 6)
    assert neighbours("day", "2026-01", today) == ("2025-12", "2026-02")
    assert neighbours("day", "2026-12", today) == ("2026-11", None)
    assert neighbours("day", "1000-01", today) == (None, "1000-02")
    assert neighbours("month", "2025", today) == ("2024", "2026")
    assert neighbours("month", "2026", today) == ("2025", None)
    assert neighbours("month", "1000", today) == (None, "1001")
    assert len(row_keys("day", "2024-02")) == 29 and row_keys("month", "2024")[-1] == "2024-12"

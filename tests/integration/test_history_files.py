"""The archive's files through the history service, its only writer: history and the API run as
processes over Mosquitto; listing, CSV, zip and deleting a day go over the backbone, bad dates are
one-line 4xx answers, and a deletion while history runs leaves its open buckets and daily figures
true (deleted samples never come back at the next commit), and so does its health evidence."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from bmsgate_bms.sim.model import PackModel
from bmsgate_common import topics
from bmsgate_common.models import HealthReport, PackState
from tests.support.procs import (
    Mosquitto,
    Proc,
    start_history_and_api,
    start_service,
    wait_until,
)
from tests.support.simdrive import drive, state_of

pytestmark = pytest.mark.integration

YESTERDAY_STATES = 1400  # a day CSV of ~210 kB: more than one reply part (files.PART_BYTES)


def state(ts: datetime, soc: float) -> PackState:
    return PackState(
        pack="p1",
        name="P1",
        protocol="daly_classic",
        ts=ts,
        pack_voltage=52.8,
        current=10.0,
        power=528.0,
        soc=soc,
        cell_voltages=[3.301 + k / 1000 for k in range(16)],
        cell_count=16,
        temperatures=[20.0, 21.0],
    )


async def publish(port: int, states: list[PackState]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for s in states:
            await client.publish(topics.STATE.topic("p1"), s.model_dump_json(), qos=1)


async def retained_daily(port: int) -> dict[str, Any]:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topics.DAILY.topic("p1"), qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                return json.loads(message.payload)  # type: ignore[arg-type,no-any-return]
    raise AssertionError("unreachable")


@pytest.fixture
def api(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> str:
    """History and the API as processes on one backbone; yields the API's base URL."""
    return start_history_and_api(tmp_path, mosquitto, procs, {"timezone": "UTC"})


async def test_files_and_deletion_go_through_the_history_service(
    api: str, mosquitto: Mosquitto, procs: list[Proc], tmp_path: Path
) -> None:
    history = procs[0]
    now = datetime.now(UTC).replace(microsecond=0)
    today, yesterday = now.date(), (now - timedelta(days=1)).date()
    noon = datetime(yesterday.year, yesterday.month, yesterday.day, 6, tzinfo=UTC)
    await publish(
        mosquitto.port,
        [state(noon + timedelta(seconds=10 * i), 50.0) for i in range(YESTERDAY_STATES)],
    )
    # today's first states, all with SOC 10: the ones the deletion must remove for good
    doomed = [state(now - timedelta(seconds=20 - i), 10.0) for i in range(20)]
    await publish(mosquitto.port, doomed)

    async with httpx.AsyncClient(base_url=api, timeout=70) as http:
        setup = await http.post("/api/auth/setup", json={"password": "the password"})
        assert setup.status_code == 204, setup.text

        async def listed(day: Any) -> int:
            got = await http.get(f"/api/packs/p1/days/{day.isoformat()[:7]}")
            assert got.status_code == 200, got.text
            return next((d["samples"] for d in got.json() if d["day"] == day.isoformat()), 0)

        async def stored() -> None:
            while True:
                if await listed(yesterday) >= YESTERDAY_STATES and await listed(today) >= 20:
                    return
                await asyncio.sleep(0.3)

        await asyncio.wait_for(stored(), 30)
        got = await http.get(f"/api/packs/p1/days/{today.isoformat()[:7]}")
        row = next(d for d in got.json() if d["day"] == today.isoformat())
        assert row == {"day": today.isoformat(), "samples": 20, "file": f"p1_{today}.csv"}

        # a day's CSV comes in several parts and is whole; the month's zip holds its day files
        got = await http.get(f"/api/packs/p1/csv/{yesterday}")
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
        assert f'filename="p1_{yesterday}.csv"' in got.headers["content-disposition"]
        assert len(got.content) > 192 * 1024
        lines = got.text.splitlines()
        assert len(lines) == YESTERDAY_STATES + 1 and lines[0].startswith("time,cell_1,")
        month = yesterday.isoformat()[:7]
        got = await http.get(f"/api/packs/p1/zip/{month}")
        assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(got.content)) as archive:
            assert f"p1_{yesterday}.csv" in archive.namelist()
            text = archive.read(f"p1_{yesterday}.csv").decode()
            assert len(text.splitlines()) == YESTERDAY_STATES + 1

        # bad dates and unknown packs: one-line 4xx answers, never a 500
        for method, path in (
            ("GET", "/api/packs/p1/csv/9999-12-31"),
            ("DELETE", "/api/packs/p1/days/9999-12-31"),
            ("GET", "/api/packs/p1/days/9999-12"),
            ("GET", "/api/packs/p1/zip/9999-12"),
        ):
            got = await http.request(method, path)
            assert got.status_code == 422, (path, got.status_code, got.text)
            detail = got.json()["detail"]
            assert detail == "day 9999-12-31 is out of range", (path, detail)
        got = await http.get(f"/api/packs/nobody/days/{month}")
        assert got.status_code == 404 and got.json()["detail"] == "unknown pack 'nobody'"
        got = await http.get("/api/packs/p1/days/0000-01")
        assert got.status_code == 422
        # the chart's query at the calendar's ends too
        for params, detail in (
            ({"end": "0001-01-01T00:00:00Z"}, "start is before 0001-01-01"),
            (
                {
                    "start": "9999-12-31T00:00:00Z",
                    "end": "9999-12-31T23:59:00Z",
                    "resolution": "1d",
                },
                "the range reaches past the calendar's end",
            ),
        ):
            got = await http.get("/api/packs/p1/history", params={"fields": "soc", **params})
            assert got.status_code == 422 and got.json()["detail"] == detail, got.text

        # deleting today while history runs: its open buckets and today's figures follow
        got = await http.delete(f"/api/packs/p1/days/{today}")
        assert got.status_code == 200, got.text
        assert got.json() == {"day": today.isoformat(), "samples": 20}
        daily = await retained_daily(mosquitto.port)
        assert daily["day"] == today.isoformat() and daily["max_soc"] is None
        assert await listed(today) == 0
        assert await listed(yesterday) == YESTERDAY_STATES

        # new states after the deletion (SOC 90), in the same minute and quarter as the deleted
        fresh = datetime.now(UTC)
        await publish(
            mosquitto.port, [state(fresh + timedelta(milliseconds=100 * i), 90.0) for i in range(5)]
        )

        async def stored_again() -> None:
            while True:
                if await listed(today) >= 5:
                    return
                await asyncio.sleep(0.3)

        await asyncio.wait_for(stored_again(), 20)
        await asyncio.sleep(1.0)  # several commits: a stale open bucket would be written now
        start = datetime(today.year, today.month, today.day, tzinfo=UTC)
        for resolution in ("raw", "1m", "15m"):
            got = await http.get(
                "/api/packs/p1/history",
                params={
                    "fields": "soc",
                    "start": start.isoformat(),
                    "end": (start + timedelta(days=1)).isoformat(),
                    "resolution": resolution,
                },
            )
            assert got.status_code == 200, got.text
            soc = got.json()["series"][0]
            values = [v for v in soc["values"] if v is not None]
            lows = [v for v in (soc["min"] or soc["values"]) if v is not None]
            assert values and set(values) == {90.0}, (resolution, soc)
            assert min(lows) == 90.0, (resolution, soc)
        assert await listed(today) == 5
        # the command line cannot become a second writer while the service runs
        by_hand = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "bmsgate_history",
                "--config",
                str(tmp_path / "config.yaml"),
                "delete",
                "--pack",
                "p1",
                "--from",
                str(yesterday),
                "--to",
                str(today),
                "--yes",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert by_hand.returncode == 2 and "the history service is running" in by_hand.stderr
        assert await listed(yesterday) == YESTERDAY_STATES
    assert "Traceback" not in history.log()
    assert "p1: " + today.isoformat() + " deleted (20 samples)" in history.log()


async def retained_health(port: int) -> HealthReport:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topics.HEALTH.topic("p1"), qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                return HealthReport.model_validate_json(message.payload)  # type: ignore[arg-type]
    raise AssertionError("unreachable")


async def test_a_deleted_day_leaves_the_health_evidence(
    api: str, mosquitto: Mosquitto, procs: list[Proc], tmp_path: Path
) -> None:
    """Four days of a pack with a weak cell; deleting days takes their evidence out of the
    retained health report and out of the saved evidence a restart starts from."""
    first = datetime.now(UTC).date() - timedelta(days=4)
    midnight = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp() * 1000)
    pack = PackModel.create(16, 100, soc=50, seed=3)
    pack.weaken(4, 0.8)
    states = [state_of(pack, ts, "p1") for ts in drive(pack, 4, start=midnight)]
    states = [s for s in states if s.ts.date() < first + timedelta(days=4)]  # not today
    await publish(mosquitto.port, states)

    async with httpx.AsyncClient(base_url=api, timeout=70) as http:
        setup = await http.post("/api/auth/setup", json={"password": "the password"})
        assert setup.status_code == 204, setup.text

        async def stored() -> None:
            last = first + timedelta(days=3)
            expected = sum(1 for s in states if s.ts.date() == last)
            while True:
                got = await http.get(f"/api/packs/p1/days/{last.isoformat()[:7]}")
                days = {d["day"]: d["samples"] for d in got.json()} if got.is_success else {}
                if days.get(last.isoformat(), 0) >= expected:
                    return
                await asyncio.sleep(0.5)

        await asyncio.wait_for(stored(), 60)

        def restart() -> Proc:
            assert procs[0].stop() == 0
            history = start_service(tmp_path, "history", tmp_path / "config.yaml")
            procs[0] = history  # stopped at the end like the first
            wait_until(lambda: "history running" in history.log(), 20)
            return history

        def weak(report: HealthReport) -> list[Any]:
            return [(f.cell, f.since) for f in report.findings if f.kind == "weak_cell"]

        await asyncio.to_thread(restart)  # its start evaluates the evidence it saved
        assert weak(await retained_health(mosquitto.port)) == [(5, first)]

        got = await http.delete(f"/api/packs/p1/days/{first}")
        assert got.status_code == 200, got.text
        assert weak(await retained_health(mosquitto.port)) == [(5, first + timedelta(days=1))]
        for n in (1, 2):  # one day of evidence left: not enough for a finding
            got = await http.delete(f"/api/packs/p1/days/{first + timedelta(days=n)}")
            assert got.status_code == 200, got.text
        assert weak(await retained_health(mosquitto.port)) == []
        history = await asyncio.to_thread(restart)  # the saved evidence holds no deleted day
        assert weak(await retained_health(mosquitto.port)) == []
    assert "Traceback" not in history.log()

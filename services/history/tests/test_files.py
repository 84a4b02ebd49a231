"""The archive's files as backbone replies: days, CSV and zip in parts, daily energy, refusals."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from services.history.tests.test_archive import flat
from services.history.tests.test_export import FOREVER, fill

from bmsgate_common.models import DailyStats, HistoryFileRequest
from bmsgate_history import files
from bmsgate_history.archive import Archive
from bmsgate_history.daily import DailyTracker


def ask(**fields: object) -> HistoryFileRequest:
    return HistoryFileRequest.model_validate({"transaction": "t1", "pack": "p1", **fields})


def joined(replies: list[files.HistoryFileReply]) -> bytes:
    assert [r.part for r in replies] == list(range(replies[0].parts))
    return b"".join(base64.b64decode(r.data) for r in replies)


def test_days_csv_and_zip_answer_from_the_archive(tmp_path: Path) -> None:
    store = fill(tmp_path / "a.sqlite")
    (days,) = files.answer(store, ask(action="days", month="2024-03"), UTC)
    assert [(d.day, d.samples, d.file) for d in days.days] == [
        (date(2024, 3, d), 3, f"p1_2024-03-0{d}.csv") for d in (4, 5, 6)
    ]
    csv = files.answer(store, ask(action="csv", day="2024-03-05"), UTC)
    assert csv[0].file == "p1_2024-03-05.csv" and len(joined(csv).splitlines()) == 4
    zipped = files.answer(store, ask(action="zip", month="2024-03"), UTC)
    with zipfile.ZipFile(io.BytesIO(joined(zipped))) as archive:
        assert archive.namelist() == [f"p1_2024-03-0{d}.csv" for d in (4, 5, 6)]


def test_a_file_comes_in_parts_that_join_back() -> None:
    data = bytes(range(256)) * 2000  # 512 kB: three parts
    parts = files.file_parts("t1", "x.zip", data)
    assert len(parts) == 3 and {p.parts for p in parts} == {3}
    assert joined(parts) == data
    (empty,) = files.file_parts("t1", "x.csv", b"")
    assert empty.parts == 1 and empty.data == ""


@pytest.mark.parametrize(
    ("day", "zone"), [("9999-12-31", "UTC"), ("9999-12-31", "Pacific/Kiritimati")]
)
def test_a_day_the_calendar_cannot_hold_is_invalid(tmp_path: Path, day: str, zone: str) -> None:
    store = fill(tmp_path / "a.sqlite")
    (reply,) = files.answer(store, ask(action="csv", day=day), ZoneInfo(zone))
    assert reply.status == "error" and reply.code == "invalid"
    assert reply.error == f"day {day} is out of range"


def test_a_malformed_request_is_an_error_reply_with_its_id() -> None:
    reply = files.parse(b'{"transaction": "t9", "pack": "p1", "action": "csv", "month": "2024-03"}')
    assert isinstance(reply, files.HistoryFileReply)
    assert reply.transaction == "t9" and reply.code == "invalid"
    assert reply.error == "invalid request: payload: csv takes a day, not a month"
    broken = files.parse(b"{not json")
    assert isinstance(broken, files.HistoryFileReply) and broken.transaction is None


def test_energy_days_are_the_daily_statistics_of_each_day_and_absent_days_absent(
    tmp_path: Path,
) -> None:
    berlin = ZoneInfo("Europe/Berlin")  # local days, not UTC's: midnight is 23:00 UTC here
    archive = Archive(tmp_path / "a.sqlite", FOREVER)
    tracker = DailyTracker("p1", berlin)
    finished: list[DailyStats] = []

    def run(start: datetime, hours: float, power: float) -> None:
        ts = int(start.timestamp() * 1000)
        for i in range(int(hours * 120) + 1):  # a state every 30 s
            stored = archive.add("p1", flat(ts + i * 30_000, power=power))
            if (done := tracker.add(stored)) is not None:
                finished.append(done)
        archive.gap("p1")  # offline after: nothing integrated across

    run(datetime(2024, 3, 4, 22, tzinfo=berlin), 4, 1000.0)  # across local midnight
    run(datetime(2024, 3, 7, 10, tzinfo=berlin), 1, -500.0)  # 5th and 6th: offline
    archive.commit()
    now = tracker.stats()
    assert now is not None
    daily = [*finished, now]
    expected = [(d.day, d.energy_in, d.energy_out) for d in daily]
    assert [d for d, _, _ in expected] == [date(2024, 3, d) for d in (4, 5, 7)]
    assert expected[0][1] == pytest.approx(2.0, abs=0.01)  # 22:00 to 24:00 at 1 kW

    (month,) = files.answer(archive, ask(action="energy", month="2024-03"), berlin)
    assert month.status == "ok"
    assert [(e.day, e.energy_in, e.energy_out) for e in month.energy] == expected
    (year,) = files.answer(archive, ask(action="energy", year=2024), berlin)
    assert year.energy == month.energy
    (other,) = files.answer(archive, ask(action="energy", month="2024-04"), berlin)
    assert other.status == "ok" and other.energy == []

    # the day so far from the statistics: they hold what is not committed yet
    later = now.model_copy(update={"energy_out": now.energy_out + 0.25})
    (today,) = files.answer(archive, ask(action="energy", month="2024-03"), berlin, later)
    assert today.energy[-1].energy_out == later.energy_out
    assert today.energy[:-1] == month.energy[:-1]
    # statistics begun afresh (the clock set back) never lower the day the archive holds
    afresh = now.model_copy(update={"energy_out": 0.0})
    (kept,) = files.answer(archive, ask(action="energy", month="2024-03"), berlin, afresh)
    assert kept.energy == month.energy


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"day": "2024-03-05"}, "energy takes a month or a year"),
        ({"month": "2024-03", "year": 2024}, "energy takes a month or a year"),
        ({}, "energy takes a month or a year"),
        ({"year": 999}, "year: must be at least 1000"),
    ],
)
def test_an_energy_request_without_one_month_or_year_is_refused(
    fields: dict[str, object], why: str
) -> None:
    body = {"transaction": "t9", "pack": "p1", "action": "energy", **fields}
    reply = files.parse(json.dumps(body).encode())
    assert isinstance(reply, files.HistoryFileReply) and reply.code == "invalid"
    assert reply.error is not None and reply.error.endswith(why)
    zipped = files.parse(b'{"transaction": "t9", "pack": "p1", "action": "zip", "year": 2024}')
    assert isinstance(zipped, files.HistoryFileReply) and zipped.error is not None
    assert zipped.error.endswith("zip takes no year")


def test_the_energy_of_a_year_the_calendar_cannot_end_is_invalid(tmp_path: Path) -> None:
    store = fill(tmp_path / "a.sqlite")
    (reply,) = files.answer(store, ask(action="energy", year=9999), UTC)
    assert reply.status == "error" and reply.code == "invalid"
    assert reply.error == "day 9999-12-31 is out of range"

"""The archive's files as backbone replies: days, CSV and zip in parts, refusals with a code."""

from __future__ import annotations

import base64
import io
import zipfile
from datetime import UTC, date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from services.history.tests.test_export import fill

from bmsgate_common.models import HistoryFileRequest
from bmsgate_history import files


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

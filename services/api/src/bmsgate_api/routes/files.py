"""The archive's files: the days of a month, CSV of a day, a month as zip, deleting a day.

The history service owns the archive (its only writer); every route here asks it over the
backbone (``HistoryFileRequest``) and maps its error codes to HTTP in one place
(``history.raise_for``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel

from bmsgate_common import topics
from bmsgate_common.models import (
    MONTH_PATTERN,
    PACK_ID_PATTERN,
    HistoryDay,
    HistoryFileReply,
    HistoryFileRequest,
)

from ..deps import Ctx, Reader, User, ask, audit
from ..history import raise_for
from ..live import CLIENT

router = APIRouter(prefix="/api/packs/{pack}", tags=["files"])
PackPath = Annotated[str, Path(pattern=PACK_ID_PATTERN, description="pack id")]
MonthPath = Annotated[str, Path(pattern=MONTH_PATTERN, description="YYYY-MM")]
ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown pack, or the archive is off"},
    422: {"description": "a day or month out of range"},
    503: {"description": "the backbone is away"},
    504: {"description": "the history service did not answer"},
}


class Deleted(BaseModel):
    """What a deletion removed."""

    day: date
    samples: int


async def ask_files(
    ctx: Ctx, make: Callable[[str], HistoryFileRequest], seconds: float
) -> tuple[HistoryFileReply, bytes]:
    """The history service's reply and the file it carries (its parts joined)."""
    parts: list[HistoryFileReply] = await ask(
        ctx,
        topics.HISTORY_FILES,
        CLIENT,
        make,
        seconds=seconds,
        silent=f"the history service did not answer within {seconds:.0f} s",
        prefix="files",
    )
    first = parts[0]
    raise_for(first)
    return first, b"".join(base64.b64decode(p.data) for p in parts)


def attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


@router.get("/days/{month}", dependencies=[Reader], responses=ANSWERS)
async def days(pack: PackPath, month: MonthPath, ctx: Ctx) -> list[HistoryDay]:
    """The local days of a month that have data, with their sample counts."""
    reply, _ = await ask_files(
        ctx, lambda t: HistoryFileRequest(transaction=t, action="days", pack=pack, month=month), 10
    )
    return reply.days


@router.get(
    "/csv/{day}",
    dependencies=[Reader],
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **ANSWERS},
)
async def csv_day(pack: PackPath, day: date, ctx: Ctx) -> Response:
    """One local day as CSV (`<pack>_<YYYY-MM-DD>.csv`, columns in docs/history.md)."""
    reply, data = await ask_files(
        ctx, lambda t: HistoryFileRequest(transaction=t, action="csv", pack=pack, day=day), 30
    )
    name = reply.file or f"{pack}_{day.isoformat()}.csv"
    return Response(data, media_type="text/csv; charset=utf-8", headers=attachment(name))


@router.get(
    "/zip/{month}",
    dependencies=[Reader],
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}, **ANSWERS},
)
async def zip_month(pack: PackPath, month: MonthPath, ctx: Ctx) -> Response:
    """A month as `<pack>_<YYYY-MM>.zip` of its day files (days with data)."""
    reply, data = await ask_files(
        ctx, lambda t: HistoryFileRequest(transaction=t, action="zip", pack=pack, month=month), 60
    )
    name = reply.file or f"{pack}_{month}.zip"
    return Response(data, media_type="application/zip", headers=attachment(name))


@router.delete("/days/{day}", dependencies=[User], responses=ANSWERS)
async def delete_day(pack: PackPath, day: date, request: Request, ctx: Ctx) -> Deleted:
    """Delete one local day of a pack from the archive (needs a login)."""
    audit(request, ctx, f"day {day} of {pack} deleted")
    reply, _ = await ask_files(
        ctx, lambda t: HistoryFileRequest(transaction=t, action="delete", pack=pack, day=day), 30
    )
    return Deleted(day=day, samples=reply.samples or 0)

"""The archive's files: the days of a month, CSV of a day, a month as zip, deleting a day."""

from __future__ import annotations

import asyncio
import io
from datetime import date
from pathlib import Path as FsPath
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import Response
from pydantic import BaseModel

from bmsgate_common.models import PACK_ID_PATTERN
from bmsgate_common.timezones import site_zone
from bmsgate_history.archive import Archive, Store
from bmsgate_history.export import ExportError, day_csv, day_file_name, month_days, write_month_zip
from bmsgate_history.sample import day_bounds
from bmsgate_history.service import archive_path

from ..deps import Ctx, Reader, User

router = APIRouter(prefix="/api/packs/{pack}", tags=["files"])
PackPath = Annotated[str, Path(pattern=PACK_ID_PATTERN, description="pack id")]
MonthPath = Annotated[str, Path(pattern=r"^[1-9]\d{3}-(0[1-9]|1[0-2])$", description="YYYY-MM")]


class Day(BaseModel):
    """A local day with data in the archive."""

    day: date
    samples: int
    file: str


class Deleted(BaseModel):
    """What a deletion removed."""

    day: date
    samples: int


def _archive(ctx: Ctx) -> FsPath:
    path = archive_path(ctx.settings)
    if not path.exists():
        raise HTTPException(status_code=404, detail="no archive yet (is the history service on?)")
    return path


def _days(path: FsPath, pack: str, year: int, month: int, ctx: Ctx) -> list[Day]:
    store = Store(path)
    tz = site_zone(ctx.settings)
    try:
        out = []
        for day in month_days(year, month):
            start, end = day_bounds(day, tz)
            n = store.count_raw(pack, start, end) or len(store.buckets("1m", pack, start, end))
            if n:
                out.append(Day(day=day, samples=n, file=day_file_name(pack, day)))
        return out
    finally:
        store.close()


def _csv(path: FsPath, pack: str, day: date, ctx: Ctx) -> str:
    store = Store(path)
    try:
        return day_csv(store, pack, day, site_zone(ctx.settings))
    finally:
        store.close()


def _zip(path: FsPath, pack: str, year: int, month: int, ctx: Ctx) -> bytes:
    store = Store(path)
    buf = io.BytesIO()
    try:
        write_month_zip(store, pack, year, month, site_zone(ctx.settings), buf)
    finally:
        store.close()
    return buf.getvalue()


def _delete(path: FsPath, pack: str, day: date, ctx: Ctx) -> int:
    hist = ctx.settings.history
    archive = Archive(path, hist.archive, hist.max_gap)
    try:
        start, end = day_bounds(day, site_zone(ctx.settings))
        return archive.delete_range(pack, start, end)
    finally:
        archive.close()


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


@router.get("/days/{month}", dependencies=[Reader], responses={404: {}})
async def days(pack: PackPath, month: MonthPath, ctx: Ctx) -> list[Day]:
    """The local days of a month that have data, with their sample counts."""
    path = _archive(ctx)
    year, mon = (int(x) for x in month.split("-"))
    return await asyncio.to_thread(_days, path, pack, year, mon, ctx)


@router.get(
    "/csv/{day}",
    dependencies=[Reader],
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, 400: {}, 404: {}},
)
async def csv_day(pack: PackPath, day: date, ctx: Ctx) -> Response:
    """One local day as CSV (`<pack>_<YYYY-MM-DD>.csv`, columns in docs/history.md)."""
    path = _archive(ctx)
    try:
        name = day_file_name(pack, day)
        text = await asyncio.to_thread(_csv, path, pack, day, ctx)
    except ExportError as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    return Response(text, media_type="text/csv; charset=utf-8", headers=_attachment(name))


@router.get(
    "/zip/{month}",
    dependencies=[Reader],
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}, 404: {}},
)
async def zip_month(pack: PackPath, month: MonthPath, ctx: Ctx) -> Response:
    """A month as `<pack>_<YYYY-MM>.zip` of its day files (days with data)."""
    path = _archive(ctx)
    year, mon = (int(x) for x in month.split("-"))
    data = await asyncio.to_thread(_zip, path, pack, year, mon, ctx)
    name = f"{pack}_{month}.zip"
    return Response(data, media_type="application/zip", headers=_attachment(name))


@router.delete("/days/{day}", dependencies=[User], responses={404: {}})
async def delete_day(pack: PackPath, day: date, ctx: Ctx) -> Deleted:
    """Delete one local day of a pack from the archive (needs a login)."""
    path = _archive(ctx)
    n = await asyncio.to_thread(_delete, path, pack, day, ctx)
    return Deleted(day=day, samples=n)

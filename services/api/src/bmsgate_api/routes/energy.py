"""Energy in and out by day of a month or month of a year, of a pack or a bank (the Energy page).

The history service answers each pack's days over the backbone (it owns the archive); a bank is
its members asked together and summed here by the one bank rule (``bmsgate_api.energy``).
The ``.csv`` routes answer the same report as a file (``energy.report_csv``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from bmsgate_common.models import EnergyDay, HistoryFileRequest, utcnow

from ..deps import Ctx, Reader
from ..energy import By, EnergyReport, csv_name, report, report_csv
from .files import ANSWERS, MonthPath, PackPath, ask_files, attachment

router = APIRouter(prefix="/api/packs/{pack}/energy", tags=["energy"])
YearPath = Annotated[int, Path(ge=1000, le=9999, description="YYYY")]


async def _report(ctx: Ctx, pack: str, by: By, period: str, month: str | None) -> EnergyReport:
    """Ask the history service for each pack's days (a bank's members together) and shape them."""
    bank = next((b for b in ctx.settings.banks if b.id == pack), None)
    packs = list(dict.fromkeys(bank.packs)) if bank else [pack]
    year = None if month else int(period)

    async def days(p: str) -> list[EnergyDay]:
        reply, _ = await ask_files(
            ctx,
            lambda t: HistoryFileRequest(
                transaction=t, action="energy", pack=p, month=month, year=year
            ),
            10,
        )
        return reply.energy

    found = await asyncio.gather(*(days(p) for p in packs))
    state = ctx.store.states.get(pack)
    name = (bank.name or bank.id) if bank else (state.name if state else pack)
    now = utcnow()
    return report(
        pack, name, bank, dict(zip(packs, found, strict=True)), by, period, ctx.store.today(now)
    )


def _csv(found: EnergyReport) -> Response:
    return Response(
        report_csv(found), media_type="text/csv; charset=utf-8", headers=attachment(csv_name(found))
    )


CSV_ANSWERS: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}}}, **ANSWERS}


# before the JSON routes: their {month} would take "2026-05.csv" and refuse it
@router.get(
    "/days/{month}.csv", dependencies=[Reader], response_class=Response, responses=CSV_ANSWERS
)
async def energy_days_csv(pack: PackPath, month: MonthPath, ctx: Ctx) -> Response:
    """The month's days as CSV (`<pack>_energy_<YYYY-MM>.csv`): the JSON's rows, kWh."""
    return _csv(await _report(ctx, pack, "day", month, month))


@router.get(
    "/months/{year}.csv", dependencies=[Reader], response_class=Response, responses=CSV_ANSWERS
)
async def energy_months_csv(pack: PackPath, year: YearPath, ctx: Ctx) -> Response:
    """The year's months as CSV (`<pack>_energy_<YYYY>.csv`): the JSON's rows, kWh."""
    return _csv(await _report(ctx, pack, "month", str(year), None))


@router.get("/days/{month}", dependencies=[Reader], responses=ANSWERS)
async def energy_days(pack: PackPath, month: MonthPath, ctx: Ctx) -> EnergyReport:
    """Energy in and out [kWh] of each local day of a month; a day without data is null."""
    return await _report(ctx, pack, "day", month, month)


@router.get("/months/{year}", dependencies=[Reader], responses=ANSWERS)
async def energy_months(pack: PackPath, year: YearPath, ctx: Ctx) -> EnergyReport:
    """Energy in and out [kWh] of each month of a year (its days with data summed)."""
    return await _report(ctx, pack, "month", str(year), None)

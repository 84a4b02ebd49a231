"""Files for other tools: the IoT MQTT Panel backup, openHASP pages, Home Assistant discovery."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from bmsgate_common.models import PACK_ID_PATTERN, PackState

from ..deps import Ctx, Reader
from ..homeassistant import DiscoveryPreview, UnknownTarget, pick_target, preview
from ..iotmqttpanel import ExportProblem, PackInfo, backup
from ..openhasp import pages
from .status import bank_views, pack_names

router = APIRouter(prefix="/api/export", tags=["export"])
DEFAULT_CELLS = 16


def pack_infos(ctx: Ctx) -> list[PackInfo]:
    """Configured packs in order, then packs only seen on the backbone; cells from their state."""
    banks = {b.id for b in ctx.settings.banks}
    out = []
    for pack, name in pack_names(ctx).items():
        state = ctx.store.states.get(pack)
        cells = state.cell_count if state else DEFAULT_CELLS
        out.append(PackInfo(pack, name, cells, bank=pack in banks))
    return out


@router.get(
    "/iotmqttpanel.json",
    dependencies=[Reader],
    responses={200: {"description": "the backup file"}, 409: {"description": "no dongle target"}},
)
async def iotmqttpanel(
    request: Request,
    ctx: Ctx,
    target: Annotated[str | None, Query(description="publisher target; first dongle one")] = None,
    host: Annotated[
        str | None, Query(max_length=253, description="broker host as the phone sees it")
    ] = None,
) -> Any:
    """An IoT MQTT Panel backup: one dashboard per pack (gauges, cells, delta, MOS switches)."""
    public = host or (request.url.hostname if request.url.hostname else None)
    try:
        data = backup(ctx.settings, pack_infos(ctx), target, public)
    except ExportProblem as err:
        raise HTTPException(status_code=409, detail=str(err)) from None
    name = "IotMQTTPanel-bmsgate.json"
    return JSONResponse(data, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get(
    "/openhasp.jsonl",
    dependencies=[Reader],
    response_class=Response,
    responses={200: {"content": {"application/jsonl": {}}}, 404: {"description": "unknown pack"}},
)
async def openhasp(
    ctx: Ctx,
    pack: Annotated[str, Query(pattern=PACK_ID_PATTERN, description="pack or bank id")],
    page: Annotated[int, Query(ge=1, le=11, description="first page (two pages per pack)")] = 1,
) -> Response:
    """The pages.jsonl of one pack (overview, cells) with the objects the publisher fills."""
    infos = {i.id: i for i in pack_infos(ctx)} | {
        b.id: PackInfo(b.id, b.name or b.id, DEFAULT_CELLS) for b in ctx.settings.banks
    }
    info = infos.get(pack)
    if info is None:
        raise HTTPException(status_code=404, detail=f"unknown pack {pack!r}")
    banks = {b.pack: b.state for b in bank_views(ctx)}
    state = banks[pack] if pack in banks else ctx.store.states.get(pack)
    plate = next(
        (p for t in ctx.settings.publisher.targets for p in t.openhasp if p.pack == pack), None
    )
    cells = state.cell_count if state else info.cells
    text = pages(info.name, cells, state, plate, page).jsonl()
    name = f"pages-{pack}.jsonl"
    return Response(
        text,
        media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/homeassistant.json",
    dependencies=[Reader],
    responses={404: {"description": "no such publisher target"}},
)
async def homeassistant(
    ctx: Ctx,
    target: Annotated[str | None, Query(max_length=64, description="publisher target")] = None,
) -> DiscoveryPreview:
    """The Home Assistant discovery messages the publisher sends for the packs with a state."""
    try:
        chosen = pick_target(ctx.settings, target)
    except UnknownTarget as err:
        raise HTTPException(status_code=404, detail=str(err)) from None
    banks = {b.pack: b.state for b in bank_views(ctx) if b.state is not None}
    states: list[PackState] = [s for p, s in ctx.store.states.items() if p not in banks]
    return preview(ctx.settings, chosen, states + list(banks.values()))

"""Files for other tools: the IoT MQTT Panel backup."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from ..deps import Ctx, Reader
from ..iotmqttpanel import ExportProblem, PackInfo, backup

router = APIRouter(prefix="/api/export", tags=["export"])
DEFAULT_CELLS = 16


def pack_infos(ctx: Ctx) -> list[PackInfo]:
    """Configured packs in order, then packs only seen on the backbone; cells from their state."""
    names = {p.id: p.display_name for bus in ctx.settings.buses for p in bus.packs}
    for pack in ctx.store.packs():
        state = ctx.store.states.get(pack)
        names.setdefault(pack, state.name if state else pack)
    out = []
    for pack, name in names.items():
        state = ctx.store.states.get(pack)
        out.append(PackInfo(pack, name, state.cell_count if state else DEFAULT_CELLS))
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

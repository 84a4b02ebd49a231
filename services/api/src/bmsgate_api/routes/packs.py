"""Packs: list, live state, the overview, daily figures, health, history, commands."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from bmsgate_common import topics
from bmsgate_common.models import (
    PACK_ID_PATTERN,
    SETTING_KEY,
    BmsSettings,
    Command,
    CommandAction,
    CommandResult,
    DailyStats,
    HealthReport,
    HistoryField,
    HistoryQuery,
    HistoryReply,
    HistoryResolution,
    PackState,
    ProtocolName,
    utcnow,
)

from ..deps import Ctx, Reader, User, ask, audit, require_control, shown, who_asks
from ..history import raise_for
from ..live import CLIENT
from ..views import PackView
from .status import pack_views, refuse_bank

router = APIRouter(prefix="/api", tags=["packs"])
PackPath = Annotated[str, Path(pattern=PACK_ID_PATTERN, description="pack id")]


class PackSummary(BaseModel):
    """A pack as listed by GET /api/packs."""

    pack: str
    name: str | None
    protocol: ProtocolName | None
    online: bool
    last_seen: datetime | None
    reason: str | None = None
    bank: bool = Field(default=False, description="a bank: no commands, tunnel or raw frames")


class Offline(BaseModel):
    """The 503 body of a pack that is offline: never its old values."""

    detail: str
    pack: str
    online: Literal[False] = False
    last_seen: datetime | None


class CommandRequest(BaseModel):
    """What to change: ``set_charge_mos``/``set_discharge_mos`` (true/false), ``set_soc`` (%)."""

    action: CommandAction
    value: bool | float | None = None


class CommandOutcome(BaseModel):
    """The BMS's answer: the value read back after the change, and the pack's latest state."""

    result: CommandResult
    state: PackState | None


def _known(ctx: Ctx, pack: str) -> None:
    if pack not in ctx.store.packs():
        raise HTTPException(status_code=404, detail=f"unknown pack {pack!r}")


# what _ask_reader answers besides the route's own checks (in the OpenAPI schema)
CHANGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not logged in"},
    403: {"description": "control.enabled is false"},
    502: {"description": "the BMS refused or read back something else"},
    503: {"description": "the backbone is away"},
    504: {"description": "no result in time"},
}


async def _ask_reader(
    ctx: Ctx,
    request: Request,
    pack: str,
    *,
    refused: str,
    check: Callable[[], None],
    doing: str,
    make: Callable[[str, str], Command],
    prefix: str,
) -> CommandResult:
    """Send a change to a pack's BMS and return the value read back; the one road for every route.

    Control enabled, not a bank, the route's own ``check``, logged with who asked, then asked of
    the reader; a refusal is a 502.
    """
    require_control(ctx)
    refuse_bank(ctx, pack, refused)
    check()
    audit(request, ctx, doing)
    who = who_asks(request, ctx)
    timeout = ctx.settings.api.command_timeout
    result: CommandResult = await ask(
        ctx,
        topics.COMMAND,
        pack,
        lambda t: make(t, who),
        seconds=timeout,
        silent=f"no result from the reader within {timeout:g} s",
        prefix=prefix,
    )
    if result.status != "ok":
        raise HTTPException(status_code=502, detail=result.error or "the BMS refused")
    return result


@router.get("/packs", dependencies=[Reader])
async def list_packs(request: Request, ctx: Ctx) -> list[PackSummary]:
    """Every known pack with its online state (a viewer's own only)."""
    now, store = utcnow(), ctx.store
    banks = {b.id for b in ctx.settings.banks}
    out = []
    for pack in filter(lambda p: shown(request, p), store.packs()):
        state = store.states.get(pack)
        online = store.is_online(pack, now)
        out.append(
            PackSummary(
                pack=pack,
                name=state.name if state else None,
                protocol=state.protocol if state else None,
                online=online,
                last_seen=state.ts if state else None,
                reason=None if online else store.offline_reason(pack, now),
                bank=pack in banks,
            )
        )
    return out


@router.get(
    "/packs/{pack}/state",
    dependencies=[Reader],
    responses={404: {"description": "unknown pack"}, 503: {"model": Offline}},
)
async def pack_state(pack: PackPath, ctx: Ctx) -> PackState:
    """The latest state of a pack; 503 while it is offline (old values are not served)."""
    _known(ctx, pack)
    now, store = utcnow(), ctx.store
    if not store.is_online(pack, now):
        state = store.states.get(pack)
        body = Offline(
            detail=f"pack {pack!r} is offline: {store.offline_reason(pack, now)}",
            pack=pack,
            last_seen=state.ts if state else None,
        )
        return JSONResponse(status_code=503, content=body.model_dump(mode="json"))  # type: ignore[return-value]
    return store.states[pack]


@router.get("/overview", dependencies=[Reader])
async def overview(request: Request, ctx: Ctx) -> list[PackView]:
    """Every pack at a glance (the Status page): state, derived figures, day, alarms in words."""
    return pack_views(request, ctx)


@router.get("/packs/{pack}/daily", dependencies=[Reader], responses={404: {}})
async def daily(pack: PackPath, ctx: Ctx) -> DailyStats:
    """The pack's day so far (max SOC and when, cell extremes, energy) from the history service."""
    found = ctx.store.daily.get(pack)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no daily figures for {pack!r} yet")
    return found


@router.get("/packs/{pack}/health", dependencies=[Reader], responses={404: {}})
async def health(pack: PackPath, ctx: Ctx) -> HealthReport:
    """The history service's health findings with their evidence; [] = nothing found."""
    found = ctx.store.health.get(pack)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no health report for {pack!r} yet")
    return found


@router.get(
    "/packs/{pack}/history",
    dependencies=[Reader],
    responses={400: {}, 404: {}, 422: {}, 503: {"description": "the backbone is away"}, 504: {}},
)
async def history(
    pack: PackPath,
    ctx: Ctx,
    fields: Annotated[list[HistoryField], Query(min_length=1)],
    start: datetime | None = None,
    end: datetime | None = None,
    hours: Annotated[float, Query(gt=0, le=24 * 400)] = 24.0,
    resolution: HistoryResolution | Literal["auto"] = "auto",
    max_points: Annotated[int, Query(ge=10, le=50_000)] = 2000,
) -> HistoryReply:
    """A chart's series from the archive (the history service answers over the backbone)."""
    end = end or utcnow()
    try:
        start = start or end - timedelta(hours=hours)
    except OverflowError:  # end=0001-01-01T00:00Z
        raise HTTPException(status_code=422, detail="start is before 0001-01-01") from None
    reply: HistoryReply = await ask(
        ctx,
        topics.HISTORY_REQUEST,
        CLIENT,
        lambda t: HistoryQuery(
            transaction=t,
            pack=pack,
            fields=fields,
            start=start,
            end=end,
            resolution=resolution,
            max_points=max_points,
        ),
        seconds=10.0,
        silent="the history service did not answer within 10 s",
        prefix="history",
    )
    raise_for(reply)
    return reply


@router.post(
    "/packs/{pack}/commands",
    dependencies=[User],
    responses={
        400: {"description": "a value that does not fit the action, or a bank"},
        **CHANGE_ANSWERS,
    },
)
async def command(
    pack: PackPath, body: CommandRequest, request: Request, ctx: Ctx
) -> CommandOutcome:
    """Change a BMS (MOS switches, SOC, reset); answers with the value read back from it."""
    result = await _ask_reader(
        ctx,
        request,
        pack,
        refused="commands",
        check=lambda: _known(ctx, pack),
        doing=f"command {body.action} {body.value!r} to {pack}",
        make=lambda t, who: Command(
            transaction=t, action=body.action, value=body.value, requested_by=who
        ),
        prefix="cmd",
    )
    return CommandOutcome(result=result, state=ctx.store.states.get(pack))


class SettingWrite(BaseModel):
    """The new value of one setting, in its unit (BmsSettings lists the unit and the range)."""

    value: float


class SettingOutcome(BaseModel):
    """The value read back from the BMS after the write, and all its settings as read then."""

    result: CommandResult
    settings: BmsSettings | None


@router.get("/packs/{pack}/settings", dependencies=[Reader], responses={404: {}})
async def bms_settings(pack: PackPath, ctx: Ctx) -> BmsSettings:
    """The BMS's own settings as last read (protection limits, balancing, capacity...)."""
    found = ctx.store.settings.get(pack)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no settings read from {pack!r} yet")
    return found


@router.put(
    "/packs/{pack}/settings/{key}",
    dependencies=[User],
    responses={
        400: {"description": "read-only, unknown, or outside the range the BMS allows"},
        404: {"description": "no settings read from this pack yet"},
        **CHANGE_ANSWERS,
    },
)
async def write_setting(
    pack: PackPath,
    key: Annotated[str, Path(pattern=SETTING_KEY)],
    body: SettingWrite,
    request: Request,
    ctx: Ctx,
) -> SettingOutcome:
    """Write one of the BMS's safe settings; the answer is the value read back from the BMS.

    Checked here against what the reader published (writable, range) so a wrong value is a
    400 that sends nothing; the reader checks again against the BMS's settings as read.
    """

    def check() -> None:
        known = ctx.store.settings.get(pack)
        if known is None:
            raise HTTPException(status_code=404, detail=f"no settings read from {pack!r} yet")
        row = next((r for r in known.settings if r.key == key), None)
        if row is None or not row.writable:
            what = "unknown setting" if row is None else "read-only: bmsgate never writes"
            raise HTTPException(status_code=400, detail=f"{key}: {what}")
        if row.min is not None and row.max is not None and not row.min <= body.value <= row.max:
            unit = f" {row.unit}" if row.unit else ""
            detail = f"{key} must be {row.min:g}..{row.max:g}{unit}, not {body.value:g}"
            raise HTTPException(status_code=400, detail=detail)

    result = await _ask_reader(
        ctx,
        request,
        pack,
        refused="settings writes",
        check=check,
        doing=f"setting {key} = {body.value:g} on {pack}",
        make=lambda t, who: Command(
            transaction=t, action="set_setting", setting=key, value=body.value, requested_by=who
        ),
        prefix="set",
    )
    return SettingOutcome(result=result, settings=ctx.store.settings.get(pack))

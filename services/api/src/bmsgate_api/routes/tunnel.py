"""The TCP tunnel of a pack's bus (docs/tunnel.md): status, open for a window, close."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from bmsgate_common import topics
from bmsgate_common.models import PACK_ID_PATTERN, TunnelCommand, TunnelStatus

from ..deps import Control, Ctx, Reader, User, ask, audit, who
from .status import refuse_bank

router = APIRouter(prefix="/api", tags=["tunnel"])
PackPath = Annotated[str, Path(pattern=PACK_ID_PATTERN, description="pack id")]
ANSWER_WAIT = 5.0  # [s] for the tunnel service's answer


class TunnelRequest(BaseModel):
    """Open (for ``minutes``, closing after ``idle_timeout`` s without traffic) or close."""

    action: Literal["open", "close"]
    minutes: float | None = Field(default=None, gt=0, le=1440, description="window [min]")
    idle_timeout: float | None = Field(default=None, gt=0, le=86400, description="[s]")
    no_timeout: bool = Field(default=False, description="no idle limit; the window still ends it")


@router.get(
    "/packs/{pack}/tunnel",
    dependencies=[Reader],
    responses={
        400: {"description": "a bank"},
        404: {"description": "no status from the tunnel service for this pack"},
    },
)
async def tunnel_status(pack: PackPath, ctx: Ctx) -> TunnelStatus:
    """The tunnel of the pack's bus: open, client, bytes each way, uptime, time left."""
    refuse_bank(ctx, pack, "tunnels")
    found = ctx.store.tunnels.get(pack)
    if found is None:
        why = (
            "is the tunnel service running?"
            if ctx.settings.control.enabled
            else "the tunnel service runs only with control.enabled"
        )
        raise HTTPException(status_code=404, detail=f"no tunnel status for {pack!r}: {why}")
    return found


@router.get(
    "/packs/{pack}/tunnel/events", response_class=EventSourceResponse, dependencies=[Reader]
)
async def tunnel_events(pack: PackPath, ctx: Ctx) -> AsyncIterable[ServerSentEvent]:
    """``tunnel`` events (TunnelStatus): every change, each second while open; latest first."""
    queue = ctx.tunnel_hub.listen()
    try:
        latest = ctx.store.tunnels.get(pack)
        if latest is not None:
            yield ServerSentEvent(event="tunnel", data=latest)
        while True:
            _, status = await queue.get()
            if status.pack == pack:
                yield ServerSentEvent(event="tunnel", data=status)
    finally:
        ctx.tunnel_hub.leave(queue)


@router.post(
    "/packs/{pack}/tunnel",
    dependencies=[User, Control],
    responses={
        400: {"description": "terms that do not fit the action, or a bank"},
        401: {"description": "not logged in"},
        403: {"description": "control.enabled is false"},
        409: {"description": "the tunnel service refused (e.g. port in use)"},
        504: {"description": "no answer from the tunnel service"},
    },
)
async def tunnel_command(
    pack: PackPath, body: TunnelRequest, request: Request, ctx: Ctx
) -> TunnelStatus:
    """Open the tunnel for a window, or close it; answers with the tunnel service's status."""
    refuse_bank(ctx, pack, "tunnels")
    audit(request, ctx, f"tunnel {body.action} for {pack}")
    silent = (
        f"no answer from the tunnel service within {ANSWER_WAIT:g} s: "
        f"is it running and {pack!r} a configured pack?"
    )
    status: TunnelStatus = await ask(
        ctx,
        topics.TUNNEL_COMMAND,
        pack,
        lambda t: TunnelCommand(
            transaction=t,
            requested_by=f"web API, {who(request, ctx)}",
            **body.model_dump(),
        ),
        seconds=ANSWER_WAIT,
        silent=silent,
        prefix="tunnel",
    )
    if not status.ok:
        raise HTTPException(status_code=409, detail=status.error or "the tunnel service refused")
    return status

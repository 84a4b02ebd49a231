"""Live updates by server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterable

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from bmsgate_common.models import utcnow

from ..deps import Ctx, Reader
from ..views import pack_view
from .status import bank_views

router = APIRouter(prefix="/api", tags=["live"])


@router.get("/events", response_class=EventSourceResponse, dependencies=[Reader])
async def events(ctx: Ctx) -> AsyncIterable[ServerSentEvent]:
    """``pack`` (PackView) and ``bank`` (BankView) events at every change; current ones first."""
    queue = ctx.hub.listen()
    try:
        now = utcnow()
        for pack in ctx.store.packs():
            yield ServerSentEvent(event="pack", data=pack_view(ctx.store, pack, now))
        for bank in bank_views(ctx):
            yield ServerSentEvent(event="bank", data=bank)
        while True:
            event, data = await queue.get()
            yield ServerSentEvent(event=event, data=data)
    finally:
        ctx.hub.leave(queue)

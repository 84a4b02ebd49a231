"""Live updates by server-sent events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable

from fastapi import APIRouter, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from bmsgate_common.models import utcnow

from ..deps import Context, Ctx, Reader, shown
from ..views import pack_view
from .status import bank_views

router = APIRouter(prefix="/api", tags=["live"])
BEAT_RANGE = (2.0, 30.0)  # [s] the beat follows the poll interval within these bounds


class Beat(BaseModel):
    """Sent when nothing else was for ``interval`` s.

    A page that hears nothing for two intervals has lost the API: a hung process keeps its
    connection open, so silence is the only sign.
    """

    interval: float = Field(description="[s] the longest time between two events")
    stale_after: float = Field(description="[s] a reading older than this is not live")


def beat_interval(ctx: Context) -> float:
    """The buses' longest poll interval, within BEAT_RANGE: states come at least that often."""
    longest = max((b.poll_interval for b in ctx.settings.buses), default=BEAT_RANGE[0])
    return min(max(longest, BEAT_RANGE[0]), BEAT_RANGE[1])


@router.get("/events", response_class=EventSourceResponse, dependencies=[Reader])
async def events(request: Request, ctx: Ctx) -> AsyncIterable[ServerSentEvent]:
    """``pack`` (PackView) and ``bank`` (BankView) events at every change, current ones first.

    A viewer (api.viewers) gets those of its packs and banks only.

    ``beat`` (Beat) comes first and whenever nothing else was sent for its interval.
    """
    queue = ctx.hub.listen()
    beat = Beat(interval=beat_interval(ctx), stale_after=ctx.store.stale_after)
    try:
        yield ServerSentEvent(event="beat", data=beat)
        now = utcnow()
        for pack in filter(lambda p: shown(request, p), ctx.store.packs()):  # a viewer's own
            yield ServerSentEvent(event="pack", data=pack_view(ctx.store, pack, now))
        for bank in bank_views(ctx):
            if shown(request, bank.pack):
                yield ServerSentEvent(event="bank", data=bank)
        while True:
            try:
                event, data = await asyncio.wait_for(queue.get(), beat.interval)
            except TimeoutError:
                yield ServerSentEvent(event="beat", data=beat)
                continue
            if shown(request, data.pack):
                yield ServerSentEvent(event=event, data=data)
    finally:
        ctx.hub.leave(queue)

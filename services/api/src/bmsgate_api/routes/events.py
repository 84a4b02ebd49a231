"""Live updates by server-sent events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from fastapi.sse import format_sse_event
from pydantic import BaseModel, Field

from bmsgate_common.models import utcnow

from ..deps import Context, Ctx, Reader, shown
from ..views import pack_view
from .status import bank_views

router = APIRouter(prefix="/api", tags=["live"])
BEAT_RANGE = (2.0, 30.0)  # [s] the beat follows the poll interval within these bounds
GATHER = 0.02  # [s] after an event, for the ones that follow it into the same write
BATCH = 500  # events in one write at most


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


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
    dependencies=[Reader],
)
async def events(request: Request, ctx: Ctx) -> StreamingResponse:
    """``pack`` (PackView) and ``bank`` (BankView) events at every change, current ones first.

    A viewer (api.viewers) gets those of its packs and banks only.

    ``beat`` (Beat) comes first and whenever nothing else was sent for its interval.
    """
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering
    return StreamingResponse(_stream(request, ctx), media_type="text/event-stream", headers=headers)


async def _stream(request: Request, ctx: Ctx) -> AsyncIterator[bytes]:
    """The events as SSE text; the events waiting at a write go out in that one write.

    A browser that falls behind gets each pack's newest view (``live.Latest``).

    At 1,000 packs a second, one write (and one pass through the response's layers and the
    compressor) per event was the API's largest cost after receiving the states.
    """
    latest = ctx.hub.listen()  # from here on: nothing between the first views and the rest
    beat = Beat(interval=beat_interval(ctx), stale_after=ctx.store.stale_after)
    try:
        now = utcnow()
        first: list[tuple[str, BaseModel]] = [("beat", beat)]
        first += [
            ("pack", pack_view(ctx.store, pack, now))
            for pack in ctx.store.packs()
            if shown(request, pack)  # a viewer's own
        ]
        first += [("bank", bank) for bank in bank_views(ctx) if shown(request, bank.pack)]
        yield _encode(first)
        while True:
            if not await latest.wait(beat.interval):
                yield _encode([("beat", beat)])
                continue
            await asyncio.sleep(GATHER)
            waiting = [(event, data) for event, data in latest.take() if shown(request, data.pack)]
            for i in range(0, len(waiting), BATCH):
                yield _encode(waiting[i : i + BATCH])
    finally:
        ctx.hub.leave(latest)


def _encode(events: list[tuple[str, BaseModel]]) -> bytes:
    """SSE text of ``events``, each as FastAPI's own SSE responses write it."""
    return b"".join(
        format_sse_event(data_str=data.model_dump_json(), event=event) for event, data in events
    )

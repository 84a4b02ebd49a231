"""The sniffer's live frames and raw frames sent to a BMS through the reader's lease."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.encoders import jsonable_encoder
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field, field_validator

from bmsgate_bms.registry import protocol
from bmsgate_common import topics
from bmsgate_common.models import (
    PACK_ID_PATTERN,
    ProtocolName,
    RawData,
    RawLease,
    RawLeaseState,
    SniffSet,
    SniffState,
)

from ..deps import Context, Control, Ctx, Reader, User, ask, audit, who_asks
from ..live import RAW_HOLDER
from .status import refuse_bank

router = APIRouter(prefix="/api", tags=["sniffer"])
PackPath = Annotated[str, Path(pattern=PACK_ID_PATTERN, description="pack id")]
LEASE_WAIT = 5.0  # [s] for the reader to grant or release the line
QUIET = 0.5  # [s] after the last byte: the answer is complete
LONGEST = 3.0  # [s] to collect an answer at most


class RawRequest(BaseModel):
    """A frame to send to the BMS, in hex (spaces allowed), e.g. ``a5 40 90 08 …``."""

    data: str = Field(min_length=2, max_length=1100, description="hex bytes, at most 512")

    @field_validator("data")
    @classmethod
    def _hex(cls, value: str) -> str:
        digits = re.sub(r"\s+", "", value).lower()
        if not re.fullmatch(r"([0-9a-f]{2})+", digits):
            raise ValueError("not hex bytes (pairs of 0-9, a-f)")
        if len(digits) > 1024:
            raise ValueError("at most 512 bytes")
        return digits


class RawAnswer(BaseModel):
    """What came back within the window, and what the pack's protocol decoder reads in it."""

    pack: str
    protocol: str
    sent: str = Field(description="hex")
    answer: str = Field(description="hex; empty when the BMS did not answer")
    seconds: float = Field(description="from sending to the last byte (or the end of the window)")
    decoded: dict[str, Any] | None = None
    error: str | None = Field(default=None, description="why the answer does not decode")


@router.get("/sniff", response_class=EventSourceResponse, dependencies=[Reader])
async def sniff(ctx: Ctx) -> AsyncIterable[ServerSentEvent]:
    """``frame`` events (a SniffedFrame) from every bus with ``sniff: true``; recent ones first."""
    queue = ctx.sniff_hub.listen()
    try:
        for frame in list(ctx.store.sniffed):
            yield ServerSentEvent(event="frame", data=frame)
        while True:
            event, data = await queue.get()
            yield ServerSentEvent(event=event, data=data)
    finally:
        ctx.sniff_hub.leave(queue)


class SnifferBus(BaseModel):
    """A configured bus, its reader, and whether its sniffer is on (null: no word from it yet)."""

    bus: str = Field(description="the reader that owns it, e.g. 'reader-0'")
    port: str
    protocol: ProtocolName
    packs: list[str]
    configured: bool = Field(description="sniff in the configuration (the setting at start)")
    enabled: bool | None = Field(description="what the reader last reported")


class SniffRequest(BaseModel):
    """Turn a bus's sniffer on or off (until the reader restarts)."""

    enabled: bool


def _buses(ctx: Context) -> list[SnifferBus]:
    out = []
    for i, bus in enumerate(ctx.settings.buses):
        found = ctx.store.sniffers.get(f"reader-{i}")
        out.append(
            SnifferBus(
                bus=f"reader-{i}",
                port=bus.port,
                protocol=bus.protocol,
                packs=[p.id for p in bus.packs],
                configured=bus.sniff,
                enabled=found.enabled if found else None,
            )
        )
    return out


@router.get("/sniff/buses", dependencies=[Reader])
async def sniffer_buses(ctx: Ctx) -> list[SnifferBus]:
    """Every configured bus with the state of its sniffer."""
    return _buses(ctx)


@router.post(
    "/sniff/buses/{bus}",
    dependencies=[User, Control],
    responses={
        401: {"description": "not logged in"},
        403: {"description": "control.enabled is false"},
        404: {"description": "no such bus"},
        504: {"description": "the reader did not answer"},
    },
)
async def set_sniffer(
    bus: Annotated[str, Path(pattern=r"^reader-\d{1,3}$")],
    body: SniffRequest,
    request: Request,
    ctx: Ctx,
) -> SnifferBus:
    """Turn the sniffer of a bus on or off at runtime; answers with the reader's own report."""
    if bus not in {b.bus for b in _buses(ctx)}:
        raise HTTPException(status_code=404, detail=f"no bus {bus!r} is configured")
    audit(request, ctx, f"sniffer {'on' if body.enabled else 'off'} on {bus}")
    who = who_asks(request, ctx)
    state: SniffState = await ask(
        ctx,
        topics.SNIFF_SET,
        bus,
        lambda t: SniffSet(transaction=t, enabled=body.enabled, requested_by=who),
        seconds=LEASE_WAIT,
        silent=f"{bus} did not answer within {LEASE_WAIT:g} s: is it running?",
        prefix="sniff",
    )
    ctx.store.sniffers[bus] = state
    return next(b for b in _buses(ctx) if b.bus == bus)


async def _lease(
    ctx: Context, pack: str, action: Literal["acquire", "release"], who: str
) -> RawLeaseState | None:
    """Ask the reader for (or give back) the line for ``who``; its answer, or None without one."""
    assert ctx.backbone is not None
    transaction = ctx.replies.new("raw")
    ask = RawLease(
        transaction=transaction,
        holder=RAW_HOLDER,
        action=action,
        idle_timeout=10.0,
        requested_by=who,
    )
    if not await ctx.backbone.publish(topics.RAW_LEASE, pack, ask):
        ctx.replies.cancel(transaction)
        return None
    try:
        state: RawLeaseState = await ctx.replies.wait(transaction, LEASE_WAIT)
    except TimeoutError:
        return None
    return state


async def _collect(queue: asyncio.Queue[bytes]) -> tuple[bytes, float]:
    """Bytes until QUIET s after the last one, LONGEST s at most; and when the last came."""
    started = time.monotonic()
    answer, last = b"", started
    while (left := started + LONGEST - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(min(left, QUIET) if answer else left):
                chunk = await queue.get()
        except TimeoutError:
            break
        answer += chunk
        last = time.monotonic()
    return answer, (last if answer else time.monotonic()) - started


def _decode(name: str, answer: bytes) -> tuple[dict[str, Any] | None, str | None]:
    if not answer:
        return None, "no answer"
    try:
        decoded = jsonable_encoder(protocol(name).decode_hex(answer))
    except Exception as err:  # any decoder complaint is the answer's problem
        return None, str(err) or type(err).__name__
    return decoded, None


@router.post(
    "/packs/{pack}/raw",
    dependencies=[User, Control],
    responses={
        400: {"description": "a bank"},
        401: {"description": "not logged in"},
        403: {"description": "control.enabled is false"},
        404: {"description": "unknown pack"},
        409: {"description": "the reader did not give the line, or another frame is under way"},
        504: {"description": "no answer from the reader about the line"},
    },
)
async def send_raw(pack: PackPath, body: RawRequest, request: Request, ctx: Ctx) -> RawAnswer:
    """Send one frame to the pack's bus (polling pauses), collect the answer, decode it."""
    refuse_bank(ctx, pack, "raw frames")
    state = ctx.store.states.get(pack)
    if state is None:
        raise HTTPException(status_code=404, detail=f"unknown pack {pack!r}")
    audit(request, ctx, f"raw frame {body.data[:80]} to {pack}")
    if ctx.backbone is None:
        raise HTTPException(status_code=503, detail="no backbone: raw frames are not available")
    if ctx.raw_lock.locked():
        raise HTTPException(status_code=409, detail="another raw frame is under way; try again")
    who = who_asks(request, ctx)
    async with ctx.raw_lock:
        granted = await _lease(ctx, pack, "acquire", who)
        if granted is None:
            raise HTTPException(
                status_code=504, detail=f"the reader did not answer within {LEASE_WAIT:g} s"
            )
        if not granted.ok:
            raise HTTPException(status_code=409, detail=granted.error or "the line was refused")
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        ctx.raw_rx[pack] = queue
        try:
            await ctx.backbone.publish(
                topics.RAW_TX, pack, RawData(holder=RAW_HOLDER, data=body.data)
            )
            answer, seconds = await _collect(queue)
        finally:
            ctx.raw_rx.pop(pack, None)
            await _lease(ctx, pack, "release", who)  # None without the reader: its lease times out
    decoded, error = _decode(state.protocol, answer)
    return RawAnswer(
        pack=pack,
        protocol=state.protocol,
        sent=body.data,
        answer=answer.hex(),
        seconds=round(seconds, 3),
        decoded=decoded,
        error=error,
    )

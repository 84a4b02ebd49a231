"""The FastAPI application: REST over the store, fed from the backbone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from bmsgate_common.models import Availability, PackState, ProtocolName, utcnow
from bmsgate_common.mqtt import Backbone

from .store import PackStore

STATIC = Path(__file__).parent / "static"


class PackSummary(BaseModel):
    """A pack as listed by GET /api/packs."""

    pack: str
    name: str | None
    protocol: ProtocolName | None
    online: bool
    last_seen: datetime | None
    reason: str | None = None


class Health(BaseModel):
    """GET /healthz."""

    status: Literal["ok"]
    backbone: bool


class Offline(BaseModel):
    """The 503 body of a pack that is offline: never its old values."""

    detail: str
    pack: str
    online: Literal[False] = False
    last_seen: datetime | None


def create_app(store: PackStore, backbone: Backbone | None = None) -> FastAPI:
    """The app; with a backbone it subscribes to states and availability for its lifetime."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if backbone is None:
            yield
            return

        async def on_state(pack: str, state: PackState) -> None:
            store.states[pack] = state

        async def on_availability(pack: str, avail: Availability) -> None:
            store.availability[pack] = avail

        backbone.subscribe("state", on_state)
        backbone.subscribe("availability", on_availability)
        async with backbone:
            yield

    app = FastAPI(
        title="bmsgate",
        summary="DALY and JK battery packs: live state, history, commands",
        version="0.1.0",
        lifespan=lifespan,
    )

    @app.get("/healthz", tags=["service"])
    async def healthz() -> Health:
        """Liveness of the API and whether it reaches the backbone."""
        return Health(status="ok", backbone=backbone.connected if backbone else False)

    @app.get("/api/packs", tags=["packs"])
    async def list_packs() -> list[PackSummary]:
        """Every known pack with its online state."""
        now = utcnow()
        out = []
        for pack in store.packs():
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
                )
            )
        return out

    @app.get(
        "/api/packs/{pack}/state",
        tags=["packs"],
        responses={404: {"description": "unknown pack"}, 503: {"model": Offline}},
    )
    async def pack_state(pack: str) -> PackState:
        """The latest state of a pack; 503 while it is offline (old values are not served)."""
        if pack not in store.packs():
            raise HTTPException(status_code=404, detail=f"unknown pack {pack!r}")
        now = utcnow()
        if not store.is_online(pack, now):
            state = store.states.get(pack)
            body = Offline(
                detail=f"pack {pack!r} is offline: {store.offline_reason(pack, now)}",
                pack=pack,
                last_seen=state.ts if state else None,
            )
            return JSONResponse(status_code=503, content=body.model_dump(mode="json"))  # type: ignore[return-value]
        return store.states[pack]

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="ui")
    return app

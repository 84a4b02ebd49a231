"""The FastAPI application: REST over the store, fed from the backbone, and the pages."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from bmsgate_common import topics
from bmsgate_common.invalid import in_words
from bmsgate_common.models import (
    AlarmEvent,
    Availability,
    BmsSettings,
    CommandResult,
    DailyStats,
    HealthReport,
    HistoryFileReply,
    HistoryReply,
    LogLines,
    NotifyTestResult,
    PackState,
    RawData,
    RawLeaseState,
    ServiceStatus,
    SniffedFrame,
    SniffState,
    TunnelStatus,
    utcnow,
)
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import Settings
from bmsgate_common.version import VERSION

from .auth import (
    RateLimiter,
    Sessions,
    Tokens,
    Viewer,
    Viewers,
    password_store,
    session_key,
)
from .deps import VIEWER_PAGES, Context, limited_to
from .forms import request_error
from .guard import Guard, Proxies
from .live import CLIENT, RAW_HOLDER
from .routes import (
    auth,
    energy,
    events,
    export,
    files,
    packs,
    raw,
    release,
    status,
    system,
    tunnel,
)
from .routes import settings as settings_routes
from .routes import setup as setup_routes
from .routes.status import bank_views
from .sky import Weather
from .store import PackStore
from .transfer import (
    GZIP_EXCLUDED,
    GZIP_LEVEL,
    GZIP_MIN_BYTES,
    OWN_FILES,
    VENDOR_FILES,
    CachedFiles,
)
from .views import pack_view

STATIC = Path(__file__).parent / "static"
VENDOR = STATIC / "node_modules" / "uplot" / "dist"


class Health(BaseModel):
    """GET /healthz."""

    status: Literal["ok"]
    backbone: bool


class ViewerGatedFiles:
    """The web UI's files; a viewer gets 403 for every page but its own (deps.VIEWER_PAGES)."""

    def __init__(self, files: ASGIApp, ctx: Context) -> None:
        self.files, self.ctx = files, ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the file, unless a viewer asks for a page that is not for viewers."""
        page = scope["path"].rsplit("/", 1)[-1] if scope["type"] == "http" else ""
        if page.endswith(".html") and page not in VIEWER_PAGES:
            limited = limited_to(Request(scope), self.ctx)
            if limited is not None:
                text = (
                    f"<!doctype html><title>bmsgate</title><p>{html.escape(limited[0])} may see "
                    'only the pages of its packs: <a href="index.html">Status</a></p>'
                )
                await HTMLResponse(text, status_code=403)(scope, receive, send)
                return
        await self.files(scope, receive, send)


def _wire(ctx: Context, backbone: Backbone) -> None:
    """Subscribe the store, the waiting requests and the live hub to the backbone."""
    store, hub = ctx.store, ctx.hub

    def changed(pack: str) -> None:
        if hub.listeners:
            hub.publish("pack", pack_view(store, pack, utcnow()))
            for bank in bank_views(ctx, only_with=pack):
                hub.publish("bank", bank)

    async def on_state(pack: str, state: PackState) -> None:
        store.on_state(pack, state)
        changed(pack)

    async def on_availability(pack: str, avail: Availability) -> None:
        store.on_availability(pack, avail)
        changed(pack)

    async def on_daily(pack: str, stats: DailyStats) -> None:
        store.daily[pack] = stats

    async def on_settings(pack: str, settings: BmsSettings) -> None:
        store.settings[pack] = settings

    async def on_health(pack: str, report: HealthReport) -> None:
        store.health[pack] = report

    async def on_alarm(_: str, event: AlarmEvent) -> None:
        store.on_alarm(event)
        changed(event.pack)

    async def on_service(name: str, status: ServiceStatus) -> None:
        store.services[name] = status

    async def on_result(_: str, result: CommandResult) -> None:
        ctx.replies.answer(result.transaction, result)

    async def on_reply(client: str, reply: HistoryReply) -> None:
        if client == CLIENT:
            ctx.replies.answer(reply.transaction, reply)

    async def on_notify_result(client: str, result: NotifyTestResult) -> None:
        if client == CLIENT:
            ctx.replies.answer(result.transaction, result)

    async def on_files_reply(client: str, reply: HistoryFileReply) -> None:
        if client == CLIENT:
            ctx.replies.part(reply.transaction, reply.part, reply.parts, reply)

    async def on_log_lines(_: str, lines: LogLines) -> None:
        ctx.replies.answer(lines.transaction, lines)

    async def on_tunnel(pack: str, status: TunnelStatus) -> None:
        store.tunnels[pack] = status
        if ctx.tunnel_hub.listeners:
            ctx.tunnel_hub.publish("tunnel", status)
        if status.transaction:
            ctx.replies.answer(status.transaction, status)

    async def on_sniff_state(bus: str, state: SniffState) -> None:
        store.sniffers[bus] = state
        ctx.replies.answer(state.transaction, state)

    async def on_lease(_: str, state: RawLeaseState) -> None:
        if state.transaction:
            ctx.replies.answer(state.transaction, state)

    async def on_raw_rx(pack: str, data: RawData) -> None:
        queue = ctx.raw_rx.get(pack)
        if queue is not None and data.holder == RAW_HOLDER:
            queue.put_nowait(bytes.fromhex(data.data))

    async def on_sniff(_: str, frame: SniffedFrame) -> None:
        store.sniffed.append(frame)
        if ctx.sniff_hub.listeners:
            ctx.sniff_hub.publish("frame", frame)

    backbone.subscribe(topics.TUNNEL_STATUS, on_tunnel)
    backbone.subscribe(topics.RAW_LEASE_STATE, on_lease, retained=False)
    backbone.subscribe(topics.RAW_RX, on_raw_rx, retained=False)
    backbone.subscribe(topics.SNIFF, on_sniff, retained=False)
    backbone.subscribe(topics.SNIFF_STATE, on_sniff_state)
    backbone.subscribe(topics.STATE, on_state, qos0=True)
    backbone.subscribe(topics.AVAILABILITY, on_availability)
    backbone.subscribe(topics.DAILY, on_daily)
    backbone.subscribe(topics.SETTINGS, on_settings)
    backbone.subscribe(topics.HEALTH, on_health)
    backbone.subscribe(topics.ALARM, on_alarm, retained=False)
    backbone.subscribe(topics.SERVICE_STATUS, on_service)
    backbone.subscribe(topics.RESULT, on_result, retained=False)
    backbone.subscribe(topics.HISTORY_REPLY, on_reply, retained=False)
    backbone.subscribe(topics.HISTORY_FILES_REPLY, on_files_reply, retained=False)
    backbone.subscribe(topics.NOTIFY_TEST_RESULT, on_notify_result, retained=False)
    backbone.subscribe(topics.SERVICE_LOG_LINES, on_log_lines, retained=False)


def make_context(
    store: PackStore, settings: Settings, backbone: Backbone | None, persist: bool
) -> Context:
    """The app's state; with ``persist`` the password and session key live under data_dir/api."""
    api = settings.api
    folder = settings.data_dir / "api" if persist else None
    store.order = settings.pack_ids()  # the settings are fixed for the app's life

    def kept(name: str) -> Path | None:
        return folder / name if folder else None

    return Context(
        settings=settings,
        store=store,
        passwords=password_store(settings, persist),
        sessions=Sessions(
            session_key(kept("session.key")), api.session_hours * 3600, kept("revoked.json")
        ),
        limiter=RateLimiter(
            api.login_attempts, api.login_window, kept("login_failures.json"), api.login_ceiling
        ),
        tokens=Tokens(kept("tokens.json")),
        viewers=Viewers(
            tuple(
                Viewer(v.name, v.password_hash.get_secret_value(), tuple(v.packs), configured=True)
                for v in api.viewers
            ),
            kept("viewers.json"),
        ),
        backbone=backbone,
        weather=Weather.from_settings(settings),
    )


def create_app(
    store: PackStore,
    backbone: Backbone | None = None,
    settings: Settings | None = None,
    ctx: Context | None = None,
) -> FastAPI:
    """The app; with a backbone it subscribes to the backbone for its lifetime."""
    ctx = ctx or make_context(store, settings or Settings(), backbone, persist=False)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            if ctx.backbone is None:
                yield
                return
            _wire(ctx, ctx.backbone)
            ctx.weather.current()  # the first forecast is fetched at start, not at the first visit
            try:
                async with ctx.backbone:
                    yield
            finally:
                await ctx.weather.close()
        finally:
            ctx.limiter.flush()  # failures not written yet (they are written at most every 10 s)

    api = ctx.settings.api
    app = FastAPI(
        title="bmsgate",
        summary="DALY and JK battery packs: live state, history, commands",
        version=VERSION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.add_middleware(
        Guard,
        proxies=Proxies.parse(api.trusted_proxies),
        origins=api.allowed_origins,
        body_timeout=api.header_timeout,
    )
    app.add_middleware(
        GZipMiddleware,
        minimum_size=GZIP_MIN_BYTES,
        compresslevel=GZIP_LEVEL,
        exclude_content_types=GZIP_EXCLUDED,
    )

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, err: RequestValidationError) -> JSONResponse:
        """422 with one line in words first (the pages show it), then each error: where, words."""
        found = err.errors()
        errors = [{"loc": e.get("loc"), "msg": in_words(e)} for e in found]
        return JSONResponse(
            status_code=422, content={"detail": request_error(found), "errors": errors}
        )

    @app.get("/healthz", tags=["service"])
    async def healthz() -> Health:
        """Liveness of the API and whether it reaches the backbone."""
        return Health(status="ok", backbone=ctx.backbone.connected if ctx.backbone else False)

    routers = (
        auth,
        packs,
        files,
        energy,
        events,
        export,
        tunnel,
        raw,
        status,
        settings_routes,
        release,
        system,
    )
    for module in routers:
        app.include_router(module.router)
    app.include_router(setup_routes.router)
    if VENDOR.is_dir():
        uplot = CachedFiles(directory=VENDOR, cache_control=VENDOR_FILES)
        app.mount("/vendor/uplot", uplot, name="uplot")
    pages = CachedFiles(directory=STATIC, html=True, cache_control=OWN_FILES)
    app.mount("/", ViewerGatedFiles(pages, ctx), name="ui")
    return app

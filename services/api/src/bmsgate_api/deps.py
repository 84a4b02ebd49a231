"""Shared state of the app and the dependencies that guard the routes."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

from fastapi import Depends, HTTPException, Request
from pydantic import BaseModel, ValidationError

from bmsgate_common.models import requester
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import Settings
from bmsgate_common.topics import TopicSpec

from .auth import COOKIE, PasswordStore, RateLimiter, Sessions, TokenInfo, Tokens, Viewer, Viewers
from .guard import DOUBTED, STATE_CHANGING
from .live import EventFanout, LatestFanout, Replies
from .sky import Weather
from .store import PackStore

log = logging.getLogger("bmsgate_api.audit")


@dataclass
class Context:
    """Everything a route may use."""

    settings: Settings
    store: PackStore
    passwords: PasswordStore
    sessions: Sessions
    limiter: RateLimiter
    tokens: Tokens = field(default_factory=Tokens)
    viewers: Viewers = field(default_factory=Viewers)
    backbone: Backbone | None = None
    replies: Replies = field(default_factory=Replies)
    hub: LatestFanout = field(default_factory=LatestFanout)  # packs and banks: newest each
    sniff_hub: EventFanout = field(default_factory=EventFanout)
    raw_rx: dict[str, asyncio.Queue[bytes]] = field(default_factory=dict)  # pack -> collector
    raw_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tunnel_hub: EventFanout = field(default_factory=EventFanout)
    weather: Weather = field(default_factory=lambda: Weather(url=None, refresh=1800.0))
    config_file: Path | None = None  # the file the settings and setup pages write
    # started by `bmsgate run`, which applies a written file itself (--edit-config); else the
    # services (containers) read it at their next start
    supervised: bool = False
    # service (or "all") -> when a restart was last asked for: the System page says restarting
    restarts_asked: dict[str, datetime] = field(default_factory=dict)


def context(request: Request) -> Context:
    """The app's Context."""
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(context)]


def client_address(request: Request) -> str:
    """The client's address: the socket's peer, or what a trusted proxy forwarded (guard.py)."""
    return request.client.host if request.client else "unknown"


def is_local(address: str) -> bool:
    """Whether ``address`` is this machine (loopback)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def from_here(request: Request) -> bool:
    """Whether the request comes from this machine itself, not forwarded by an unknown proxy."""
    return not request.scope.get(DOUBTED, False) and is_local(client_address(request))


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def has_session(request: Request, ctx: Context) -> bool:
    """Whether the request carries a live session cookie (a browser that logged in)."""
    return ctx.sessions.valid(request.cookies.get(COOKIE), ctx.passwords.current())


VIEWER_PACKS: Final = "bmsgate.viewer_packs"  # scope key: the packs a limited request may see
# fmt: off
VIEWER_ROUTES: Final = frozenset({  # what a viewer may read: its packs, and what the pages need
    "/api/packs", "/api/overview", "/api/status", "/api/banks", "/api/events", "/api/protocols",
    "/api/sky",
    "/api/version", "/api/packs/{pack}/state", "/api/packs/{pack}/daily",
    "/api/packs/{pack}/health", "/api/packs/{pack}/history", "/api/packs/{pack}/days/{month}",
    "/api/packs/{pack}/csv/{day}", "/api/packs/{pack}/zip/{month}",
    "/api/packs/{pack}/energy/days/{month}", "/api/packs/{pack}/energy/months/{year}",
    "/api/packs/{pack}/energy/days/{month}.csv", "/api/packs/{pack}/energy/months/{year}.csv",
})
# the pages a viewer is shown: app.js's menu learns them from GET /api/auth/status (pages);
# every other page is the owner's, a 403
VIEWER_PAGES: Final = frozenset({
    "index.html", "battery.html", "monitor.html", "history.html", "health.html", "login.html",
    "energy.html",
})
# fmt: on


def viewer_of(request: Request, ctx: Context) -> Viewer | None:
    """The viewer account whose live session the request carries, if any."""
    cookie = request.cookies.get(COOKIE)
    name = ctx.sessions.user_of(cookie)
    found = ctx.viewers.find(name) if name else None
    if found is not None and ctx.sessions.valid(cookie, found.password_hash):
        return found
    return None


def shown(request: Request, pack: str) -> bool:
    """Whether the request may see ``pack`` (a viewer only its own; everyone else every pack)."""
    packs: frozenset[str] | None = request.scope.get(VIEWER_PACKS)
    return packs is None or pack in packs


def token_of(request: Request, ctx: Context) -> TokenInfo | None:
    """The live API token the request carries, if any."""
    return ctx.tokens.check(bearer(request))


def logged_in(request: Request, ctx: Context) -> bool:
    """Whether the request carries a live session or a valid API token."""
    return has_session(request, ctx) or token_of(request, ctx) is not None


def may_read(request: Request, ctx: Context) -> bool:
    """Whether the request may read (api.public_read, or a session)."""
    mode = ctx.settings.api.public_read
    if mode == "always" or (mode == "local" and from_here(request)):
        return True
    return logged_in(request, ctx)


def limited_to(request: Request, ctx: Context) -> tuple[str, tuple[str, ...]] | None:
    """(name, packs) when the request is a viewer's or a pack-limited token's, else None.

    The owner's session, public_read and an unlimited token are not limited.
    """
    mode = ctx.settings.api.public_read
    if mode == "always" or (mode == "local" and from_here(request)):
        return None
    if has_session(request, ctx):
        return None
    token = token_of(request, ctx)
    if token is not None:
        return None if token.packs is None else (f"the API token {token.name!r}", token.packs)
    viewer = viewer_of(request, ctx)
    return None if viewer is None else (viewer.name, viewer.packs)


def who(request: Request, ctx: Context) -> str:
    """Who sends ``request``, for the log: the token's name or the session, and the address."""
    address = client_address(request)
    info = token_of(request, ctx)
    if info is not None:
        return f"token {info.name!r} from {address}"
    if has_session(request, ctx):
        return f"the owner's session from {address}"
    viewer = viewer_of(request, ctx)
    if viewer is not None:
        return f"viewer {viewer.name!r} from {address}"
    return f"an anonymous client at {address}"


def audit(request: Request, ctx: Context, action: str) -> None:
    """Log a change made through the API with who asked (docs/security.md, "What is logged")."""
    log.info("%s, asked by %s", action, who(request, ctx))


def _refuse_limited(name: str) -> HTTPException:
    return HTTPException(status_code=403, detail=f"{name} may read only its packs")


def require_reader(request: Request, ctx: Ctx) -> None:
    """Reading needs a login unless api.public_read allows it; a viewer reads only its packs."""
    limited = limited_to(request, ctx)
    if limited is None:
        if may_read(request, ctx):
            return
        raise HTTPException(status_code=401, detail="log in first")
    name, packs = limited
    route = getattr(request.scope.get("route"), "path", "")
    pack = request.path_params.get("pack")
    if route not in VIEWER_ROUTES or (pack is not None and pack not in packs):
        raise _refuse_limited(name)
    request.scope[VIEWER_PACKS] = frozenset(packs)


def require_control(ctx: Ctx) -> None:
    """Changing a BMS (commands, the tunnel, raw frames) needs control.enabled."""
    if not ctx.settings.control.enabled:
        raise HTTPException(status_code=403, detail="control is disabled (control.enabled: false)")


def require_user(request: Request, ctx: Ctx) -> None:
    """Every state-changing request needs a login or an API token, from wherever it comes.

    A viewer, a read token and a pack-limited token get 403 here: these routes are the owner's.
    """
    if bearer(request) is not None:
        info = token_of(request, ctx)
        if info is None:
            raise HTTPException(status_code=401, detail="unknown or revoked API token")
        if info.packs is not None:
            raise _refuse_limited(f"the API token {info.name!r}")
        if info.scope != "control" and request.method in STATE_CHANGING:
            raise HTTPException(
                status_code=403, detail=f"the API token {info.name!r} may only read"
            )
        return
    if ctx.passwords.current() is None:
        raise HTTPException(status_code=401, detail="no password is set yet: set one first")
    _owner_only(request, ctx, "log in first")


def _owner_only(request: Request, ctx: Context, unknown: str) -> None:
    """Pass the owner's session; a viewer's is 403, anyone else's 401 saying ``unknown``."""
    if has_session(request, ctx):
        return
    viewer = viewer_of(request, ctx)
    if viewer is not None:
        raise _refuse_limited(viewer.name)
    raise HTTPException(status_code=401, detail=unknown)


def who_asks(request: Request, ctx: Ctx) -> str:
    """Who is behind a state-changing request, for the reader's log (never a secret).

    ``mqtt-USER:WHO:ADDRESS`` (models.requester): the broker user the API sends as, ``owner``
    (the session) or ``token-ID``, and the client's address.
    """
    token = token_of(request, ctx)
    asker = f"token-{token.id}" if token is not None else "owner"
    return requester(ctx.settings.mqtt.username, asker, client_address(request))


def require_session(request: Request, ctx: Ctx) -> None:
    """Managing API tokens needs a browser login: a token cannot make or revoke tokens."""
    _owner_only(request, ctx, "log in with the password first")


Reader = Depends(require_reader)
User = Depends(require_user)
Session = Depends(require_session)
Control = Depends(require_control)


M = TypeVar("M", bound=BaseModel)


async def ask(
    ctx: Context,
    spec: TopicSpec[M],
    name: str,
    make: Callable[[str], M],
    *,
    seconds: float,
    silent: str,
    prefix: str,
) -> Any:
    """Publish ``make(transaction)`` on ``spec``/``name`` and wait for the answer carrying it.

    A message ``make`` refuses is a 400 with its reason; no backbone or an unreachable broker a
    503; no answer within ``seconds`` a 504 saying ``silent``.
    """
    transaction = ctx.replies.new(prefix)
    try:
        message = make(transaction)
    except ValidationError as err:
        ctx.replies.cancel(transaction)
        msg = str(err.errors()[0]["msg"]).removeprefix("Value error, ")
        raise HTTPException(status_code=400, detail=msg) from None
    if ctx.backbone is None or not await ctx.backbone.publish(spec, name, message):
        ctx.replies.cancel(transaction)
        raise HTTPException(status_code=503, detail="the backbone broker is not reachable")
    try:
        return await ctx.replies.wait(transaction, seconds)
    except TimeoutError:
        raise HTTPException(status_code=504, detail=silent) from None

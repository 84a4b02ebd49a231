"""Shared state of the app and the dependencies that guard the routes."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import Settings

from .auth import COOKIE, PasswordStore, RateLimiter, Sessions
from .live import Hub, Replies
from .store import PackStore


@dataclass
class Context:
    """Everything a route may use."""

    settings: Settings
    store: PackStore
    passwords: PasswordStore
    sessions: Sessions
    limiter: RateLimiter
    backbone: Backbone | None = None
    replies: Replies = field(default_factory=Replies)
    hub: Hub = field(default_factory=Hub)
    sniff_hub: Hub = field(default_factory=Hub)
    raw_rx: dict[str, asyncio.Queue[bytes]] = field(default_factory=dict)  # pack -> collector
    raw_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    config_file: Path | None = None  # the file the settings and setup pages write


def context(request: Request) -> Context:
    """The app's Context."""
    ctx: Context = request.app.state.ctx
    return ctx


Ctx = Annotated[Context, Depends(context)]


def client_address(request: Request) -> str:
    """The client's address (behind a local proxy: what it forwarded, see uvicorn)."""
    return request.client.host if request.client else "unknown"


def is_local(address: str) -> bool:
    """Whether ``address`` is this machine (loopback)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def logged_in(request: Request, ctx: Context) -> bool:
    """Whether the request carries a live session."""
    return ctx.sessions.valid(request.cookies.get(COOKIE), ctx.passwords.current())


def may_read(request: Request, ctx: Context) -> bool:
    """Whether the request may read (api.public_read, or a session)."""
    mode = ctx.settings.api.public_read
    if mode == "always" or (mode == "local" and is_local(client_address(request))):
        return True
    return logged_in(request, ctx)


def require_reader(request: Request, ctx: Ctx) -> None:
    """Reading needs a login unless api.public_read allows it."""
    if not may_read(request, ctx):
        raise HTTPException(status_code=401, detail="log in first")


def require_control(ctx: Ctx) -> None:
    """Changing a BMS (commands, the tunnel, raw frames) needs control.enabled."""
    if not ctx.settings.control.enabled:
        raise HTTPException(status_code=403, detail="control is disabled (control.enabled: false)")


def require_user(request: Request, ctx: Ctx) -> None:
    """Every state-changing request needs a login, from wherever it comes."""
    if ctx.passwords.current() is None:
        raise HTTPException(status_code=401, detail="no password is set yet: set one first")
    if not logged_in(request, ctx):
        raise HTTPException(status_code=401, detail="log in first")


Reader = Depends(require_reader)
User = Depends(require_user)
Control = Depends(require_control)

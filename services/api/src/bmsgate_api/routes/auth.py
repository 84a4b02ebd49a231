"""Login, logout, the first password and changing it; API tokens for scripts."""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field

from bmsgate_common.timezones import site_zone, zone_name

from ..auth import (
    COOKIE,
    MAX_PASSWORD,
    PasswordError,
    TokenLimitError,
    hash_password,
    verify_password,
)
from ..deps import (
    Ctx,
    Session,
    User,
    audit,
    client_address,
    logged_in,
    may_read,
    viewer_of,
)

router = APIRouter(prefix="/api/auth", tags=["auth"])
UNKNOWN_USER = hash_password(secrets.token_urlsafe(16))  # checked for a name that is no viewer
log = logging.getLogger(__name__)


class AuthStatus(BaseModel):
    """What the pages need to know before they show anything."""

    setup_required: bool = Field(description="no password yet: the first visit sets one")
    logged_in: bool
    can_read: bool = Field(description="reading is allowed (public_read or a session)")
    viewer: str | None = Field(
        default=None, description="the viewer account logged in (it reads only its packs)"
    )
    password_managed: bool = Field(description="the password comes from the configuration")
    control_enabled: bool
    title: str
    logo: str | None = Field(default=None, description="URL of the configured logo")
    timezone: str = Field(description="the site's IANA zone; the pages show times in it")


class Password(BaseModel):
    """A password."""

    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class Login(Password):
    """The owner's password, or a viewer's name and password (api.viewers)."""

    user: str | None = Field(default=None, max_length=32, description="a viewer's name")


class NewPassword(BaseModel):
    """Changing the password."""

    old_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD)


def _start_session(
    request: Request, response: Response, ctx: Ctx, encoded: str, user: str = ""
) -> None:
    token = ctx.sessions.issue(encoded, user=user)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(ctx.sessions.lifetime),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


@router.get("/status")
async def status(request: Request, ctx: Ctx) -> AuthStatus:
    """Whether a password exists, whether this browser is logged in, what it may do."""
    logo = ctx.settings.api.logo
    viewer = viewer_of(request, ctx)
    return AuthStatus(
        setup_required=ctx.passwords.current() is None,
        logged_in=logged_in(request, ctx) or viewer is not None,
        can_read=may_read(request, ctx) or viewer is not None,
        viewer=viewer.name if viewer else None,
        password_managed=ctx.passwords.managed,
        control_enabled=ctx.settings.control.enabled,
        title=ctx.settings.api.title,
        logo="api/branding/logo" if logo and logo.is_file() else None,  # no broken image
        timezone=zone_name(site_zone(ctx.settings)),
    )


@router.post("/setup", status_code=204, responses={409: {"description": "a password exists"}})
async def setup(body: Password, request: Request, response: Response, ctx: Ctx) -> None:
    """Set the first password (only while none exists) and log in."""
    if ctx.passwords.current() is not None:
        raise HTTPException(status_code=409, detail="a password is already set: log in")
    try:
        encoded = await asyncio.to_thread(ctx.passwords.set, body.password)
    except PasswordError as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    _start_session(request, response, ctx, encoded)


@router.post(
    "/login",
    status_code=204,
    responses={401: {"description": "wrong password"}, 429: {"description": "too many tries"}},
)
async def login(body: Login, request: Request, response: Response, ctx: Ctx) -> None:
    """Log in: a session cookie (HttpOnly, SameSite=Strict) for api.session_hours."""
    client = client_address(request)
    encoded = ctx.passwords.current()
    if encoded is None:
        raise HTTPException(status_code=409, detail="no password is set yet: set one first")
    user = ""
    if body.user:  # a viewer; an unknown name costs a hash like a known one
        user = body.user
        viewer = next((v for v in ctx.settings.api.viewers if v.name == user), None)
        encoded = viewer.password_hash.get_secret_value() if viewer else UNKNOWN_USER
    wait = ctx.limiter.begin(client)  # counted before the password is checked: atomic
    if wait > 0:
        raise HTTPException(
            status_code=429,
            detail=f"too many failed logins: try again in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    if not await asyncio.to_thread(verify_password, body.password, encoded):
        log.warning(
            "failed login from %s%s", client, ": locked out" if ctx.limiter.locked(client) else ""
        )
        raise HTTPException(status_code=401, detail="wrong password")
    ctx.limiter.succeeded(client)
    _start_session(request, response, ctx, encoded, user)


@router.post("/logout", status_code=204)
async def logout(request: Request, response: Response, ctx: Ctx) -> None:
    """End this browser's session (only a live one is remembered as revoked)."""
    cookie = request.cookies.get(COOKIE)
    if ctx.sessions.valid(cookie, ctx.passwords.current()) or viewer_of(request, ctx):
        ctx.sessions.revoke(cookie)
    response.delete_cookie(COOKIE, path="/")


@router.post("/password", status_code=204, dependencies=[User])
async def change_password(
    body: NewPassword, request: Request, response: Response, ctx: Ctx
) -> None:
    """Change the password; every other session ends."""
    encoded = ctx.passwords.current() or ""
    if not await asyncio.to_thread(verify_password, body.old_password, encoded):
        ctx.limiter.failed(client_address(request))
        log.warning("wrong old password in a password change from %s", client_address(request))
        raise HTTPException(status_code=401, detail="the old password is wrong")
    try:
        encoded = await asyncio.to_thread(ctx.passwords.set, body.new_password)
    except PasswordError as err:
        code = 409 if ctx.passwords.managed else 400
        raise HTTPException(status_code=code, detail=str(err)) from None
    audit(request, ctx, "password changed")
    _start_session(request, response, ctx, encoded)


class TokenRequest(BaseModel):
    """A new API token: a name that says which script uses it."""

    name: str = Field(min_length=1, max_length=60, pattern=r"^[^\x00-\x1f]+$")
    scope: Literal["read", "control"] = Field(
        default="read", description="read: reading only; control: everything a login may do"
    )


class TokenListed(BaseModel):
    """An API token as listed (the token itself is shown only when it is made)."""

    id: str
    name: str
    created: datetime
    last_used: datetime | None = None
    scope: Literal["read", "control"] = "control"


class TokenMade(TokenListed):
    """A new token: send it as ``Authorization: Bearer <token>``; it is not shown again."""

    token: str


def _epoch(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@router.get("/tokens", dependencies=[Session])
async def list_tokens(ctx: Ctx) -> list[TokenListed]:
    """Every API token (names, when made and last used; never the tokens)."""
    return [
        TokenListed(
            id=i.id,
            name=i.name,
            created=_epoch(i.created),
            last_used=_epoch(i.last_used),
            scope="read" if i.scope == "read" else "control",
        )
        for i in ctx.tokens.listed()
    ]


@router.post("/tokens", status_code=201, dependencies=[Session], responses={409: {}})
async def make_token(body: TokenRequest, request: Request, ctx: Ctx) -> TokenMade:
    """Make an API token (read-only, or control: a login's rights); shown in this answer only."""
    try:
        info, token = ctx.tokens.create(body.name.strip(), scope=body.scope)
    except TokenLimitError as err:
        raise HTTPException(status_code=409, detail=str(err)) from None
    audit(request, ctx, f"API token {info.name!r} ({info.id}, {info.scope}) made")
    return TokenMade(
        id=info.id, name=info.name, created=_epoch(info.created), scope=body.scope, token=token
    )


@router.delete("/tokens/{token_id}", status_code=204, dependencies=[Session], responses={404: {}})
async def revoke_token(
    token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{8}$")], request: Request, ctx: Ctx
) -> None:
    """Revoke an API token: scripts using it get 401 from now on."""
    if not ctx.tokens.revoke(token_id):
        raise HTTPException(status_code=404, detail=f"no token {token_id!r}")
    audit(request, ctx, f"API token {token_id} revoked")

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
    AccountError,
    PasswordError,
    TokenLimitError,
    Viewer,
    hash_password,
    verify_password,
)
from ..deps import (
    VIEWER_PAGES,
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
    pages: list[str] | None = Field(
        default=None,
        description="the pages a viewer may open (every other page answers it 403); null: all",
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
        pages=sorted(VIEWER_PAGES) if viewer else None,
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
        viewer = ctx.viewers.find(user)
        encoded = viewer.password_hash if viewer else UNKNOWN_USER
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


PackList = Annotated[
    list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]],
    Field(min_length=1, max_length=200),
]


def _known_packs(ctx: Ctx, packs: list[str]) -> tuple[str, ...]:
    """``packs`` without repeats, if each is configured or seen on the backbone; else a 422."""
    configured = {p.id for b in ctx.settings.buses for p in b.packs}
    known = configured | {b.id for b in ctx.settings.banks} | set(ctx.store.packs())
    unknown = sorted(set(packs) - known)
    if unknown:
        raise HTTPException(status_code=422, detail=f"packs: unknown {', '.join(unknown)}")
    return tuple(dict.fromkeys(packs))


class TokenRequest(BaseModel):
    """A new API token: a name that says which script uses it."""

    name: str = Field(min_length=1, max_length=60, pattern=r"^[^\x00-\x1f]+$")
    scope: Literal["read", "control"] = Field(
        default="read", description="read: reading only; control: everything a login may do"
    )
    packs: PackList | None = Field(
        default=None, description="a read token limited to these packs and banks; none: all"
    )


class TokenListed(BaseModel):
    """An API token as listed (the token itself is shown only when it is made)."""

    id: str
    name: str
    created: datetime
    last_used: datetime | None = None
    scope: Literal["read", "control"] = "control"
    packs: list[str] | None = Field(default=None, description="the packs it may read; none: all")


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
            packs=None if i.packs is None else list(i.packs),
        )
        for i in ctx.tokens.listed()
    ]


@router.post("/tokens", status_code=201, dependencies=[Session], responses={409: {}})
async def make_token(body: TokenRequest, request: Request, ctx: Ctx) -> TokenMade:
    """Make an API token (read-only, or control: a login's rights); shown in this answer only."""
    packs = None if body.packs is None else _known_packs(ctx, body.packs)
    if packs is not None and body.scope != "read":
        raise HTTPException(status_code=422, detail="a control token sees every pack")
    try:
        info, token = ctx.tokens.create(body.name.strip(), scope=body.scope, packs=packs)
    except TokenLimitError as err:
        raise HTTPException(status_code=409, detail=str(err)) from None
    only = f", packs {', '.join(packs)}" if packs else ""
    audit(request, ctx, f"API token {info.name!r} ({info.id}, {info.scope}{only}) made")
    return TokenMade(
        id=info.id,
        name=info.name,
        created=_epoch(info.created),
        scope=body.scope,
        packs=None if packs is None else list(packs),
        token=token,
    )


@router.delete("/tokens/{token_id}", status_code=204, dependencies=[Session], responses={404: {}})
async def revoke_token(
    token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{8}$")], request: Request, ctx: Ctx
) -> None:
    """Revoke an API token: scripts using it get 401 from now on."""
    if not ctx.tokens.revoke(token_id):
        raise HTTPException(status_code=404, detail=f"no token {token_id!r}")
    audit(request, ctx, f"API token {token_id} revoked")


class ViewerRequest(BaseModel):
    """A new viewer account: its login name, password and the packs it may read."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$", description="the login name")
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    packs: PackList = Field(description="the pack and bank ids it may read")


class ViewerListed(BaseModel):
    """A viewer account as listed (never its password or hash)."""

    name: str
    packs: list[str]
    configured: bool = Field(description="set in api.viewers: changed only in the configuration")
    created: datetime | None = None


def _listed(viewer: Viewer) -> ViewerListed:
    return ViewerListed(
        name=viewer.name,
        packs=list(viewer.packs),
        configured=viewer.configured,
        created=_epoch(viewer.created),
    )


@router.get("/viewers", dependencies=[Session])
async def list_viewers(ctx: Ctx) -> list[ViewerListed]:
    """Every viewer account: those of api.viewers and those made here."""
    return [_listed(v) for v in ctx.viewers.listed()]


@router.post("/viewers", status_code=201, dependencies=[Session], responses={409: {}})
async def make_viewer(body: ViewerRequest, request: Request, ctx: Ctx) -> ViewerListed:
    """Make a viewer account: it logs in with its name and reads only its packs."""
    packs = _known_packs(ctx, body.packs)
    try:
        viewer = await asyncio.to_thread(ctx.viewers.create, body.name, body.password, packs)
    except PasswordError as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    except AccountError as err:
        raise HTTPException(status_code=409, detail=str(err)) from None
    audit(request, ctx, f"viewer account {viewer.name!r} (packs {', '.join(packs)}) made")
    return _listed(viewer)


@router.delete(
    "/viewers/{name}", status_code=204, dependencies=[Session], responses={404: {}, 409: {}}
)
async def delete_viewer(
    name: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$")], request: Request, ctx: Ctx
) -> None:
    """Delete a viewer account made here: its sessions end with it."""
    try:
        found = ctx.viewers.delete(name)
    except AccountError as err:
        raise HTTPException(status_code=409, detail=str(err)) from None
    if not found:
        raise HTTPException(status_code=404, detail=f"no viewer account {name!r}")
    audit(request, ctx, f"viewer account {name!r} deleted")

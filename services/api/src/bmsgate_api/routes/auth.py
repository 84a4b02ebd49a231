"""Login, logout, the first password and changing it."""

from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from ..auth import COOKIE, MAX_PASSWORD, PasswordError, verify_password
from ..deps import Ctx, User, client_address, logged_in, may_read

router = APIRouter(prefix="/api/auth", tags=["auth"])


class AuthStatus(BaseModel):
    """What the pages need to know before they show anything."""

    setup_required: bool = Field(description="no password yet: the first visit sets one")
    logged_in: bool
    can_read: bool = Field(description="reading is allowed (public_read or a session)")
    password_managed: bool = Field(description="the password comes from the configuration")
    control_enabled: bool
    title: str


class Password(BaseModel):
    """A password."""

    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class NewPassword(BaseModel):
    """Changing the password."""

    old_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    new_password: str = Field(min_length=1, max_length=MAX_PASSWORD)


def _start_session(request: Request, response: Response, ctx: Ctx, encoded: str) -> None:
    token = ctx.sessions.issue(encoded)
    response.set_cookie(
        COOKIE, token, max_age=int(ctx.sessions.lifetime), httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path="/",
    )  # fmt: skip


@router.get("/status")
async def status(request: Request, ctx: Ctx) -> AuthStatus:
    """Whether a password exists, whether this browser is logged in, what it may do."""
    return AuthStatus(
        setup_required=ctx.passwords.current() is None,
        logged_in=logged_in(request, ctx),
        can_read=may_read(request, ctx),
        password_managed=ctx.passwords.managed,
        control_enabled=ctx.settings.control.enabled,
        title=ctx.settings.api.title,
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
async def login(body: Password, request: Request, response: Response, ctx: Ctx) -> None:
    """Log in: a session cookie (HttpOnly, SameSite=Strict) for api.session_hours."""
    client = client_address(request)
    wait = ctx.limiter.retry_after(client)
    if wait > 0:
        raise HTTPException(
            status_code=429,
            detail=f"too many failed logins: try again in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    encoded = ctx.passwords.current()
    if encoded is None:
        raise HTTPException(status_code=409, detail="no password is set yet: set one first")
    if not await asyncio.to_thread(verify_password, body.password, encoded):
        ctx.limiter.failed(client)
        raise HTTPException(status_code=401, detail="wrong password")
    ctx.limiter.succeeded(client)
    _start_session(request, response, ctx, encoded)


@router.post("/logout", status_code=204)
async def logout(request: Request, response: Response, ctx: Ctx) -> None:
    """End this browser's session."""
    ctx.sessions.revoke(request.cookies.get(COOKIE))
    response.delete_cookie(COOKIE, path="/")


@router.post("/password", status_code=204, dependencies=[User])
async def change_password(
    body: NewPassword, request: Request, response: Response, ctx: Ctx
) -> None:
    """Change the password; every other session ends."""
    encoded = ctx.passwords.current() or ""
    if not await asyncio.to_thread(verify_password, body.old_password, encoded):
        ctx.limiter.failed(client_address(request))
        raise HTTPException(status_code=401, detail="the old password is wrong")
    try:
        encoded = await asyncio.to_thread(ctx.passwords.set, body.new_password)
    except PasswordError as err:
        code = 409 if ctx.passwords.managed else 400
        raise HTTPException(status_code=code, detail=str(err)) from None
    _start_session(request, response, ctx, encoded)

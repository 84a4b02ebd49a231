"""The System page: services, outputs, storage, recent log lines, and the factory reset."""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from bmsgate_common import topics
from bmsgate_common.config_file import mask_urls, read_raw, revealed, secret_keys, write_private
from bmsgate_common.config_view import MASK
from bmsgate_common.models import LogLines, LogRequest, utcnow
from bmsgate_common.settings import ConfigError
from bmsgate_common.upgrade import BACKUPS, how_to_upgrade, install_method

from ..auth import verify_password
from ..deps import Ctx, User, ask, audit, client_address
from ..system import SystemView, outputs_view, services_view, storage_view

router = APIRouter(prefix="/api", tags=["system"])
# what a factory reset keeps: how to reach the broker, where the data is, how to log in
KEPT: dict[str, tuple[str, ...]] = {
    "mqtt": (),
    "data_dir": (),
    "api": ("password_hash", "password_file"),
}


@router.get("/system", dependencies=[User], responses={401: {}})
async def system(ctx: Ctx) -> SystemView:
    """Every service's state, each output's connection, the archive's storage."""
    now = utcnow()
    statuses = dict(ctx.store.services)
    backbone = ctx.backbone.connected if ctx.backbone else False
    plan = how_to_upgrade(install_method())
    return SystemView(
        version=plan.version,
        install=plan.method,
        services=services_view(ctx.settings, statuses, now, ctx.restarts_asked),
        outputs=outputs_view(ctx.settings, statuses, backbone),
        storage=storage_view(statuses),
    )


LOG_WAIT = 3.0  # [s] a running service answers at once


class ServiceLog(BaseModel):
    """A service's recent log lines, or why they cannot be had."""

    service: str
    reachable: bool
    lines: list[str]
    note: str = Field(description="where the lines are when the service does not answer")


def masked_lines(lines: list[str], secrets: list[str]) -> list[str]:
    """``lines`` with every configured secret and any URL's credentials masked."""
    out = []
    for line in lines:
        for secret in secrets:
            line = line.replace(secret, MASK)
        out.append(mask_urls(line))
    return out


def secret_values(ctx: Ctx) -> list[str]:
    """The configured secrets' values, longest first (a short one may be part of a long one)."""
    data = revealed(ctx.settings)
    values = set()
    for key in secret_keys(data):
        node: Any = data
        for part in key.split("."):
            node = node[int(part)] if isinstance(node, list) else node.get(part)
        if isinstance(node, str) and len(node) >= 4:
            values.add(node)
    return sorted(values, key=len, reverse=True)


@router.get("/system/logs/{service}", dependencies=[User], responses={401: {}})
async def service_log(
    ctx: Ctx, service: str = PathParam(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
) -> ServiceLog:
    """The newest lines a service logged (it keeps 500), asked for over the backbone."""
    try:
        reply: LogLines = await ask(
            ctx,
            topics.SERVICE_LOGS,
            service,
            lambda t: LogRequest(transaction=t, lines=300),
            seconds=LOG_WAIT,
            silent="no answer",
            prefix="logs",
        )
    except HTTPException as err:
        why = "the backbone is not reachable" if err.status_code == 503 else "it does not answer"
        note = (
            f"The log of {service} is not reachable: {why} (stopped, hung or not started). "
            "What it wrote is where its process writes: the terminal or journal of bmsgate run "
            f"(journalctl -u bmsgate), or docker compose logs of its container."
        )
        return ServiceLog(service=service, reachable=False, lines=[], note=note)
    lines = masked_lines(reply.lines, secret_values(ctx))
    return ServiceLog(service=service, reachable=True, lines=lines, note="")


class ResetRequest(BaseModel):
    """The owner's password again: a factory reset cannot be undone from the web UI."""

    password: str = Field(max_length=1024)


class ResetDone(BaseModel):
    """Where the previous configuration was kept, and what happens now."""

    kept_copy: str
    message: str


def factory_file(raw: dict[str, Any]) -> dict[str, Any]:
    """The configuration a factory reset leaves: only the KEPT keys of ``raw``."""
    out: dict[str, Any] = {}
    for section, keys in KEPT.items():
        if section not in raw:
            continue
        value = raw[section]
        if keys and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k in keys}
        if value not in ({}, None):
            out[section] = value
    return out


def _reset(path: Path, data_dir: Path, now: datetime) -> Path:
    """Copy the file into data_dir/backups (0600), then write the factory file in its place."""
    raw = read_raw(path) if path.exists() else {}
    folder = data_dir / BACKUPS
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / f"settings-before-reset-{now:%Y%m%dT%H%M%SZ}.yaml"
    if path.exists():
        shutil.copy2(path, copy)
        copy.chmod(0o600)
    write_private(path, factory_file(raw))
    return copy


@router.post(
    "/system/factory-reset", dependencies=[User], responses={401: {}, 403: {}, 409: {}, 429: {}}
)
async def factory_reset(body: ResetRequest, request: Request, ctx: Ctx) -> ResetDone:
    """Forget every setting but the broker, the data folder and the password; data is kept."""
    path = ctx.config_file
    if path is None:
        raise HTTPException(status_code=409, detail="no configuration file was given (--config)")
    client = client_address(request)
    encoded = ctx.passwords.current() or ""
    wait = ctx.limiter.begin(client)
    if wait > 0:
        raise HTTPException(status_code=429, detail="too many wrong passwords: try again later")
    if not await asyncio.to_thread(verify_password, body.password, encoded):
        # 403, not 401: the session is fine (a 401 sends the page to the login)
        raise HTTPException(status_code=403, detail="wrong password")
    ctx.limiter.succeeded(client)
    try:
        copy = await asyncio.to_thread(_reset, path, ctx.settings.data_dir, utcnow())
    except ConfigError as err:
        raise HTTPException(status_code=409, detail=str(err)) from None
    except OSError as err:
        raise HTTPException(status_code=409, detail=f"{path}: {err.strerror}") from None
    audit(request, ctx, f"factory reset of {path} (previous file kept as {copy})")
    how = "bmsgate run applies it now" if ctx.supervised else "restart the services"
    return ResetDone(
        kept_copy=str(copy),
        message=f"settings reset; {how}, then set bmsgate up again (the archive is kept)",
    )

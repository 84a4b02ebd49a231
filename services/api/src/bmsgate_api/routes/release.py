"""The installed version and how to upgrade it: the footer, the Settings page."""

from __future__ import annotations

import asyncio
import sqlite3

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from bmsgate_common.upgrade import backup, how_to_upgrade, install_method

from ..deps import Ctx, Reader, User

router = APIRouter(prefix="/api", tags=["release"])


class VersionInfo(BaseModel):
    """What runs here and how a newer one is installed the way this one was."""

    version: str = Field(description="bmsgate's version (PEP 440), from the package metadata")
    install: str = Field(description="addon, container, git, uv-tool, pipx or pip")
    commands: list[str] = Field(description="the commands that install a newer version")
    note: str = Field(description="where to run them and what follows")


class Backup(BaseModel):
    """Where the copy of the configuration and data was made."""

    path: str


@router.get("/version", dependencies=[Reader])
async def version() -> VersionInfo:
    """The installed version and the way to upgrade it."""
    plan = how_to_upgrade(install_method())
    return VersionInfo(
        version=plan.version, install=plan.method, commands=list(plan.commands), note=plan.note
    )


@router.post("/upgrade/backup", dependencies=[User], responses={401: {}, 507: {}})
async def make_backup(ctx: Ctx) -> Backup:
    """Copy the configuration file and every data file into data_dir/backups, before upgrading."""
    try:
        folder = await asyncio.to_thread(backup, ctx.settings.data_dir, ctx.config_file)
    except (OSError, sqlite3.Error) as err:
        raise HTTPException(status_code=507, detail=f"the backup failed: {err}") from None
    return Backup(path=str(folder))

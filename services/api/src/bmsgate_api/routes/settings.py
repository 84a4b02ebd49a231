"""The effective configuration, every secret masked: to read, and to download as YAML."""

from __future__ import annotations

import re
from typing import Any

import yaml
from fastapi import APIRouter
from fastapi.responses import Response

from bmsgate_common.config_view import MASK, plain

from ..deps import Ctx, User

router = APIRouter(prefix="/api", tags=["settings"])
_USERINFO = re.compile(r"(?P<scheme>\w[\w+.-]*://)[^/@\s]*@")


def masked(value: Any) -> Any:
    """``plain(secrets=False)``, and credentials in any URL masked too (``mqtt://u:p@host``)."""
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str):
        return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", value)
    return value


@router.get("/settings", dependencies=[User], responses={401: {"description": "not logged in"}})
async def settings(ctx: Ctx) -> dict[str, Any]:
    """The configuration the services run with (file, environment, defaults), secrets masked."""
    data: dict[str, Any] = masked(plain(ctx.settings, secrets=False))
    return data


@router.get(
    "/settings/download",
    dependencies=[User],
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}}}, 401: {"description": "not logged in"}},
)
async def download(ctx: Ctx) -> Response:
    """The same as YAML, ``bmsgate-settings.yaml``; masked secrets must be filled in to reuse it."""
    text = "# bmsgate effective configuration; secrets are masked (" + MASK + ")\n"
    text += yaml.safe_dump(
        masked(plain(ctx.settings, secrets=False)), sort_keys=False, allow_unicode=True
    )
    return Response(
        content=text,
        media_type="application/yaml",
        headers={"Content-Disposition": 'attachment; filename="bmsgate-settings.yaml"'},
    )

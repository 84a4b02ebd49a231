"""The effective configuration, every secret masked: to read, and to download as YAML."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter
from fastapi.responses import Response

from bmsgate_common.config_file import effective_view
from bmsgate_common.config_view import MASK

from ..deps import Ctx, User

router = APIRouter(prefix="/api", tags=["settings"])


@router.get("/settings", dependencies=[User], responses={401: {"description": "not logged in"}})
async def settings(ctx: Ctx) -> dict[str, Any]:
    """The configuration the services run with (file, environment, defaults), secrets masked."""
    return effective_view(ctx.settings)


@router.get(
    "/settings/download",
    dependencies=[User],
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}}}, 401: {"description": "not logged in"}},
)
async def download(ctx: Ctx) -> Response:
    """The same as YAML, ``bmsgate-settings.yaml``; masked secrets must be filled in to reuse it."""
    text = "# bmsgate effective configuration; secrets are masked (" + MASK + ")\n"
    text += yaml.safe_dump(effective_view(ctx.settings), sort_keys=False, allow_unicode=True)
    return Response(
        content=text,
        media_type="application/yaml",
        headers={"Content-Disposition": 'attachment; filename="bmsgate-settings.yaml"'},
    )

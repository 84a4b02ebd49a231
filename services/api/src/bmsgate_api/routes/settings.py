"""Settings: the effective configuration, and the configuration file to edit, restore, apply.

Reading shows every secret masked. Writing (login required) takes YAML, puts the stored secret
back wherever a masked value came back unchanged, validates the whole file with the services'
own Settings model and writes it atomically (mode 0600): a bad key or value is a 400 with one
line naming it, and the file stays as it was. A password typed where the file keeps a hash (the
web UI's, a viewer's) is written as its hash. ``bmsgate run`` applies a written file at once;
in containers, restart the services (POST /api/services/restart).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from bmsgate_common import topics
from bmsgate_common.config_file import (
    assign,
    effective_view,
    keep_secrets,
    leaves,
    masked,
    parse_yaml,
    read_raw,
    revealed,
    save,
    write_private,
)
from bmsgate_common.config_migrate import migrate_config
from bmsgate_common.config_view import MASK
from bmsgate_common.models import ServiceRestart, utcnow
from bmsgate_common.service_table import restarts
from bmsgate_common.settings import ConfigError, Settings, explain

from ..auth import hashed_passwords
from ..deps import Ctx, User, audit
from ..forms import field_errors, form_schema

router = APIRouter(prefix="/api", tags=["settings"])
MAX_FILE = 256 * 1024  # [bytes] a configuration file is a few kB
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "invalid: one line naming the key"},
    401: {},
    409: {},
}


class ConfigFile(BaseModel):
    """The configuration file as its owner wrote it, secrets masked."""

    path: str | None = Field(description="null: the API was started without a file")
    exists: bool
    yaml: str = Field(description="the file's text as YAML, every secret masked")


class ConfigText(BaseModel):
    """A whole configuration file as YAML; masked secrets keep the stored values."""

    yaml: str = Field(max_length=MAX_FILE)


class Saved(BaseModel):
    """The outcome of a write."""

    path: str
    message: str


class FormValues(BaseModel):
    """What the forms set: the file's data as JSON; a masked secret keeps the stored value."""

    values: dict[str, Any]
    origins: dict[str, list[int | None]] = Field(
        default_factory=dict,
        description="dotted key of a list -> where each entry was in the file (null: added), "
        "so a masked secret stays with its own entry after a remove or a move",
    )
    revision: str | None = Field(
        default=None,
        max_length=64,
        description="the file's revision the values came from (GET's `revision`); a file "
        "changed since is refused (409), so nothing written meanwhile is lost",
    )


class FieldError(BaseModel):
    """A problem of one field, worded for beside it."""

    key: str = Field(description="dotted key, e.g. buses.0.packs.1.address; empty: the file")
    msg: str


class FormSaved(Saved):
    """A save from the forms, and what it does to the services."""

    restarted: list[str] = Field(description="services that restart with the new settings")
    started: list[str] = Field(description="services the new settings start")
    stopped: list[str] = Field(description="services the new settings leave nothing to do")
    applies_now: bool = Field(
        description="true: `bmsgate run` restarts them now; false: restart them (containers)"
    )
    revision: str = Field(description="the written file's revision, for the next save")


class RestartRequest(BaseModel):
    """Which service to restart: a name as in its status (``reader-0``, ``api``) or ``all``."""

    service: str = Field(default="all", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")


def config_file(ctx: Ctx) -> Path | None:
    """The file the settings and setup pages write."""
    return ctx.config_file


def revision(path: Path | None) -> str:
    """What the file holds now, in short: its bytes' SHA-256 ("" while there is no file)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else ""
    except FileNotFoundError:
        return ""


def file_needs_setup(path: Path | None) -> bool:
    """True while there is no file, or no bus in it."""
    if path is None:
        return False
    try:
        return not read_raw(path).get("buses")
    except ConfigError:
        return False  # a broken file is for the Settings page, not for a new setup


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


@router.get("/settings/file", dependencies=[User], responses={401: {}})
async def read_file(ctx: Ctx) -> ConfigFile:
    """The configuration file to edit (only what it sets; defaults stay implicit)."""
    path = config_file(ctx)
    if path is None:
        return ConfigFile(path=None, exists=False, yaml="")
    try:
        raw = read_raw(path)
    except ConfigError as err:
        raise HTTPException(status_code=409, detail=str(err)) from None
    text = yaml.safe_dump(masked(raw), sort_keys=False, allow_unicode=True) if raw else ""
    return ConfigFile(path=str(path), exists=path.exists(), yaml=text)


async def _write(ctx: Ctx, text: str, source: str) -> Saved:
    path = config_file(ctx)
    if path is None:
        raise HTTPException(status_code=409, detail="no configuration file was given (--config)")
    try:
        new = parse_yaml(text, source)
        data = keep_secrets(new, read_raw(path))
        weak = await asyncio.to_thread(hashed_passwords, data)
        if weak:
            raise ConfigError(f"{weak[0][0]}: {weak[0][1]}")
        await asyncio.to_thread(save, path, data)
    except ConfigError as err:
        raise HTTPException(status_code=400, detail=str(err).replace(str(path), source)) from None
    except OSError as err:
        raise HTTPException(status_code=409, detail=f"{path}: {err.strerror}") from None
    return Saved(
        path=str(path),
        message=f"saved {path.name}; bmsgate run applies it now, containers after a restart",
    )


@router.get("/settings/form", dependencies=[User], responses={401: {}, 409: {}})
async def read_form(ctx: Ctx) -> dict[str, Any]:
    """The forms: the Settings model as fields in groups, and the file's values, secrets masked."""
    path = config_file(ctx)
    try:
        raw = read_raw(path) if path is not None else {}
    except ConfigError as err:
        raise HTTPException(status_code=409, detail=str(err)) from None
    return {
        "schema": form_schema(),
        "values": masked(raw),
        "path": str(path) if path else None,
        "applies_now": ctx.supervised,
        "revision": revision(path),
    }


_PLACEHOLDER_HASH = "scrypt$16384$8$1$AA$AA"  # where a password is refused, for checking the rest


class _Invalid(Exception):
    """The forms' values do not validate; the message is one line."""


def _settings_or_none(raw: dict[str, Any]) -> Settings | None:
    try:
        return Settings.model_validate(raw)
    except ValidationError:
        return None


@router.put(
    "/settings/form",
    dependencies=[User],
    response_model=FormSaved,
    responses={
        400: {"description": "invalid: `detail` in one line, `errors` per field"},
        401: {},
        409: {"description": "no file given, or the file changed since `revision`"},
    },
)
async def write_form(body: FormValues, request: Request, ctx: Ctx) -> FormSaved | JSONResponse:
    """Save the forms' values as the configuration file, validated field by field first."""
    path = config_file(ctx)
    if path is None:
        raise HTTPException(status_code=409, detail="no configuration file was given (--config)")
    if body.revision is not None and body.revision != revision(path):
        # the entries' places (origins) and every other value came from another file
        raise HTTPException(
            status_code=409,
            detail="the configuration file was changed since this page was loaded: "
            "reload the page and make the change again",
        )
    try:
        stored = read_raw(path)
    except ConfigError:
        stored = {}  # a broken file is replaced by what the forms hold
    data = migrate_config(keep_secrets(body.values, stored, body.origins))[0]
    weak = await asyncio.to_thread(hashed_passwords, data)  # typed passwords: only their hashes
    masked_keys = [k for k, v in leaves(data) if isinstance(v, str) and MASK in v]
    problems = [{"key": k, "msg": why} for k, why in weak]
    try:
        if masked_keys:
            problems = [{"key": k, "msg": "give the secret (none is stored)"} for k in masked_keys]
            raise _Invalid(f"'{masked_keys[0]}' holds a masked secret; give the real value")
        checked = data
        for key, _ in weak:  # the other fields are checked too, as if it were good
            checked = assign(checked, key, _PLACEHOLDER_HASH)
        try:
            cfg = Settings.model_validate(checked)
        except ValidationError as err:
            problems += field_errors(err)
            raise _Invalid(explain(err)) from None
        if weak:
            raise _Invalid(f"'{weak[0][0]}': {weak[0][1]}")
    except _Invalid as bad:
        return JSONResponse(status_code=400, content={"detail": str(bad), "errors": problems})
    before = _settings_or_none(stored)
    try:
        await asyncio.to_thread(write_private, path, data)
    except OSError as err:
        raise HTTPException(status_code=409, detail=f"{path}: {err.strerror}") from None
    old = revealed(before) if before is not None else {}
    restarted, started, stopped = restarts(old, revealed(cfg))
    if before is None:  # nothing ran with the old file as it was: everything starts afresh
        restarted, started = [*restarted, *started], []
    # the api last: asked to restart itself, it cuts off the page's requests for the others
    restarted.sort(key=lambda name: name == "api")
    audit(request, ctx, f"settings file {path} saved from the forms")
    if ctx.supervised:  # bmsgate run restarts them now: the System page says so meanwhile
        ctx.restarts_asked.update(dict.fromkeys([*restarted, *started], utcnow()))
    return FormSaved(
        path=str(path),
        message=f"saved {path.name}",
        restarted=restarted,
        started=started,
        stopped=stopped,
        applies_now=ctx.supervised,
        revision=revision(path),
    )


@router.put("/settings/file", dependencies=[User], responses=WRITE_ERRORS)
async def write_file(body: ConfigText, request: Request, ctx: Ctx) -> Saved:
    """Replace the configuration file (validated first; masked secrets keep their values)."""
    saved = await _write(ctx, body.yaml, "the edited settings")
    audit(request, ctx, f"settings file {saved.path} saved")
    return saved


@router.post(
    "/settings/restore",
    dependencies=[User],
    responses=WRITE_ERRORS,
    openapi_extra={"requestBody": {"content": {"application/yaml": {}}, "required": True}},
)
async def restore(request: Request, ctx: Ctx) -> Saved:
    """Restore a downloaded or saved file sent as the request body (YAML)."""
    body = await request.body()
    if len(body) > MAX_FILE:
        raise HTTPException(status_code=413, detail=f"a configuration file is under {MAX_FILE} B")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(status_code=400, detail="the file is not UTF-8 text") from None
    saved = await _write(ctx, text, "the restored file")
    audit(request, ctx, f"settings file {saved.path} restored")
    return saved


@router.post(
    "/services/restart",
    status_code=202,
    dependencies=[User],
    responses={401: {}, 503: {"description": "backbone not reachable"}},
)
async def restart(body: RestartRequest, request: Request, ctx: Ctx) -> dict[str, str]:
    """Ask a service (or all) to restart with the configuration file as it is now."""
    audit(request, ctx, f"restart of {body.service}")
    ctx.restarts_asked[body.service] = utcnow()
    ask = ServiceRestart(ts=utcnow(), reason="asked for in the web UI")
    if ctx.backbone is None or not await ctx.backbone.publish(
        topics.SERVICE_RESTART, body.service, ask
    ):
        raise HTTPException(status_code=503, detail="the backbone is not reachable")
    return {"service": body.service, "state": "restart requested"}

"""The API app in this process behind an httpx client, as the API's tests open it."""

from __future__ import annotations

from pathlib import Path

import httpx

from bmsgate_api.app import create_app, make_context
from bmsgate_api.store import PackStore
from bmsgate_common.settings import Settings


def app_client(
    store: PackStore,
    settings: Settings,
    *,
    data_dir: Path | None = None,
    config_file: Path | None = None,
) -> httpx.AsyncClient:
    """A client of the app serving ``store`` with ``settings`` (base URL ``http://t``).

    With ``data_dir`` the app keeps the password, tokens and lockouts there as the service does;
    without, in memory only. ``config_file`` is the settings file its Settings pages edit.
    """
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    ctx = make_context(store, settings, None, persist=data_dir is not None)
    if config_file is not None:
        ctx.config_file = config_file
    app = create_app(store, ctx=ctx)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

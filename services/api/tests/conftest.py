"""Fixtures of the API's tests: the app in this process behind an httpx client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
import yaml
from services.api.tests.inprocess import app_client

from bmsgate_api.store import PackStore
from bmsgate_common.settings import Settings

PASSWORD = "api-tests-pass-1"  # the web password the ``site_ui`` client sets
SiteUi = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def site_ui(tmp_path: Path) -> SiteUi:
    """Opens the app on a settings file, ``tmp_path``/site.yaml, as a browser would.

    ``async with site_ui(data) as ui:`` writes ``data`` to the file (None: no file, the first
    setup) and gives a client that has set the web password PASSWORD, so it is logged in;
    ``site_ui(data, login=False)`` gives one that has not (no password is set yet).
    """

    @contextlib.asynccontextmanager
    async def open_ui(
        data: dict[str, object] | None, *, login: bool = True
    ) -> AsyncIterator[httpx.AsyncClient]:
        path = tmp_path / "site.yaml"
        if data is not None:
            path.write_text(yaml.safe_dump(data))
        settings = Settings.model_validate(data or {})
        async with app_client(PackStore(), settings, config_file=path) as client:
            if login:
                setup = await client.post("/api/auth/setup", json={"password": PASSWORD})
                setup.raise_for_status()
            yield client

    return open_ui

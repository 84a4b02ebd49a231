"""The API against its own OpenAPI document with schemathesis (in-process ASGI app).

Every operation, without a session and with one: no 5xx, and every error has a JSON body.
The live event stream (/api/events, never ends) is left out.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, settings

from bmsgate_api.app import create_app
from bmsgate_common.settings import Settings
from tests.reliability.counts import COUNTS
from tests.support.store import with_garage

EXAMPLES = 10
DATA = Path(tempfile.mkdtemp(prefix="bmsgate-fuzz-api-"))
SETTINGS = Settings.model_validate(
    {"data_dir": str(DATA), "api": {"public_read": "never", "login_attempts": 1000}}
)
STORE = with_garage()
APP = create_app(STORE, settings=SETTINGS)
STREAMS = ["/api/events", "/api/sniff", "/api/packs/{pack}/tunnel/events"]  # SSE: never end
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path=STREAMS)


async def _login() -> dict[str, Any]:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        setup = await http.post("/api/auth/setup", json={"password": "fuzzing password"})
        assert setup.status_code == 204, setup.text
        return dict(http.cookies)


COOKIES = asyncio.run(_login())


def check(case: schemathesis.Case, cookies: dict[str, Any] | None, label: str) -> None:
    response = case.call(cookies=cookies)
    COUNTS[f"api: schemathesis requests, {label}"] += 1
    COUNTS[f"api: status {response.status_code // 100}xx, {label}"] += 1
    # 503 is the documented answer of the routes that need the backbone (none in-process)
    assert response.status_code < 500 or response.status_code == 503, (
        case.method,
        case.formatted_path,
        response.status_code,
        response.text[:500],
    )
    if response.status_code >= 400:
        kind = response.headers.get("content-type") or [""]
        assert str(kind[0] if isinstance(kind, list) else kind).startswith("application/json"), (
            case.method,
            case.formatted_path,
            response.status_code,
            response.text[:200],
        )
        assert "detail" in response.json()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
def test_without_a_session(case: schemathesis.Case) -> None:
    check(case, None, "no session")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
def test_with_a_session(case: schemathesis.Case) -> None:
    if case.path in ("/api/auth/logout", "/api/auth/password"):
        return  # would end the shared session or change the password mid-run
    check(case, COOKIES, "session")


async def test_finding4_month_of_year_zero_is_a_clear_4xx() -> None:
    """Found by the first run: date(0, 1, 1) raised ValueError, a 500."""
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", cookies=COOKIES) as http:
        for path in ("/api/packs/garage/days/0000-01", "/api/packs/garage/zip/0000-01"):
            assert 400 <= (await http.get(path)).status_code < 500

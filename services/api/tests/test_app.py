from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from bmsgate_api.app import create_app
from bmsgate_api.store import PackStore
from bmsgate_common.models import Availability, PackState, utcnow


def state(pack: str = "garage", age: float = 0.0) -> PackState:
    return PackState(
        pack=pack,
        name=pack.title(),
        protocol="jk_pb",
        ts=utcnow() - timedelta(seconds=age),
        pack_voltage=26.8,
        current=17.8,
        power=477.0,
        soc=88,
        cell_voltages=[3.35] * 8,
        cell_count=8,
    )


def client(store: PackStore) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(store)), base_url="http://t"
    )


async def test_online_pack_serves_its_state() -> None:
    store = PackStore()
    store.states["garage"] = state()
    store.availability["garage"] = Availability(pack="garage", state="online", ts=utcnow())
    async with client(store) as http:
        packs = (await http.get("/api/packs")).json()
        assert packs == [
            {
                "pack": "garage",
                "name": "Garage",
                "protocol": "jk_pb",
                "online": True,
                "last_seen": packs[0]["last_seen"],
                "reason": None,
                "bank": False,
            }
        ]
        got = await http.get("/api/packs/garage/state")
        assert (
            got.status_code == 200
            and PackState.model_validate(got.json()) == store.states["garage"]
        )


@pytest.mark.parametrize(
    ("availability", "age", "reason"),
    [
        ("offline", 0.0, "no answer (3 polls)"),
        ("online", 300.0, "no new state since"),
        (None, 300.0, "no new state since"),  # no availability: the state's age decides
    ],
)
async def test_offline_or_stale_pack_never_serves_old_values(
    availability: str | None, age: float, reason: str
) -> None:
    store = PackStore(stale_after=60)
    store.states["garage"] = state(age=age)
    if availability:
        store.availability["garage"] = Availability(
            pack="garage",
            state=availability,
            ts=utcnow(),
            reason="no answer (3 polls)",  # type: ignore[arg-type]
        )
    async with client(store) as http:
        got = await http.get("/api/packs/garage/state")
        assert got.status_code == 503
        body = got.json()
        assert body["online"] is False and reason in body["detail"]
        assert "pack_voltage" not in body
        listed = (await http.get("/api/packs")).json()[0]
        assert listed["online"] is False and reason in listed["reason"]


async def test_unknown_pack_is_404_and_healthz_answers() -> None:
    async with client(PackStore()) as http:
        assert (await http.get("/api/packs/nope/state")).status_code == 404
        assert (await http.get("/healthz")).json() == {"status": "ok", "backbone": False}
        assert (await http.get("/api/packs")).json() == []


async def test_openapi_documents_the_routes_and_the_ui_is_served() -> None:
    async with client(PackStore()) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
        assert {"/healthz", "/api/packs", "/api/packs/{pack}/state"} <= set(paths)
        page = await http.get("/")
        assert page.status_code == 200 and "<title>bmsgate</title>" in page.text
        assert "://" not in page.text  # nothing loaded from elsewhere: works with no internet

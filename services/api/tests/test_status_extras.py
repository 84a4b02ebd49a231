"""Banks, sun and forecast, branding, API tokens and the openHASP / Home Assistant exports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from services.api.tests.inprocess import app_client

from bmsgate_api.iotmqttpanel import PackInfo, backup
from bmsgate_api.openhasp import OBJECT, default_objects, pages
from bmsgate_api.routes.status import branding_css, contrast, on_accent
from bmsgate_api.sky import parse_forecast, sun_times
from bmsgate_api.store import PackStore
from bmsgate_bms.registry import NAMES, info
from bmsgate_common.models import Availability, DailyStats, PackState, utcnow
from bmsgate_common.settings import Settings
from bmsgate_outputs.entities import descriptions, shown_values
from bmsgate_outputs.plan import hasp_messages
from tests.support.receiver import json_server

PASSWORD = "long enough"


def state(pack: str, soc: float, cells: list[float], current: float = 5.0, **kw: Any) -> PackState:
    return PackState(
        pack=pack,
        name=pack.title(),
        protocol="jk_pb",
        ts=utcnow(),
        pack_voltage=53.0,
        current=current,
        power=current * 53.0,
        soc=soc,
        cell_voltages=cells,
        cell_count=len(cells),
        nominal_capacity=100.0,
        charge_mos=True,
        discharge_mos=True,
        **kw,
    )


def make_store(*states: PackState) -> PackStore:
    store = PackStore()
    for s in states:
        store.states[s.pack] = s
        store.availability[s.pack] = Availability(pack=s.pack, state="online", ts=utcnow())
    return store


def client(store: PackStore, settings: Settings, tmp_path: Path | None = None) -> httpx.AsyncClient:
    return app_client(store, settings, data_dir=tmp_path)


BUSES = [
    {
        "port": "/dev/null",
        "protocol": "jk_pb",
        "packs": [{"id": "east", "address": 1}, {"id": "west", "address": 2}],
    }
]


async def test_a_bank_is_its_members_combined_as_the_publisher_does() -> None:
    settings = Settings.model_validate(
        {"buses": BUSES, "banks": [{"id": "house", "name": "House", "packs": ["east", "west"]}]}
    )
    store = make_store(
        state("east", 80, [3.30, 3.31], current=10.0, energy_in=500.0),
        state("west", 60, [3.28, 3.35], current=-4.0, energy_in=700.0),
    )
    async with client(store, settings) as http:
        bank = (await http.get("/api/banks")).json()[0]
        assert bank["pack"] == "house" and bank["name"] == "House" and bank["online"]
        assert bank["state"]["energy_in"] is None  # never the members' lifetime sum
        # the counters are the publisher's, from the bank state it published
        store.states["house"] = state("house", 70, [], energy_in=1.25)
        bank = (await http.get("/api/banks")).json()[0]
        assert bank["state"]["energy_in"] == 1.25
        assert bank["state"]["soc"] == 70.0 and bank["state"]["current"] == 6.0
        assert bank["state"]["cell_count"] == 4 and bank["cell_delta"] == 0.07
        assert bank["state"]["extras"]["cell_max_pack"] == "west"
        assert [m["counted"] for m in bank["members"]] == [True, True]
        # a member that goes offline drops out, and the bank says why
        store.on_availability("west", Availability(pack="west", state="offline", ts=utcnow()))
        bank = (await http.get("/api/banks")).json()[0]
        assert bank["state"]["soc"] == 80.0
        assert bank["members"][1] == {
            "pack": "west",
            "name": "west",
            "counted": False,
            "reason": "the reader reports it offline",
            "cells": 0,
        }
        store.on_availability("east", Availability(pack="east", state="offline", ts=utcnow()))
        bank = (await http.get("/api/banks")).json()[0]
        assert not bank["online"] and bank["state"] is None  # never old values
        # but when it was last seen: its newest member reading, not "never"
        newest = max(store.states[p].ts for p in ("east", "west"))
        assert datetime.fromisoformat(bank["last_seen"]) == newest


async def test_kwh_today_is_of_the_sites_today_and_a_bank_sums_its_members_once() -> None:
    settings = Settings.model_validate(
        {"buses": BUSES, "banks": [{"id": "house", "packs": ["east", "west"]}]}
    )
    store = make_store(state("east", 80, [3.3]), state("west", 60, [3.3]))
    store.tz = ZoneInfo("Pacific/Auckland")  # the site's zone, never UTC's day
    today = utcnow().astimezone(store.tz).date()
    yesterday = date.fromordinal(today.toordinal() - 1)

    def daily(pack: str, day: date, e_in: float, e_out: float) -> DailyStats:
        return DailyStats(pack=pack, day=day, ts=utcnow(), energy_in=e_in, energy_out=e_out)

    store.daily = {
        "east": daily("east", today, 1.25, 0.5),
        "west": daily("west", today, 2.0, 0.75),
        "house": daily("house", today, 9.0, 9.0),  # the bank's own figures: never added
    }
    async with client(store, settings) as http:
        packs = {v["pack"]: v for v in (await http.get("/api/overview")).json()}
        bank = (await http.get("/api/banks")).json()[0]
        assert (packs["east"]["energy_in_today"], packs["east"]["energy_out_today"]) == (1.25, 0.5)
        assert (bank["energy_in_today"], bank["energy_out_today"]) == (3.25, 1.25)
        # west offline since yesterday: its figures are yesterday's, not today's
        store.daily["west"] = daily("west", yesterday, 4.0, 4.0)
        packs = {v["pack"]: v for v in (await http.get("/api/overview")).json()}
        bank = (await http.get("/api/banks")).json()[0]
        assert packs["west"]["energy_in_today"] is None
        assert packs["west"]["daily"] is None  # nor its max SOC "today"
        assert (bank["energy_in_today"], bank["energy_out_today"]) == (1.25, 0.5)


async def test_the_status_page_gets_its_first_paint_in_one_answer_in_configuration_order() -> None:
    buses = [  # configured zeta, alpha, then a second bus with mid: neither sorted nor reversed
        {**BUSES[0], "packs": [{"id": "zeta", "address": 1}, {"id": "alpha", "address": 2}]},
        {**BUSES[0], "port": "/dev/zero", "packs": [{"id": "mid", "address": 1}]},
    ]
    settings = Settings.model_validate(
        {"buses": buses, "banks": [{"id": "house", "packs": ["zeta", "mid"]}]}
    )
    store = make_store(
        state("mid", 60, [3.30] * 16),
        state("alpha", 70, [3.31] * 8),
        state("zeta", 80, [3.32] * 16),
        state("stray", 50, [3.3]),  # heard on the backbone, not configured: last
    )
    async with client(store, settings) as http:
        page = (await http.get("/api/status")).json()
        listed = (await http.get("/api/packs")).json()
        overview = (await http.get("/api/overview")).json()
    assert [v["pack"] for v in page["packs"]] == ["zeta", "alpha", "mid", "stray"]
    assert (
        [p["pack"] for p in listed]
        == [v["pack"] for v in overview]
        == ["zeta", "alpha", "mid", "stray"]
    )
    assert page["order"] == ["zeta", "alpha", "mid", "house"]
    assert page["layouts"]["jk_pb"] == "jk" and page["layouts"]["daly_classic"] == "daly"
    assert page["labels"]["jk_pb"] == "JK-PB (RS485 Modbus)"
    assert page["sky"]["sunrise"] is None  # no coordinates: nothing made up
    (bank,) = page["banks"]
    # the bank's 32 cells are zeta's 16 then mid's 16: the page folds them per member
    assert bank["state"]["cell_count"] == 32
    assert [(m["pack"], m["cells"]) for m in bank["members"]] == [("zeta", 16), ("mid", 16)]
    assert page["packs"][0]["state"]["soc"] == 80


def test_sun_times_and_polar_days() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    rise, set_, polar = sun_times(date(2024, 6, 21), 52.52, 13.405, berlin)
    assert polar is None and rise is not None and set_ is not None
    assert (rise.hour, set_.hour) == (4, 21)  # 04:43 and 21:33 local (CEST)
    assert sun_times(date(2024, 6, 21), 78.2, 15.6, ZoneInfo("Arctic/Longyearbyen"))[2] == "day"
    assert sun_times(date(2024, 12, 21), 78.2, 15.6, ZoneInfo("Arctic/Longyearbyen"))[2] == "night"


# fmt: off
OPEN_METEO = {
    "latitude": 52.52, "longitude": 13.42, "timezone": "Europe/Berlin",
    "current": {"time": "2024-06-21T12:00", "temperature_2m": 21.4, "weather_code": 2,
                "wind_speed_10m": 11.2},
    "daily": {"time": ["2024-06-21", "2024-06-22"], "weather_code": [2, 61],
              "temperature_2m_max": [24.1, 19.0], "temperature_2m_min": [13.2, 12.5],
              "precipitation_probability_max": [10, 80]},
}
# fmt: on


def test_forecast_parsing_keeps_what_it_understands() -> None:
    when = datetime(2024, 6, 21, 12, tzinfo=UTC)
    got = parse_forecast(OPEN_METEO, "api.open-meteo.com", when)
    assert (got.temperature, got.weather, got.wind) == (21.4, "partly cloudy", 11.2)
    assert [d.weather for d in got.days] == ["partly cloudy", "light rain"]
    assert got.days[1].rain_chance == 80 and got.days[1].t_min == 12.5
    odd = parse_forecast({"current": [], "daily": {"time": ["x", "2024-06-22"]}}, "h", when)
    assert odd.temperature is None and [d.day for d in odd.days] == [date(2024, 6, 22)]
    with pytest.raises(ValueError, match="JSON object"):
        parse_forecast([], "h", when)


@pytest.fixture
def forecast_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server answering like Open-Meteo; yields its URL and the paths asked."""
    with json_server(OPEN_METEO) as (port, asked):
        yield f"http://127.0.0.1:{port}/v1/forecast", asked


async def test_sky_has_sun_times_and_the_forecast_once_fetched(
    forecast_server: tuple[str, list[str]],
) -> None:
    url, asked = forecast_server
    settings = Settings.model_validate(
        {
            "notifier": {"latitude": 52.52, "longitude": 13.405},
            "api": {"weather": True, "weather_url": url},
        }
    )
    async with client(PackStore(), settings) as http:
        first = (await http.get("/api/sky")).json()
        assert first["timezone"] == "Europe/Berlin" and first["sunrise"] and first["sunset"]
        assert first["forecast"] is None  # never waited for: it is fetched in the background
        for _ in range(50):
            await asyncio.sleep(0.05)
            got = (await http.get("/api/sky")).json()
            if got["forecast"]:
                break
        assert got["forecast"]["weather"] == "partly cloudy"
        assert got["forecast"]["source"] == "127.0.0.1" and len(asked) == 1
        assert "latitude=52.5200" in asked[0] and "forecast_days=3" in asked[0]


async def test_sky_without_internet_or_coordinates_is_quiet() -> None:
    unreachable = Settings.model_validate(
        {
            "notifier": {"latitude": 52.52, "longitude": 13.405},
            "api": {"weather": True, "weather_url": "http://127.0.0.1:9/v1/forecast"},
        }
    )
    async with client(PackStore(), unreachable) as http:
        for _ in range(3):
            got = await http.get("/api/sky")
            assert got.status_code == 200 and got.json()["forecast"] is None
            await asyncio.sleep(0.2)
    async with client(PackStore(), Settings()) as http:
        got = (await http.get("/api/sky")).json()
        assert got["sunrise"] is None and got["latitude"] is None


async def test_branding_title_colours_and_logo(tmp_path: Path) -> None:
    logo = tmp_path / "logo.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    settings = Settings.model_validate(
        {"api": {"title": "Solar & Co", "logo": str(logo), "accent": "#aa3300"}}
    )
    async with client(PackStore(), settings) as http:
        status = (await http.get("/api/auth/status")).json()
        assert status["title"] == "Solar & Co" and status["logo"] == "api/branding/logo"
        css = await http.get("/api/branding.css")
        assert css.headers["content-type"].startswith("text/css")
        assert ":root { --accent: #aa3300; --on-accent: #ffffff; }" in css.text
        assert ':root[data-theme="dark"] { --accent: #aa3300; --on-accent: #ffffff; }' in css.text
        got = await http.get("/api/branding/logo")
        assert got.headers["content-type"] == "image/svg+xml" and b"<svg" in got.content
        assert "default-src 'none'" in got.headers["content-security-policy"]
    assert branding_css(None, None).strip() == ""
    assert "#112233" in branding_css("#000000", "#112233")
    # text on the accent reads (WCAG AA, 4.5:1): white on the light default, dark on the dark one
    assert on_accent("#0b6bcb") == "#ffffff" and on_accent("#4aa3ff") == "#0f1216"
    assert round(contrast("#ffffff", "#4aa3ff"), 1) == 2.6  # what white on the dark accent was
    for accent in ("#0b6bcb", "#4aa3ff", "#ffcc00", "#202020"):  # (a mid grey reaches 4.48 at best)
        assert contrast(on_accent(accent), accent) >= 4.5, accent
    with pytest.raises(ValueError, match="accent"):
        Settings.model_validate({"api": {"accent": "red; } body { display: none"}})
    with pytest.raises(ValueError, match="logo"):
        Settings.model_validate({"api": {"logo": "/etc/passwd"}})
    async with client(PackStore(), Settings()) as http:
        assert (await http.get("/api/branding/logo")).status_code == 404
    logo.unlink()  # a logo file that went missing: no broken image in the header
    async with client(PackStore(), settings) as http:
        assert (await http.get("/api/auth/status")).json()["logo"] is None
        assert (await http.get("/api/branding/logo")).status_code == 404


async def test_api_tokens_have_the_rights_of_a_login(tmp_path: Path) -> None:
    settings = Settings.model_validate({"api": {"public_read": "never"}})
    store = make_store(state("east", 80, [3.3, 3.31]))
    async with client(store, settings, tmp_path) as http:
        assert (await http.post("/api/auth/tokens", json={"name": "x"})).status_code == 401
        await http.post("/api/auth/setup", json={"password": PASSWORD})
        made = await http.post(
            "/api/auth/tokens", json={"name": "grafana script", "scope": "control"}
        )
        assert made.status_code == 201
        token, token_id = made.json()["token"], made.json()["id"]
        assert token.startswith("bmsgate_")
        listed = (await http.get("/api/auth/tokens")).json()
        assert listed == [
            {
                "id": token_id,
                "name": "grafana script",
                "scope": "control",
                "packs": None,
                "created": listed[0]["created"],
                "last_used": None,
            }
        ]
    stored = (tmp_path / "api" / "tokens.json").read_text()
    assert token not in stored and token.split("_")[-1] not in stored  # only its hash
    assert (tmp_path / "api" / "tokens.json").stat().st_mode & 0o777 == 0o600
    bearer = {"Authorization": f"Bearer {token}"}
    # a restart keeps the token; a script uses it without any cookie
    async with client(store, settings, tmp_path) as http:
        assert (await http.get("/api/packs")).status_code == 401
        assert (await http.get("/api/packs", headers=bearer)).status_code == 200
        cmd = {"action": "set_charge_mos", "value": False}
        got = await http.post("/api/packs/east/commands", json=cmd, headers=bearer)
        assert got.status_code == 403  # past the login check: control is disabled here
        wrong = {"Authorization": f"Bearer {token[:-3]}abc"}
        got = await http.post("/api/packs/east/commands", json=cmd, headers=wrong)
        assert got.status_code == 401 and "token" in got.json()["detail"]
        # a token cannot make tokens; the browser revokes it
        assert (await http.get("/api/auth/tokens", headers=bearer)).status_code == 401
        await http.post("/api/auth/login", json={"password": PASSWORD})
        assert (await http.get("/api/auth/tokens")).json()[0]["last_used"] is not None
        assert (await http.delete(f"/api/auth/tokens/{token_id}")).status_code == 204
        assert (await http.delete(f"/api/auth/tokens/{token_id}")).status_code == 404
        http.cookies.clear()
        assert (await http.get("/api/packs", headers=bearer)).status_code == 401


def test_openhasp_pages_hold_every_object_the_publisher_fills() -> None:
    s = state(
        "east",
        81.6,
        [3.301, 3.322, 3.315],
        temperatures=[21.0],
        cycles=12,
        mos_temperature=30.0,
        remaining_capacity=81.6,
    )
    out = pages("East", 3, s, first_page=3)
    lines = [json.loads(line) for line in out.jsonl().splitlines()]
    objects = {(ln["page"], ln["id"]): ln for ln in lines if "id" in ln}
    assert lines[0]["objects"] == out.objects == default_objects(3, 3)
    for key in out.objects:
        found = OBJECT.match(key)
        assert found and (int(found[1]), int(found[2])) in objects, key
    # the first values are the ones the publisher would push now
    values = shown_values(s, descriptions(s, control=False))
    pushed = {
        m.topic.split("/")[-1]: m.payload.decode()
        for m in hasp_messages("plate", out.objects, values)
    }
    assert len(pushed) == len(out.objects)  # every default template has all its values
    assert objects[(3, 2)]["val"] == 82 and pushed["p3b2.val"] == "82"
    assert objects[(3, 3)]["text"] == pushed["p3b3.text"] == "82 %"
    assert objects[(4, 12)]["text"] == "2: 3.322"
    assert all(ln["page"] in (3, 4) for ln in lines if "page" in ln)
    # no state: placeholders, never made-up values
    empty = pages("East", 3, None)
    first = [json.loads(line) for line in empty.jsonl().splitlines()]
    assert next(ln for ln in first if ln.get("id") == 2)["val"] == 0


async def test_openhasp_export_follows_a_configured_plate() -> None:
    settings = Settings.model_validate(
        {
            "buses": BUSES,
            "publisher": {
                "targets": [
                    {
                        "name": "hasp",
                        "openhasp": [
                            {
                                "plate": "plate01",
                                "pack": "east",
                                "objects": {
                                    "p1b2.val": "{soc:.0f}",
                                    "p1b40.text": "{voltage:.1f} V",
                                },
                            }
                        ],
                    }
                ]
            },
        }
    )
    async with client(make_store(state("east", 50, [3.3] * 4)), settings) as http:
        got = await http.get("/api/export/openhasp.jsonl", params={"pack": "east"})
        assert got.status_code == 200 and "pages-east.jsonl" in got.headers["content-disposition"]
        lines = [json.loads(line) for line in got.text.splitlines()]
        assert lines[0]["objects"] == {"p1b2.val": "{soc:.0f}", "p1b40.text": "{voltage:.1f} V"}
        extra = next(ln for ln in lines if ln.get("id") == 40)
        assert extra["obj"] == "label" and extra["text"] == "53.0 V" and extra["page"] == 1
        assert (
            await http.get("/api/export/openhasp.jsonl", params={"pack": "nope"})
        ).status_code == 404
        bad = await http.get("/api/export/openhasp.jsonl", params={"pack": "east", "page": 0})
        assert bad.status_code == 422


async def test_home_assistant_preview_is_the_publishers_discovery() -> None:
    settings = Settings.model_validate(
        {
            "buses": BUSES,
            "banks": [{"id": "house", "packs": ["east", "west"]}],
            "publisher": {
                "targets": [
                    {"name": "cloud", "password": "s3cret-pw", "host": "h.example"},
                    {"name": "ha", "topic_prefix": "bms/out", "homeassistant": {"enabled": True}},
                ]
            },
        }
    )
    store = make_store(state("east", 80, [3.3] * 4), state("west", 70, [3.3] * 4))
    async with client(store, settings) as http:
        got = await http.get("/api/export/homeassistant.json")
        body = got.json()
        assert body["target"] == "ha" and body["enabled"] and "s3cret" not in got.text
        topics = [m["topic"] for m in body["messages"]]
        assert "homeassistant/device/bmsgate_east/config" in topics
        assert "homeassistant/device/bmsgate_house/config" in topics  # the bank too
        assert "bms/out/east/state" in topics
        config = next(m for m in body["messages"] if m["topic"].endswith("bmsgate_east/config"))
        assert (
            config["retain"] and config["payload"]["cmps"]["soc"]["uniq_id"] == "bmsgate_east_soc"
        )
        house = next(m for m in body["messages"] if m["topic"].endswith("bmsgate_house/config"))
        assert house["payload"]["dev"]["mdl"] == "Battery bank"
        other = (
            await http.get("/api/export/homeassistant.json", params={"target": "cloud"})
        ).json()
        assert other["target"] == "cloud" and not other["enabled"] and other["messages"]
        missing = await http.get("/api/export/homeassistant.json", params={"target": "nope"})
        assert missing.status_code == 404
    async with client(store, Settings()) as http:
        fallback = (await http.get("/api/export/homeassistant.json")).json()
        assert fallback["target"] == "homeassistant" and not fallback["enabled"]


async def test_sniffer_buses_and_toggle_guards(tmp_path: Path) -> None:
    settings = Settings.model_validate({"buses": BUSES, "control": {"enabled": True}})
    async with client(PackStore(), settings, tmp_path) as http:
        buses = (await http.get("/api/sniff/buses")).json()
        assert buses == [
            {
                "bus": "reader-0",
                "port": "/dev/null",
                "protocol": "jk_pb",
                "packs": ["east", "west"],
                "configured": False,
                "enabled": None,
            }
        ]
        body = {"enabled": True}
        assert (await http.post("/api/sniff/buses/reader-0", json=body)).status_code == 401
        await http.post("/api/auth/setup", json={"password": PASSWORD})
        assert (await http.post("/api/sniff/buses/reader-7", json=body)).status_code == 404
        assert (await http.post("/api/sniff/buses/reader-x", json=body)).status_code == 422
        got = await http.post("/api/sniff/buses/reader-0", json=body)
        assert got.status_code == 503  # no backbone in-process
    off = Settings.model_validate({"buses": BUSES})
    async with client(PackStore(), off, tmp_path) as http:
        await http.post("/api/auth/login", json={"password": PASSWORD})
        got = await http.post("/api/sniff/buses/reader-0", json={"enabled": True})
        assert got.status_code == 403


def test_revoked_sessions_expire_from_the_file(tmp_path: Path) -> None:
    from bmsgate_api.auth import Sessions

    path = tmp_path / "revoked.json"
    s = Sessions(key=b"k" * 32, lifetime=100, path=path)
    old = s.issue("h", now=1000)
    s.revoke(old, now=1001)
    assert json.loads(path.read_text()) == {old.split(".")[1]: 1100}
    assert not Sessions(key=b"k" * 32, lifetime=100, path=path).revoked  # expired long ago
    fresh = s.issue("h")
    s.revoke(fresh)
    again = Sessions(key=b"k" * 32, lifetime=100, path=path)
    assert not again.valid(fresh, "h")


async def test_protocols_are_listed_as_they_describe_themselves() -> None:
    async with client(PackStore(), Settings()) as http:
        got = await http.get("/api/protocols")
    assert got.status_code == 200
    listed = got.json()
    assert [p["name"] for p in listed] == list(NAMES)
    for entry in listed:
        about = info(entry["name"])
        assert entry["label"] == about.label and entry["layout"] == about.layout
        assert entry["baudrates"][0] == about.baudrate
        assert entry["mos_switching"] is about.mos_switching


async def test_home_assistant_device_names_make_model_and_firmware() -> None:
    settings = Settings.model_validate(
        {
            "buses": BUSES,
            "publisher": {"targets": [{"name": "ha", "homeassistant": {"enabled": True}}]},
        }
    )
    east = state(
        "east", 80, [3.3] * 4, extras={"software_version": "V19.05", "hardware_model": "PB2A16S20P"}
    )
    store = make_store(east, state("west", 70, [3.3] * 4))
    async with client(store, settings) as http:
        body = (await http.get("/api/export/homeassistant.json")).json()
    devices = {
        m["topic"]: m["payload"]["dev"] for m in body["messages"] if m["topic"].endswith("/config")
    }
    east_dev = devices["homeassistant/device/bmsgate_east/config"]
    assert (east_dev["mf"], east_dev["mdl"]) == (info("jk_pb").manufacturer, info("jk_pb").model)
    assert east_dev["sw"] == "V19.05" and east_dev["hw"] == "PB2A16S20P"
    assert "sw" not in devices["homeassistant/device/bmsgate_west/config"]


async def test_a_bank_is_refused_at_once_for_anything_sent_to_a_line(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "buses": BUSES,
            "control": {"enabled": True},
            "banks": [{"id": "house", "packs": ["east", "west"]}],
        }
    )
    # the publisher's copy of the bank is on the backbone beside its members
    store = make_store(state("east", 80, [3.3]), state("west", 60, [3.3]), state("house", 70, []))
    async with client(store, settings, tmp_path) as http:
        listed = {p["pack"]: p["bank"] for p in (await http.get("/api/packs")).json()}
        assert listed == {"east": False, "house": True, "west": False}
        await http.post("/api/auth/setup", json={"password": PASSWORD})
        sends = [
            ("POST", "/api/packs/{}/commands", {"action": "set_charge_mos", "value": False}),
            ("PUT", "/api/packs/{}/settings/balance_enabled", {"value": 1}),
            ("POST", "/api/packs/{}/tunnel", {"action": "open"}),
            ("GET", "/api/packs/{}/tunnel", None),
            ("POST", "/api/packs/{}/raw", {"data": "a5 40 90 08"}),
        ]
        for method, path, body in sends:
            got = await http.request(method, path.format("house"), json=body)
            assert got.status_code == 400, (path, got.text)
            detail = got.json()["detail"]
            assert "'house' is a bank" in detail and "(east, west)" in detail
            assert "\n" not in detail
            # a member goes past that check (no backbone here: 503, or no settings/tunnel yet)
            member = await http.request(method, path.format("east"), json=body)
            assert member.status_code in {404, 503}, (path, member.text)


def test_iotmqttpanel_puts_no_switches_on_a_banks_dashboard() -> None:
    settings = Settings.model_validate(
        {
            "control": {"enabled": True},
            "publisher": {"targets": [{"name": "phone", "host": "broker.example"}]},
        }
    )
    packs = [PackInfo("east", "East", 2), PackInfo("house", "House", 4, bank=True)]
    got = backup(settings, packs)
    kinds = {
        d["dashboardName"]: [
            p["type"] for p in got["panels"] if p["dashboardId"] == d["dashboardId"]
        ]
        for d in got["dashboards"]
    }
    assert kinds["East"].count("switch") == 2
    assert "switch" not in kinds["House"] and kinds["House"].count("gauge") == 5

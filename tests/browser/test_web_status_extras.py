"""The Status page's second layout, banks, sky and branding; exports, API tokens and the sniffer
switch, in Debian's chromium against the running stack: two simulated JK-PB boards on a pty ->
reader -> Mosquitto -> API, a local HTTP server standing in for the forecast API.
Screenshots go to build/test-artifacts/web.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import (
    ARTIFACTS,
    first_visit,
    on_a_dark_phone,
    shot,
    start_house_stack,
    watch,
)
from tests.support.procs import (
    Mosquitto,
    Proc,
    wait_until,
)
from tests.support.receiver import json_server

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-2"
ACCENT = "rgb(170, 51, 0)"  # #aa3300
FORECAST = {
    "current": {"temperature_2m": 17.6, "weather_code": 61, "wind_speed_10m": 9.0},
    "daily": {
        "time": ["2026-06-01", "2026-06-02", "2026-06-03"],
        "weather_code": [61, 1, 3],
        "temperature_2m_max": [19.0, 23.4, 21.0],
        "temperature_2m_min": [11.0, 12.5, 13.0],
        "precipitation_probability_max": [70, 5, 20],
    },
}
LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="32" viewBox="0 0 64 32">'
    '<rect width="64" height="32" rx="6" fill="#aa3300"/>'
    '<text x="32" y="22" font-size="16" text-anchor="middle" fill="#fff">S&amp;C</text></svg>'
)


@pytest.fixture
def forecast_url() -> Any:
    with json_server(FORECAST) as (port, _):
        yield f"http://127.0.0.1:{port}/v1/forecast"


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc], forecast_url: str) -> str:
    """Two JK-PB boards as a bank, reader (control on, sniffer off), API with branding."""
    logo = tmp_path / "logo.svg"
    logo.write_text(LOGO)
    settings = {
        "control": {"enabled": True},
        "notifier": {"latitude": 48.14, "longitude": 11.58},
        "publisher": {
            "targets": [
                {
                    "name": "ha",
                    "password": "target-secret-1",
                    "homeassistant": {"enabled": True},
                }
            ]
        },
        "stale_after": 10,
    }
    api = {
        "title": "Solar & Co",
        "logo": str(logo),
        "accent": "#aa3300",
        "weather": True,
        "weather_url": forecast_url,
    }
    return start_house_stack(tmp_path, mosquitto, procs, settings=settings, api=api)


def test_status_layouts_bank_branding_exports_tokens_sniffer(
    stack: str,
    browser_context: Any,
) -> None:
    from playwright.sync_api import expect

    base, page = stack, browser_context.new_page()
    problems = watch(page)
    first_visit(page, base, PASSWORD)

    # branding: title, logo and accent colour from the configuration
    expect(page.locator("header .brand")).to_have_text("Solar & Co")
    logo = page.locator("header .brand img.logo")
    expect(logo).to_be_visible()
    assert logo.evaluate("img => img.complete && img.naturalWidth") == 64
    current = page.locator('nav a[aria-current="page"]')
    assert current.evaluate("a => getComputedStyle(a).backgroundColor") == ACCENT
    assert page.title() == "Solar & Co · Status"

    # a JK board gets the JK layout; the switch turns it to DALY's and back, remembered
    east = page.locator('#packs .card[data-pack="east"]')
    expect(east).to_have_class(re.compile(r"\bjk\b"))
    expect(east.locator(".jk-cells > div > div")).to_have_count(16)
    expect(east.locator('[data-field="soc"]')).to_contain_text("%")
    # its MOS and balancer states read as states, not as switches that do nothing when clicked
    states = east.locator(".jk-switch")
    expect(states.first).to_have_text(re.compile(r"^Charge (on|off)$"))
    assert states.evaluate_all("s => s.every(e => getComputedStyle(e).cursor !== 'pointer')")
    assert states.evaluate_all("s => s.every(e => !e.closest('button, a, [role]'))")
    expect(page.locator('#packs .card[data-pack="west"]')).to_have_class(re.compile(r"\bjk\b"))
    # the bank: both members combined, with the figures of the Status list
    bank = page.locator('#banks .card.bank[data-pack="house"]')
    expect(bank.locator("h2")).to_contain_text("House bank")
    expect(bank.locator(".members .pill.on")).to_have_count(2)
    expect(bank.locator(".cells span")).to_have_count(32)
    for text in ("Delta over 32 cells", "Remaining", "Average cell", "members read"):
        expect(bank).to_contain_text(text)
    expect(bank).not_to_contain_text("Cycles")  # a bank has no cycle count of its own
    first_ts = bank.locator(".age[data-ts]").get_attribute("data-ts")  # live: bank events
    wait_until(lambda: bank.locator(".age[data-ts]").get_attribute("data-ts") != first_ts, 10)
    # sky: sun times for the coordinates, the forecast from the (local) forecast server
    expect(page.locator("#sky")).to_contain_text("☀↑")
    expect(page.locator('#sky [data-field="weather"]')).to_contain_text(
        "light rain", timeout=30_000
    )
    expect(page.locator("#sky")).to_contain_text("weather: 127.0.0.1")
    shot(page, "30-status-jk-bank-branding")

    east.locator('button[data-layout="daly"]').click()
    east = page.locator('#packs .card[data-pack="east"]')
    expect(east).to_have_class(re.compile(r"\bdaly\b"))
    expect(east.locator(".cells span")).to_have_count(16)
    expect(east.locator(".beat")).to_have_count(1)
    page.reload()
    expect(page.locator('#packs .card[data-pack="east"]')).to_have_class(re.compile(r"\bdaly\b"))
    expect(page.locator('#packs .card[data-pack="west"]')).to_have_class(re.compile(r"\bjk\b"))
    shot(page, "31-status-daly-and-jk")
    on_a_dark_phone(page, "32-status-dark-phone")

    # exports: the openHASP pages and the Home Assistant preview download
    page.goto(f"{base}/export.html")
    expect(page.locator("#ha-summary")).to_contain_text("target ha")
    expect(page.locator("#hasp-preview")).to_contain_text('"objects"')
    page.select_option("#hasp-pack", "east")
    expect(page.locator("#plate .hasp.arc")).to_have_count(1)
    expect(page.locator("#plate")).to_contain_text(" V ")
    page.locator('#hasp-pages [data-page="2"]').click()
    expect(page.locator("#plate .hasp.label")).to_have_count(17)  # title + 16 cells
    page.locator("#plate").screenshot(path=str(ARTIFACTS / "36-openhasp-cells-page.png"))
    page.locator('#hasp-pages [data-page="1"]').click()
    with page.expect_download() as got:
        page.click("#openhasp")
    assert got.value.suggested_filename == "pages-east.jsonl"
    lines = [json.loads(x) for x in Path(got.value.path()).read_text().splitlines()]
    assert "p1b2.val" in lines[0]["objects"]
    arc = next(x for x in lines if x.get("page") == 1 and x.get("id") == 2)
    assert arc["obj"] == "arc" and 0 < arc["val"] <= 100  # the pack's SOC now
    with page.expect_download() as got:
        page.click("#homeassistant")
    preview = json.loads(Path(got.value.path()).read_text())
    topics = {m["topic"] for m in preview["messages"]}
    assert {
        "homeassistant/device/bmsgate_east/config",
        "homeassistant/device/bmsgate_house/config",
    } <= topics
    assert "target-secret-1" not in json.dumps(preview)
    shot(page, "33-exports")

    # an API token made in the page works for a script, and stops working when revoked
    page.goto(f"{base}/tokens.html")
    page.fill("#name", "test script")
    page.select_option("#scope", "control")  # read-only is the default
    page.click("#create")
    expect(page.locator("#made")).to_be_visible()
    token = page.locator("#token").inner_text().strip()
    assert token.startswith("bmsgate_")
    expect(page.locator("#tokens")).to_contain_text("test script")
    expect(page.locator("#tokens")).to_contain_text("read and control")
    shot(page, "34-tokens")
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{base}/api/packs", headers=auth, timeout=5).status_code == 200
    assert httpx.get(f"{base}/api/packs", timeout=5).status_code == 401
    cmd = {"action": "set_discharge_mos", "value": False}
    done = httpx.post(f"{base}/api/packs/west/commands", json=cmd, headers=auth, timeout=20)
    assert done.status_code == 200 and done.json()["result"]["value"] is False  # read back
    cmd["value"] = True
    assert (
        httpx.post(f"{base}/api/packs/west/commands", json=cmd, headers=auth, timeout=20).json()[
            "result"
        ]["value"]
        is True
    )
    page.locator("[data-revoke]").click()
    expect(page.locator("#msg")).to_have_text("Token revoked")
    assert httpx.get(f"{base}/api/packs", headers=auth, timeout=5).status_code == 401

    # the sniffer: off from the configuration, turned on here, frames arrive; off again
    page.goto(f"{base}/sniffer.html")
    row = page.locator('#buses [data-bus="reader-0"]')
    expect(row.locator("[data-state]")).to_have_text("off")
    expect(page.locator("#frames > div")).to_have_count(0)
    row.locator("button").click()
    expect(page.locator("#busmsg")).to_have_text("reader-0: sniffer on, as the reader reports")
    expect(row.locator("[data-state]")).to_have_text("on")
    expect(page.locator("#frames .from_bms").first).to_be_visible()
    shot(page, "35-sniffer-switched-on")
    page.locator('#buses [data-bus="reader-0"] button').click()
    expect(page.locator('#buses [data-bus="reader-0"] [data-state]')).to_have_text("off")

    assert problems == []

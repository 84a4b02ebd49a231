"""The BMS's own settings in a real browser: a simulated JK-PB read through the reader and the
API, shown on the BMS settings page; a safe write is confirmed in a dialog and answered with the
value read back from the BMS; a value out of range and a write without a login change nothing.
The site's zone is far from the browser's: the page's times are in the site's, in bms.when's format."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.support.browser import SITE_ZONE, first_visit, shot, start_stack, watch
from tests.support.procs import (
    Mosquitto,
    Proc,
)

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-1"


@pytest.fixture
def jk_stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> str:
    """One simulated JK-PB (address 1) on a pty, reader with control on, API."""
    bus = {"protocol": "jk_pb", "poll_interval": 0.5, "packs": [{"id": "garage", "address": 1}]}
    settings = {"control": {"enabled": True}, "timezone": SITE_ZONE}
    return start_stack(tmp_path, mosquitto, procs, ["jk_pb"], bus, settings=settings)


def test_settings_tab_reads_and_writes_with_read_back(jk_stack: str, browser_context: Any) -> None:
    from playwright.sync_api import expect

    base, page = jk_stack, browser_context.new_page()
    problems = watch(page)
    first_visit(page, base, PASSWORD)
    expect(page.locator('.card[data-pack="garage"]:not(.offline)')).to_be_visible(timeout=20_000)
    # one format, in the site's zone (UTC+14 here), on every page: Status's clock too
    assert page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") != SITE_ZONE
    assert page.evaluate("bms.when('2026-12-06T03:42:57Z')") == "2026-12-06 17:42:57"
    assert page.evaluate("bms.hhmm('2026-12-06T10:05:00Z')") == "00:05"
    clock = page.locator("#clock").inner_text()
    now = datetime.now(ZoneInfo(SITE_ZONE))
    assert (
        abs((datetime.fromisoformat(clock).replace(tzinfo=now.tzinfo) - now).total_seconds()) < 60
    )

    # no login, no write: the REST API refuses before anything reaches the BMS
    anonymous = httpx.put(f"{base}/api/packs/garage/settings/design_capacity", json={"value": 100})
    assert anonymous.status_code == 401

    page.goto(f"{base}/bms.html")
    expect(page.locator('#tabs button[data-pack="garage"]')).to_have_attribute(
        "aria-selected", "true"
    )
    row = page.locator('tr[data-key="balance_start_voltage"]')
    expect(row).to_contain_text("Balance start voltage")
    expect(page.locator('tr[data-key="cell_count"]')).to_contain_text("read-only")
    expect(page.locator('tr[data-key="cell_uvp"] button')).to_have_count(0)
    read = page.evaluate("async () => (await bms.api('api/packs/garage/settings')).ts")
    site = (
        datetime.fromisoformat(read).astimezone(ZoneInfo(SITE_ZONE)).strftime("%Y-%m-%d %H:%M:%S")
    )
    expect(page.locator("#settings h2 small")).to_have_text(f"JK-PB (RS485 Modbus) · read {site}")
    shot(page, "30-bms-settings")

    asked: list[str] = []
    page.on("dialog", lambda d: asked.append(d.message))  # watch() accepts it
    row.locator("input").fill("3.41")
    row.locator("button").click()
    expect(page.locator("#msg")).to_contain_text(
        "balance_start_voltage read back from the BMS: 3.41", timeout=15_000
    )
    assert asked == ["garage: write balance_start_voltage = 3.41 to the BMS?"]
    expect(page.locator('tr[data-key="balance_start_voltage"] [data-value]')).to_have_text("3.41 V")

    row = page.locator('tr[data-key="balance_start_voltage"]')
    row.locator("input").fill("9")
    row.locator("button").click()
    expect(page.locator("#msg")).to_contain_text("balance_start_voltage must be")
    expect(page.locator('tr[data-key="balance_start_voltage"] [data-value]')).to_have_text("3.41 V")
    shot(page, "31-bms-settings-written")

    # the balancer switch on the Control page, confirmed by the BMS (JK-PB 0x1078, read back)
    page.goto(f"{base}/control.html")
    row = page.locator('[data-pack="garage"] [data-action="set_balancer"]')
    expect(row.locator("[data-state]")).to_have_text("on")
    row.locator('button[data-value="false"]').click()
    expect(page.locator("#msg")).to_have_text("garage: balancer confirmed by the BMS: off")
    refused = [p for p in problems if "400" in p]  # the refused write, and only that
    assert refused and all("settings/balance_start_voltage" in p or "console" in p for p in refused)
    assert not [p for p in problems if p not in refused], problems

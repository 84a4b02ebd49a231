"""The web UI in a real browser (Debian's chromium driven by playwright) against the running stack:
simulator on a pty -> reader -> Mosquitto -> history + API. Screenshots go to build/test-artifacts/web.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bmsgate.broker import free_port
from bmsgate_common.version import VERSION
from tests.support.browser import (
    PHONE,
    SITE_ZONE,
    WINDOW,
    on_a_dark_phone,
    refusal,
    resize,
    set_password,
    shot,
    start_garage_stack,
    watch,
)
from tests.support.procs import (
    Mosquitto,
    Proc,
    wait_until,
)

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-1"
LOADED = 20_000  # [ms] watch()'s page timeout, for a check a loaded machine takes seconds to pass


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> str:
    """Simulator, reader (control on), history and API as processes; yields the API's base URL."""
    settings = {
        "control": {"enabled": True},
        "tunnel": {"host": "127.0.0.1", "port": free_port()},
        "timezone": SITE_ZONE,
        "stale_after": 10,
    }
    return start_garage_stack(
        tmp_path,
        mosquitto,
        procs,
        bus={"sniff": True},
        services=("reader", "history", "api", "tunnel"),
        settings=settings,
        api={"title": "Test gateway"},
    )


def test_every_page_in_a_real_browser(stack: str, browser_context: Any) -> None:
    from playwright.sync_api import expect

    base, page = stack, browser_context.new_page()
    problems = watch(page)

    # first visit: no password yet, the browser is sent to set one
    page.goto(f"{base}/")
    expect(page.locator("#heading")).to_have_text("Set the password")
    shot(page, "01-set-password")
    set_password(page, PASSWORD)

    # Status: the pack at a glance, updated live over SSE
    card = page.locator('.card[data-pack="garage"]:not(.offline)')
    expect(card.locator('[data-field="soc"]')).to_contain_text("%")
    expect(card.locator(".cells span")).to_have_count(16)
    first_ts = card.locator(".age[data-ts]").get_attribute("data-ts")
    wait_until(lambda: card.locator(".age[data-ts]").get_attribute("data-ts") != first_ts, 10)
    assert "charge on" in card.inner_text() and page.title() == "Test gateway · Status"
    shot(page, "02-status")
    on_a_dark_phone(page, "03-status-dark-phone")

    # Battery: every cell, one hidden from the legend
    page.goto(f"{base}/battery.html")
    legend = page.locator("#cells .u-legend .u-series")
    expect(legend).to_have_count(17)  # time + 16 cells
    cell3 = legend.filter(has_text="Cell 3")
    cell3.locator(".u-label").click()
    expect(cell3).to_have_class(re.compile("u-off"))
    expect(page.locator("#cells .u-legend .u-series.u-off")).to_have_count(1)
    box = page.locator("#cells .u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    shot(page, "04-battery-cell3-hidden")

    page.goto(f"{base}/monitor.html")
    expect(page.locator("#power .u-legend .u-series")).to_have_count(4)
    shot(page, "05-monitor")

    # History: the day's CSV downloads
    page.goto(f"{base}/history.html")
    link = page.locator("a[data-csv]").first
    expect(link).to_be_visible()
    with page.expect_download() as download:
        link.click()
    csv_path = download.value.path()
    header, first_row = Path(csv_path).read_text().splitlines()[:2]
    assert first_row.split(",")[0].endswith("+14:00")  # CSV rows in the site's zone
    assert header.startswith("time,cell_1,cell_2") and download.value.suggested_filename.startswith(
        "garage_"
    )
    shot(page, "06-history")
    # on a phone each day's links stay on one line (an inline box that wraps has two rects)
    resize(page, PHONE)
    expect(page.locator("#days a[data-day]").first).to_be_visible()
    lines = page.eval_on_selector_all("#days a", "as => as.map(a => a.getClientRects().length)")
    assert lines and set(lines) == {1}, lines
    shot(page, "06-history-phone")
    resize(page, WINDOW)

    page.goto(f"{base}/health.html")
    expect(page.locator(".card h2")).to_have_text("Garage")
    shot(page, "07-health")

    # Control: charge MOS off, confirmed by the state read back from the BMS; then on again
    page.goto(f"{base}/control.html")
    row = page.locator('[data-pack="garage"] [data-action="set_charge_mos"]')
    expect(row.locator("[data-state]")).to_have_text("on")
    row.locator('button[data-value="false"]').click()
    expect(page.locator("#msg")).to_have_text("garage: charge MOS confirmed by the BMS: off")
    expect(row.locator("[data-state]")).to_have_text("off")
    shot(page, "08-control-charge-off")
    row.locator('button[data-value="true"]').click()
    expect(page.locator("#msg")).to_have_text("garage: charge MOS confirmed by the BMS: on")

    # Tunnel: open for a window, see it open, close it
    page.goto(f"{base}/tunnel.html")
    expect(page.locator("#state")).to_have_text("closed")
    page.click("#open")
    expect(page.locator("#msg")).to_contain_text("Tunnel open on port")
    expect(page.locator("#client")).to_have_text("no client connected")
    expect(page.locator("#left")).to_contain_text("idle limit 2 min 0 s")
    shot(page, "10-tunnel-open")
    page.click("#close")
    expect(page.locator("#msg")).to_have_text("Tunnel closed")

    # Sniffer: the reader's frames live; a DALY 0x90 request answered and decoded
    page.goto(f"{base}/sniffer.html")
    expect(page.locator("#frames .from_bms").first).to_be_visible()
    page.fill("#hex", "a5 40 90 08 00 00 00 00 00 00 00 00 7d")
    page.click("#send")
    expect(page.locator("#msg")).to_contain_text("13 bytes back", timeout=12_000)
    expect(page.locator("#answer")).to_contain_text('"soc"')
    shot(page, "11-sniffer")

    # Tokens: times in the site's zone, whatever the browser's
    page.goto(f"{base}/tokens.html")
    page.fill("#name", "zone check")
    page.click("#create")
    made = page.locator("#tokens tr[data-token] td").nth(1)
    expect(made).not_to_have_text("never")
    created = page.evaluate("async () => (await bms.api('/api/auth/tokens'))[0].created")
    site = (
        datetime.fromisoformat(created)
        .astimezone(ZoneInfo(SITE_ZONE))
        .strftime("%Y-%m-%d %H:%M:%S")
    )
    assert made.inner_text() == site and page.evaluate("bms.zone()") == SITE_ZONE

    # Settings: the effective configuration, no secret shown
    page.goto(f"{base}/settings.html")
    expect(page.locator("#settings")).to_contain_text('"sniff": true')
    # the version under every page; the way to upgrade this install, and a backup made first
    expect(page.locator("footer.about #version")).to_have_text(VERSION)
    expect(page.locator("#installed")).to_have_text(f"bmsgate {VERSION}, installed as git")
    expect(page.locator("#upgrade-commands")).to_contain_text("git pull --ff-only")
    page.click("#backup")
    expect(page.locator("#upgrade-msg")).to_contain_text("Backup made: ")
    shot(page, "12-settings-upgrade")

    # log out, and in again through the login page. Each wait is for the page's own event within
    # watch()'s 20 s: on a loaded 2-core machine a login (scrypt) and a page's load take seconds
    page.click("#login-button")  # the settings page needs a login: it sends the browser to log in
    page.wait_for_url(f"{base}/login.html?next=settings.html")
    # the title is set in the step that gives the form its handler: a click before would reload
    expect(page).to_have_title("Test gateway · Login", timeout=LOADED)
    expect(page.locator("#heading")).to_have_text("Log in")
    page.fill("#password", "not the password")
    with page.expect_response(f"{base}/api/auth/login") as wrong:
        page.click("#submit")
    assert wrong.value.status == 401
    expect(page.locator("#msg")).to_have_text("wrong password")
    shot(page, "09-login-wrong")
    page.fill("#password", PASSWORD)
    with page.expect_response(f"{base}/api/auth/login") as right:
        page.click("#submit")
    assert right.value.status == 204
    # the login page's navigation, loaded; the page then names its first tab (#batteries), so
    # its address is settings.html only for a moment: either is the Settings page
    page.wait_for_url(re.compile(rf"^{re.escape(base)}/settings\.html(#[a-z]+)?$"))
    # logged in again: the settings page shows the settings (it sends a stranger to log in)
    expect(page.locator("#settings")).to_contain_text('"sniff": true', timeout=LOADED)
    expect(page).to_have_url(f"{base}/settings.html#batteries")

    # the only failed request is the wrong password, on purpose
    wrong_login = refusal(401, f"{base}/api/auth/login")
    assert sorted(problems) == sorted(wrong_login)

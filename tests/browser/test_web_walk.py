"""Every page of the web UI at a laptop's and a phone's size, light and dark, in Debian's
chromium against the running stack (two simulated JK-PB boards as a bank on a pty -> reader ->
Mosquitto -> history + API): no console error, no failed request, nothing wider than the
screen, and no axe-core violation of WCAG 2.0/2.1 A and AA (colour contrast among them). axe-core
comes from the web UI's npm lockfile (a dev dependency; scripts/setup.sh runs npm ci).
Screenshots go to build/test-artifacts/web/walk.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.axe import AXE, axe_source, check
from tests.support.browser import (
    SIZES,
    UNLINKED_PAGES,
    Settled,
    first_visit,
    refusal,
    shot,
    start_bank_stack,
    start_garage_stack,
    watch,
    web_pages,
)
from tests.support.procs import Mosquitto, Proc

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-walk"
THEMES = ("light", "dark")
SHOTS = Path(__file__).parents[2] / "build" / "test-artifacts" / "web" / "walk"


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> str:
    """Two JK-PB boards as a bank, control on, a publisher target for the exports."""
    return start_bank_stack(tmp_path, mosquitto, procs)


@pytest.fixture
def quiet_stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> str:
    """One DALY pack, control off (the default), no publisher target: what a new install has."""
    return start_garage_stack(tmp_path, mosquitto, procs, services=("reader", "api"))


@pytest.mark.timeout(480)  # 64 page views with axe: about 70 s, minutes on a loaded machine
def test_every_page_at_two_sizes_in_both_themes_passes_axe(
    stack: str, browser_context: Any
) -> None:
    axe = axe_source()
    version = json.loads((AXE / "package.json").read_text())["version"]
    base, page = stack, browser_context.new_page()
    problems = watch(page)
    settled = Settled(page)
    SHOTS.mkdir(parents=True, exist_ok=True)

    def walk(name: str) -> None:
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            size = f"{width}x{height}"
            page.emulate_media(color_scheme="light")
            page.goto(f"{base}/{name}")
            if name not in UNLINKED_PAGES:
                page.wait_for_selector("header nav a", state="attached")
            settled.wait(page)
            for theme in THEMES:
                page.emulate_media(color_scheme=theme)
                page.wait_for_timeout(150)  # the charts follow the theme
                where = f"{name} {size} {theme}"
                problems.extend(check(page, axe, where))
                page.screenshot(path=str(SHOTS / f"{name[:-5]}-{size}-{theme}.png"), full_page=True)

    started = time.monotonic()
    # the first visit: the page that sets the password
    walk("login.html")
    first_visit(page, base, PASSWORD)
    page.wait_for_selector('.card[data-pack="east"] [data-field="soc"]')
    pages = web_pages(page)
    for name in pages:
        walk(name)
    took = time.monotonic() - started
    # the IoT MQTT Panel file, fetched first, is saved as the file the app restores
    page.goto(f"{base}/export.html")
    with page.expect_download() as download:
        page.click("#iotmqttpanel")
    assert download.value.suggested_filename == "IotMQTTPanel-bmsgate.json"
    assert json.loads(Path(download.value.path()).read_text())["dataVersion"] == 152
    walked = (len(pages) + 1) * len(SIZES) * len(THEMES)
    print(f"axe-core {version}: {walked} page views in {took:.0f} s")
    (SHOTS / "problems.txt").write_text("".join(f"{p}\n" for p in problems))
    assert not problems, "\n".join(problems)


def test_control_off_is_a_note_and_a_refused_download_is_said(
    quiet_stack: str, browser_context: Any
) -> None:
    """Control off: Control, BMS settings and Tunnel say so as a note with the way to turn it
    on (no red error, no broken sentence); without a target the IoT MQTT Panel file is refused
    in words on the page and nothing is saved."""
    from playwright.sync_api import expect

    axe = axe_source()
    base, page = quiet_stack, browser_context.new_page()
    problems = watch(page)
    settled = Settled(page)
    downloads: list[Any] = []
    page.on("download", lambda d: downloads.append(d))
    first_visit(page, base, PASSWORD)
    page.wait_for_selector('.card[data-pack="garage"] [data-field="soc"]')
    for name in ("control.html", "bms.html", "tunnel.html"):
        page.goto(f"{base}/{name}")
        note = page.locator("#disabled")
        expect(note).to_be_visible()
        expect(note).to_have_class("msg info")
        expect(note.locator('a[href="settings.html#control"]')).to_have_text(
            "Settings → Control and remote access → Control → Enabled"
        )
        assert note.evaluate("e => getComputedStyle(e).color") == page.evaluate(
            "getComputedStyle(document.body).color"
        )  # the text colour, not the error red
        settled.wait(page)
        for theme in THEMES:
            page.emulate_media(color_scheme=theme)
            problems.extend(check(page, axe, f"{name} control off {theme}"))
        page.emulate_media(color_scheme="light")
    expect(page.locator("#state")).to_have_text("not running (control is off)")
    expect(page.locator("#state")).to_have_class("pill off")
    shot(page, "walk-tunnel-control-off")
    note = page.locator("#disabled a")
    note.click()
    expect(page.locator('#tabs button[data-tab="control"]')).to_have_attribute(
        "aria-selected", "true"
    )

    page.goto(f"{base}/export.html")
    settled.wait(page)
    page.click("#iotmqttpanel")
    expect(page.locator("#iot-msg")).to_have_text(
        "Not downloaded: no publisher target sends the dongle's packets: add an MQTT target "
        "with dongle packets on (Settings, Outputs; publisher.targets in the file, "
        "docs/publisher.md)"
    )
    expect(page.locator("#iot-msg")).to_have_class("msg err")
    shot(page, "walk-export-refused")
    assert not downloads
    assert sorted(problems) == sorted(refusal(409, f"{base}/api/export/iotmqttpanel.json")), (
        "\n".join(problems)
    )

"""Every state a user reaches in the web UI, not only each page as it opens, through axe-core
(WCAG 2.0/2.1 A and AA, colour contrast among them) and the sideways-scroll check, at a laptop's
and a phone's size, light and dark (dark as the ◐ toggle sets it; one state with the toggle
light on a dark system). Debian's chromium against the running stack: two simulated JK-PB boards
as a bank on a pty -> reader -> Mosquitto -> history + API, and a DALY board for the setup wizard.

The states: every Settings tab with every section and list item unfolded, a field refused beside
it, the YAML tab, a save's answer; Status's folds, the header's menu open on a phone and the
connection-lost banner; Energy by year; a control command confirmed and one refused; a token
made and a viewer account; the factory reset's password refused; the login refused; the setup
wizard's five steps; and so on, page by page (``STATES``). A page of the web UI without an entry
there fails the test, so a new page is walked too. A seeded violation in a folded section must be
found once the walk unfolds it: the check can fail, and unfolding is what finds it.
Screenshots go to build/test-artifacts/web/states.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.axe import axe_source, check
from tests.support.browser import (
    SIZES,
    Settled,
    first_visit,
    refusal,
    start_bank_stack,
    watch,
    web_pages,
)
from tests.support.procs import Mosquitto, Proc, start_simulator, wait_until

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-states"
SHOTS = Path(__file__).parents[2] / "build" / "test-artifacts" / "web" / "states"
# the themes a state is checked in: the system's light, and dark as the ◐ toggle sets it
THEMES = ("light", "dark")
UNFOLD = "() => document.querySelectorAll('details').forEach(d => { d.open = true; })"


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> tuple[str, str]:
    """The bank stack (control on, a publisher target) and a DALY board on a pty of its own
    for the setup wizard to find; the API's base URL and that pty."""
    base = start_bank_stack(tmp_path, mosquitto, procs)
    sim, port = start_simulator(tmp_path, "daly_classic", "--speed", "30", name="wizard")
    procs.append(sim)
    return base, port


def set_theme(page: Any, theme: str | None) -> None:
    """What the ◐ toggle does: the theme on the root element, remembered for the next page;
    None: the system's again."""
    page.evaluate(
        "t => { if (t) { document.documentElement.dataset.theme = t;"
        " localStorage.setItem('bmsgate-theme', t); } else {"
        " delete document.documentElement.dataset.theme;"
        " localStorage.removeItem('bmsgate-theme'); } }",
        theme,
    )


class Walk:
    """Opens pages, brings them to a state, and checks each state at every size and theme."""

    def __init__(self, page: Any, base: str) -> None:
        self.page, self.base = page, base
        self.axe = axe_source()
        self.problems = watch(page)
        self.expected: set[str] = set()  # what refusals asked for on purpose leave in problems
        self.settled = Settled(page)
        self.views = 0

    def open(self, name: str) -> None:
        self.page.goto(f"{self.base}/{name}")
        if name not in ("login.html", "setup.html"):
            self.page.wait_for_selector("header nav a", state="attached")
        self.settled.wait(self.page)

    def state(self, where: str, sizes: tuple[tuple[int, int], ...] = SIZES) -> None:
        """Check the page as it is now; it is left at the laptop's size in the system's theme."""
        page = self.page
        for width, height in sizes:
            page.set_viewport_size({"width": width, "height": height})
            for theme in THEMES:
                set_theme(page, theme)
                page.wait_for_timeout(150)  # the charts follow the theme
                label = f"{where} {width}x{height} {theme}"
                self.problems.extend(check(page, self.axe, label))
                slug = "".join(c if c.isalnum() else "-" for c in label)
                page.screenshot(path=str(SHOTS / f"{slug}.png"), full_page=True)
                self.views += 1
        page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})
        set_theme(page, None)

    def reach(
        self,
        click: str,
        shown: str,
        where: str,
        sizes: tuple[tuple[int, int], ...] = SIZES,
        refused: tuple[int, str] | None = None,
    ) -> None:
        """Click ``click``, wait for ``shown`` (``refused``: the status and API path it asks
        for on purpose), check."""
        if refused:
            self.expect_refused(*refused)
        self.page.click(click)
        expect()(self.page.locator(shown).first).to_be_visible(timeout=30_000)
        self.settled.wait(self.page)
        self.state(where, sizes)

    def expect_refused(self, status: int, path: str) -> None:
        """A refusal (``status``) of API ``path`` that the next state asks for on purpose."""
        self.expected.update(refusal(status, f"{self.base}/{path}"))


def expect() -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


# --- the states of each page, after its first (which test_web_walk checks) -------------------


def status_states(w: Walk) -> None:
    page = w.page
    w.open("index.html")
    page.wait_for_selector('.card[data-pack="east"] [data-field="soc"]')
    page.evaluate(UNFOLD)  # a bank's members' cells, folded per member
    w.state("index.html members unfolded")
    # the dongle's other layout for a JK pack (remembered in the browser: set back below)
    page.click('.card[data-pack="east"] [data-layout="daly"]')
    expect()(page.locator('.card[data-pack="east"] [data-layout="daly"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    w.state("index.html a JK pack in the DALY layout")
    page.click('.card[data-pack="east"] [data-layout="jk"]')
    # a phone: the links folded into the header's menu, opened
    page.set_viewport_size({"width": SIZES[1][0], "height": SIZES[1][1]})
    page.click("header .menu")
    expect()(page.locator("header .menu")).to_have_attribute("aria-expanded", "true")
    w.state("index.html menu open", sizes=(SIZES[1],))
    page.reload()
    w.settled.wait(page)
    # the ◐ toggle itself: light on a dark system, then dark
    page.emulate_media(color_scheme="dark")
    page.click('header button[aria-label="light / dark"]')
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    w.problems.extend(check(page, w.axe, "index.html toggled light on a dark system"))
    page.click('header button[aria-label="light / dark"]')
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.emulate_media(color_scheme="light")
    w.problems.extend(check(page, w.axe, "index.html toggled dark on a light system"))


def connection_lost(w: Walk, api: Proc) -> None:
    """Status with the API hung: the banner, every value greyed."""
    page = w.page
    w.open("index.html")
    page.wait_for_selector('.card[data-pack="east"] [data-field="soc"]')
    assert api.process.pid
    os.kill(api.process.pid, signal.SIGSTOP)
    try:
        expect()(page.locator("#lost")).to_be_visible(timeout=15_000)
        w.state("index.html connection lost", sizes=(SIZES[0],))
    finally:
        os.kill(api.process.pid, signal.SIGCONT)
    expect()(page.locator("#lost")).to_be_hidden(timeout=15_000)


def offline(w: Walk, sim: Proc) -> None:
    """Status and Control with both boards silent: their packs offline, greyed."""
    page = w.page
    assert sim.process.pid
    os.kill(sim.process.pid, signal.SIGSTOP)
    try:
        w.open("index.html")
        expect()(page.locator('#packs .card.offline[data-pack="west"]')).to_be_visible(
            timeout=30_000
        )
        w.state("index.html packs offline")
        w.open("control.html")
        expect()(page.locator("#packs .card.offline").first).to_be_visible()
        w.state("control.html packs offline", sizes=(SIZES[0],))
    finally:
        os.kill(sim.process.pid, signal.SIGCONT)
    w.open("index.html")
    expect()(page.locator('#packs .card:not(.offline)[data-pack="west"]')).to_be_visible(
        timeout=30_000
    )


def energy_states(w: Walk) -> None:
    page = w.page
    w.open("energy.html?pack=house")
    page.click('[data-by="month"]')
    expect()(page.locator("#figures tbody tr")).to_have_count(12)
    w.settled.wait(page)
    w.state("energy.html year")
    page.click("#prev")
    w.settled.wait(page)
    w.state("energy.html the year before")


def history_states(w: Walk) -> None:
    w.open("history.html")
    # yesterday: nothing archived, said so
    w.reach("#prev", "#chart-msg", "history.html a day without data")
    # today's file of the first pack deleted (confirmed): said so, the list without it
    w.reach("#days button[data-delete]", "#msg.ok", "history.html a day deleted")


def control_states(w: Walk) -> None:
    page = w.page
    w.open("control.html")
    east = page.locator('.card[data-pack="east"]')
    # confirmed (the dialog is accepted), then read back: the answer in words
    east.locator('[data-action="set_charge_mos"] button[data-value="false"]').click()
    expect()(page.locator("#msg")).to_contain_text("confirmed by the BMS", timeout=30_000)
    w.state("control.html a command confirmed")
    east.locator('[data-action="set_charge_mos"] button[data-value="true"]').click()
    expect()(page.locator("#msg")).to_contain_text("confirmed by the BMS: on", timeout=30_000)
    w.settled.wait(page)  # the cards drawn again after the answer: the SOC field is the new one
    # refused by the API: an SOC out of range (400)
    east.locator("[data-soc]").fill("150")
    w.expect_refused(400, "api/packs/east/commands")
    east.locator('[data-action="set_soc"] button').click()
    expect()(page.locator("#msg.err")).to_contain_text("0..100")
    w.state("control.html a command refused")


def bms_states(w: Walk) -> None:
    page = w.page
    w.open("bms.html")
    page.click('#tabs button[data-pack="west"]')
    expect()(page.locator('#tabs button[data-pack="west"]')).to_have_attribute(
        "aria-selected", "true"
    )
    w.settled.wait(page)
    row = page.locator('tr[data-key="balance_start_voltage"]')
    row.locator("input").fill("3.41")
    row.locator("button").click()  # confirmed: the dialog is accepted
    expect()(page.locator("#msg.ok")).to_contain_text("read back from the BMS", timeout=30_000)
    w.state("bms.html second pack, a setting written")
    row.locator("input").fill("9")
    w.reach(
        'tr[data-key="balance_start_voltage"] button',
        "#msg.err",
        "bms.html a setting refused",
        (SIZES[0],),
        (400, "api/packs/west/settings/balance_start_voltage"),
    )


def tunnel_states(w: Walk) -> None:
    w.open("tunnel.html")
    # no tunnel service in this stack: said so
    w.reach("#open", "#msg", "tunnel.html open refused", refused=(504, "api/packs/east/tunnel"))


def sniffer_states(w: Walk) -> None:
    page = w.page
    w.open("sniffer.html")
    page.click("#buses button[data-enable='true']")
    expect()(page.locator("#busmsg")).to_contain_text("sniffer on")
    expect()(page.locator("#frames > *").first).to_be_attached(timeout=20_000)
    page.click("#pause")
    w.state("sniffer.html frames")
    page.fill("#hex", "zz")
    w.reach("#send", "#msg", "sniffer.html a bad frame", (SIZES[0],), (422, "api/packs/east/raw"))
    page.click("#buses button[data-enable='false']")
    expect()(page.locator("#busmsg")).to_contain_text("sniffer off")


def export_states(w: Walk) -> None:
    page = w.page
    w.open("export.html")
    page.locator("#hasp-pages button").last.click()
    w.settled.wait(page)
    w.state("export.html openHASP last page")


def tokens_states(w: Walk) -> None:
    page = w.page
    w.open("tokens.html")
    page.fill("#viewer-name", "anna")
    page.fill("#viewer-password", "anna-phone-password")
    page.locator("#viewer-packs input").first.check()
    page.click("#create-viewer")
    expect()(page.locator('#viewers tr[data-viewer="anna"]')).to_be_visible()
    page.fill("#name", "spreadsheet")
    page.click("#create")
    expect()(page.locator("#made")).to_be_visible()
    page.select_option("#scope", "control")  # a control token sees every pack: boxes off
    w.state("tokens.html a token and an account made")


def settings_states(w: Walk) -> None:
    page = w.page
    w.open("settings.html")
    tabs = page.locator("#tabs button").evaluate_all("bs => bs.map(b => b.dataset.tab)")
    assert "yaml" in tabs and len(tabs) >= 5, tabs
    for tab in tabs:
        page.click(f'#tabs button[data-tab="{tab}"]')
        expect()(page.locator(f'#tabs button[data-tab="{tab}"]')).to_have_attribute(
            "aria-selected", "true"
        )
        page.evaluate(UNFOLD)  # every section and list item
        w.settled.wait(page)
        w.state(f"settings.html#{tab} unfolded")
    # a value refused beside its field as it is typed
    page.click('#tabs button[data-tab="batteries"]')
    page.evaluate(UNFOLD)
    poll = page.locator('.field[data-key="buses.0.poll_interval"]')
    poll.locator("input").fill("-1")
    poll.locator("input").press("Tab")
    expect()(poll.locator(".field-error")).to_have_text("must be at least 0")
    w.state("settings.html a field refused")
    page.click("#form-reset")
    page.evaluate(UNFOLD)
    poll.locator("input").fill("0.6")  # a change the reader reads at start: a restart is offered
    # a save: the answer and the services to restart
    w.reach("#form-save", "#restart-listed", "settings.html saved, restart offered")


def system_states(w: Walk) -> None:
    page = w.page
    w.open("system.html")
    page.fill("#log-filter", "INFO")
    page.fill("#reset-password", "not the password")
    w.reach(
        "#reset-form button[type=submit]",
        "#reset-msg",
        "system.html log filtered, reset refused",
        refused=(403, "api/system/factory-reset"),
    )


def login_states(w: Walk) -> None:
    """Logged out: a wrong password refused; then logged in again."""
    page = w.page
    w.open("index.html")
    page.click("#login-button")
    page.wait_for_url("**/login.html**")
    page.fill("#password", "not the password")
    w.reach("#submit", "#msg", "login.html refused", refused=(401, "api/auth/login"))
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_selector('.card[data-pack="east"]')


def setup_states(w: Walk, port: str) -> None:
    """The wizard's steps with a real board found; last, as it writes the configuration."""
    page = w.page
    w.open("setup.html")
    page.fill("#other", port)
    page.click("#add-port")
    w.state("setup.html 1 a port added")
    page.select_option("#protocol", "daly_classic")
    page.click("#scan")
    expect()(page.locator("#step-names")).to_be_visible(timeout=60_000)
    expect()(page.locator("#step-outputs")).to_be_visible()
    w.state("setup.html 2-4 found, names, outputs")
    page.fill("#notify", "json://127.0.0.1:9/nobody")
    w.expect_refused(503, "api/setup/notify-test")
    page.click("#notify-test")
    expect()(page.locator("#out-msg.err")).to_be_visible(timeout=30_000)
    page.fill("#lat", "48.21")
    page.fill("#lon", "16.37")
    page.click("#find-tz")
    expect()(page.locator("#tz")).to_have_text("Europe/Vienna")
    w.state("setup.html 4 a test message refused, the zone found")
    w.expect_refused(404, "api/packs/pack-1/state")  # no reader here runs the new file
    page.click("#write")
    expect()(page.locator("#write-msg")).to_contain_text("Polling starts now", timeout=30_000)
    w.state("setup.html 5 written")


# every page of the web UI: its states after the first, or why it has none
STATES: dict[str, Callable[[Walk], None] | str] = {
    "index.html": status_states,  # and the connection lost, below
    "energy.html": energy_states,
    "battery.html": "its pickers redraw the same charts",
    "monitor.html": "its controls reload the same charts",
    "history.html": history_states,
    "health.html": "one view, nothing to open",
    "control.html": control_states,
    "bms.html": bms_states,
    "tunnel.html": tunnel_states,
    "sniffer.html": sniffer_states,
    "export.html": export_states,
    "tokens.html": tokens_states,
    "settings.html": settings_states,
    "system.html": system_states,
    "login.html": login_states,
    "setup.html": "setup_states, last",
}


def seeded_violation_is_found_once_unfolded(w: Walk) -> None:
    """Faint text in a folded section: unseen folded, found by the walk's unfolding."""
    page = w.page
    w.open("settings.html")
    page.evaluate(
        "() => document.querySelector('#forms').insertAdjacentHTML('afterbegin', '<details"
        ' id="seeded"><summary>seeded</summary><p style="color:#c8c8c8">faint</p></details>\')'
    )
    folded = check(page, w.axe, "seeded, folded")
    assert not [p for p in folded if "color-contrast" in p], folded
    page.evaluate(UNFOLD)
    found = check(page, w.axe, "seeded, unfolded")
    assert [p for p in found if "color-contrast" in p and "#seeded" in p], found
    page.reload()


@pytest.mark.timeout(900)  # about 170 axe runs: minutes on a loaded machine
def test_every_state_of_every_page_passes_axe(
    stack: tuple[str, str], procs: list[Proc], browser_context: Any
) -> None:
    base, wizard_port = stack
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser_context.new_page()
    w = Walk(page, base)
    started = time.monotonic()

    # the first visit: two passwords that differ, refused in words
    page.goto(f"{base}/")
    page.fill("#password", PASSWORD)
    page.fill("#again", PASSWORD + "x")
    page.click("#submit")
    expect()(page.locator("#msg")).to_be_visible()
    w.state("login.html first visit, passwords differ", sizes=(SIZES[0],))
    first_visit(page, base, PASSWORD)
    page.wait_for_selector('.card[data-pack="east"] [data-field="soc"]')
    pages = web_pages(page)
    assert sorted(STATES) == sorted(pages), f"a page without states: {pages}"
    wait_until(lambda: page.request.get(f"{base}/api/packs/west/state").status == 200, timeout=20)

    seeded_violation_is_found_once_unfolded(w)
    for name in pages:
        states = STATES[name]
        if callable(states):
            states(w)
    named = {p.name: p for p in procs}
    connection_lost(w, named["api"])
    offline(w, named["sim-jk_pb"])
    setup_states(w, wizard_port)

    took = time.monotonic() - started
    print(f"{w.views} state views in {took:.0f} s")
    problems = [p for p in w.problems if p not in w.expected]
    (SHOTS / "problems.txt").write_text("".join(f"{p}\n" for p in problems))
    assert not problems, "\n".join(problems)

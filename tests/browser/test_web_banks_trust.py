"""A bank is shown as a bank and offered nowhere a line is needed; the Status page says when it
has lost the API. Debian's chromium against the running stack: two simulated JK-PB boards on a pty
-> reader -> Mosquitto -> publisher (the bank), history (the daily figures) -> API. Screenshots go to build/test-artifacts/web.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import first_visit, shot, start_house_stack, watch
from tests.support.procs import (
    Mosquitto,
    Proc,
    wait_until,
)

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-3"


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> tuple[str, Proc]:
    """Two JK-PB boards as a bank, control on; the base URL and the API's process."""
    base = start_house_stack(
        tmp_path,
        mosquitto,
        procs,
        services=("reader", "publisher", "history", "api"),
        settings={"control": {"enabled": True}, "stale_after": 10},
    )
    return base, procs[-1]


def test_a_bank_is_never_offered_for_commands_tunnel_or_raw_frames(
    stack: tuple[str, Proc], browser_context: Any
) -> None:
    from playwright.sync_api import expect

    base, _ = stack
    page = browser_context.new_page()
    problems = watch(page)
    first_visit(page, base, PASSWORD)
    expect(page.locator('#banks .card.bank[data-pack="house"]')).to_be_visible()
    # the publisher's copy of the bank is on the backbone: the API lists it, marked as a bank
    cookies = {c["name"]: c["value"] for c in browser_context.cookies()}
    api = httpx.Client(base_url=base, cookies=cookies, timeout=10)
    listed = wait_until(
        lambda: (
            (found := {p["pack"]: p["bank"] for p in api.get("/api/packs").json()})
            and "house" in found
            and found
        ),
        timeout=20,
    )
    assert listed == {"east": False, "house": True, "west": False}

    page.goto(f"{base}/control.html")
    expect(page.locator("#packs .card[data-pack]")).to_have_count(2)
    expect(page.locator('#packs .card[data-pack="house"]')).to_have_count(0)
    shot(page, "40-control-no-bank")
    for where in ("tunnel.html", "sniffer.html"):
        page.goto(f"{base}/{where}")
        options = page.locator("#pack option")
        expect(options).to_have_count(2)
        assert options.evaluate_all("os => os.map(o => o.value)") == ["east", "west"]
    page.goto(f"{base}/tunnel.html?pack=house")  # a link to the bank does not pick it
    expect(page.locator("#pack")).to_have_value("east")
    page.goto(f"{base}/bms.html")
    expect(page.locator('#tabs button[data-pack="house"]')).to_have_count(0)

    # REST: refused at once in one line, nothing waits for a reader that does not exist
    for path, body, what in (
        ("commands", {"action": "set_charge_mos", "value": False}, "commands"),
        ("tunnel", {"action": "open", "minutes": 5}, "tunnels"),
        ("raw", {"data": "4e 57"}, "raw frames"),
    ):
        started = time.monotonic()
        got = api.post(f"/api/packs/house/{path}", json=body, headers={"Origin": base})
        assert got.status_code == 400, got.text
        assert time.monotonic() - started < 2
        want = f"'house' is a bank: {what} go to its member packs (east, west)"
        assert got.json()["detail"] == want
    api.close()
    assert not problems, problems


def test_status_says_when_the_api_is_lost_and_last_seen_ticks(
    stack: tuple[str, Proc], browser_context: Any, procs: list[Proc]
) -> None:
    from playwright.sync_api import expect

    base, api = stack
    page = browser_context.new_page()
    problems = watch(page)
    first_visit(page, base, PASSWORD)
    east = page.locator('#packs .card[data-pack="east"]')
    expect(east.locator('[data-field="soc"]')).to_contain_text("%")
    lost = page.locator("#lost")
    expect(lost).to_be_hidden()

    # energy first: today's kWh in and out on every card; a bank's are its members' summed
    cookies = {c["name"]: c["value"] for c in browser_context.cookies()}
    with httpx.Client(base_url=base, cookies=cookies, timeout=10) as api_http:

        def summed() -> bool:
            days = [api_http.get(f"/api/packs/{p}/daily").json() for p in ("east", "west")]
            bank = api_http.get("/api/banks").json()[0]
            want = sum(d["energy_out"] for d in days)
            return bank["energy_out_today"] == pytest.approx(want) and want > 0

        wait_until(summed, timeout=30)
    for card in ('#packs .card[data-pack="east"]', '#banks .card[data-pack="house"]'):
        expect(page.locator(f'{card} [data-field="energy-out"]')).to_contain_text("kWh")
        expect(page.locator(f'{card} [data-field="energy-in"]')).to_contain_text("kWh")
    # a bank has no BMS and no cycle count: its card says when its members were last read;
    # a pack's header names its protocol as the registry labels it, not by its id
    house = page.locator('#banks .card[data-pack="house"]')
    expect(house).to_contain_text("members read")
    expect(house).not_to_contain_text("BMS read")
    expect(house).not_to_contain_text("Cycles")
    expect(east.locator("h2 small")).to_have_text("JK-PB (RS485 Modbus)")
    expect(east).to_contain_text("BMS read")

    # a hung API keeps its connection open: silence for two beats (2 s each here) is the sign
    os.kill(api.process.pid, signal.SIGSTOP)
    try:
        expect(lost).to_be_visible(timeout=10_000)
        expect(lost).to_contain_text("Connection to bmsgate lost")
        assert "stale" in page.evaluate("document.body.className")
        greyed = east.evaluate("el => getComputedStyle(el).filter")
        assert "grayscale" in greyed, greyed
        shot(page, "41-status-connection-lost")
    finally:
        os.kill(api.process.pid, signal.SIGCONT)
    expect(lost).to_be_hidden(timeout=15_000)
    assert "stale" not in page.evaluate("document.body.className")
    expect(east).not_to_have_class(re.compile(r"\boffline\b"))

    # a hung reader sends no offline word: the card greys once its reading is stale_after old
    reader = procs[1]
    os.kill(reader.process.pid, signal.SIGSTOP)
    try:
        expect(east).to_have_class(re.compile(r"\blate\b"), timeout=30_000)
        expect(east.locator(".age[data-ts]")).to_contain_text("not live")
        expect(lost).to_be_hidden()  # the API itself still beats
    finally:
        os.kill(reader.process.pid, signal.SIGCONT)
    expect(page.locator('#packs .card[data-pack="east"]')).not_to_have_class(
        re.compile(r"\blate\b"), timeout=30_000
    )

    # the boards stop answering: offline cards say when they were last read, counting up,
    # and the bank when its newest member reading came (never "never")
    sim = procs[0]
    os.kill(sim.process.pid, signal.SIGSTOP)
    try:
        offline = page.locator('#packs .card.offline[data-pack="east"]')
        expect(offline).to_be_visible(timeout=30_000)
        age = offline.locator(".age[data-ts]")
        first = age.text_content()
        wait_until(lambda: age.text_content() != first, timeout=5)
        bank = page.locator('#banks .card.offline[data-pack="house"]')
        expect(bank).to_be_visible(timeout=30_000)
        expect(bank).not_to_contain_text("never")
        expect(bank.locator(".age[data-ts]")).to_contain_text("s ago")
        expect(lost).to_be_hidden()  # the API is there; only the packs are offline
        shot(page, "42-status-offline-last-seen")
    finally:
        os.kill(sim.process.pid, signal.SIGCONT)

    # charts draw the history service's gaps as gaps: a null row inside each, samples inside null
    page.goto(f"{base}/battery.html?pack=east")
    expect(page.locator("#cells .uplot")).to_have_count(1, timeout=30_000)
    hole = '{start: "1970-01-01T00:00:03Z", end: "1970-01-01T00:02:10Z"}'
    gapped = page.evaluate(f"charts.gaps([[0, 1, 2, 3, 130, 131], [5, 6, 7, 8, 9, 10]], [{hole}])")
    assert gapped == [[0, 1, 2, 3, 66.5, 130, 131], [5, 6, 7, 8, None, 9, 10]]
    inside = page.evaluate(f"charts.gaps([[3, 60, 130], [1, 2, 3]], [{hole}])")
    assert inside == [[3, 60, 130], [1, None, 3]]  # a bank's partial sum is not drawn
    even = page.evaluate("charts.gaps([[0, 60, 120, 180], [1, 2, 3, 4]], [])")
    assert even == [[0, 60, 120, 180], [1, 2, 3, 4]]  # no gap: joined
    assert not problems, problems

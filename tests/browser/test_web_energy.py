"""The Energy page in Debian's chromium against the running stack: days of known energy go over
Mosquitto into the history service's archive; the page's bars and table must be the daily figures
the API gives (a bank its members summed), days without data shown as absent, month and year
navigation, the CSV download of the period shown equal to those figures, no console error, no
horizontal overflow on a phone or a laptop. Screenshots go to build/test-artifacts/web.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from services.api.tests.test_energy import csv_matches, past_days, publish, states_of_days

from tests.support.browser import (
    LAPTOP,
    at_sizes,
    first_visit,
    resize,
    shot,
    start_house_stack,
    watch,
)
from tests.support.procs import Mosquitto, Proc, wait_until

pytestmark = pytest.mark.integration
PASSWORD = "energy-gate-7"
ZONE = "Europe/Berlin"


def kwh(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def rgb(hex_colour: str) -> str:
    """``#3fb950`` as the browser gives a computed colour: ``rgb(63, 185, 80)``."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def shown_rows(page: Any) -> list[list[str]]:
    return page.locator("#figures tbody tr").evaluate_all(  # type: ignore[no-any-return]
        "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))"
    )


def check_matches(page: Any, report: dict[str, Any]) -> None:
    """The table and the bars show exactly the API's figures, absent rows as absent."""
    from playwright.sync_api import expect

    shown = page.locator("#figures tbody tr")
    expect(shown.first).to_have_attribute("data-period", report["rows"][0]["period"])
    expect(shown.last).to_have_attribute("data-period", report["rows"][-1]["period"])
    rows = shown_rows(page)
    assert len(rows) == len(report["rows"])
    for got, want in zip(rows, report["rows"], strict=True):
        assert got[1:3] == [kwh(want["energy_in"]), kwh(want["energy_out"])], (got, want)
        assert (got[3] == "no data") == (want["days"] == 0 and not want["future"]), (got, want)
    data = page.evaluate("energy.chart.data")
    assert data[1] == [r["energy_in"] for r in report["rows"]]
    assert data[2] == [
        None if r["energy_out"] is None else -r["energy_out"] for r in report["rows"]
    ]
    # the "no data" dots: days that have been, without data
    assert data[3] == [None if r["days"] or r["future"] else 0 for r in report["rows"]]
    foot = page.locator("#figures tfoot td").all_text_contents()
    assert foot[:2] == [kwh(report["energy_in"]), kwh(report["energy_out"])]


def download_matches(page: Any, report: dict[str, Any]) -> None:
    """The page's Download CSV saves the period shown: the API's ``report`` as CSV."""
    with page.expect_download() as saved:
        page.click("#csv")
    assert saved.value.suggested_filename == f"{report['pack']}_energy_{report['period']}.csv"
    csv_matches(Path(saved.value.path()).read_text(), report)


def test_the_energy_page_shows_the_daily_figures_as_bars_and_a_table(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc], browser_context: Any
) -> None:
    from playwright.sync_api import expect

    # no reader: only the days sent here are in the archive, so the figures hold still
    base = start_house_stack(
        tmp_path,
        mosquitto,
        procs,
        services=("history", "api"),
        settings={"timezone": ZONE, "history": {"archive": {"commit_interval": 0.2}}},
    )
    today = datetime.now(ZoneInfo(ZONE)).date()
    days = past_days(today)
    with ThreadPoolExecutor(1) as thread:  # playwright's loop runs on this thread
        thread.submit(asyncio.run, publish(mosquitto.port, states_of_days(days, ZONE))).result()
    d1 = date.fromordinal(today.toordinal() - 1)
    month = d1.isoformat()[:7]

    page = browser_context.new_page()
    problems = watch(page)
    first_visit(page, base, PASSWORD)
    # the session cookie once the password is set (the page logs in on its own)
    cookies = {c["name"]: c["value"] for c in wait_until(browser_context.cookies, timeout=20)}
    with httpx.Client(base_url=base, cookies=cookies, timeout=10) as api:

        def report(pack: str, path: str) -> dict[str, Any]:
            got = api.get(f"/api/packs/{pack}/energy/{path}")
            assert got.status_code == 200, got.text
            return got.json()  # type: ignore[no-any-return]

        def stored() -> bool:
            rows = report("house", f"days/{month}")["rows"]
            return next(r for r in rows if r["period"] == d1.isoformat())["energy_out"] == 2.25

        wait_until(stored, timeout=30)

        # the nav leads there; the bank's month, as the API has it
        page.goto(f"{base}/index.html")
        menu = page.locator("header .menu")  # the links folded into a menu where they do not fit
        if menu.is_visible():
            menu.click()
        page.locator('nav a[href="energy.html"]').click()
        expect(page).to_have_url(f"{base}/energy.html?pack=east&month={today.isoformat()[:7]}")
        page.goto(f"{base}/energy.html?pack=house&month={month}")
        expect(page.locator("#caption")).to_contain_text("House bank")
        house = report("house", f"days/{month}")
        check_matches(page, house)
        row = page.locator(f'#figures tbody tr[data-period="{d1.isoformat()}"]')
        expect(row.locator("td").nth(0)).to_have_text("0.50")
        expect(row.locator("td").nth(1)).to_have_text("2.25")  # east 0.25 + west 2.00
        if month == today.isoformat()[:7]:
            expect(page.locator("#next")).to_be_disabled()  # nothing after the running month

        # previous month and back; then the year's months, and the year before
        page.click("#prev")
        before = house["previous"]
        name = date.fromisoformat(f"{before}-01").strftime("%b %Y")
        expect(page.locator("#period")).to_have_text(name)
        expect(page).to_have_url(f"{base}/energy.html?pack=house&month={before}")
        check_matches(page, report("house", f"days/{before}"))
        page.click("#next")
        expect(page).to_have_url(f"{base}/energy.html?pack=house&month={month}")
        check_matches(page, report("house", f"days/{month}"))
        download_matches(page, report("house", f"days/{month}"))
        page.click('[data-by="month"]')
        expect(page).to_have_url(f"{base}/energy.html?pack=house&year={month[:4]}")
        expect(page.locator("#figures tbody tr")).to_have_count(12)
        check_matches(page, report("house", f"months/{month[:4]}"))
        download_matches(page, report("house", f"months/{month[:4]}"))
        page.click("#prev")
        expect(page).to_have_url(f"{base}/energy.html?pack=house&year={int(month[:4]) - 1}")
        check_matches(page, report("house", f"months/{int(month[:4]) - 1}"))

        # a pack: the other picker entry; its month shows its own days only
        page.goto(f"{base}/energy.html?pack=west&month={month}")
        expect(page.locator("#caption")).to_contain_text("West")
        check_matches(page, report("west", f"days/{month}"))
        download_matches(page, report("west", f"days/{month}"))

        # a laptop and a phone: nothing wider than the screen
        def show() -> None:
            page.goto(f"{base}/energy.html?pack=house&month={month}")
            check_matches(page, house)

        at_sizes(page, "50-energy", show)
        resize(page, LAPTOP)
        # the system's theme turns dark: the bars are drawn again in the dark theme's colours
        page.emulate_media(color_scheme="dark")
        dark = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--chg')")
        expect(page.locator(".u-legend .u-series").nth(1).locator(".u-marker")).to_have_css(
            "background-color", rgb(dark.strip())
        )
        shot(page, "50-energy-laptop-dark")
    assert not problems, problems

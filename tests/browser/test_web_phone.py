"""Phone first: the header, layout shift, the Status page's first request, configuration order,
folded bank cells, and no wrapped button or sideways scrolling at 390x844 and 1366x800.

Debian's chromium against the running stack: three simulated JK-PB boards of 16 cells on a pty
(configured in an order that is not the ids' order) as a 48-cell bank -> reader -> Mosquitto ->
publisher -> API. Screenshots go to build/test-artifacts/web.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (
    LAPTOP,
    PHONE,
    first_visit,
    fits,
    resize,
    shot,
    start_stack,
    watch,
    web_pages,
)
from tests.support.procs import Mosquitto, Proc

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-6"
ORDER = ["zeta", "alpha", "mid"]  # as configured: neither sorted nor reversed
BUS = {
    "protocol": "jk_pb",
    "poll_interval": 0.5,
    "packs": [
        {"id": pack, "name": pack.title(), "address": n} for n, pack in enumerate(ORDER, start=1)
    ],
}
BANK = {"id": "house", "name": "House bank", "packs": ORDER}

# before the page's own scripts: every layout shift, and when the first number is drawn
WATCH_PAGE = """
window.__shifts = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (e.hadRecentInput) continue;
    const moved = (e.sources || []).map(s => s.node ? `${s.node.nodeName}#${s.node.id || ""}.${s.node.className || ""} ` +
      `${Math.round(s.previousRect.y)}->${Math.round(s.currentRect.y)} h${Math.round(s.previousRect.height)}->${Math.round(s.currentRect.height)}` : "?");
    window.__shifts.push({ value: e.value, at: Math.round(e.startTime), moved });
  }
}).observe({ type: "layout-shift", buffered: true });
new MutationObserver((_, observer) => {
  if (document.querySelector('.card [data-field="soc"]')) {
    window.__firstNumber = performance.now();
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });
"""

# the API requests the page had started before its first number was drawn: path -> [start, end]
ASKED_BEFORE_NUMBERS = """() => Object.fromEntries(performance.getEntriesByType("resource")
  .filter(e => e.initiatorType === "fetch" && e.startTime < window.__firstNumber)
  .map(e => [new URL(e.name).pathname.replace(/^\\//, ""), [e.startTime, e.responseEnd]]))"""

# what is wrong on a page at this size besides sideways scrolling (fits): a button, link or fold
# whose text takes more than one line, a button pushed under the label of its row
WHAT_IS_WRONG = """() => {
  const wrong = [];
  const shown = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  for (const el of document.querySelectorAll("button, details.fold summary, nav a")) {
    if (!shown(el) || !el.textContent.trim()) continue;
    const text = document.createRange();
    text.selectNodeContents(el);
    const style = getComputedStyle(el);
    const line = style.lineHeight === "normal" ? 1.25 * parseFloat(style.fontSize) : parseFloat(style.lineHeight);
    if (text.getBoundingClientRect().height > 1.5 * line) wrong.push(`wraps: ${el.tagName} "${el.textContent.trim()}"`);
  }
  for (const row of document.querySelectorAll(".row")) {
    const first = row.firstElementChild;
    if (!shown(row) || !first || first.matches("button, label, input, select")) continue;
    for (const b of row.querySelectorAll(":scope > button")) {
      if (shown(b) && b.getBoundingClientRect().top >= first.getBoundingClientRect().bottom) {
        wrong.push(`under its label: "${b.textContent.trim()}" below "${first.textContent.trim()}"`);
      }
    }
  }
  return wrong;
}"""

PICKERS = {  # page -> its pack picker, every one starting at the first configured pack
    "energy.html": "#pack",
    "battery.html": "#pack",
    "monitor.html": "#pack",
    "history.html": "#pack",
    "tunnel.html": "#pack",
    "sniffer.html": "#pack",
    "export.html": "#hasp-pack",
}


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> str:
    """Three 16-cell JK-PB boards configured as zeta, alpha, mid and the 48-cell bank of them."""
    return start_stack(
        tmp_path,
        mosquitto,
        procs,
        ["jk_pb", "--boards", "3", "--cells", "16", "--speed", "30"],
        BUS,
        services=("reader", "publisher", "api"),
        settings={"banks": [BANK], "control": {"enabled": True}},
    )


def status_page(context: Any, base: str, size: tuple[int, int], name: str) -> tuple[Any, list[str]]:
    """The Status page at ``size`` once its first numbers are drawn and it has run a while."""
    from playwright.sync_api import expect

    page = context.new_page()
    resize(page, size)
    problems = watch(page)
    page.add_init_script(WATCH_PAGE)
    page.goto(f"{base}/")
    expect(page.locator('#banks .card[data-pack="house"] [data-field="soc"]')).to_be_visible()
    expect(page.locator('#packs .card[data-pack] [data-field="soc"]')).to_have_count(3)
    page.wait_for_timeout(3000)  # live updates replace the cards: they must not move anything
    shot(page, name)
    return page, problems


def test_status_on_a_phone_and_a_desktop(stack: str, browser_context: Any) -> None:
    from playwright.sync_api import expect

    base = stack
    login = browser_context.new_page()
    first_visit(login, base, PASSWORD)
    expect(login.locator('#banks .card[data-pack="house"]')).to_be_visible()
    login.close()

    for size, name in ((PHONE, "phone-status"), (LAPTOP, "desktop-status")):
        page, problems = status_page(browser_context, base, size, name)
        header = page.locator("header.top")
        height = header.bounding_box()["height"]
        compact = "compact" in (header.get_attribute("class") or "")
        shifts = page.evaluate("window.__shifts")
        shift = sum(s["value"] for s in shifts)
        asked = page.evaluate(ASKED_BEFORE_NUMBERS)
        print(f"{name}: header {height:.0f} px, layout shift {shift:.4f}, asked {asked}, {shifts}")
        # the navigation: at most 8 % of a phone's screen; every link in one row on a desktop
        if size is PHONE:
            assert compact and height <= 0.08 * size[1]
            expect(page.locator("nav#site-nav")).to_be_hidden()
            page.click("header .menu")
            for link in page.locator("nav#site-nav a").all():
                expect(link).to_be_visible()
            shot(page, "phone-menu")
            page.keyboard.press("Escape")
            expect(page.locator("nav#site-nav")).to_be_hidden()
        else:
            assert not compact and height <= 0.08 * size[1]
            for link in page.locator("nav#site-nav a").all():
                expect(link).to_be_visible()
        # nothing moves while the page fills in (the whole sum: stricter than CLS's window)
        assert shift < 0.1, shifts
        # the first numbers come from one request of the page's own, asked once the login check
        # allows reading, beside the setup check (the footer's version waits for nothing)
        assert set(asked) - {"api/version"} == {"api/auth/status", "api/setup/status", "api/status"}
        assert asked["api/status"][0] >= asked["api/auth/status"][1]
        assert asked["api/status"][0] < asked["api/setup/status"][1], asked
        # cards in the configuration's order, banks first
        cards = page.locator("#packs .card[data-pack]")
        assert [cards.nth(i).get_attribute("data-pack") for i in range(3)] == ORDER
        # the 48-cell bank folded per member: shut on a phone, open on a desktop
        folds = page.locator('#banks .card[data-pack="house"] details.fold')
        expect(folds).to_have_count(3)
        assert [f.text_content().split(":")[0] for f in folds.all()] == ["Zeta", "Alpha", "Mid"]
        opened = [f.get_attribute("open") is not None for f in folds.all()]
        assert opened == [size is not PHONE] * 3
        if size is PHONE:
            folds.first.locator("summary").click()
            page.wait_for_timeout(1500)  # the bank's card is drawn again at the next update
            expect(folds.first.locator(".cells > span")).to_have_count(16)
            expect(folds.first).to_have_attribute("open", "")
            expect(folds.nth(1)).not_to_have_attribute("open", "")
        fits(page, name)
        assert page.evaluate(WHAT_IS_WRONG) == []
        assert problems == []
        page.close()


def test_every_page_fits_a_phone_and_pickers_start_at_the_first_pack(
    stack: str, browser_context: Any
) -> None:
    from playwright.sync_api import expect

    base = stack
    page = browser_context.new_page()
    problems = watch(page)
    first_visit(page, base, PASSWORD)
    expect(page.locator('#banks .card[data-pack="house"]')).to_be_visible()
    pages = web_pages(page)
    assert set(PICKERS) <= set(pages), pages
    page.add_init_script(WATCH_PAGE)
    wrong: dict[str, list[str]] = {}
    moved: dict[str, float] = {}
    for size, prefix in ((PHONE, "phone"), (LAPTOP, "desktop")):
        resize(page, size)
        for where in pages:
            page.goto(f"{base}/{where}")
            drawn = "#heading" if where == "login.html" else "header.top"  # login: no navigation
            expect(page.locator(drawn)).to_be_visible()
            page.wait_for_timeout(1200)  # its data in
            if where in PICKERS:
                picker = page.locator(PICKERS[where])
                options = picker.locator("option").evaluate_all("os => os.map(o => o.value)")
                assert options[:3] == ORDER, (where, options)
                assert picker.input_value() == ORDER[0], where
            if where == "bms.html":
                tabs = page.locator("#tabs button")
                expect(tabs).to_have_count(3)
                assert tabs.evaluate_all("bs => bs.map(b => b.dataset.pack)") == ORDER
                expect(tabs.first).to_have_attribute("aria-selected", "true")
            if where == "control.html":
                cards = page.locator("#packs .card[data-pack]")
                expect(cards).to_have_count(3)
                assert cards.evaluate_all("cs => cs.map(c => c.dataset.pack)") == ORDER
            moved[f"{prefix} {where}"] = page.evaluate(
                "window.__shifts.reduce((sum, s) => sum + s.value, 0)"
            )
            shot(page, f"{prefix}-{where.removesuffix('.html')}")
            fits(page, prefix, where)
            if found := page.evaluate(WHAT_IS_WRONG):
                wrong[f"{prefix} {where}"] = found
    print("layout shift per page:", {k: round(v, 4) for k, v in moved.items()})
    # pages that fill in from their own requests keep their place meanwhile (the whole sum)
    for prefix in ("phone", "desktop"):
        for where in ("index.html", "settings.html", "system.html"):
            assert moved[f"{prefix} {where}"] < 0.1, (prefix, where, moved)
    assert wrong == {}, "\n".join(f"{k}: {v}" for k, v in wrong.items())
    assert problems == []

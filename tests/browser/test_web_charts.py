"""The History and Monitor charts in a real browser (Debian's chromium driven by playwright) against
the running stack: a simulated DALY pack on a pty -> reader -> Mosquitto -> history + API, with a
real outage (the simulator stopped) in the archive. Screenshots go to build/test-artifacts/web.
"""

from __future__ import annotations

import os
import re
import signal
import time
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.support.browser import (
    HOUSE_BANK,
    SITE_ZONE,
    at_sizes,
    first_visit,
    shot,
    start_garage_stack,
    watch,
)
from tests.support.procs import (
    Mosquitto,
    Proc,
    api_config,
    start_service,
    start_simulator,
    wait_for_api,
    wait_until,
)

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-6"
OUTAGE = 9.0  # [s] the simulator is stopped: far beyond the 5 s the gap rule allows at 0.5 s polls

# the series of the chart in ``sel`` as uPlot holds them: [times, ...columns]
DATA = "(sel) => charts.charts().find(c => c.root.parentElement.matches(sel)).data"
X = "(sel) => { const x = charts.charts().find(c => c.root.parentElement.matches(sel)).scales.x; return [x.min, x.max]; }"


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> str:
    """Simulator, reader, history and API as processes; an outage in the archive; the base URL."""
    return start_garage_stack(tmp_path, mosquitto, procs, settings={"timezone": SITE_ZONE})


def _outage(sim: Proc) -> None:
    os.kill(sim.process.pid, signal.SIGSTOP)
    try:
        time.sleep(OUTAGE)
    finally:
        os.kill(sim.process.pid, signal.SIGCONT)


def _contrast(page: Any, a: str, b: str) -> float:
    """WCAG contrast of two CSS colours as the browser resolves them."""
    return float(
        page.evaluate(
            """([a, b]) => {
              const rgb = (c) => { const el = document.createElement("i"); el.style.color = c;
                document.body.append(el); const v = getComputedStyle(el).color.match(/\\d+/g).map(Number);
                el.remove(); return v; };
              const lum = (c) => { const [r, g, b] = rgb(c).map(v => { v /= 255;
                return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
              const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
              return (x + 0.05) / (y + 0.05);
            }""",
            [a, b],
        )
    )


def test_history_and_monitor_charts(stack: str, procs: list[Proc], browser_context: Any) -> None:
    from playwright.sync_api import expect

    base, page = stack, browser_context.new_page()
    problems = watch(page)
    first_visit(page, base, PASSWORD)
    expect(page.locator('.card[data-pack="garage"]:not(.offline)')).to_be_visible(timeout=30_000)
    time.sleep(4)  # some samples, then the pack away, then back
    _outage(procs[0])
    time.sleep(5)

    queries: list[dict[str, list[str]]] = []
    page.on(
        "request",
        lambda r: queries.append(parse_qs(urlparse(r.url).query)) if "/history?" in r.url else None,
    )
    page.goto(f"{base}/history.html?pack=garage")
    expect(page.locator("#cells .uplot")).to_have_count(1, timeout=30_000)

    # the outage in the archive is a break in every line: a null between the samples either side
    # of it, and no two joined samples further apart than the gap rule allows
    times, power = page.evaluate(DATA, "#power")[:2]
    known = [(t, v) for t, v in zip(times, power, strict=True) if v is not None]
    assert len(known) > 10, known
    joined = [
        times[i + 1] - times[i]
        for i in range(len(times) - 1)
        if power[i] is not None and power[i + 1] is not None
    ]
    assert max(joined) < 5.5, max(joined)  # 5 s: the least the rule joins
    first, last = times.index(known[0][0]), times.index(known[-1][0])
    breaks = [i for i in range(first, last) if power[i] is None]
    assert breaks, "the outage is drawn as a line"
    outage = max(t2 - t1 for (t1, _), (t2, _) in pairwise(known))
    assert outage >= OUTAGE - 1, outage
    for sel in ("#current", "#cells", "#soc"):
        assert None in page.evaluate(DATA, sel)[1], sel
    around = [known[0][0] - 5, known[-1][0] + 5]  # the data's few seconds, zoomed in to see
    page.evaluate("([a, b]) => charts.charts()[0].setScale('x', { min: a, max: b })", around)
    assert page.evaluate(X, "#soc") == pytest.approx(around)  # the other charts follow
    shot(page, "60-history-gap")
    page.click("#reset")

    # the day's query: midnight to midnight in the site's zone; previous and next day move it
    day = page.input_value("#day")
    start = queries[-1]["start"][0]
    assert start.endswith("T10:00:00.000Z"), start  # 00:00 at UTC+14 is 10:00 UTC the day before
    expect(page.locator("#next")).to_be_disabled()  # today: nothing after it yet
    expect(page.locator("#live")).to_contain_text("updated every minute")
    page.click("#prev")
    wait_until(lambda: queries[-1]["start"][0] != start, 10)
    earlier = queries[-1]["start"][0]
    assert earlier[:10] < start[:10] and earlier[10:] == start[10:], (earlier, start)
    assert page.input_value("#day") < day
    expect(page.locator("#live")).to_have_text("")
    expect(page.locator("#chart-msg")).to_contain_text("No data on")
    page.click("#next")
    wait_until(lambda: queries[-1]["start"][0] == start, 10)
    assert page.input_value("#day") == day
    wait_until(lambda: len(page.evaluate(DATA, "#cells")[0]) > 10, 10)  # today's, drawn again

    # the cells at the cursor: the spread is max - min of the sample there, with its cells
    box = page.locator("#cells .u-over").bounding_box()
    assert box is not None
    for share in (0.3, 0.5, 0.7, 0.9):
        page.mouse.move(box["x"] + box["width"] * share, box["y"] + box["height"] / 2)
        readout = page.locator("#cells .cell-readout")
        idx = readout.get_attribute("data-idx")
        if idx:
            break
    assert idx, "no sample under the cursor"
    cells = page.evaluate(DATA, "#cells")
    sample = [col[int(idx)] for col in cells[1:]]
    values = [v for v in sample if v is not None]
    spread = max(values) - min(values)
    assert float(readout.get_attribute("data-delta") or "nan") == pytest.approx(spread, abs=1e-4)
    text = readout.inner_text()
    assert f"Δ {spread * 1000:.1f} mV" in text, text
    assert (
        f"(cell {sample.index(min(values)) + 1})" in text
        and f"(cell {sample.index(max(values)) + 1})" in text
    )
    shot(page, "61-history-cursor")

    # drag to zoom (every chart follows), then Reset zoom: the whole day again
    whole = page.evaluate(X, "#power")
    over = page.locator("#power .u-over").bounding_box()
    assert over is not None
    y = over["y"] + over["height"] / 2
    page.mouse.move(over["x"] + over["width"] * 0.2, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.4, y, steps=5)
    page.mouse.up()
    zoomed = page.evaluate(X, "#power")
    assert zoomed[1] - zoomed[0] < (whole[1] - whole[0]) / 3, (zoomed, whole)
    assert page.evaluate(X, "#cells") == pytest.approx(zoomed)
    shot(page, "62-history-zoomed")
    page.click("#reset")
    for sel in ("#power", "#current", "#cells", "#soc"):
        assert page.evaluate(X, sel) == pytest.approx(whole), sel
    page.evaluate("([a, b]) => charts.charts()[1].setScale('x', { min: a, max: b })", zoomed)
    assert page.evaluate(X, "#soc") == pytest.approx(zoomed)
    page.locator("#cells .u-over").dblclick()  # a double-click too: the whole day, every chart
    for sel in ("#power", "#current", "#cells", "#soc"):
        assert page.evaluate(X, sel) == pytest.approx(whole), sel

    # the theme toggle draws every chart again in the other theme's colours, each readable
    def colours() -> list[str]:
        return page.evaluate(
            """() => charts.charts().flatMap(c => c.series.slice(1).map((s, i) => s.stroke(c, i + 1)))"""
        )

    cell3 = page.locator("#cells .u-legend .u-series").filter(has_text="Cell 3")
    cell3.locator(".u-label").click()  # hidden in the legend: it stays hidden when redrawn
    expect(cell3).to_have_class(re.compile("u-off"))
    light = colours()
    was = page.evaluate("document.documentElement.dataset.theme || ''")
    page.locator('header button[title="light / dark"]').click()
    wait_until(lambda: colours() != light, 5)
    expect(cell3).to_have_class(re.compile("u-off"))
    theme = page.evaluate("charts.theme()")
    assert theme != (was or "light")
    now = colours()
    assert len(now) == len(light) and now != light
    for t in ("light", "dark"):
        page.evaluate(f"document.documentElement.dataset.theme = '{t}'")
        card = page.evaluate("bms.css('--card')")
        for c in page.evaluate(f"charts.palettes.{t}") + [
            page.evaluate(f"bms.css('{v}')") for v in ("--chg", "--dsg", "--accent", "--ok")
        ]:
            assert _contrast(page, c, card) >= 3, (t, c, card)  # a line seen against its card
        muted = page.evaluate("bms.css('--muted')")
        assert _contrast(page, muted, card) >= 4.5, (t, muted)  # axis labels are text
        fg = page.evaluate("getComputedStyle(document.querySelector('.u-legend')).color")
        assert _contrast(page, fg, card) >= 4.5, (t, fg)
    page.evaluate("document.documentElement.dataset.theme = 'dark'")
    shot(page, "63-history-dark")

    # Monitor: 168 hours, current beside power, the same gap
    page.goto(f"{base}/monitor.html?pack=garage")
    expect(page.locator("#current .uplot")).to_have_count(1, timeout=30_000)
    expect(page.locator("#power .u-legend .u-series")).to_have_count(4)
    page.select_option("#hours", "168")
    expect(page.locator("#power .u-title")).to_contain_text("168 h")
    current = page.evaluate(DATA, "#current")[1]
    values = [v for v in current if v is not None]
    assert values and None in current[current.index(values[0]) :]
    # the window's energy is the history's energy moved (kWh per point, they add up): the
    # 15-minute buckets of 168 h add up to what the same hours' raw samples say, and that is
    # the discharge power integrated (the sim discharges at a steady ~420 W)
    shown = page.locator("#energy").inner_text()
    kwh = re.search(r"discharged ([\d.]+) kWh", shown)
    assert kwh, shown
    moved = page.evaluate(
        """async () => {
          const sum = (r, n) => charts.values(r, n).reduce((a, b) => a + (b || 0), 0);
          const week = await charts.history("garage", ["energy_out"], 168);
          const raw = await charts.history("garage", ["energy_out", "power"], 1);
          const t = raw.times, p = charts.values(raw, "power");
          let wh = 0;
          for (let i = 1; i < t.length; i++) if (p[i] !== null && p[i - 1] !== null && t[i] - t[i - 1] < 5000)
            wh += (Math.max(-p[i], 0) + Math.max(-p[i - 1], 0)) / 2 * (t[i] - t[i - 1]) / 3.6e6;
          return { week: sum(week, "energy_out"), raw: sum(raw, "energy_out"), integrated: wh / 1000 };
        }"""
    )
    assert moved["integrated"] > 0.001, moved
    assert moved["week"] == pytest.approx(moved["raw"], rel=0.1), moved
    assert moved["raw"] == pytest.approx(moved["integrated"], rel=0.1), moved
    assert float(kwh.group(1)) == pytest.approx(moved["week"], abs=0.0006), (shown, moved)
    shot(page, "64-monitor-168h-dark")

    # today's charts are read again every minute, keeping a zoom; a past day's are not
    later = browser_context.new_page()
    problems += watch(later)
    asked: list[str] = []
    later.on("request", lambda r: asked.append(r.url) if "/history?" in r.url else None)
    later.clock.install()
    later.goto(f"{base}/history.html?pack=garage")
    wait_until(lambda: len(later.evaluate(DATA, "#cells")[0]) > 10, 30)
    later.evaluate(
        "([a, b]) => { charts.charts()[0].setScale('x', { min: a, max: b }); window.drawn = charts.charts()[0]; }",
        around,
    )
    later.locator("#cells .u-legend .u-series").filter(has_text="Cell 3").locator(
        ".u-label"
    ).click()
    before = len(asked)
    later.clock.fast_forward(61_000)
    wait_until(lambda: later.evaluate("charts.charts()[0] !== window.drawn"), 10)
    assert len(asked) > before
    for sel in ("#power", "#cells"):
        assert later.evaluate(X, sel) == pytest.approx(around), sel
    hidden = later.locator("#cells .u-legend .u-series.u-off")
    expect(hidden).to_have_count(1)
    expect(hidden).to_contain_text("Cell 3")
    later.click("#prev")
    wait_until(lambda: later.input_value("#day") < day, 10)
    later.wait_for_load_state("networkidle")
    before = len(asked)
    later.clock.fast_forward(121_000)
    later.wait_for_timeout(1000)
    assert len(asked) == before, asked[before:]
    # Monitor's window ends now: it is read again every minute too
    later.goto(f"{base}/monitor.html?pack=garage")
    wait_until(lambda: len(later.evaluate(DATA, "#power")[0]) > 10, 30)
    later.evaluate("window.drawn = charts.charts()[0]")
    before = len(asked)
    later.clock.fast_forward(61_000)
    wait_until(lambda: later.evaluate("charts.charts()[0] !== window.drawn"), 10)
    assert len(asked) > before
    later.close()

    # a laptop and a phone: nothing wider than the window, in both themes
    for path in ("monitor", "history"):
        for t in ("light", "dark"):

            def show(path: str = path, t: str = t) -> None:
                page.goto(f"{base}/{path}.html?pack=garage")
                expect(page.locator("#current .uplot")).to_have_count(1, timeout=30_000)
                page.evaluate(f"document.documentElement.dataset.theme = '{t}'")

            at_sizes(page, f"65-{path}-{t}", show)
    assert not problems, problems


def test_a_bank_member_away_is_a_gap_in_the_banks_chart(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc], browser_context: Any
) -> None:
    """Two DALY packs on two buses as a bank; one stops answering for a while: the bank goes on
    as the other's alone (its sum drops), and its chart breaks there instead of dipping."""
    from playwright.sync_api import expect

    buses = []
    for pack in ("east", "west"):
        sim, port = start_simulator(tmp_path, "daly_classic", "--speed", "30", name=pack)
        procs.append(sim)
        bus = {"port": port, "protocol": "daly_classic", "poll_interval": 0.5}
        buses.append({**bus, "packs": [{"id": pack}]})
    config, base = api_config(
        tmp_path,
        mosquitto.port,
        buses=buses,
        banks=[HOUSE_BANK],
        timezone=SITE_ZONE,
        stale_after=10,
        history={"archive": {"commit_interval": 0.2}},
    )
    for name in ("reader", "publisher", "history", "api"):
        procs.append(start_service(tmp_path, name, config))
    procs.append(start_service(tmp_path, "reader", config, "--bus", "1", name="reader-1"))
    wait_for_api(base, 60)
    page = browser_context.new_page()
    problems = watch(page)
    first_visit(page, base, PASSWORD)
    expect(page.locator('#banks .card.bank[data-pack="house"]:not(.offline)')).to_be_visible(
        timeout=30_000
    )
    time.sleep(4)
    _outage(procs[1])  # west away; east and so the bank go on
    time.sleep(5)

    page.goto(f"{base}/history.html?pack=house")
    expect(page.locator("#power .uplot")).to_have_count(1, timeout=30_000)
    reply = page.evaluate(
        "charts.history('house', ['power'], { start: Date.now() - 3600e3, end: Date.now() })"
    )
    holes = [
        (
            page.evaluate("(s) => Date.parse(s) / 1000", g["start"]),
            page.evaluate("(s) => Date.parse(s) / 1000", g["end"]),
        )
        for g in reply["gaps"]
    ]
    times = [t / 1000 for t in reply["times"]]
    # the bank kept reporting (east alone) while west was away: samples inside a gap
    inside = [t for t in times if any(s < t < e for s, e in holes)]
    west = page.evaluate(
        "charts.history('west', ['power'], { start: Date.now() - 3600e3, end: Date.now() })"
    )
    steps = sorted(b - a for a, b in pairwise(times))[-3:]
    wsteps = sorted(b - a for a, b in pairwise(west["times"]))[-3:]
    assert inside, (holes, steps, wsteps, west["gaps"])
    drawn_t, drawn_p = page.evaluate(DATA, "#power")[:2]
    for t in inside:
        assert drawn_p[drawn_t.index(t)] is None, t  # not drawn: no dip
    joined = [t for t, p in zip(drawn_t, drawn_p, strict=True) if p is not None]
    assert len(joined) > 10
    page.evaluate(
        "([a, b]) => charts.charts()[0].setScale('x', { min: a, max: b })",
        [joined[0] - 5, joined[-1] + 5],
    )
    # the bank's cells are named by member: the readout says which pack's which cell
    readout = page.locator("#cells .cell-readout")
    expect(readout).to_have_text(re.compile(r"min \d\.\d{3} V \((east|west) \d+\)"))
    expect(page.locator("#cells .u-legend .u-series").filter(has_text="west 16")).to_have_count(1)
    shot(page, "66-history-bank-member-away")
    assert not problems, problems


def test_a_two_minute_outage_in_a_day_at_minute_resolution(
    stack: str, mosquitto: Mosquitto, browser_context: Any
) -> None:
    """A whole day of a pack's states (every 30 s, a 2.5-minute hole at noon) through Mosquitto
    into the history service: History's day is drawn at 1-minute resolution, broken once, there."""
    import asyncio
    import math
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    import aiomqtt
    from playwright.sync_api import expect

    from bmsgate_common.models import PackState

    zone = ZoneInfo(SITE_ZONE)
    day = (datetime.now(zone) - timedelta(days=1)).date()
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    hole = (start + timedelta(hours=12), start + timedelta(hours=12, minutes=2, seconds=30))
    times = [start + timedelta(seconds=30 * i) for i in range(2880)]
    times = [t for t in times if not hole[0] < t < hole[1]]

    def state(i: int, ts: datetime) -> PackState:
        power = round(900 * math.sin(2 * math.pi * i / 1440), 1)  # + = charging
        cells = [round(3.3 + (k % 4) * 0.002 + power / 1e5, 4) for k in range(16)]
        return PackState(
            pack="shed",
            name="Shed",
            protocol="daly_classic",
            ts=ts,
            soc=50.0,
            pack_voltage=52.8,
            current=round(power / 52.8, 2),
            power=power,
            cell_voltages=cells,
            cell_count=16,
            temperatures=[20.0],
        )

    async def publish() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            for i, ts in enumerate(times):
                await client.publish(
                    "bmsgate/bms/shed/state", state(i, ts).model_dump_json(), qos=1
                )

    with ThreadPoolExecutor(1) as pool:  # playwright's sync API holds this thread's event loop
        pool.submit(asyncio.run, publish()).result(timeout=120)
    page = browser_context.new_page()
    problems = watch(page)
    first_visit(page, stack, PASSWORD)
    expect(page.locator('.card[data-pack="garage"]')).to_be_visible(timeout=30_000)  # logged in
    span = {
        "start": start.timestamp() * 1000,
        "end": (start + timedelta(days=1)).timestamp() * 1000,
    }
    stored = """(s) => bms.api(`api/packs/shed/history?fields=power&start=${new Date(s.start).toISOString()}`
      + `&end=${new Date(s.end).toISOString()}`).then(r => r.times.length)"""
    wait_until(lambda: page.evaluate(stored, span) >= 1438, 60)  # 1440 minutes less the hole's

    page.goto(f"{stack}/history.html?pack=shed")
    expect(page.locator("#cells .uplot")).to_have_count(1, timeout=30_000)
    page.click("#prev")
    expect(page.locator("#power .u-title")).to_contain_text(f"{day} · 1m", timeout=30_000)
    drawn_t, drawn_p = page.evaluate(DATA, "#power")[:2]
    known = [i for i, p in enumerate(drawn_p) if p is not None]
    breaks = [drawn_t[i] for i in range(known[0], known[-1]) if drawn_p[i] is None]
    assert len(breaks) == 1, breaks  # the hole, and no other: regular minutes stay joined
    assert hole[0].timestamp() < breaks[0] < hole[1].timestamp(), (breaks, hole)
    shot(page, "67-history-day-1m")
    noon = [hole[0].timestamp() - 1800, hole[1].timestamp() + 1800]
    page.evaluate("([a, b]) => charts.charts()[0].setScale('x', { min: a, max: b })", noon)
    shot(page, "68-history-day-1m-noon")
    assert not problems, problems

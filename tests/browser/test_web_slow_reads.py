"""Values read less often than every poll are shown with their own age, in a real browser: a
simulated DALY classic on a pty -> reader (slow commands every 1000 polls, so only the first
poll and the once-a-minute rule read them) -> Mosquitto -> API -> the Status page."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import first_visit, shot, start_garage_stack, watch
from tests.support.procs import (
    Mosquitto,
    Proc,
)

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-3"


@pytest.fixture
def daly_stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> str:
    bus = {"poll_interval": 0.3, "slow_every": 1000}
    return start_garage_stack(tmp_path, mosquitto, procs, bus=bus, services=("reader", "api"))


def seconds(text: str) -> int:
    found = re.search(r"(\d+) s ago", text)
    assert found, text
    return int(found.group(1))


def test_slow_values_are_shown_with_their_own_age(daly_stack: str, browser_context: Any) -> None:
    from playwright.sync_api import expect

    base, page = daly_stack, browser_context.new_page()
    problems = watch(page)
    first_visit(page, base, PASSWORD)

    card = page.locator('.card[data-pack="garage"]:not(.offline)')
    expect(card.locator(".cells span")).to_have_count(16)
    slow = card.locator('[data-field="slow-read"]')
    expect(slow).to_contain_text("cells, ")
    expect(slow).to_contain_text("cycles")
    time.sleep(4)  # a dozen polls: the fast values are new each time, the slow ones are not
    fresh = seconds(card.locator(".age[data-ts]").inner_text())
    old = seconds(slow.locator(".slow-age").inner_text())
    assert fresh <= 2 and old >= 3, (fresh, old)
    shot(page, "30-slow-read-ages")
    assert not problems, problems

"""Values read less often than every poll are shown with their own age, in a real browser: a
simulated DALY classic on a pty -> reader (slow commands every 1000 polls, so only the first
poll and the once-a-minute rule read them) -> Mosquitto -> API -> the Status page."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bmsgate.broker import free_port
from tests.support.browser import shot, watch
from tests.support.procs import (
    Mosquitto,
    Proc,
    start_service,
    start_simulator,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-3"


@pytest.fixture
def daly_stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> str:
    sim, port = start_simulator(tmp_path, "daly_classic")
    procs.append(sim)
    http = free_port()
    config = write_config(
        tmp_path,
        {
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "heartbeat": 2},
            "buses": [
                {
                    "port": port,
                    "protocol": "daly_classic",
                    "poll_interval": 0.3,
                    "slow_every": 1000,
                    "packs": [{"id": "garage", "name": "Garage"}],
                }
            ],
            "api": {"host": "127.0.0.1", "port": http, "public_read": "never"},
            "data_dir": str(tmp_path / "data"),
        },
    )
    for name in ("reader", "api"):
        procs.append(start_service(tmp_path, name, config))
    base = f"http://127.0.0.1:{http}"
    wait_until(lambda: httpx.get(f"{base}/healthz", timeout=2).json()["backbone"], timeout=20)
    return base


def seconds(text: str) -> int:
    found = re.search(r"(\d+) s ago", text)
    assert found, text
    return int(found.group(1))


def test_slow_values_are_shown_with_their_own_age(daly_stack: str, browser_context: Any) -> None:
    from playwright.sync_api import expect

    base, page = daly_stack, browser_context.new_page()
    problems = watch(page)
    page.goto(f"{base}/")
    page.fill("#password", PASSWORD)
    page.fill("#again", PASSWORD)
    page.click("#submit")

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

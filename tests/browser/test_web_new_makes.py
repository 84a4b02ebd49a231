"""A make bmsgate learnt by registering it, in a real browser: Seplos v2 packs by address on one
bus through the simulator, reader, Mosquitto and API; the Control page says it is read-only and
the setup page offers every registered make."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bmsgate_bms.registry import infos
from tests.support.browser import first_visit, shot, start_stack, watch
from tests.support.procs import (
    Mosquitto,
    Proc,
)

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-1"


@pytest.fixture
def seplos_stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> str:
    """Two simulated Seplos v2 packs (addresses 1, 2) on one pty, reader with control on, API."""
    bus = {
        "protocol": "seplos_v2",
        "poll_interval": 0.5,
        "packs": [{"id": "east", "address": 1}, {"id": "west", "address": 2}],
    }
    simulator = ["seplos_v2", "--boards", "2", "--cells", "15"]
    settings = {"control": {"enabled": True}}
    return start_stack(tmp_path, mosquitto, procs, simulator, bus, settings=settings)


def test_seplos_packs_are_shown_and_said_read_only(seplos_stack: str, browser_context: Any) -> None:
    from playwright.sync_api import expect

    base, page = seplos_stack, browser_context.new_page()
    problems = watch(page)
    first_visit(page, base, PASSWORD)

    for pack in ("east", "west"):
        card = page.locator(f'.card[data-pack="{pack}"]:not(.offline)')
        expect(card.locator(".cells span")).to_have_count(15)
        expect(card.locator('[data-field="soc"]')).to_contain_text("%")
    shot(page, "20-seplos-status")

    page.goto(f"{base}/control.html")
    note = page.locator('[data-pack="east"] [data-read-only]')
    expect(note).to_contain_text("Read-only: Seplos v2 documents no MOSFET or SOC command")
    expect(page.locator('[data-pack="east"] [data-action]')).to_have_count(0)  # no buttons
    shot(page, "21-seplos-control-read-only")

    page.goto(f"{base}/setup.html")
    options = page.locator("#protocol option")
    expect(options).to_have_count(1 + len(infos()))  # "any", then every registered make
    for about in infos():
        expect(page.locator(f'#protocol option[value="{about.name}"]')).to_have_text(about.label)
    assert not problems, problems

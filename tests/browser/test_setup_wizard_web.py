"""First run in a real browser (Debian's chromium via playwright) against `bmsgate run` with no
configuration file: the password, the setup wizard finding a simulated DALY board on a pty, a test
notification to a local receiver, the file written and polled at once; then the Settings page:
a bad value (one line, file unchanged), a good one, a restored file and a service restart.
Screenshots go to build/test-artifacts/web/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bmsgate.broker import free_port
from bmsgate_bms.registry import info
from bmsgate_common.settings import Settings
from tests.support.browser import on_a_dark_phone, shot
from tests.support.needs import needs
from tests.support.procs import Proc, find_mosquitto, start_simulator, wait_for_api, wait_until
from tests.support.receiver import receiver
from tests.support.tree import run_argv

pytestmark = [
    pytest.mark.integration,
    needs(find_mosquitto(), "mosquitto is not installed"),
]
PASSWORD = "battery-gate-1"


@pytest.fixture
def first_run(tmp_path: Path, procs: list[Proc]) -> tuple[str, Path, str, Proc]:
    """`bmsgate run --config FILE` with FILE absent, and a simulated board for the wizard."""
    sim, port = start_simulator(tmp_path, "daly_classic", "--speed", "30")
    procs.append(sim)
    http = free_port()
    config = tmp_path / "site" / "bmsgate.yaml"
    run = Proc("run", run_argv("--data-dir", tmp_path / "data", config=config, http=http), tmp_path)
    procs.append(run)
    base = f"http://127.0.0.1:{http}"
    wait_for_api(base, 30)
    return base, config, port, run


def test_first_run_wizard_then_settings(
    first_run: tuple[str, Path, str, Proc], browser_context: Any
) -> None:
    from playwright.sync_api import expect

    base, config, sim_port, run = first_run
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("dialog", lambda d: d.accept())
    page.set_default_timeout(30_000)
    expect.set_options(timeout=20_000)

    # first visit: the password, then straight on to the setup page
    page.goto(f"{base}/")
    expect(page.locator("#heading")).to_have_text("Set the password")
    page.fill("#password", PASSWORD)
    page.fill("#again", PASSWORD)
    page.click("#submit")
    expect(page).to_have_url(f"{base}/setup.html")
    expect(page.locator("#file")).to_have_text(f"Writes {config}")

    # the ports: the demo pack's pty is listed as polled and cannot be picked or scanned
    demo = page.locator("#ports tbody tr", has_text="polled (bus 0)")
    expect(demo).to_have_count(1)
    expect(demo.locator("input")).to_be_disabled()
    demo_port = demo.get_attribute("data-port")
    refused = page.evaluate(
        """async (port) => { const r = await fetch('/api/setup/scan', {method: 'POST',
             headers: {'Content-Type': 'application/json'}, body: JSON.stringify({port})});
             return [r.status, (await r.json()).detail]; }""",
        demo_port,
    )
    assert refused == [409, f"{demo_port} belongs to bus 0: its reader polls it"]
    page.fill("#other", sim_port)
    page.click("#add-port")
    expect(page.locator(f'#ports tr[data-port="{sim_port}"] input')).to_be_checked()
    shot(page, "20-setup-ports")

    # the scan finds the board, with progress
    page.select_option("#protocol", "daly_classic")
    page.click("#scan")
    expect(page.locator("#scan-msg")).to_contain_text(
        f"Found 1 BMS: {info('daly_classic').label} at address 1", timeout=60_000
    )
    expect(page.locator("#progress")).to_have_attribute("value", "16")
    page.fill('.pack-name[data-i="0"]', "Garage")

    # outputs: a test message through Apprise to a local receiver; the time zone offline
    with receiver() as (got, rport):
        page.fill("#notify", f"json://127.0.0.1:{rport}/hook")
        page.click("#notify-test")
        expect(page.locator("#out-msg")).to_have_text("Test message sent.")
        assert got.on("/hook")[0]["title"] == "bmsgate test message"
    page.fill("#lat", "48.21")
    page.fill("#lon", "16.37")
    page.click("#find-tz")
    expect(page.locator("#tz")).to_have_text("Europe/Vienna")
    shot(page, "21-setup-found-outputs")

    # write: the file is valid, private, shown masked, and polling starts at once
    page.click("#write")
    expect(page.locator("#write-msg")).to_have_text(f"Written to {config}. Polling starts now.")
    written = page.locator("#written").inner_text()
    assert "garage" in written and "json://" not in written and "********" in written
    assert config.stat().st_mode & 0o077 == 0
    cfg = Settings.model_validate(yaml.safe_load(config.read_text()))
    assert cfg.buses[0].port == sim_port and cfg.buses[0].packs[0].name == "Garage"
    assert cfg.timezone == "Europe/Vienna" and cfg.notifier.targets[
        0
    ].url.get_secret_value().startswith("json://")
    expect(page.locator('#live [data-pack="garage"]')).to_contain_text("%", timeout=60_000)
    shot(page, "22-setup-written-live")
    on_a_dark_phone(page, "27-setup-dark-phone")

    # the Status page shows the new pack; the setup note is gone
    page.goto(f"{base}/")
    expect(
        page.locator('.card[data-pack="garage"]:not(.offline) [data-field="soc"]')
    ).to_contain_text("%")
    expect(page.locator(".setup-note")).to_have_count(0)
    expect(page.locator('.card[data-pack="sim-1"]')).to_have_count(0)  # the demo pack is gone
    shot(page, "23-status-after-setup")

    # Settings, the experts' YAML editor: a bad value is one line naming the key, and the file
    # stays as it was
    page.goto(f"{base}/settings.html#yaml")
    editor = page.locator("#editor")
    wait_until(lambda: "garage" in editor.input_value(), 10)
    original = editor.input_value()
    assert "json://" not in original and "********" in original
    before = config.read_text()
    editor.fill(original + "log_level: LOUD\n")
    page.click("#save")
    msg = page.locator("#file-msg")
    expect(msg).to_contain_text("bad value for 'log_level'")
    assert "\n" not in msg.inner_text() and config.read_text() == before
    shot(page, "24-settings-bad-value")

    # a good value: saved, the masked secret kept, and applied (the pack's name changes)
    editor.fill(original.replace("name: Garage", "name: Garage east"))
    page.click("#save")
    expect(msg).to_contain_text("saved bmsgate.yaml")
    saved = Settings.model_validate(yaml.safe_load(config.read_text()))
    assert saved.buses[0].packs[0].name == "Garage east"
    assert saved.notifier.targets[0].url.get_secret_value() == f"json://127.0.0.1:{rport}/hook"
    wait_until(
        lambda: (
            httpx.get(f"{base}/api/packs/garage/state", timeout=2).json().get("name")
            == "Garage east"
        ),
        timeout=60,
    )
    shot(page, "25-settings-saved")

    # restore the file as it was written by the wizard (a masked backup keeps the secrets)
    backup = config.parent / "backup.yaml"
    backup.write_text(original)
    page.reload()  # the same address: a goto would only move to its #yaml
    wait_until(lambda: "Garage east" in editor.input_value(), 10)  # the page is ready
    page.set_input_files("#restore", str(backup))
    expect(msg).to_contain_text("saved bmsgate.yaml")
    restored = Settings.model_validate(yaml.safe_load(config.read_text()))
    assert restored.buses[0].packs[0].name == "Garage"
    assert restored.notifier.targets[0].url.get_secret_value().startswith("json://")
    wait_until(
        lambda: (
            httpx.get(f"{base}/api/packs/garage/state", timeout=2).json().get("name") == "Garage"
        ),
        timeout=60,
    )  # applied: the reader runs with the restored file

    # restart one service over the backbone; `bmsgate run` starts it again at once
    wait_until(lambda: page.locator('#service option[value="reader-0"]').count() == 1, 20)
    page.select_option("#service", "reader-0")
    page.click("#restart")
    expect(msg).to_have_text("Restart requested: reader-0. They come back in a few seconds.")
    wait_until(lambda: "reader-0 restarting on request" in run.log(), 20)
    shot(page, "26-settings-restart")

    # the forms under `bmsgate run`: a save applies at once, so nothing is offered to restart
    page.goto(f"{base}/settings.html#batteries")
    page.reload()  # from #yaml the goto only moved to another anchor
    expect(page.locator("#forms .card.form").first).to_be_visible()
    restart = page.locator("#restart-listed")
    expect(restart).to_be_hidden()
    poll = page.locator('.field[data-key="buses.0.poll_interval"] input')
    poll.fill("3")
    poll.press("Tab")
    page.click("#form-save")
    expect(page.locator("#form-msg")).to_contain_text("bmsgate applies it now")
    expect(page.locator("#form-msg")).to_contain_text("Restarting: reader-0")
    expect(restart).to_be_hidden()
    assert yaml.safe_load(config.read_text())["buses"][0]["poll_interval"] == 3

    log = run.log()
    assert "configuration" in log and "applied" in log
    assert "Traceback" not in log, log[-3000:]
    assert errors == []

"""Settings as forms and the System page, in Debian's chromium against the running services.

A simulated JK-PB board on a pty -> reader -> Mosquitto -> publisher (one MQTT target), history,
modbus -> API. Screenshots go to build/test-artifacts/web (50-...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pymodbus.client import ModbusTcpClient

from bmsgate.broker import free_port
from bmsgate_bms.registry import info
from tests.support.browser import at_sizes, first_visit, fits, refusal, shot, start_stack, watch
from tests.support.procs import Mosquitto, Proc

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-5"


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> tuple[str, Path]:
    """The services running on one configuration file; the base URL and the file."""
    target = {
        "name": "local",
        "host": "127.0.0.1",
        "port": mosquitto.port,
        "username": "someone",
        "password": "target-secret-77",
    }
    base = start_stack(
        tmp_path,
        mosquitto,
        procs,
        ("jk_pb", "--speed", "30"),
        {"protocol": "jk_pb", "poll_interval": 1, "packs": [{"id": "east", "name": "East"}]},
        services=("reader", "publisher", "history", "modbus", "api"),
        settings={
            "publisher": {"targets": [target]},
            "modbus": {"host": "127.0.0.1", "port": free_port()},
        },
        api={"mdns": False},
        timeout=60,
    )
    return base, tmp_path / "config.yaml"


def test_settings_forms_say_what_is_wrong_beside_the_field_and_save_a_good_value(
    stack: tuple[str, Path], browser_context: Any
) -> None:
    from playwright.sync_api import expect

    base, config = stack
    page = browser_context.new_page()
    problems = watch(page)
    first_visit(page, base, PASSWORD, "settings.html#batteries")
    restart = page.locator("#restart-listed")
    expect(page.locator("#forms .card.form").first).to_be_visible()
    expect(restart).to_be_hidden()  # nothing saved yet: nothing to restart
    poll = page.locator('.field[data-key="buses.0.poll_interval"]')
    expect(poll.locator("label")).to_contain_text("Poll interval")
    expect(poll.locator("label .unit")).to_have_text("[s]")
    protocol = page.locator('.field[data-key="buses.0.protocol"] select')
    expect(protocol.locator("option:checked")).to_have_text(info("jk_pb").label)  # not "jk_pb"
    # typed: the message at once, beside the field
    poll.locator("input").fill("-1")
    poll.locator("input").press("Tab")
    expect(poll.locator(".field-error")).to_have_text("must be at least 0")
    expect(poll.locator("input")).to_have_attribute("aria-invalid", "true")
    poll.locator("input").fill("2")
    poll.locator("input").press("Tab")
    expect(poll.locator(".field-error")).to_be_hidden()
    # a rule only the server knows: a bank needs two packs; its message goes beside the field
    page.click("text=Add bank")
    bank = page.locator('[data-key="banks.0"]')
    bank.locator('.field[data-key="banks.0.id"] input').fill("house")
    # the members are ticked from the configured packs, by name
    members = bank.locator('.field[data-key="banks.0.packs"] fieldset.multi label')
    expect(members).to_have_text(["East (east)"])
    members.get_by_text("East (east)").click()
    page.click("#form-save")
    packs_error = bank.locator('.field[data-key="banks.0.packs"] .field-error')
    expect(packs_error).to_have_text("needs at least 2 item(s)")
    expect(page.locator("#form-msg")).to_contain_text("Not saved")
    expect(restart).to_be_hidden()
    shot(page, "50-settings-bad-value")
    assert yaml.safe_load(config.read_text())["buses"][0]["poll_interval"] == 1
    page.locator('[data-key="banks"] details.item button.danger').click()  # dialog accepted
    expect(page.locator('[data-key="banks.0"]')).to_have_count(0)

    page.click("#form-save")
    msg = page.locator("#form-msg")
    expect(msg).to_contain_text("Saved")
    # every service that reads the poll interval (bmsgate_common.service_table), and the button names them
    expect(msg).to_contain_text("Restart needed: ")
    names = (msg.get_attribute("data-restarted") or "").split()
    assert sorted(names) == ["api", "history", "modbus", "publisher", "reader-0"], names
    listed = ", ".join(names)
    expect(msg).to_contain_text(f"Restart needed: {listed}.")
    expect(restart).to_be_visible()
    expect(restart).to_have_text(f"Restart {listed} now")
    written = yaml.safe_load(config.read_text())
    assert written["buses"][0]["poll_interval"] == 2
    assert written["publisher"]["targets"][0]["password"] == "target-secret-77"
    assert "banks" not in written
    shot(page, "51-settings-saved")

    # Outputs: the target's secret is never in the page, only said to be stored
    page.click('#tabs button[data-tab="outputs"]')
    secret = page.locator('.field[data-key="publisher.targets.0.password"] input')
    expect(secret).to_have_attribute("placeholder", "stored (type to replace)")
    assert "target-secret-77" not in page.content()

    def every_group() -> None:
        for group in ("batteries", "outputs", "notifications", "control", "history", "system"):
            page.click(f'#tabs button[data-tab="{group}"]')
            expect(page.locator("#forms .card.form").first).to_be_visible()
            page.evaluate("window.scrollTo(0, 0)")
            expect(page.locator("#form-save")).to_be_in_viewport()  # no scrolling to Save
            fits(page, group)

    at_sizes(page, "52-settings-system", every_group)
    refused = refusal(400, f"{base}/api/settings/form")  # the save refused on purpose
    assert sorted(problems) == sorted(refused), problems


def test_system_page_shows_services_outputs_storage_logs_and_resets(
    stack: tuple[str, Path], browser_context: Any, procs: list[Proc]
) -> None:
    from playwright.sync_api import expect

    base, config = stack
    page = browser_context.new_page()
    problems = watch(page)
    first_visit(page, base, PASSWORD, "system.html")
    rows = page.locator("#services tbody tr")
    for name in ("reader-0", "api", "publisher", "history", "modbus"):
        expect(rows.filter(has_text=name).locator(".state")).to_have_text("running", timeout=30_000)
    expect(rows.filter(has_text="notifier").locator(".state")).to_have_text("not started")
    expect(rows.filter(has_text="notifier")).to_contain_text("no notifier targets")
    expect(rows.filter(has_text="api").locator("td").nth(3)).not_to_have_text("–")  # version
    outputs = page.locator("#outputs tbody tr")
    expect(outputs.filter(has_text="Backbone").locator(".state")).to_have_text("connected")
    target = outputs.filter(has_text="MQTT target")
    expect(target.locator(".state")).to_have_text("connected", timeout=20_000)
    server = outputs.filter(has_text="Modbus TCP server")
    expect(server).to_contain_text("clients connected: 0")
    # a real Modbus TCP client connected: the page says so at its next refresh (every 5 s)
    client = ModbusTcpClient("127.0.0.1", port=yaml.safe_load(config.read_text())["modbus"]["port"])
    assert client.connect()
    expect(server).to_contain_text("clients connected: 1", timeout=20_000)
    client.close()
    expect(server).to_contain_text("clients connected: 0", timeout=20_000)
    expect(page.locator('#storage [data-field="archive"]')).to_contain_text("kB", timeout=20_000)
    expect(page.locator('#storage [data-field="free-disk"]')).to_contain_text(" of ")

    # the log lines of a running service, filtered; a stopped one's log is said unreachable
    page.select_option("#log-service", "history")
    expect(page.locator("#log-note")).to_contain_text("recent lines of history")
    expect(page.locator("#log")).to_contain_text("[history]")
    page.fill("#log-filter", "no line has this text")
    expect(page.locator("#log")).to_have_text("")
    page.fill("#log-filter", "")
    modbus = next(p for p in procs if p.name == "modbus")
    modbus.stop()
    expect(rows.filter(has_text="modbus").locator(".state")).to_have_text("stopped", timeout=20_000)
    page.select_option("#log-service", "modbus")
    expect(page.locator("#log-note")).to_contain_text("The log of modbus is not reachable")

    def reloaded() -> None:
        page.reload()
        expect(rows.filter(has_text="reader-0").locator(".state")).to_have_text("running")
        expect(page.locator("#log-note")).not_to_have_text("")

    at_sizes(page, "53-system", reloaded)

    # the factory reset: the settings can be downloaded first; only the password resets
    with page.expect_download() as download:
        page.click("text=Download the current settings first")
    assert "buses:" in Path(download.value.path()).read_text()
    page.fill("#reset-password", "not-the-password")
    page.click("#reset-form button[type=submit]")
    expect(page.locator("#reset-msg")).to_have_text("wrong password")
    assert "buses" in yaml.safe_load(config.read_text())
    page.fill("#reset-password", PASSWORD)
    page.click("#reset-form button[type=submit]")
    expect(page.locator("#reset-msg")).to_contain_text("settings reset")
    assert set(yaml.safe_load(config.read_text())) == {"mqtt", "data_dir"}
    wrong = refusal(403, f"{base}/api/system/factory-reset")
    assert sorted(problems) == sorted(wrong), problems

"""The Settings forms' lists, in Debian's chromium against the running API: MQTT targets with
their credentials, viewers with their passwords and a list of addresses, each entry added,
removed and moved; what is saved is read back from the real configuration file.

Two simulated JK-PB boards on a pty -> reader -> Mosquitto -> API. Screenshots go to
build/test-artifacts/web (56-...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bmsgate_api.auth import hash_password, verify_password
from bmsgate_common.settings import Settings
from tests.support.axe import axe_source, check
from tests.support.browser import (
    at_sizes,
    first_visit,
    refusal,
    shot,
    start_house_stack,
    watch,
)
from tests.support.procs import Mosquitto, Proc

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-5"
HOME_SECRET = "home-secret-1"  # the stored target's password
CLOUD_SECRET = "cloud-secret-9"
ANNA, BEN = "anna-pass-1", "ben-pass-22"


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> tuple[str, Path]:
    """The reader and the API on one file with a target and a viewer; the base URL and the file."""
    home = {
        "name": "home",
        "host": "127.0.0.1",
        "port": mosquitto.port,
        "username": "someone",
        "password": HOME_SECRET,
    }
    old = {"name": "old", "password_hash": hash_password("old-viewer-pw"), "packs": ["east"]}
    base = start_house_stack(
        tmp_path,
        mosquitto,
        procs,
        settings={"publisher": {"targets": [home]}},
        api={"mdns": False, "viewers": [old]},
    )
    return base, tmp_path / "config.yaml"


def open_settings(page: Any, base: str, group: str) -> None:
    from playwright.sync_api import expect

    first_visit(page, base, PASSWORD, f"settings.html#{group}")
    expect(page.locator("#forms .card.form").first).to_be_visible()


def saved(page: Any) -> None:
    """Save, and wait for this save's answer (an earlier "Saved" may still be on the page)."""
    from playwright.sync_api import expect

    with page.expect_response(
        lambda r: r.url.endswith("/api/settings/form") and r.request.method == "PUT"
    ) as answer:
        page.click("#form-save")
    assert answer.value.status == 200, answer.value.text()
    expect(page.locator("#form-msg")).to_contain_text("Saved")


def units_of(config: Path) -> dict[int, str]:
    """Modbus's unit ids as the services read them from the file."""
    return Settings.model_validate(yaml.safe_load(config.read_text())).modbus.units


def test_a_target_with_credentials_added_and_moved_keeps_every_secret_with_its_own_entry(
    stack: tuple[str, Path], browser_context: Any
) -> None:
    from playwright.sync_api import expect

    base, config = stack
    page = browser_context.new_page()
    problems = watch(page)
    open_settings(page, base, "outputs")
    page.click("text=Add target")
    new = page.locator('details.item[data-item="publisher.targets.1"]')
    expect(new).to_have_attribute("open", "")
    expect(page.locator('.field[data-key="publisher.targets.1.name"] input')).to_be_focused()
    # a name twice: said beside the list, nothing written
    page.fill('.field[data-key="publisher.targets.1.name"] input', "home")
    page.click("#form-save")
    twice = page.locator('.list[data-key="publisher.targets"] > .field-error')
    expect(twice).to_have_text("two targets share a name: 'home'")
    assert len(yaml.safe_load(config.read_text())["publisher"]["targets"]) == 1
    page.fill('.field[data-key="publisher.targets.1.name"] input', "cloud")
    page.fill('.field[data-key="publisher.targets.1.host"] input', "broker.example.net")
    expect(new.locator(":scope > summary")).to_have_text("Target: cloud")  # named as typed
    page.fill('.field[data-key="publisher.targets.1.port"] input', "8883")
    page.check('.field[data-key="publisher.targets.1.tls"] input')
    page.fill('.field[data-key="publisher.targets.1.username"] input', "bms")
    page.fill('.field[data-key="publisher.targets.1.password"] input', CLOUD_SECRET)
    # the new target goes first, by keyboard: the moved entry keeps the focus
    up = new.locator(':scope > .row > button[data-move="up"]')
    expect(up).to_have_accessible_name("Move target cloud up")
    up.focus()
    page.keyboard.press("Enter")
    first = page.locator('details.item[data-item="publisher.targets.0"]')
    expect(first.locator(':scope > .row > button[data-move="down"]')).to_be_focused()
    expect(page.locator('.field[data-key="publisher.targets.0.name"] input')).to_have_value("cloud")
    saved(page)

    written = yaml.safe_load(config.read_text())["publisher"]["targets"]
    assert [t["name"] for t in written] == ["cloud", "home"]
    cloud, home = written
    assert cloud == {
        "name": "cloud",
        "host": "broker.example.net",
        "port": 8883,
        "tls": True,
        "username": "bms",
        "password": CLOUD_SECRET,
    }
    assert home["password"] == HOME_SECRET  # moved down a place, its own password kept
    # saved again without a reload: the places are the file's new ones
    page.fill('.field[data-key="publisher.targets.1.interval"] input', "10")
    saved(page)
    again = yaml.safe_load(config.read_text())["publisher"]["targets"]
    assert again == [cloud, {**home, "interval": 10}]

    # after a reload both are stored, neither is in the page
    page.reload()
    expect(page.locator('.field[data-key="publisher.targets.1.name"] input')).to_have_value("home")
    for i in (0, 1):
        secret = page.locator(f'.field[data-key="publisher.targets.{i}.password"] input')
        expect(secret).to_have_attribute("placeholder", "stored (type to replace)")
        expect(secret).to_have_value("")
    html = page.content()
    assert CLOUD_SECRET not in html and HOME_SECRET not in html

    # the first removed, another field saved: the one left keeps its own password
    page.locator('details.item[data-item="publisher.targets.0"] > .row > button.danger').click()
    page.fill('.field[data-key="publisher.targets.0.topic_prefix"] input', "solar")
    saved(page)
    written = yaml.safe_load(config.read_text())["publisher"]["targets"]
    assert written == [{**home, "interval": 10, "topic_prefix": "solar"}]
    shot(page, "56-settings-targets")

    # a mapping (Modbus unit ids to packs): one row per unit, a bad key said at its row
    units = page.locator('.field[data-key="modbus.units"]')
    for unit, pack in (("1", "west"), ("300", "east")):
        units.get_by_role("button", name="Add entry to Units").click()
        row = units.locator(".entry").last
        expect(row.locator("input.key")).to_be_focused()
        row.locator("input.key").fill(unit)
        row.locator("input:not(.key)").fill(pack)
    page.click("#form-save")
    bad = page.locator('.field.entry[data-key="modbus.units.300"]')
    expect(bad.locator(".field-error")).to_have_text("the key must be at most 255")
    assert "modbus" not in yaml.safe_load(config.read_text())
    bad.locator("input.key").fill("2")
    saved(page)
    assert units_of(config) == {1: "west", 2: "east"}
    units.get_by_role("button", name="Remove Units 1").click()
    expect(units.locator("input.key")).to_have_value("2")
    saved(page)
    assert units_of(config) == {2: "east"}
    found = check(page, axe_source(), "outputs")  # the rows pass axe-core
    assert found == [], found
    refused = refusal(400, f"{base}/api/settings/form")
    assert sorted(problems) == sorted(refused * 2), problems


def test_viewers_and_addresses_edited_as_lists_with_errors_at_their_entry(
    stack: tuple[str, Path], browser_context: Any, procs: list[Proc]
) -> None:
    from playwright.sync_api import expect

    base, config = stack
    axe = axe_source()
    page = browser_context.new_page()
    problems = watch(page)
    open_settings(page, base, "control")
    # the Accounts page lists the file's viewer and leads to where it is changed
    page.goto(f"{base}/tokens.html")
    page.locator('tr[data-viewer="old"]').get_by_role("link", name="Change in Settings").click()
    page.wait_for_url("**/settings.html#control")
    viewers = page.locator('[data-key="api.viewers"]')
    expect(viewers.locator("details.item > summary")).to_have_text(["Viewer: old"])
    # two viewers added: a password typed, the packs and banks ticked by name
    for i, (name, password, sees) in enumerate(
        (("anna", ANNA, "East (east)"), ("ben", "short", "House bank (house), bank")), start=1
    ):
        page.click("text=Add viewer")
        page.fill(f'.field[data-key="api.viewers.{i}.name"] input', name)
        page.fill(f'.field[data-key="api.viewers.{i}.password_hash"] input', password)
        packs = page.locator(f'.field[data-key="api.viewers.{i}.packs"] fieldset.multi')
        expect(packs.locator("label")).to_have_text(
            ["East (east)", "West (west)", "House bank (house), bank"]
        )
        packs.get_by_text(sees).click()
    page.locator('details.item[data-item="api.viewers.0"] > .row > button.danger').click()
    expect(viewers.locator("details.item")).to_have_count(2)
    page.locator('details.item[data-item="api.viewers.1"] > .row > button[data-move="up"]').click()
    # a list of addresses: one row each
    proxies = page.locator('.field[data-key="api.trusted_proxies"]')
    expect(proxies.locator("legend")).to_have_text("Trusted proxies")
    for _ in range(2):
        proxies.get_by_role("button", name="Add entry to Trusted proxies").click()
    expect(proxies.get_by_role("textbox", name="Trusted proxies 2", exact=True)).to_be_focused()
    proxies.get_by_role("textbox", name="Trusted proxies 1", exact=True).fill("10.0.0.0/24")
    proxies.get_by_role("textbox", name="Trusted proxies 2", exact=True).fill("the-router")
    page.click("#form-save")
    # each message beside its own entry, nothing written
    bad_row = page.locator('.field.entry[data-key="api.trusted_proxies.1"]')
    expect(bad_row.locator(".field-error")).to_have_text(
        "'the-router' is not an address or network"
    )
    expect(bad_row.locator("input")).to_have_attribute("aria-invalid", "true")
    expect(
        page.locator('.field.entry[data-key="api.trusted_proxies.0"] .field-error')
    ).to_be_hidden()
    short = page.locator('.field[data-key="api.viewers.0.password_hash"]')
    expect(short.locator(".field-error")).to_have_text("the password needs at least 8 characters")
    expect(
        page.locator('.field[data-key="api.viewers.1.password_hash"] .field-error')
    ).to_be_hidden()
    expect(page.locator("#form-msg")).to_contain_text("Not saved: 2 fields need a change")
    shot(page, "57-settings-list-errors")
    assert [v["name"] for v in yaml.safe_load(config.read_text())["api"]["viewers"]] == ["old"]

    short.locator("input").fill(BEN)
    bad_row.locator("input").fill("192.168.1.7")
    bad_row.get_by_role("button", name="Move Trusted proxies 2 up").click()
    saved(page)

    api = yaml.safe_load(config.read_text())["api"]
    assert api["trusted_proxies"] == ["192.168.1.7", "10.0.0.0/24"]
    assert [(v["name"], v["packs"]) for v in api["viewers"]] == [
        ("ben", ["house"]),
        ("anna", ["east"]),
    ]
    ben, anna = api["viewers"]
    assert verify_password(BEN, ben["password_hash"]) and verify_password(
        ANNA, anna["password_hash"]
    )
    text = config.read_text()
    assert BEN not in text and ANNA not in text

    page.reload()
    expect(viewers.locator("details.item > summary")).to_have_text(["Viewer: ben", "Viewer: anna"])
    for i in (0, 1):
        secret = page.locator(f'.field[data-key="api.viewers.{i}.password_hash"] input')
        expect(secret).to_have_attribute("placeholder", "stored (type to replace)")
    html = page.content()
    assert "scrypt$" not in html and BEN not in html and ANNA not in html
    expect(proxies.locator("input").first).to_have_value("192.168.1.7")
    expect(proxies.locator("input").last).to_have_value("10.0.0.0/24")
    # a name changed: the hashes stay with their own viewer
    page.fill('.field[data-key="api.viewers.1.name"] input', "anna-b")
    saved(page)
    after = yaml.safe_load(config.read_text())["api"]["viewers"]
    assert after == [ben, {**anna, "name": "anna-b"}]

    # the lists with entries, an error shown, pass axe-core at both sizes (as the walk does)
    page.locator('.field.entry[data-key="api.trusted_proxies.0"] input').fill("not-a-net")
    page.locator('.field.entry[data-key="api.trusted_proxies.0"] input').press("Tab")
    found: list[str] = []
    at_sizes(page, "58-settings-viewers", lambda: found.extend(check(page, axe, "control")))
    assert found == [], found
    assert sorted(problems) == sorted(refusal(400, f"{base}/api/settings/form")), problems
    for proc in procs:  # the typed passwords are in no service's log
        assert BEN not in proc.log() and ANNA not in proc.log(), proc.name
    assert any("saved from the forms" in p.log() for p in procs)  # the API's log was read

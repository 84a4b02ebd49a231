"""Settings file editing, restore, restart, and the setup API, on the app in-process."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from bmsgate_common.config_view import MASK
from bmsgate_common.settings import Settings

if TYPE_CHECKING:
    from services.api.tests.conftest import SiteUi

JSON = {"Content-Type": "application/json"}
BUS = {"port": "/dev/ttyUSB7", "protocol": "daly_classic", "packs": [{"id": "garage"}]}


async def test_every_write_needs_a_login(tmp_path: Path, site_ui: SiteUi) -> None:
    async with site_ui(None, login=False) as anon:
        calls = [
            anon.put("/api/settings/file", json={"yaml": "log_level: INFO\n"}),
            anon.post(
                "/api/settings/restore",
                content=b"log_level: INFO\n",
                headers={"Content-Type": "application/yaml"},
            ),
            anon.post("/api/services/restart", json={"service": "all"}),
            anon.post(
                "/api/setup/apply",
                json={
                    "buses": [
                        {
                            "port": "/dev/ttyUSB0",
                            "packs": [{"protocol": "jk_pb", "address": 1, "name": "A"}],
                        }
                    ]
                },
            ),
            anon.post("/api/setup/scan", json={"port": "/dev/ttyUSB0"}),
            anon.post("/api/setup/notify-test", json={"url": "json://127.0.0.1:9/x"}),
            anon.get("/api/setup/ports"),
        ]
        for call in calls:
            assert (await call).status_code == 401
        assert (await anon.get("/api/setup/status")).json()["needed"] is True
    assert not (tmp_path / "site.yaml").exists()


async def test_edit_keeps_masked_secrets_and_names_a_bad_key(
    tmp_path: Path, site_ui: SiteUi
) -> None:
    data = {"mqtt": {"host": "b", "username": "u", "password": "pw-9"}, "buses": [BUS]}
    async with site_ui(data) as ui:
        shown = (await ui.get("/api/settings/file")).json()
        assert "pw-9" not in shown["yaml"] and MASK in shown["yaml"]
        before = (tmp_path / "site.yaml").read_text()
        bad = await ui.put("/api/settings/file", json={"yaml": shown["yaml"] + "api: {prot: 1}\n"})
        assert bad.status_code == 400
        assert bad.json()["detail"] == "config error in the edited settings: unknown key 'api.prot'"
        assert (tmp_path / "site.yaml").read_text() == before
        broken = await ui.put("/api/settings/file", json={"yaml": "buses: [\n"})
        assert broken.status_code == 400 and "not valid YAML" in broken.json()["detail"]
        good = shown["yaml"].replace("host: b", "host: broker2")
        assert (await ui.put("/api/settings/file", json={"yaml": good})).status_code == 200
        saved = yaml.safe_load((tmp_path / "site.yaml").read_text())
        assert saved["mqtt"] == {"host": "broker2", "username": "u", "password": "pw-9"}
        assert (tmp_path / "site.yaml").stat().st_mode & 0o077 == 0
        restored = await ui.post(
            "/api/settings/restore",
            content=before.encode(),
            headers={"Content-Type": "application/yaml"},
        )
        assert restored.status_code == 200
        assert yaml.safe_load((tmp_path / "site.yaml").read_text())["mqtt"]["host"] == "b"
        # no backbone in this test: the restart request cannot go out, and says so
        assert (
            await ui.post("/api/services/restart", json={"service": "reader-0"})
        ).status_code == 503


async def test_setup_writes_once_and_refuses_the_polled_port(
    tmp_path: Path, site_ui: SiteUi
) -> None:
    async with site_ui(None) as ui:
        # fmt: off
        answers = {
            "buses": [{"port": "/dev/ttyUSB7", "packs": [
                {"protocol": "jk_pb", "address": 1, "name": "Left"},
                {"protocol": "jk_pb", "address": 2, "name": "Right"}]}],
            "banks": [{"name": "Bank", "packs": ["Left", "Right"]}],
            "notify_urls": ["json://127.0.0.1:9/hook"], "latitude": 48.21, "longitude": 16.37,
            "timezone": "Europe/Vienna",
        }
        # fmt: on
        done = await ui.post("/api/setup/apply", json=answers)
        assert done.status_code == 200, done.text
        assert done.json()["packs"] == ["left", "right"] and "json://" not in done.json()["yaml"]
        cfg = Settings.model_validate(yaml.safe_load((tmp_path / "site.yaml").read_text()))
        assert cfg.banks[0].packs == ["left", "right"] and cfg.timezone == "Europe/Vienna"
        again = await ui.post("/api/setup/apply", json=answers)
        assert again.status_code == 409 and "already has buses" in again.json()["detail"]
        assert (await ui.post("/api/setup/apply?replace=true", json=answers)).status_code == 200
        # one pack found again: the bank of the packs it replaces goes with them
        alone = {"buses": [{**answers["buses"][0], "packs": answers["buses"][0]["packs"][:1]}]}
        replaced = await ui.post("/api/setup/apply?replace=true", json=alone)
        assert replaced.status_code == 200, replaced.text
        cfg = Settings.model_validate(yaml.safe_load((tmp_path / "site.yaml").read_text()))
        assert cfg.banks == [] and cfg.timezone == "Europe/Vienna"
        twins = {
            "buses": [
                {
                    "port": "/dev/ttyUSB3",
                    "packs": [
                        {"protocol": "jk_pb", "address": 1, "name": "A"},
                        {"protocol": "jk_pb", "address": 2, "name": "A"},
                    ],
                }
            ]
        }
        refused = await ui.post("/api/setup/apply?replace=true", json=twins)
        assert refused.status_code == 422 and "two packs are named 'A'" in refused.json()["detail"]
        tz = await ui.get("/api/setup/timezone", params={"latitude": -33.87, "longitude": 151.21})
        assert tz.json() == {"timezone": "Australia/Sydney"}


async def test_a_scan_of_a_configured_port_is_refused(site_ui: SiteUi) -> None:
    # the test message is the notifier's (tests/integration/test_notify_test.py)
    async with site_ui({"buses": [BUS]}) as ui:
        held = await ui.post("/api/setup/scan", json={"port": "/dev/ttyUSB7"})
        assert (
            held.status_code == 409
            and held.json()["detail"] == "/dev/ttyUSB7 belongs to bus 0: its reader polls it"
        )


async def test_the_scan_refuses_a_pyserial_url_and_the_file_is_untouched(
    tmp_path: Path, site_ui: SiteUi
) -> None:
    """spy://...?file= would truncate the file (the password file, say) as the service's user."""
    victim = tmp_path / "login.json"
    victim.write_text('{"hash": "kept"}\n')
    async with site_ui({"buses": [BUS]}) as ui:
        for port in (f"spy:///dev/ttyUSB9?file={victim}", "loop://", "ttyUSB9"):
            got = await ui.post("/api/setup/scan", json={"port": port})
            assert got.status_code == 422, got.text
            assert got.json()["detail"].startswith("Port: "), got.text
            assert "Value error" not in got.json()["detail"], got.text
        answers = {
            "buses": [
                {
                    "port": f"spy://x?file={victim}",
                    "packs": [{"protocol": "jk_pb", "address": 1, "name": "A"}],
                }
            ]
        }
        refused = await ui.post("/api/setup/apply?replace=true", json=answers)
        assert refused.status_code == 422 and "spy:// is not a serial port" in refused.text
        assert (await ui.get("/api/setup/scan")).json().get("port") is None  # nothing started
    assert victim.read_text() == '{"hash": "kept"}\n'


async def test_a_refused_request_is_said_in_words(site_ui: SiteUi) -> None:
    """The pages show ``detail`` as it is: the field by name and the rule in words."""
    async with site_ui({"buses": [BUS]}) as ui:
        got = await ui.post("/api/setup/notify-test", json={"url": "x"})
        assert got.status_code == 422, got.text
        assert got.json()["detail"] == "URL: needs at least 3 character(s)"
        assert got.json()["errors"] == [
            {"loc": ["body", "url"], "msg": "needs at least 3 character(s)"}
        ]
        got = await ui.post("/api/setup/notify-test", content=b"{", headers=JSON)
        assert got.status_code == 422 and got.json()["detail"] == "The request: not valid JSON", (
            got.text
        )
        got = await ui.get("/api/packs/garage/history", params={"fields": "soc", "hours": "x"})
        assert got.status_code == 422 and "body" not in got.json()["detail"], got.text

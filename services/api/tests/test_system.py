"""The System page's view of the services and outputs, log masking, and the factory reset."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from bmsgate_api.routes.system import masked_lines
from bmsgate_api.system import outputs_view, services_view, storage_view
from bmsgate_common.config_view import MASK
from bmsgate_common.models import ServiceStatus, utcnow
from bmsgate_common.settings import Settings

if TYPE_CHECKING:
    from services.api.tests.conftest import SiteUi

PASSWORD = "system-pass-12"
BUS = {"port": "/dev/ttyUSB7", "protocol": "daly_classic", "packs": [{"id": "garage"}]}
NOW = utcnow()


def online(name: str, age: float = 1.0, **detail: object) -> ServiceStatus:
    return ServiceStatus(
        service=name,
        state="online",
        ts=NOW - timedelta(seconds=age),
        version="1.2.3",
        started=NOW - timedelta(hours=2),
        detail=detail,  # type: ignore[arg-type]
    )


def test_each_service_says_running_hung_stopped_restarting_or_not_started() -> None:
    cfg = Settings.model_validate(
        {"buses": [BUS, {**BUS, "port": "/dev/ttyUSB8", "packs": [{"id": "shed"}]}]}
    )
    statuses = {
        "reader-0": online("reader-0"),
        "reader-1": online("reader-1", age=200),  # heartbeat 30 s: three missed
        "api": online("api"),
        "modbus": ServiceStatus(service="modbus", state="offline"),  # its last will
        "history": ServiceStatus(service="history", state="offline", ts=NOW),
    }
    views = {v.name: v for v in services_view(cfg, statuses, NOW, {})}
    assert list(views)[:5] == ["reader-0", "reader-1", "api", "modbus", "history"]
    assert views["reader-0"].state == "running"
    assert views["reader-0"].uptime == 7200 and views["reader-0"].version == "1.2.3"
    assert views["reader-1"].state == "not responding"
    assert "no status for 200 s" in views["reader-1"].why
    assert views["modbus"].state == "stopped" and "broke off" in views["modbus"].why
    assert views["history"].state == "stopped" and views["history"].why == "stopped cleanly"
    assert views["publisher"].state == "not started"
    assert views["publisher"].why == "nothing to do: no publisher targets and no banks"
    assert views["notifier"].state == "not started"
    # a container runs a service with nothing to do all the same: it is running, and idle
    statuses["publisher"] = online("publisher")
    view = {v.name: v for v in services_view(cfg, statuses, NOW, {})}["publisher"]
    assert view.state == "running" and view.why == (
        "reporting, with nothing to do: no publisher targets and no banks"
    )
    asked = {"history": NOW - timedelta(seconds=5)}
    assert {v.name: v for v in services_view(cfg, statuses, NOW, asked)}["history"].state == (
        "restarting"
    )
    never = {v.name: v for v in services_view(cfg, {}, NOW, {})}
    assert never["api"].state == "stopped" and "never heard" in never["api"].why


def test_outputs_show_each_connection_from_the_services_counters() -> None:
    cfg = Settings.model_validate(
        {
            "buses": [BUS],
            "publisher": {"targets": [{"name": "cloud", "host": "h.example", "tls": True}]},
            "history": {"influx": {"enabled": True}},
            "modbus": {
                "push": [
                    {
                        "host": "inverter",
                        "values": [{"pack": "garage", "value": "soc", "address": 1}],
                    }
                ]
            },
            "notifier": {"targets": [{"name": "phone", "url": "json://x"}]},
        }
    )
    later = (NOW + timedelta(seconds=1)).isoformat()
    statuses = {
        "publisher": online(
            "publisher",
            cloud_connected=False,
            cloud_sent=4,
            cloud_dropped=0,
            cloud_error="connection refused: not authorized (check the user name and password)",
        ),
        "history": online(
            "history",
            influx_up=True,
            influx_buffered=12,
            archive_bytes=4096,
            disk_free_bytes=10**9,
            disk_total_bytes=2 * 10**9,
            disk_write_rate=55.5,
        ),
        "modbus": online("modbus", clients=2, requests=9, refused=1, push0_up=True),
        "notifier": online("notifier", phone_last_sent=NOW.isoformat(), phone_last_failed=later),
    }
    out = {(o.kind, o.name): o for o in outputs_view(cfg, statuses, backbone=True)}
    assert out["Backbone", "the private broker of bmsgate run"].state == "connected"
    cloud = out["MQTT target", "cloud"]
    assert cloud.state == "down" and cloud.facts["broker"] == "h.example:8883"
    assert cloud.facts["error"].startswith("connection refused: not authorized")
    influx = out["InfluxDB", "http://127.0.0.1:8086"]
    assert influx.state == "connected" and influx.facts["backlog (points)"] == 12
    assert out["Modbus TCP server", "127.0.0.1:502"].facts["clients connected"] == 2
    assert out["Modbus push", "inverter:502"].state == "connected"
    assert out["Notifications", "phone"].state == "down"  # the last try failed after the last send
    statuses["notifier"] = online("notifier", phone_last_sent=NOW.isoformat())
    out = {(o.kind, o.name): o for o in outputs_view(cfg, statuses, backbone=True)}
    assert out["Notifications", "phone"].state == "connected"
    statuses["notifier"] = online("notifier", phone_sent=0, phone_failures=0)  # nothing tried
    out = {(o.kind, o.name): o for o in outputs_view(cfg, statuses, backbone=True)}
    assert out["Notifications", "phone"].state == "unknown"
    storage = storage_view(statuses)
    assert storage is not None and storage.archive_bytes == 4096 and storage.disk_write_rate == 55.5
    assert storage_view({}) is None
    # a service not online: its outputs are unknown, not "down"
    statuses["publisher"] = ServiceStatus(service="publisher", state="offline")
    del statuses["modbus"]  # never started
    out = {(o.kind, o.name): o for o in outputs_view(cfg, statuses, backbone=False)}
    assert out["MQTT target", "cloud"].state == "unknown"
    assert out["Modbus TCP server", "127.0.0.1:502"].state == "unknown"
    assert out["Modbus push", "inverter:502"].state == "unknown"


def test_log_lines_never_show_a_configured_secret_or_url_credentials() -> None:
    lines = ["connect mqtt://bob:hunter22@h:1883 failed", "token abcdefsecret refused", "ok"]
    assert masked_lines(lines, ["abcdefsecret"]) == [
        f"connect mqtt://{MASK}@h:1883 failed",
        f"token {MASK} refused",
        "ok",
    ]


def kept_file(where: str) -> tuple[object, int]:
    """The data and permission bits of the file a reset kept."""
    copy = Path(where)
    return yaml.safe_load(copy.read_text()), stat.S_IMODE(copy.stat().st_mode)


async def test_a_factory_reset_needs_the_password_and_keeps_a_copy(
    tmp_path: Path, site_ui: SiteUi
) -> None:
    data = {
        "mqtt": {"host": "broker", "port": 1884},
        "buses": [BUS],
        "notifier": {"targets": [{"name": "phone", "url": "json://x"}]},
        "api": {"port": 8081, "title": "Shed"},
        "data_dir": str(tmp_path / "data"),
    }
    path = tmp_path / "site.yaml"
    async with site_ui(data, login=False) as ui:
        reset = "/api/system/factory-reset"
        assert (await ui.post(reset, json={"password": PASSWORD})).status_code == 401  # no login
        (await ui.post("/api/auth/setup", json={"password": PASSWORD})).raise_for_status()
        wrong = await ui.post(reset, json={"password": "not-the-one"})
        assert wrong.status_code == 403 and wrong.json()["detail"] == "wrong password"
        assert yaml.safe_load(path.read_text()) == data
        done = await ui.post(reset, json={"password": PASSWORD})
        assert done.status_code == 200, done.text
        assert yaml.safe_load(path.read_text()) == {
            "mqtt": {"host": "broker", "port": 1884},
            "data_dir": str(tmp_path / "data"),
        }
        kept, mode = kept_file(done.json()["kept_copy"])
        assert kept == data and mode == 0o600
        assert (await ui.get("/api/setup/status")).json()["needed"] is True

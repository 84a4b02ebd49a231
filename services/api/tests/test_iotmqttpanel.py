from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from bmsgate_api.app import create_app
from bmsgate_api.iotmqttpanel import ExportProblem, PackInfo, backup
from bmsgate_api.store import PackStore
from bmsgate_common.settings import Settings
from tests.support.needs import require

# real exports of the app, copied by the researcher (not part of the product)
REAL = (
    Path(__file__).parents[3].parent
    / "shared"
    / "research"
    / "iotmqttpanel"
    / "esp32_iot_dv152.json"
)


def settings(control: bool = True, style: str = "type2") -> Settings:
    return Settings.model_validate(
        {
            "control": {"enabled": control},
            "publisher": {
                "targets": [
                    {
                        "name": "hive",
                        "host": "broker.example",
                        "tls": True,
                        "username": "me",
                        "password": "s3cret",
                        "topic_prefix": "home",
                        "dongle": {"style": style},
                    }
                ]
            },
        }
    )


def real() -> dict[str, Any]:
    require(REAL.exists(), f"the IoT MQTT Panel export {REAL} is not next to the repository")
    return json.loads(REAL.read_text())  # type: ignore[no-any-return]


def test_keys_are_those_of_a_real_export() -> None:
    ref = real()
    ours = backup(settings(), [PackInfo("garage", "Garage", 4), PackInfo("shed", "Shed", 16)])
    assert list(ours) == list(ref)
    assert ours["dataVersion"] == 152 and ours["globalSettings"] == {"runInBackground": True}
    assert list(ours["connections"][0]) == list(ref["connections"][0])
    assert list(ours["dashboards"][0]) == list(ref["dashboards"][0])
    by_type = {p["type"]: p for p in ref["panels"]}
    for panel in ours["panels"]:
        want = by_type[panel["type"]]
        assert list(panel) == list(want), panel["type"]
        for item in panel.get("comboItemList", []):
            assert list(item) == list(want["comboItemList"][0])


def test_dashboards_panels_and_ids_link_up() -> None:
    ours = backup(settings(), [PackInfo("garage", "Garage", 4), PackInfo("shed", "Shed", 16)])
    conn = ours["connections"][0]
    assert (
        conn["host"] == "broker.example"
        and conn["port"] == 8883
        and conn["connectionType"] == "ssl"
    )
    assert conn["password"] == "" and "s3cret" not in json.dumps(ours)  # secrets never exported
    assert [d["dashboardName"] for d in ours["dashboards"]] == ["Garage", "Shed"]
    ids = [p["panelId"] for p in ours["panels"]]
    assert len(set(ids)) == len(ids) == 2 * 8
    garage = [p for p in ours["panels"] if p["dashboardId"] == "dashboard_1"]
    assert [p["panelName"] for p in garage] == [
        "SOC",
        "Voltage",
        "Current",
        "Power",
        "Delta",
        "Cells",
        "Charge MOS",
        "Discharge MOS",
    ]
    assert garage[0]["topic"] == "home/garage" and garage[0]["jsonPath"] == "$.SOC"
    cells = garage[5]["comboItemList"]
    assert [c["jsonPath"] for c in cells] == ["$.bat.0", "$.bat.1", "$.bat.2", "$.bat.3"]
    assert (
        garage[6]["topic"] == "home/garage/mos/set"
        and garage[6]["jsonEnvelope"] == '{"CMS":<payload>}'
    )
    # without control: no switches; type1 cells are flat keys
    flat = backup(settings(control=False, style="type1"), [PackInfo("garage", "Garage", 2)])
    assert [p["type"] for p in flat["panels"]].count("switch") == 0
    assert flat["panels"][5]["comboItemList"][1]["jsonPath"] == "$.b1"
    with pytest.raises(ExportProblem, match="publisher target"):
        backup(Settings(), [])


async def test_export_endpoint() -> None:
    app = create_app(PackStore(), settings=settings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        got = await http.get("/api/export/iotmqttpanel.json")
        assert got.status_code == 200 and "attachment" in got.headers["content-disposition"]
        assert got.json()["dataVersion"] == 152
        got = await http.get("/api/export/iotmqttpanel.json", params={"target": "nope"})
        assert got.status_code == 409 and "nope" in got.json()["detail"]

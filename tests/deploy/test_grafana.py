"""The provisioned Grafana dashboard queries only what the history service writes to InfluxDB."""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bmsgate_common.models import PackState
from bmsgate_common.settings import InfluxSettings
from bmsgate_history.influx import to_line
from tests.deploy.conftest import ROOT

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "bmsgate.json"


def written_fields() -> set[str]:
    """Every field name the writer emits for a pack state that reports everything."""
    state = PackState(
        pack="p1",
        name="P1",
        protocol="jk_pb",
        ts=datetime(2025, 6, 1, tzinfo=UTC),
        pack_voltage=53.0,
        current=-10.0,
        power=-530.0,
        soc=80.0,
        cell_voltages=[3.3] * 16,
        cell_count=16,
        temperatures=[25.0, 26.0],
        mos_temperature=30.0,
        remaining_capacity=200.0,
        nominal_capacity=280.0,
        cycles=12,
        charge_mos=True,
        discharge_mos=True,
        balancing=False,
        energy_in=100.0,
        energy_out=90.0,
        charge_in=2000.0,
        charge_out=1900.0,
    )
    fields = to_line(state).split(" ")[1]
    return {f.split("=")[0] for f in fields.split(",")}


def queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["query"] for p in dash["panels"] for t in p["targets"]]


def test_every_queried_field_is_written_by_the_history_service() -> None:
    fields = written_fields()
    assert {"cell_16", "temp_2", "charge_mos", "energy_in"} <= fields
    for query in queries():
        for name in re.findall(r'r\._field == "([^"]+)"', query):
            assert name in fields, f"{name!r} is not written (influx.py to_line)"
        for pattern in re.findall(r"r\._field =~ /([^/]+)/", query):
            assert any(re.fullmatch(pattern.strip("^$"), f) for f in fields), pattern
        for measurement in re.findall(r'r\._measurement == "([^"]+)"', query):
            assert measurement == InfluxSettings().measurement
        for tag in re.findall(r"r\.([a-z_]+) =~ /\^\$\{", query):
            assert tag == "pack"  # the writer's tags: pack and protocol


def test_the_dashboards_cover_what_the_issue_asks() -> None:
    titles = " ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for word in (
        "overview",
        "every cell",
        "state of charge",
        "power",
        "temperatures",
        "energy per day",
        "alarms",
    ):
        assert word in titles


def test_the_dashboard_file_is_generated_and_uses_the_provisioned_data_source() -> None:
    spec = importlib.util.spec_from_file_location("make_dashboard", GRAFANA / "make_dashboard.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), "run deploy/grafana/make_dashboard.py"
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/influxdb.yaml").read_text())
    (ds,) = source["datasources"]
    uids: set[Any] = {p["datasource"]["uid"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    assert uids == {ds["uid"]}
    assert ds["secureJsonData"]["token"] == "$__env{INFLUX_TOKEN}"  # from .env, not the file
    assert ds["jsonData"]["defaultBucket"] == InfluxSettings().bucket
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/bmsgate.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert Path(DASHBOARD).parent.name == "dashboards"

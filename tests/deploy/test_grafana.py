"""The provisioned Grafana dashboard queries only what the history service writes to InfluxDB,
and follows Grafana's own published dashboard schema (npm @grafana/schema, checked by tsc)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bmsgate_common.models import PackState
from bmsgate_common.settings import InfluxSettings
from bmsgate_history.influx import to_line
from tests.deploy.conftest import COMPOSE, ROOT
from tests.support.needs import require

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "bmsgate.json"
# @grafana/schema at the Grafana version of docker-compose.yml, and tsc (npm ci by setup.sh test)
SCHEMA = ROOT / "tests" / "deploy" / "grafana_schema"
DASHBOARD_TYPES = "@grafana/schema/dist/esm/raw/dashboard/x/dashboard_types.gen"


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


def schema_errors(dashboard: dict[str, Any], folder: Path) -> list[str]:
    """tsc's errors for ``dashboard`` as an object literal of Grafana's ``Dashboard`` type.

    Grafana publishes its dashboard schema as TypeScript types (generated from its CUE kinds);
    an object literal gets TypeScript's excess property check, so an unknown key is an error
    as well as a value of the wrong type.
    """
    folder.mkdir()
    (folder / "node_modules").symlink_to(SCHEMA / "node_modules")
    check = folder / "dashboard.ts"
    check.write_text(
        f'import type {{ Dashboard }} from "{DASHBOARD_TYPES}";\n'
        f"export const dashboard: Dashboard = {json.dumps(dashboard, indent=1)};\n"
    )
    done = subprocess.run(
        [
            str(SCHEMA / "node_modules" / ".bin" / "tsc"),
            "--noEmit",
            "--strict",
            "--pretty",
            "false",
            "--target",
            "es2020",
            "--module",
            "commonjs",
            "--moduleResolution",
            "node",
            str(check),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = check.read_text().splitlines()
    errors = []
    for line in done.stdout.splitlines():
        found = re.search(r"\((\d+),\d+\): error (.*)", line)
        if found:  # the message, with the line of the dashboard it is about
            errors.append(f"{found.group(2)} at: {lines[int(found.group(1)) - 1].strip()}")
    assert errors or done.returncode == 0, done.stdout + done.stderr
    return errors


def test_the_dashboard_follows_grafanas_published_schema(tmp_path: Path) -> None:
    require((SCHEMA / "node_modules" / ".bin" / "tsc").exists(), "npm ci in " + str(SCHEMA))
    lock = json.loads((SCHEMA / "package-lock.json").read_text())["packages"]
    grafana = re.search(r"grafana/grafana-oss:(\S+)", COMPOSE.read_text())
    assert grafana and lock["node_modules/@grafana/schema"]["version"] == grafana.group(1)
    dashboard = json.loads(DASHBOARD.read_text())
    assert schema_errors(dashboard, tmp_path / "as-is") == []
    # the check can fail: a key Grafana does not know, a value of the wrong type
    dashboard["panels"][0]["bogus"] = 1
    dashboard["panels"][1]["gridPos"]["w"] = "wide"
    wrong = schema_errors(dashboard, tmp_path / "broken")
    assert len(wrong) == 2 and "'\"bogus\"' does not exist in type 'Panel'" in wrong[0], wrong

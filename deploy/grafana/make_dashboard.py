"""Writes dashboards/bmsgate.json: the Grafana dashboard of the compose stack.

Generated rather than hand-edited so that every panel's Flux query is built from the same few
lines; tests/deploy checks the file is up to date and that every field it queries is one the
history service writes (services/history/src/bmsgate_history/influx.py, docs/history.md).
Run: ``uv run python deploy/grafana/make_dashboard.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DS = {"type": "influxdb", "uid": "bmsgate-influx"}
MEASUREMENT = "bms"  # history.influx.measurement (default)
PACK = "r.pack =~ /^${pack:regex}$/"


def flux(fields: str, window: str = "v.windowPeriod", fn: str = "mean") -> str:
    """Fields of the selected packs, averaged per window; ``fields`` is a Flux predicate."""
    return (
        'from(bucket: "bmsgate")\n'
        "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n"
        f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and {PACK})\n'
        f"  |> filter(fn: (r) => {fields})\n"
        f"  |> aggregateWindow(every: {window}, fn: {fn}, createEmpty: false)"
    )


def field_is(*names: str) -> str:
    """A Flux predicate: one of these fields."""
    return " or ".join(f'r._field == "{n}"' for n in names)


# energy per local day [Wh]: power integrated over time, charge and discharge apart (as the
# archive does when a pack has no energy counters; docs/history.md)
ENERGY = (
    'power = from(bucket: "bmsgate")\n'
    "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n"
    f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and {PACK})\n'
    '  |> filter(fn: (r) => r._field == "power")\n'
    "day = (tables=<-, column) => tables |> integral(unit: 1h, column: column)\n"
    "power\n"
    "  |> map(fn: (r) => ({r with _value: if r._value > 0.0 then r._value else 0.0,"
    ' _field: "charged"}))\n'
    '  |> aggregateWindow(every: 1d, fn: day, timeSrc: "_start", createEmpty: false)\n'
    '  |> yield(name: "charged")\n'
    "power\n"
    "  |> map(fn: (r) => ({r with _value: if r._value < 0.0 then -r._value else 0.0,"
    ' _field: "discharged"}))\n'
    '  |> aggregateWindow(every: 1d, fn: day, timeSrc: "_start", createEmpty: false)\n'
    '  |> yield(name: "discharged")'
)


def panel(
    pid: int, title: str, query: str, unit: str, kind: str = "timeseries", **extra: Any
) -> dict[str, Any]:
    """One panel, 12 columns wide, laid out two per row."""
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": 12 * ((pid - 1) % 2), "y": 8 * ((pid - 1) // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": "A", "datasource": DS, "query": query}],
        **extra,
    }


# fmt: off
PANELS = [
    panel(1, "Pack overview", flux(field_is("soc", "pack_voltage", "current", "power"),
                                   fn="last"), "none", kind="stat",
          options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"}),
    panel(2, "State of charge", flux(field_is("soc")), "percent"),
    panel(3, "Every cell", flux('r._field =~ /^cell_[0-9]+$/'), "volt"),
    panel(4, "Cell spread", flux(field_is("cell_min", "cell_max", "cell_delta")), "volt"),
    panel(5, "Power", flux(field_is("power")), "watt"),
    panel(6, "Voltage and current", flux(field_is("pack_voltage", "current")), "none"),
    panel(7, "Temperatures", flux('r._field =~ /^temp_[0-9]+$/ or r._field == "mos_temperature"'),
          "celsius"),
    panel(8, "Energy per day", ENERGY, "watth", kind="barchart"),
    # alarms: a protection that trips shows as its MOS switched off; the events themselves go to
    # the web UI and the notifier, not to InfluxDB
    panel(9, "Alarms: MOS switches and balancing",
          flux(field_is("charge_mos", "discharge_mos", "balancing"), fn="last"), "bool_on_off",
          kind="state-timeline"),
    panel(10, "Alarms: cell delta", flux(field_is("cell_delta"), fn="max"), "volt",
          options={"thresholdsStyle": {"mode": "line"}}),
]
# fmt: on

DASHBOARD = {
    "uid": "bmsgate-packs",
    "title": "bmsgate: battery packs",
    "tags": ["bmsgate"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "30s",
    "time": {"from": "now-24h", "to": "now"},
    "templating": {
        "list": [
            {
                "name": "pack",
                "label": "Pack",
                "type": "query",
                "datasource": DS,
                "query": 'import "influxdata/influxdb/schema"\n'
                'schema.tagValues(bucket: "bmsgate", tag: "pack")',
                "multi": True,
                "includeAll": True,
                "current": {"text": "All", "value": "$__all"},
                "refresh": 2,
            }
        ]
    },
    "panels": PANELS,
}

OUT = Path(__file__).parent / "dashboards" / "bmsgate.json"


def render() -> str:
    """The file's text."""
    return json.dumps(DASHBOARD, indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())

"""An IoT MQTT Panel backup (the phone app's "Backup and Restore" file) for the dongle's packets.

The keys, their order and their value types are copied from real exports of the app's current
format (dataVersion 152: already-amir/ESP32_IOT docs/IoTMQTTPanel.json; 133:
STMicroelectronics/x-cube-st67w61; see research/FORMATS.md section 2). Pure: settings in, dict out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bmsgate_common.mqtt import DEFAULT_HOST
from bmsgate_common.settings import Settings, TargetSettings

DATA_VERSION = 152
COLORS = [
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#9a6324",
    "#469990",
    "#800000",
    "#808000",
    "#000075",
    "#bfef45",
    "#fabed4",
    "#a9a9a9",
    "#dcbeff",
]


class ExportProblem(ValueError):
    """The configuration has nothing the app could connect to; the message says what to set."""


@dataclass(frozen=True)
class PackInfo:
    """What a dashboard needs to know of a pack."""

    id: str
    name: str
    cells: int
    bank: bool = False  # no MOS of its own: the publisher refuses switching a bank


def _notify() -> dict[str, Any]:
    # fmt: off
    return {
        "enableNotification": False, "notificationFilter": "all", "notificationMin": "",
        "notificationMax": "", "notificationValue": "", "notificationRegex": "",
        "notificationMessage": "<payload>",
    }
    # fmt: on


def _connection(
    target: TargetSettings, settings: Settings, public_host: str | None
) -> dict[str, Any]:
    host = target.host or public_host or settings.mqtt.host or DEFAULT_HOST
    port = target.port or (8883 if target.tls else settings.mqtt.port if not target.host else 1883)
    # fmt: off
    return {
        "connectionName": f"bmsgate {target.name}", "clientId": "", "host": host, "port": port,
        "path": "/mqtt", "connectionType": "ssl" if target.tls else "tcp", "webPort": 8080,
        "webConnectionType": "ws", "username": target.username or "",
        "password": "",  # never exported: typed into the app
        "keepAlive": 60, "cleanSession": True, "autoConnect": True, "disableHostnameCheck": False,
        "allowUntrustCACertificate": False, "tlsVersion": "TLSv1.2", "caCertificateFileName": "",
        "clientCertificateFileName": "", "clientKeyFileName": "", "encryptionPassword": "",
        "enableWillMessage": False, "willTopic": "", "willPayload": "", "willRetain": False,
        "willQoS": 0, "defaultDashboard": "dashboard_1", "connectionId": "connection_1",
        "notifyOnDisconnect": False,
    }
    # fmt: on


class _Panels:
    """Numbers panels globally, as the app does."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []

    def _base(self, dashboard: str, name: str, kind: str, mqtt_type: str) -> dict[str, Any]:
        # fmt: off
        return {
            "connectionId": "connection_1", "dashboardId": dashboard,
            "panelId": f"panel_{len(self.panels) + 1}", "panelName": name, "type": kind,
            "mqttType": mqtt_type,
        }
        # fmt: on

    def gauge(
        self,
        dashboard: str,
        name: str,
        topic: str,
        path: str,
        unit: str,
        low: float,
        high: float,
        digits: int,
    ) -> None:
        """A gauge of one JSON value."""
        span = high - low
        # fmt: off
        self.panels.append({
            **self._base(dashboard, name, "gauge", "sub"), "topic": topic, "payloadMin": low,
            "payloadMax": high, "qos": 0, "disableDashboardPrefix": False, "panelWidth": "50",
            "firstColor": "#ff4d4d", "secondColor": "#ffcc00", "thirdColor": "#33cc33",
            "firstColorEnd": round(low + span / 3, 2),
            "secondColorEnd": round(low + 2 * span / 3, 2),
            "panelMergeClass": "", "showReceivedTimeStamp": False, "unit": unit, **_notify(),
            "isJSONPayload": True, "jsonPath": path, "messageFactor": 1,
            "decimalPrecision": digits, "step": round(span / 100, 3),
        })
        # fmt: on

    def graph(self, dashboard: str, name: str, lines: list[dict[str, Any]]) -> None:
        """A line graph, one line per (topic, JSON path)."""
        # fmt: off
        self.panels.append({
            **self._base(dashboard, name, "line-graph", "sub"), "qos": 0, "comboItemList": lines,
            "disableDashboardPrefix": False, "panelWidth": "100", "panelMergeClass": "",
            "maxPersistence": 500, "maxDuraion": "days:1", "smoothCurve": False,
        })
        # fmt: on

    def switch(self, dashboard: str, name: str, topic: str, state_topic: str, key: str) -> None:
        """A MOS switch: publishes {"CMS":1} and shows the state from the main packet."""
        # fmt: off
        self.panels.append({
            **self._base(dashboard, name, "switch", "pubsub"), "topic": topic, "payloadOn": "1",
            "payloadOff": "0", "qos": 1, "retain": False, "hidePanelName": False,
            "defaultColor": "primary", "disableDashboardPrefix": False,
            "seperateSubscribeTopic": state_topic, "hasCustomIcon": False, "iconOn": "",
            "iconColorOn": "", "iconOff": "", "iconColorOff": "", **_notify(),
            "isJSONPayload": True, "jsonPath": f"$.{key}", "jsonEnvelope": f'{{"{key}":<payload>}}',
            "panelWidth": "50", "panelMergeClass": "", "iconSize": "large",
            "showReceivedTimeStamp": False, "showSentTimeStamp": False,
            "confirmBeforePublish": True, "confirmationMessage": f"Set {name} to <payload>?",
        })
        # fmt: on


def _line(
    topic: str, label: str, color: str, path: str, unit: str, factor: float
) -> dict[str, Any]:
    # fmt: off
    return {
        "topic": topic, "label": label, "color": color, "showArea": False, "showPoints": False,
        "unit": unit, **_notify(), "isJSONPayload": True, "jsonPath": path,
        "messageFactor": factor, "decimalPrecision": 3,
    }
    # fmt: on


def pick_target(settings: Settings, name: str | None) -> TargetSettings:
    """The publisher target the phone connects to: ``name``, else the first with dongle packets."""
    targets = [t for t in settings.publisher.targets if t.dongle.enabled]
    if name is not None:
        targets = [t for t in targets if t.name == name]
        if not targets:
            raise ExportProblem(f"no publisher target {name!r} with dongle packets enabled")
    if not targets:
        raise ExportProblem(
            "no publisher target sends the dongle's packets: add an MQTT target with dongle "
            "packets on (Settings, Outputs; publisher.targets in the file, docs/publisher.md)"
        )
    return targets[0]


def backup(
    settings: Settings,
    packs: list[PackInfo],
    target_name: str | None = None,
    public_host: str | None = None,
) -> dict[str, Any]:
    """The backup file: one connection, one dashboard per pack, linked by ids."""
    target = pick_target(settings, target_name)
    wanted = set(target.packs) if target.packs is not None else None
    dongle, prefix = target.dongle, target.topic_prefix
    panels = _Panels()
    dashboards = []
    for n, pack in enumerate([p for p in packs if wanted is None or p.id in wanted], start=1):
        dash = f"dashboard_{n}"
        # fmt: off
        dashboards.append({
            "connectionId": "connection_1", "dashboardId": dash, "dashboardName": pack.name,
            "dashboardPrefixTopic": "", "lockPanels": False,
        })
        # fmt: on
        main = dongle.main_topic.format(prefix=prefix, pack=pack.id)
        panels.gauge(dash, "SOC", main, "$.SOC", "%", 0, 100, 0)
        panels.gauge(dash, "Voltage", main, "$.PMV", "V", 2.5 * pack.cells, 3.65 * pack.cells, 2)
        panels.gauge(dash, "Current", main, "$.PMA", "A", -100, 100, 1)
        panels.gauge(dash, "Power", main, "$.PWT", "W", -5000, 5000, 0)
        panels.gauge(dash, "Delta", main, "$.PDV", "mV", 0, 300, 0)
        style = "$.bat.{}" if dongle.style == "type2" else "$.b{}"
        lines = [
            _line(main, f"Cell {k + 1}", COLORS[k % 16], style.format(k), "V", 0.001)
            for k in range(pack.cells)
        ]
        panels.graph(dash, "Cells", lines)
        if settings.control.enabled and not pack.bank:
            mos = dongle.mos_topic.format(prefix=prefix, pack=pack.id)
            panels.switch(dash, "Charge MOS", mos, main, "CMS")
            panels.switch(dash, "Discharge MOS", mos, main, "DMS")
    return {
        "dataVersion": DATA_VERSION,
        "globalSettings": {"runInBackground": True},
        "connections": [_connection(target, settings, public_host)],
        "dashboards": dashboards,
        "panels": panels.panels,
    }

"""The Home Assistant add-on's entry point: options and MQTT service into bmsgate.yaml, then run.

The Supervisor writes the add-on's options to /data/options.json and tells the broker of its MQTT
service at ``GET http://supervisor/services/mqtt`` (token in $SUPERVISOR_TOKEN) and its own slug
at ``GET http://supervisor/addons/self/info``; these sources are documented at
developers.home-assistant.io (add-ons: configuration, communication). The options are laid over
/data/bmsgate.yaml, so what they do not name stays as the web UI set it; the file is validated
before it is written, and a bad option is one line naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bmsgate_common import config_file as cf
from bmsgate_common.service import USER_ERROR
from bmsgate_common.settings import ConfigError

DATA: Final = Path("/data")
SUPERVISOR: Final = "http://supervisor"
INGRESS_PORT: Final = 8099  # config.yaml's ingress_port
INGRESS_PROXY: Final = (
    "172.30.32.2"  # the Supervisor's ingress gateway (HA developer docs, Ingress)
)
MODBUS_PORT: Final = 5020  # config.yaml's ports: non-root in the container, mapped by the user
TARGET: Final = "homeassistant"


def settings_from_options(
    options: dict[str, Any], mqtt: dict[str, Any], slug: str | None = None
) -> dict[str, Any]:
    """The configuration the options and the MQTT service give (raw file data).

    ``slug``, the add-on's own (the Supervisor's ``/addons/self/info``), points HA's "Visit"
    link of every bmsgate device at the add-on's ingress panel: the web UI's address inside the
    container means nothing to a browser.
    """
    homeassistant: dict[str, Any] = {"enabled": bool(options.get("homeassistant", True))}
    if slug:
        homeassistant["configuration_url"] = f"homeassistant://hassio/ingress/{slug}"
    buses = []
    for bus in options.get("buses", []):
        pack = {"id": bus["pack"], "address": bus.get("address", 1)}
        if bus.get("name"):
            pack["name"] = bus["name"]
        entry: dict[str, Any] = {"port": bus["port"], "protocol": bus["protocol"], "packs": [pack]}
        if bus.get("poll_interval") is not None:
            entry["poll_interval"] = bus["poll_interval"]
        buses.append(entry)
    broker = {"host": mqtt["host"], "port": int(mqtt["port"])}
    if mqtt.get("username"):
        broker |= {"username": mqtt["username"], "password": mqtt.get("password", "")}
    data: dict[str, Any] = {
        "mqtt": broker,
        "buses": buses,
        # the Supervisor's ingress proxy reaches the container on its own network, from
        # INGRESS_PROXY, and forwards the browser's host: believed from there only
        "api": {
            "host": "0.0.0.0",
            "port": INGRESS_PORT,
            "mdns": False,
            "trusted_proxies": [INGRESS_PROXY],
        },
        "control": {"enabled": bool(options.get("control", False))},
        "modbus": {
            "enabled": bool(options.get("modbus", False)),
            "host": "0.0.0.0",
            "port": MODBUS_PORT,
        },
        "publisher": {
            "targets": [
                {
                    "name": TARGET,
                    **broker,
                    "homeassistant": homeassistant,
                }
            ]
        },
        "data_dir": str(DATA),
        "log_level": options.get("log_level", "INFO"),
    }
    if options.get("timezone"):
        data["timezone"] = options["timezone"]
    return data


def lay_over(stored: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """The stored file with the options' keys set; the options' target replaces its namesake."""
    merged = cf.merge(stored, {k: v for k, v in ours.items() if k != "publisher"})
    others = [t for t in stored.get("publisher", {}).get("targets", []) if t.get("name") != TARGET]
    merged["publisher"] = {
        **stored.get("publisher", {}),
        "targets": [*ours["publisher"]["targets"], *others],
    }
    return merged


def mqtt_service(url: str, token: str) -> dict[str, Any]:
    """The broker the Supervisor's MQTT service names (host, port, username, password)."""
    request = urllib.request.Request(
        f"{url}/services/mqtt", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # the Supervisor
        body = json.load(answer)
    data: dict[str, Any] = body.get("data", {})
    if not data.get("host"):
        raise ConfigError("no MQTT service: install and start the Mosquitto broker add-on")
    return data


def own_slug(url: str, token: str) -> str | None:
    """The add-on's slug as the Supervisor names it (``<repository hash>_bmsgate``), or None."""
    request = urllib.request.Request(
        f"{url}/addons/self/info", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # the Supervisor
            slug = json.load(answer).get("data", {}).get("slug")
    except (OSError, ValueError):
        return None  # the link then names the container's address; nothing else depends on it
    return str(slug) if slug else None


def main(argv: Sequence[str] | None = None) -> int:
    """Write /data/bmsgate.yaml from the options, then become ``bmsgate run``."""
    parser = argparse.ArgumentParser(prog="python -m bmsgate.addon")
    parser.add_argument("--data", type=Path, default=DATA, help="the add-on's /data")
    parser.add_argument("--no-run", action="store_true", help="write the file only")
    args = parser.parse_args(argv)
    config = args.data / "bmsgate.yaml"
    try:
        options = json.loads((args.data / "options.json").read_text(encoding="utf-8"))
        url = os.environ.get("SUPERVISOR_URL", SUPERVISOR)
        token = os.environ.get("SUPERVISOR_TOKEN", "")
        ours = settings_from_options(options, mqtt_service(url, token), own_slug(url, token))
        ours["data_dir"] = str(args.data)
        cf.save(config, lay_over(cf.read_raw(config), ours))
    except (ConfigError, OSError, ValueError, KeyError) as err:
        sys.stderr.write(
            f"bmsgate add-on: {type(err).__name__}: {err}\n".replace("ConfigError: ", "")
        )
        return USER_ERROR
    if args.no_run:
        return 0
    bmsgate = Path(sys.executable).parent / "bmsgate"
    os.execv(bmsgate, [str(bmsgate), "run", "--config", str(config)])


if __name__ == "__main__":
    sys.exit(main())

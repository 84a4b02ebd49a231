"""The Home Assistant add-on (addon/bmsgate): its files against the add-on schemas
(tests/release/ha_addon/SOURCE.md), its options against their own schema, and the entry point
that turns options and the Supervisor's MQTT service into a configuration bmsgate loads."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bmsgate.addon import INGRESS_PORT, TARGET, lay_over, settings_from_options
from bmsgate_common.settings import Settings, load_settings
from bmsgate_common.version import VERSION
from tests.support.receiver import Answering, serving

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon" / "bmsgate"
SCHEMAS = Path(__file__).parent / "ha_addon"
CONFIG = yaml.safe_load((ADDON / "config.yaml").read_text())
BUILD = yaml.safe_load((ADDON / "build.yaml").read_text())
TRANSLATIONS = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text())
MQTT = {
    "host": "core-mosquitto",
    "port": 1883,
    "ssl": False,
    "protocol": "3.1.1",
    "username": "addons",
    "password": "broker-secret",
}
BY_ID = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K5FZT-if00-port0"


def schema(name: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / f"ha-addon-{name}.schema.json").read_text()))


def errors(name: str, data: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema(name))
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)
    ]


def test_the_addon_files_pass_the_addon_schemas() -> None:
    for name in ("config", "build", "translations"):
        jsonschema.Draft202012Validator.check_schema(schema(name))
    assert errors("config", CONFIG) == []
    assert errors("build", BUILD) == []
    assert errors("translations", TRANSLATIONS) == []
    assert repo_name() == "bmsgate add-ons"


def repo_name() -> str:
    return str(yaml.safe_load((ROOT / "repository.yaml").read_text())["name"])


@pytest.mark.parametrize(
    ("name", "change", "complaint"),
    [
        ("config", {"services": ["mqtt:required"]}, "does not match"),
        ("config", {"schema": {"control": "boolean"}}, "is not valid"),
        ("config", {"arch": ["x86_64"]}, "is not one of"),
        ("config", {"ingres": True}, "Additional properties"),
        ("build", {"build_from": {"amd64": "python:3.11-slim"}}, "is not valid"),
    ],
)
def test_the_schemas_catch_what_the_supervisor_refuses(
    name: str, change: dict[str, Any], complaint: str
) -> None:
    broken = copy.deepcopy(CONFIG if name == "config" else BUILD) | change
    found = errors(name, broken)
    assert found and complaint in " ".join(found), found


def test_the_addon_is_this_version_for_the_image_platforms() -> None:
    assert CONFIG["version"] == VERSION  # the image installs bmsgate==version
    bake = json.loads((ROOT / "docker-bake.json").read_text())["target"]["_common"]["platforms"]
    platforms = {"amd64": "linux/amd64", "aarch64": "linux/arm64"}
    assert sorted(platforms[a] for a in CONFIG["arch"]) == sorted(bake)
    assert set(BUILD["build_from"]) == set(CONFIG["arch"])


def test_the_addon_uses_the_mqtt_service_ingress_and_serial_devices_by_id() -> None:
    assert "mqtt:need" in CONFIG["services"]
    assert CONFIG["ingress"] is True and CONFIG["ingress_port"] == INGRESS_PORT
    assert CONFIG["uart"] is True  # serial adapters, listed by /dev/serial/by-id
    assert CONFIG["schema"]["buses"][0]["port"] == "device(subsystem=tty)"
    dockerfile = (ADDON / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{BUILD_FROM\}$", dockerfile, re.M)
    assert '"bmsgate==${BUILD_VERSION}"' in dockerfile
    assert "ENV BMSGATE_INSTALL=addon" in dockerfile
    assert 'CMD ["python", "-m", "bmsgate.addon"]' in dockerfile


def option_ok(kind: str, value: Any) -> bool:
    """Whether ``value`` fits an option type of config.yaml's schema (the types used there)."""
    kind = kind.removesuffix("?")
    if kind == "bool":
        return isinstance(value, bool)
    if kind.startswith("list("):
        return value in kind[5:-1].split("|")
    if kind.startswith("match("):
        return isinstance(value, str) and re.fullmatch(kind[6:-1], value) is not None
    if kind.startswith("device"):
        return isinstance(value, str)  # "" until the user picks one
    if kind.startswith(("int", "float")):
        low, high = (float(x) for x in kind[kind.index("(") + 1 : -1].split(","))
        return isinstance(value, int | float) and low <= value <= high
    return isinstance(value, str)


def test_every_option_has_a_type_a_valid_default_and_a_translation() -> None:
    types, options, words = CONFIG["schema"], CONFIG["options"], TRANSLATIONS["configuration"]
    assert set(options) <= set(types) == set(words)
    for key, value in options.items():
        if isinstance(value, list):
            for item in value:
                fields = types[key][0]
                assert set(item) <= set(fields) == set(words[key]["fields"]), key
                for field, v in item.items():
                    assert option_ok(fields[field], v), (key, field, v)
        else:
            assert option_ok(types[key], value), (key, value)
    optional = [k for k, t in types.items() if isinstance(t, str) and t.endswith("?")]
    assert set(types) - set(options) == set(optional)  # only optional ones may go unset


# fmt: off
OPTIONS = {
    "buses": [
        {"port": BY_ID, "protocol": "jk_pb", "pack": "shed", "name": "Shed", "address": 2},
        {"port": "/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0", "protocol": "daly_classic", "pack": "garage"},
    ],
    "control": False, "homeassistant": True, "modbus": True, "log_level": "INFO",
    "timezone": "Europe/Berlin",
}
# fmt: on


def test_the_options_map_onto_bmsgate_settings() -> None:
    cfg = Settings.model_validate(settings_from_options(OPTIONS, MQTT))
    assert cfg.buses[0].port == BY_ID  # the stable name, as picked
    assert [(p.id, p.name, p.address) for b in cfg.buses for p in b.packs] == [
        ("shed", "Shed", 2),
        ("garage", None, 1),
    ]
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.username) == ("core-mosquitto", 1883, "addons")
    assert cfg.mqtt.password is not None and cfg.mqtt.password.get_secret_value() == "broker-secret"
    [target] = cfg.publisher.targets
    assert (
        target.name == TARGET and target.homeassistant.enabled and target.host == "core-mosquitto"
    )
    assert cfg.api.port == INGRESS_PORT and cfg.control.enabled is False
    assert [str(p) for p in cfg.api.trusted_proxies] == ["172.30.32.2"]  # the ingress gateway
    assert cfg.modbus.enabled and cfg.modbus.port == 5020 and cfg.timezone == "Europe/Berlin"
    assert str(cfg.data_dir) == "/data"


def test_the_web_uis_settings_survive_a_restart_of_the_addon() -> None:
    stored = {
        "banks": [{"id": "all", "packs": ["shed", "garage"]}],
        "api": {"title": "Cabin"},
        "publisher": {
            "targets": [
                {"name": TARGET, "homeassistant": {"enabled": False}},
                {"name": "cloud", "host": "broker.example"},
            ]
        },
    }
    merged = lay_over(stored, settings_from_options(OPTIONS, MQTT))
    cfg = Settings.model_validate(merged)
    assert cfg.api.title == "Cabin" and cfg.api.port == INGRESS_PORT and cfg.banks[0].id == "all"
    assert [t.name for t in cfg.publisher.targets] == [TARGET, "cloud"]
    assert cfg.publisher.targets[0].homeassistant.enabled  # the option wins for its own target


class Supervisor(Answering):
    """A stand-in for the Supervisor's API: GET /services/mqtt and /addons/self/info with the
    add-on's token."""

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        data = {"/services/mqtt": MQTT, "/addons/self/info": {"slug": "a0d7b954_bmsgate"}}
        ok = self.path in data and self.headers["Authorization"] == "Bearer addon-token"
        answer = {"result": "ok", "data": data[self.path]} if ok else {"result": "error"}
        self.answer(200 if ok else 403, json.dumps(answer).encode())


@pytest.fixture
def supervisor() -> Iterator[str]:
    with serving(Supervisor) as port:
        yield f"http://127.0.0.1:{port}"


def run_addon(data: Path, url: str, token: str = "addon-token") -> subprocess.CompletedProcess[str]:
    env = {"SUPERVISOR_URL": url, "SUPERVISOR_TOKEN": token, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "bmsgate.addon", "--data", str(data), "--no-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_the_entry_point_writes_a_configuration_bmsgate_loads(
    tmp_path: Path, supervisor: str
) -> None:
    (tmp_path / "options.json").write_text(json.dumps(OPTIONS))
    done = run_addon(tmp_path, supervisor)
    assert done.returncode == 0, done.stderr
    written = tmp_path / "bmsgate.yaml"
    assert written.stat().st_mode & 0o077 == 0  # it holds the broker's password
    cfg = load_settings(written)
    assert cfg.buses[0].port == BY_ID and cfg.data_dir == tmp_path
    assert cfg.mqtt.host == "core-mosquitto" and cfg.publisher.targets[0].homeassistant.enabled
    # HA's "Visit" link opens the add-on's ingress panel (the web UI), not the container's address
    link = cfg.publisher.targets[0].homeassistant.configuration_url
    assert link == "homeassistant://hassio/ingress/a0d7b954_bmsgate"


def test_a_bad_option_or_no_broker_is_one_line(tmp_path: Path, supervisor: str) -> None:
    (tmp_path / "options.json").write_text(json.dumps(OPTIONS | {"log_level": "LOUD"}))
    done = run_addon(tmp_path, supervisor)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "log_level" in done.stderr
    assert not (tmp_path / "bmsgate.yaml").exists()
    (tmp_path / "options.json").write_text(json.dumps(OPTIONS))
    refused = run_addon(tmp_path, supervisor, token="wrong")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr


def test_the_pages_use_relative_urls_so_they_work_under_the_ingress_path() -> None:
    # the Supervisor serves the UI under /api/hassio_ingress/<token>/ and strips that before it
    # reaches bmsgate: a root-absolute "/api/..." would go to Home Assistant itself
    static = ROOT / "services" / "api" / "src" / "bmsgate_api" / "static"
    files = [*static.glob("*.html"), *static.glob("*.js")]
    assert len(files) > 10
    absolute = re.compile(r"""["'`(]/(?:api|vendor|healthz)\b|\b(?:href|src|action)=["']/(?!/)""")
    found = [f"{f.name}: {m.group(0)}" for f in files for m in absolute.finditer(f.read_text())]
    assert found == []

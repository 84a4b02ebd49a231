from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bmsgate_common.settings import ConfigError, load_settings

BUS = {"port": "/dev/ttyUSB0", "protocol": "daly_classic", "packs": [{"id": "garage"}]}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bmsgate.yaml"
    path.write_text(text)
    return path


def test_defaults_need_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BMSGATE_CONFIG", raising=False)
    cfg = load_settings()
    assert cfg.mqtt.host is None and cfg.mqtt.base_topic == "bmsgate"
    assert cfg.buses == [] and cfg.control.enabled is False


def test_file_then_environment_then_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "mqtt:\n  host: broker.lan\n  port: 1884\n"
        "buses:\n  - port: /dev/ttyUSB0\n    protocol: jk_pb\n    packs:\n      - id: shed\n        address: 2\n",
    )
    monkeypatch.setenv("BMSGATE_MQTT__PORT", "1885")
    monkeypatch.setenv("BMSGATE_MQTT__PASSWORD", "s3cret")
    cfg = load_settings(path, api={"port": 9000})
    assert cfg.mqtt.host == "broker.lan" and cfg.mqtt.port == 1885
    assert cfg.mqtt.password is not None and cfg.mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(cfg) and "s3cret" not in str(cfg.model_dump())
    assert cfg.api.port == 9000
    assert cfg.buses[0].baud == 115200 and cfg.buses[0].packs[0].display_name == "shed"


def test_environment_takes_json_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "BMSGATE_BUSES",
        '[{"port": "socket://127.0.0.1:9", "protocol": "jk_uart", "packs": [{"id": "a"}]}]',
    )
    assert load_settings().buses[0].protocol == "jk_uart"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqtt:\n  hots: x\n", "unknown key 'mqtt.hots'"),
        ("mqtt:\n  port: 70000\n", "bad value for 'mqtt.port'"),
        (
            "buses:\n  - port: /dev/x\n    protocol: victron\n    packs: [{id: a}]\n",
            "'buses.0.protocol'",
        ),
        (
            "buses:\n  - port: /dev/x\n    protocol: daly_classic\n    packs: []\n",
            "at least one pack (or listen: true)",
        ),
        (
            "buses:\n  - {port: /dev/x, protocol: daly_classic, listen: true}\n",
            "protocol daly_classic cannot be listened to",
        ),
        (
            "buses:\n  - {port: /dev/x, protocol: jk_pb, packs: [{id: m, address: 0}]}\n",
            "address 0 is outside 1..15 for jk_pb",
        ),
        (
            "buses:\n  - protocol: daly_classic\n    packs: [{id: a}]\n",
            "missing key 'buses.0.port'",
        ),
        ("mqtt: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "top level must be a mapping"),
        (
            "buses:\n  - {port: /dev/a, protocol: daly_classic, packs: [{id: a}]}\n"
            "  - {port: /dev/b, protocol: daly_classic, packs: [{id: a}]}\n",
            "pack id 'a' is used twice",
        ),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_environment_variable_is_an_unknown_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMSGATE_MQTT__HOTS", "x")
    with pytest.raises(ConfigError, match=r"unknown key 'mqtt\.hots'"):
        load_settings()


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothere\.yaml"):
        load_settings(tmp_path / "nothere.yaml")


@pytest.mark.parametrize("service", ["bmsgate_reader", "bmsgate_api"])
def test_service_stops_before_connecting_with_one_line(tmp_path: Path, service: str) -> None:
    path = write(
        tmp_path,
        "mqtt:\n  host: 127.0.0.1\n  port: 1\nbuses:\n  - port: /dev/x\n    protocol: daly_classic\n    packs: [{id: a, adress: 2}]\n",
    )
    # fmt: off
    done = subprocess.run(
        [sys.executable, "-m", service, "--config", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    # fmt: on
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "unknown key 'buses.0.packs.0.adress'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_listened_jk_pb_bus_may_name_its_master_or_no_pack(tmp_path: Path) -> None:
    text = (
        "buses:\n  - {port: /dev/x, protocol: jk_pb, listen: true, packs: [{id: m, address: 0}]}\n"
    )
    assert load_settings(write(tmp_path, text)).buses[0].packs[0].address == 0
    bare = load_settings(
        write(tmp_path, "buses:\n  - {port: /dev/x, protocol: jk_pb, listen: true}\n")
    )
    assert bare.buses[0].listen and bare.buses[0].packs == []


def test_a_missing_file_is_an_error_unless_missing_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "bmsgate.yaml"
    monkeypatch.setenv("BMSGATE_CONFIG", str(missing))  # as in the container images
    with pytest.raises(ConfigError, match="No such file"):
        load_settings()
    monkeypatch.setenv("BMSGATE_MQTT__PORT", "1885")
    assert load_settings(missing_ok=True).mqtt.port == 1885  # the environment still counts
    assert load_settings(missing, missing_ok=True).buses == []

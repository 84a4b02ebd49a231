"""`bmsgate setup` walked in a terminal against simulated boards on a pty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bmsgate.setup_wizard import time_zone
from bmsgate_common.first_run import BusAnswer, FoundPack, SetupAnswers, build_config, pack_id
from bmsgate_common.settings import Settings
from tests.support.procs import start_simulator


def setup(
    tmp_path: Path, port: str, answers: list[str], *extra: str
) -> subprocess.CompletedProcess[str]:
    # fmt: off
    return subprocess.run(
        [sys.executable, "-m", "bmsgate.cli", "setup", "--config", str(tmp_path / "bmsgate.yaml"),
         "--port", port, "--scan-timeout", "0.05", *extra],
        input="\n".join(answers) + "\n", capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("BMSGATE_")},
    )
    # fmt: on


def test_wizard_finds_the_boards_and_writes_a_valid_config(tmp_path: Path) -> None:
    sim, port = start_simulator(tmp_path, "jk_pb", "--boards", "2")
    try:
        done = setup(
            tmp_path,
            port,
            ["Garage", "Shed", "y", "", "y", "n", "", "", "48.21,16.37", "s3cret-Passw0rd"],
        )
    finally:
        sim.stop()
    assert done.returncode == 0, done.stderr
    assert "found jk_pb (JK-PB (RS485 Modbus)) at address 1: 16 cells" in done.stdout
    assert "found jk_pb (JK-PB (RS485 Modbus)) at address 2: 16 cells" in done.stdout
    assert "time zone there: Europe/Vienna" in done.stdout
    assert "s3cret" not in done.stdout
    path = tmp_path / "bmsgate.yaml"
    assert path.stat().st_mode & 0o077 == 0
    data = yaml.safe_load(path.read_text())
    cfg = Settings.model_validate(data)
    assert [(p.id, p.name, p.address) for p in cfg.buses[0].packs] == [
        ("garage", "Garage", 1),
        ("shed", "Shed", 2),
    ]
    assert cfg.buses[0].protocol == "jk_pb" and cfg.buses[0].port == port
    assert cfg.banks[0].packs == ["garage", "shed"]
    assert cfg.publisher.targets[0].homeassistant.enabled is True
    assert cfg.modbus.enabled is False
    assert cfg.notifier.latitude == 48.21
    assert cfg.api.password_hash is not None and "s3cret" not in path.read_text()


def test_yes_takes_defaults_and_refuses_to_overwrite(tmp_path: Path) -> None:
    sim, port = start_simulator(tmp_path, "daly_classic")
    try:
        assert setup(tmp_path, port, [], "--yes").returncode == 0
        again = setup(tmp_path, port, [], "--yes")
    finally:
        sim.stop()
    assert again.returncode == 2 and "exists; use --force" in again.stderr
    cfg = Settings.model_validate(yaml.safe_load((tmp_path / "bmsgate.yaml").read_text()))
    assert cfg.buses[0].packs[0].name == "Pack 1" and cfg.modbus.enabled is True
    assert cfg.modbus.host == "0.0.0.0"  # asked "for the LAN"; the server's default is loopback


def test_silent_port_is_one_clear_line(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        done = setup(tmp_path, os.ttyname(slave), [], "--yes")
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode != 0 and "no BMS answered" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "bmsgate.yaml").exists()


def test_build_config_and_helpers() -> None:
    answers = SetupAnswers(
        buses=[
            BusAnswer(
                port="/dev/serial/by-id/usb-X",
                packs=[FoundPack(protocol="daly_new", address=1, variant="d2", name="Garage #1")],
            )
        ],
        broker="192.0.2.7:1884",
        influx_url="http://127.0.0.1:8086",
        notify_urls=["pover://u@t"],
    )
    cfg = Settings.model_validate(build_config(answers))
    assert cfg.buses[0].variant == "d2" and cfg.buses[0].packs[0].id == "garage-1"
    assert (cfg.mqtt.host, cfg.mqtt.port) == ("192.0.2.7", 1884)
    assert cfg.history.influx.enabled and cfg.notifier.targets[0].name == "phone"
    assert pack_id("Pack 1", {"pack-1"}) == "pack-1-2"
    assert time_zone(-36.85, 174.76) == "Pacific/Auckland"


def test_two_buses_and_a_bank_across_them() -> None:
    answers = SetupAnswers.model_validate(
        {
            "buses": [
                {
                    "port": "/dev/ttyUSB0",
                    "packs": [
                        {"protocol": "jk_pb", "address": 1, "name": "Left"},
                        {"protocol": "jk_pb", "address": 2, "name": "Right"},
                    ],
                },
                {
                    "port": "/dev/ttyUSB1",
                    "packs": [{"protocol": "daly_classic", "address": 1, "name": "Shed"}],
                },
            ],
            "banks": [{"name": "House bank", "packs": ["Left", "Right", "Shed"]}],
            "notify_urls": ["json://127.0.0.1:9/a", "pover://u@t"],
        }
    )
    cfg = Settings.model_validate(build_config(answers))
    assert [b.protocol for b in cfg.buses] == ["jk_pb", "daly_classic"]
    assert cfg.banks[0].id == "house-bank" and cfg.banks[0].packs == ["left", "right", "shed"]
    assert [t.name for t in cfg.notifier.targets] == ["phone", "target-2"]


def test_answers_refuse_twin_names_and_unknown_bank_members() -> None:
    pack = {"protocol": "jk_pb", "address": 1, "name": "A"}
    twin = {"buses": [{"port": "/dev/ttyUSB0", "packs": [pack, {**pack, "address": 2}]}]}
    with pytest.raises(ValueError, match="two packs are named 'A'"):
        SetupAnswers.model_validate(twin)
    bank = {
        "buses": [{"port": "/dev/ttyUSB0", "packs": [pack]}],
        "banks": [{"name": "B", "packs": ["A", "Z"]}],
    }
    with pytest.raises(ValueError, match="no pack named 'Z'"):
        SetupAnswers.model_validate(bank)

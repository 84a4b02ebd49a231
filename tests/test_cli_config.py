"""`bmsgate config` and `bmsgate ports` on good and bad input, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bmsgate.ports import show
from bmsgate_bms.discovery import Port, by_id_names, holders
from bmsgate_common.config_file import validate
from bmsgate_common.settings import ConfigError, Settings

BUS = "{port: /dev/serial/by-id/usb-FTDI_A1-if00-port0, protocol: daly_classic, packs: [{id: garage}]}"


def config(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # fmt: off
    return subprocess.run(
        [sys.executable, "-m", "bmsgate.cli", "config", "--config", str(tmp_path / "b.yaml"), *args],
        capture_output=True, text=True, timeout=30, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("BMSGATE_")},
    )
    # fmt: on


def test_set_get_check_build_a_valid_file(tmp_path: Path) -> None:
    assert config(tmp_path, "set", "mqtt.host", "broker.lan").returncode == 0
    assert config(tmp_path, "set", "buses.0", BUS).returncode == 0
    assert config(tmp_path, "set", "buses.0.packs.0.name", "Garage").returncode == 0
    assert config(tmp_path, "set", "mqtt.password", "s3cret").returncode == 0
    assert config(tmp_path, "get", "buses.0.packs.0.name").stdout == "Garage\n"
    assert config(tmp_path, "get", "mqtt.port").stdout == "1883\n"  # defaults are shown too
    assert config(tmp_path, "get", "mqtt.password").stdout.strip() == "'********'"
    assert config(tmp_path, "get", "mqtt.password", "--show-secrets").stdout == "s3cret\n"
    checked = config(tmp_path, "check")
    assert checked.returncode == 0 and "valid (1 bus(es), 1 pack(s))" in checked.stdout
    path = tmp_path / "b.yaml"
    assert path.stat().st_mode & 0o077 == 0  # it holds a password
    assert yaml.safe_load(path.read_text())["buses"][0]["packs"][0] == {
        "id": "garage",
        "name": "Garage",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set", "mqtt.prot", "5"), "unknown key 'mqtt.prot'"),
        (("set", "mqtt.port", "99999"), "bad value for 'mqtt.port'"),
        (("set", "buses.0.packs.0.address", "200"), "address 200 is outside 1..192"),
        (("set", "buses.3", "{}"), "no item 3 in that list"),
        (("get", "mqtt.nothing"), "no key 'mqtt.nothing'"),
    ],
)
def test_bad_key_or_value_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    assert config(tmp_path, "set", "buses.0", BUS).returncode == 0
    before = (tmp_path / "b.yaml").read_text()
    done = config(tmp_path, *args)
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "b.yaml").read_text() == before


def test_export_masks_secrets_and_import_refuses_them(tmp_path: Path) -> None:
    config(tmp_path, "set", "mqtt.password", "s3cret")
    exported = config(tmp_path, "export")
    assert "s3cret" not in exported.stdout and "********" in exported.stdout
    backup = tmp_path / "backup.yaml"
    backup.write_text(exported.stdout)
    refused = config(tmp_path, "import", str(backup))
    assert refused.returncode == 2 and "'mqtt.password' holds a masked secret" in refused.stderr
    full = config(tmp_path, "export", "--show-secrets")
    backup.write_text(full.stdout)
    assert config(tmp_path, "import", str(backup)).returncode == 0
    assert config(tmp_path, "get", "mqtt.password", "--show-secrets").stdout == "s3cret\n"


def test_ports_names_holders_and_by_id_links(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        device = os.ttyname(slave)
        assert any(h.startswith(f"{os.getpid()} ") for h in holders(device))
        links = tmp_path / "by-id"
        links.mkdir()
        (links / "usb-FTDI_FT232R_A10K1234-if00-port0").symlink_to(device)
        assert by_id_names(links) == {device: str(links / "usb-FTDI_FT232R_A10K1234-if00-port0")}
    finally:
        os.close(master)
        os.close(slave)


def test_ports_output_puts_the_stable_name_first() -> None:
    import io

    out = io.StringIO()
    show(
        [
            Port(
                "/dev/ttyUSB0",
                "/dev/serial/by-id/usb-X",
                "FT232R",
                "0403:6001",
                "A1",
                ["42 minicom"],
            )
        ],
        out,
    )
    assert out.getvalue() == (
        "/dev/serial/by-id/usb-X\n    /dev/ttyUSB0: FT232R [0403:6001]  IN USE by 42 minicom\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "bmsgate.cli", "ports"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr


def test_masked_view_and_secrets_kept_when_they_come_back_masked() -> None:
    from bmsgate_common.config_file import MASK, keep_secrets, masked

    raw = {
        "mqtt": {"host": "broker", "username": "u", "password": "pw-1"},
        "notifier": {"targets": [{"name": "phone", "url": "pover://user@token"}]},
        "history": {"influx": {"url": "http://admin:secret@influx:8086", "token": "t-1"}},
    }
    shown = masked(raw)
    assert shown["mqtt"] == {"host": "broker", "username": "u", "password": MASK}
    assert shown["notifier"]["targets"][0]["url"] == MASK
    assert shown["history"]["influx"] == {"url": f"http://{MASK}@influx:8086", "token": MASK}
    # the form comes back with one change and every secret still masked: the secrets stay
    edited = {**shown, "mqtt": {**shown["mqtt"], "host": "broker2"}}
    kept = keep_secrets(edited, raw)
    assert kept["mqtt"] == {"host": "broker2", "username": "u", "password": "pw-1"}
    assert kept["notifier"] == raw["notifier"] and kept["history"] == raw["history"]
    # a masked value where nothing is stored stays masked, and validation names it
    new_target = {"name": "pager", "url": MASK}
    added = keep_secrets(
        {"notifier": {"targets": [*shown["notifier"]["targets"], new_target]}}, raw
    )
    with pytest.raises(ConfigError, match=r"'notifier.targets.1.url' holds a masked secret"):
        validate(added, "the form")


def test_a_masked_secret_stays_with_its_own_list_entry_after_a_move_or_a_remove() -> None:
    from bmsgate_common.config_file import MASK, keep_secrets

    stored = {
        "publisher": {"targets": [{"name": "a", "password": "A"}, {"name": "b", "password": "B"}]}
    }

    def sent(*names: str) -> dict[str, Any]:
        return {"publisher": {"targets": [{"name": n, "password": MASK} for n in names]}}

    def passwords(data: dict[str, Any]) -> list[str]:
        return [t["password"] for t in data["publisher"]["targets"]]

    # the forms say where each entry was: "a" removed and "b" renamed keeps b's password
    assert passwords(keep_secrets(sent("c"), stored, {"publisher.targets": [1]})) == ["B"]
    assert passwords(keep_secrets(sent("b", "a"), stored, {"publisher.targets": [1, 0]})) == [
        "B",
        "A",
    ]
    # an added entry has no stored secret: it stays masked, and validation names it
    assert passwords(keep_secrets(sent("a", "new"), stored, {"publisher.targets": [0, None]})) == [
        "A",
        MASK,
    ]
    # the YAML editor: by name, by place only when the list kept its length
    assert passwords(keep_secrets(sent("b", "a"), stored)) == ["B", "A"]
    assert passwords(keep_secrets(sent("c", "b"), stored)) == ["A", "B"]  # "a" renamed
    assert passwords(keep_secrets(sent("c"), stored)) == [MASK]  # never a's to another


def test_an_invalid_file_is_shown_with_its_secrets_masked() -> None:
    from bmsgate_common.config_file import MASK, masked

    raw = {
        "buses": [{"port": "/dev/ttyUSB0", "protocol": "no-such", "packs": [{"id": "a"}]}],
        "mqtt": {"password": "mq-secret"},
        "publisher": {"targets": [{"name": "t", "password": "t-secret", "port": 0}]},
        "api": {"viewers": [{"name": "v", "password_hash": "plain-pw", "packs": ["a"]}]},
        "notifier": {"targets": [{"name": "n", "url": "pover://user@token"}]},
    }
    shown = masked(raw)
    assert shown["mqtt"]["password"] == MASK
    assert shown["publisher"]["targets"][0] == {"name": "t", "password": MASK, "port": 0}
    assert shown["api"]["viewers"][0]["password_hash"] == MASK
    assert shown["notifier"]["targets"][0]["url"] == MASK
    assert shown["buses"] == raw["buses"]  # the rest as it is, to be mended


def test_runtime_file_keeps_every_secret() -> None:
    from bmsgate.run import runtime_config

    cfg = Settings.model_validate(
        {
            "mqtt": {"password": "pw"},
            "history": {"influx": {"token": "tok"}},
            "notifier": {
                "targets": [{"name": "a", "url": "json://h/p"}],
                "quiet_hours": {"start": "22:00", "end": "07:00"},
            },
        }
    )
    data = runtime_config(cfg)
    assert data["mqtt"]["password"] == "pw" and data["history"]["influx"]["token"] == "tok"
    assert data["notifier"]["targets"][0]["url"] == "json://h/p"
    assert Settings.model_validate(yaml.safe_load(yaml.safe_dump(data))) == cfg

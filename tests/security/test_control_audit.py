"""Every control action is logged with who asked, on a real stack.

A simulated JK-PB on a pty, its reader with control on, the API, the tunnel and the Modbus
service on one Mosquitto, each service with its own broker user. The owner's session, a control
token and a Modbus client switch MOSFETs, set the SOC, write a BMS setting, send a raw frame, turn
the sniffer on, open the tunnel, restart a service and restore the settings file. The API logs
each with the session or the token's name and the client's address; the reader logs each command
with the broker user that sent it and who asked that service; the Modbus service and the tunnel
log the client and who asked too, and the reader names who asked for the sniffer and the line
(the API's session or token, the tunnel's TCP client). No token or password is in any log.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from bmsgate.broker import free_port
from tests.security.api_proc import HASH, PASSWORD
from tests.support import procs as support
from tests.support.procs import Mosquitto, Proc, start_service, start_simulator

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"
MOS_REGISTER = 160  # the discharge MOS register (BASE 0x90 + offset 16), as in the LAN attack


def stack(tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]) -> dict[str, Any]:
    """The services, each with its own broker user; their processes and the API's URL."""
    sim, port = start_simulator(tmp_path, "jk_pb")
    procs.append(sim)
    http, modbus, tunnel = free_port(), free_port(), free_port()
    # fmt: off
    common: dict[str, Any] = {
        "buses": [{"port": port, "protocol": "jk_pb", "poll_interval": 0.5,
                   "packs": [{"id": "garage", "address": 1}]}],
        "control": {"enabled": True},
        "api": {"host": HOST, "port": http, "public_read": "never", "mdns": False,
                "password_hash": HASH},
        "modbus": {"host": HOST, "port": modbus, "write_clients": [HOST]},
        "tunnel": {"host": HOST, "port": tunnel},
        "data_dir": str(tmp_path / "data"),
    }
    # fmt: on
    started: dict[str, Any] = {
        "base": f"http://{HOST}:{http}",
        "modbus_port": modbus,
        "tunnel_port": tunnel,
    }
    for name in ("reader", "api", "modbus", "tunnel"):
        mqtt = {"host": HOST, "port": mosquitto.port, "heartbeat": 2, "username": name}
        config = support.write_config(tmp_path, {"mqtt": mqtt, **common}, f"{name}.yaml")
        started[name] = start_service(tmp_path, name, config)
        procs.append(started[name])
    started["config"] = tmp_path / "api.yaml"
    started["port"] = port
    base = started["base"]
    support.wait_for_api(base, 60)
    return started


def test_every_control_action_is_logged_with_who_asked(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    s = stack(tmp_path, mosquitto, procs)
    api, reader, modbus, tunnel = s["api"], s["reader"], s["modbus"], s["tunnel"]
    with httpx.Client(base_url=s["base"], timeout=30) as owner:
        owner.post("/api/auth/login", json={"password": PASSWORD}).raise_for_status()
        made = owner.post("/api/auth/tokens", json={"name": "night", "scope": "control"}).json()
        support.wait_until(
            lambda: owner.get("/api/packs/garage/state").status_code == 200, timeout=30
        )
        support.wait_until(
            lambda: owner.get("/api/packs/garage/settings").status_code == 200, timeout=30
        )
        token = {"Authorization": f"Bearer {made['token']}"}
        got = owner.post(
            "/api/packs/garage/commands",
            json={"action": "set_discharge_mos", "value": False},
            headers=token,
        )
        assert got.status_code == 200, got.text
        got = owner.post("/api/packs/garage/commands", json={"action": "set_soc", "value": 50})
        assert got.status_code in (200, 502), got.text  # done, or the BMS refused: asked anyway
        row = next(
            r for r in owner.get("/api/packs/garage/settings").json()["settings"] if r["writable"]
        )
        got = owner.put(f"/api/packs/garage/settings/{row['key']}", json={"value": row["value"]})
        assert got.status_code == 200, got.text
        got = owner.post("/api/packs/garage/raw", json={"data": "4e 57 00 13"}, headers=token)
        assert got.status_code in (200, 504), got.text  # sent; a frame JK ignores has no answer
        got = owner.post("/api/sniff/buses/reader-0", json={"enabled": True}, headers=token)
        assert got.status_code == 200, got.text
        got = owner.post("/api/packs/garage/tunnel", json={"action": "open", "minutes": 1})
        assert got.status_code == 200, got.text
        # a TCP client of the tunnel takes the line: the reader names it
        with socket.create_connection((HOST, s["tunnel_port"]), timeout=5) as client:
            peer = "{}:{}".format(*client.getsockname())
            support.wait_until(lambda: "tunnel-0 took the line" in reader.log(), timeout=20)
        got = owner.post("/api/packs/garage/tunnel", json={"action": "close"})
        assert got.status_code == 200, got.text
        got = owner.post("/api/services/restart", json={"service": "history"}, headers=token)
        assert got.status_code == 202, got.text
        got = owner.post(
            "/api/settings/restore",
            content=s["config"].read_text(),
            headers={"Content-Type": "application/yaml"},
        )
        assert got.status_code == 200, got.text
    # the LAN client of the attack, named in modbus.write_clients here
    # fmt: off
    done = subprocess.run(
        ["mbpoll", "-m", "tcp", "-p", str(s["modbus_port"]), "-a", "1", "-t", "4", "-r",
         str(MOS_REGISTER), "-0", "-1", "-o", "10", HOST, "1"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    # fmt: on
    assert done.returncode == 0, done.stdout + done.stderr

    session, by_token = "the owner's session from 127.0.0.1", "token 'night' from 127.0.0.1"
    api_lines = {
        f"command set_discharge_mos False to garage, asked by {by_token}",
        f"command set_soc 50.0 to garage, asked by {session}",
        f"setting {row['key']} = {row['value']:g} on garage, asked by {session}",
        f"sniffer on on reader-0, asked by {by_token}",
        f"tunnel open for garage, asked by {session}",
        f"tunnel close for garage, asked by {session}",
        f"restart of history, asked by {by_token}",
        f"restored, asked by {session}",
    }
    support.wait_until(lambda: all(line in api.log() for line in api_lines), timeout=10)
    assert re.search(rf"raw frame \S.* to garage, asked by {by_token}", api.log()), api.log()
    token_id = made["id"]
    reader_lines = [
        f"garage: set_discharge_mos False asked by mqtt-api:token-{token_id}:127.0.0.1",
        "garage: set_soc 50.0 asked by mqtt-api:owner:127.0.0.1",
        f"garage: set_setting {row['key']} {row['value']} asked by mqtt-api:owner:127.0.0.1",
        "garage: set_discharge_mos True asked by mqtt-modbus:modbus:127.0.0.1",
        f"sniffer on asked by mqtt-api:token-{token_id}:127.0.0.1",
        # the raw frame's lease: the API's holder, and who asked the API
        f"webui took the line of {s['port']} asked by mqtt-api:token-{token_id}:127.0.0.1",
        f"webui released the line asked by mqtt-api:token-{token_id}:127.0.0.1",
        f"tunnel-0 took the line of {s['port']} asked by mqtt-tunnel:tcp:{peer}",
    ]
    support.wait_until(lambda: all(line in reader.log() for line in reader_lines), timeout=20)
    assert "write from 127.0.0.1 to unit 1 offset 16 values [1] accepted for garage" in modbus.log()
    assert "asked by web API, the owner's session from 127.0.0.1" in tunnel.log()
    for proc in (api, reader, modbus, tunnel):
        assert made["token"] not in proc.log() and PASSWORD not in proc.log(), proc.name
        assert "Traceback" not in proc.log(), proc.log()

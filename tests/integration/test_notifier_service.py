"""The notifier as a process: a bad URL stops it with one line; backbone events reach a receiver."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from bmsgate_common.models import AlarmEvent, PackState
from tests.support.notify import POVER
from tests.support.procs import Mosquitto, Proc, start_service, wait_until, write_config
from tests.support.receiver import receiver

pytestmark = pytest.mark.integration


def test_bad_url_is_one_line_naming_the_key(tmp_path: Path) -> None:
    secret = "s3cretTokenValue1234567890"
    config = write_config(
        tmp_path,
        {
            "notifier": {
                "targets": [
                    {"name": "phone", "url": POVER},
                    {"name": "pager", "url": f"nosuchservice://{secret}@x"},
                ]
            }
        },
    )
    run = subprocess.run(
        [sys.executable, "-m", "bmsgate_notifier", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "notifier.targets.1.url" in lines[0] and "pager" in lines[0]
    assert secret not in run.stderr


async def test_alarm_from_the_backbone_to_a_json_target(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    with receiver() as (got, port):
        config = write_config(
            tmp_path,
            {
                "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "heartbeat": 2},
                "buses": [
                    {
                        "port": "/dev/null",
                        "protocol": "daly_classic",
                        "packs": [{"id": "garage", "name": "Garage"}],
                    }
                ],
                "notifier": {
                    "gather": 0.2,
                    "targets": [{"name": "hook", "url": f"json://127.0.0.1:{port}/hook"}],
                },
            },
        )
        proc = start_service(tmp_path, "notifier", config)
        procs.append(proc)
        await asyncio.to_thread(wait_until, lambda: "notifier running" in proc.log(), 20)
        now = datetime.now(UTC)
        st = PackState(
            pack="garage",
            name="Garage",
            protocol="daly_classic",
            ts=now,
            pack_voltage=52.8,
            current=0.0,
            power=0.0,
            soc=60.0,
            cell_voltages=[3.3] * 16,
            cell_count=16,
        )
        al = AlarmEvent(
            pack="garage",
            ts=now,
            code="cell_overvoltage",
            level="alarm",
            text="cell 12 over-voltage, 3.65 V",
            active=True,
        )
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish("bmsgate/bms/garage/state", st.model_dump_json(), qos=1)
            await client.publish("bmsgate/bms/garage/alarm", b'{"broken": 1}', qos=1)
            await client.publish("bmsgate/bms/garage/alarm", al.model_dump_json(), qos=1)
        await asyncio.to_thread(wait_until, lambda: got.on("/hook"), 15)
        [msg] = got.on("/hook")
        assert msg["title"] == "Garage: alarm" and msg["type"] == "failure"
        assert msg["message"] == "Garage: cell 12 over-voltage, 3.65 V"
        assert proc.stop() == 0
        log = proc.log()
        assert "dropping message" in log and f"127.0.0.1:{port}" not in log

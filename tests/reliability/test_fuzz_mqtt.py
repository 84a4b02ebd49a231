"""The real message path: malformed messages on every backbone topic to running services.

A real Mosquitto and every service as a process (the reader on a simulated DALY board). Every
topic pattern in TOPICS gets the same malformed payloads; each service logs one "dropping
message" line per message on a topic it subscribes to (history answers a bad query with an
error reply instead), counts it in its status, keeps running, and answers.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from pymodbus.client import ModbusTcpClient

from bmsgate.broker import free_port
from bmsgate_common.topics import TOPICS
from bmsgate_modbus.registers import BASE
from tests.reliability.backbone import ask_history, statuses
from tests.reliability.counts import COUNTS
from tests.support.procs import Mosquitto, Proc, start_service, wait_until, write_config

pytestmark = pytest.mark.integration
PER_TOPIC = 20
HOST = "127.0.0.1"
NESTED = 10  # index of the 10 kB payload of 5,000 nested brackets: one warning like the rest
EVERY = {"service_restart", "service_logs"}  # the Backbone itself listens for these requests
# fmt: off
SUBSCRIBED = {  # the kinds each service subscribes to (its service.py / app.py / live.py)
    "api": EVERY | {
        "raw_lease_state", "raw_rx", "sniff", "sniff_state", "tunnel_status", "state",
        "availability", "daily", "health", "alarm", "service_status", "result", "history_reply",
        "history_files_reply", "notify_test_result", "settings", "service_log_lines",
    },
    "modbus": EVERY | {"state", "availability", "daily", "result"},
    "reader": EVERY | {"command", "raw_lease", "raw_tx", "sniff_set"},
    "notifier": EVERY | {
        "state", "availability", "alarm", "daily", "health", "service_status", "notify_test",
    },
    "publisher": EVERY | {"state", "availability", "daily", "result", "settings"},
    "history": EVERY | {"state", "availability"},
    "tunnel": EVERY | {"tunnel_command", "raw_lease_state", "raw_rx"},
}
# fmt: on
STATUS_NAME = {"reader": "reader-0"}


def malformed(rng: random.Random, kind: str) -> list[bytes]:
    """PER_TOPIC payloads no model accepts: garbage, broken JSON, wrong shapes, wrong types."""
    fields = list(TOPICS[kind].model.model_fields)
    out = [
        b"",
        b"{not json",
        b"\xff\xfe\x00",
        b"null",
        b"[]",
        b'"state"',
        b"1e999999",
        json.dumps({f: None for f in fields}).encode(),
        json.dumps({f: [] for f in fields}).encode(),
        json.dumps({f: {"$": "x" * 300} for f in fields}).encode(),
        (b"[" * 5000) + (b"]" * 5000),
        json.dumps({"v": 99}).encode(),
    ]
    while len(out) < PER_TOPIC:
        if rng.random() < 0.5:
            out.append(rng.randbytes(rng.randrange(1, 300)))
        else:
            obj = {f: rng.choice([None, -1, 1e308, "", "x", [1], {"a": 1}, True]) for f in fields}
            obj.pop(rng.choice(fields), None)
            out.append(json.dumps(obj).encode())
    return out


def invalid(kind: str, payload: bytes) -> bool:
    """Whether the topic's model refuses ``payload`` (a random draw may happen to be valid)."""
    try:
        TOPICS[kind].model.model_validate_json(payload)
    except ValueError:
        return True
    return False


async def send_all(port: int) -> dict[str, list[str]]:
    """Publish the malformed payloads; returns, per kind, the topics whose payload is invalid."""
    rng = random.Random(13)
    refused: dict[str, list[str]] = {}
    async with aiomqtt.Client(HOST, port) as client:
        for kind in TOPICS:
            for i, payload in enumerate(malformed(rng, kind)):
                where = TOPICS[kind].topic(f"m{i}")
                await client.publish(where, payload, qos=1)
                if invalid(kind, payload):
                    refused.setdefault(kind, []).append(where)
    return refused


def test_malformed_messages_on_every_topic_are_dropped_and_services_keep_answering(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str, procs: list[Proc]
) -> None:
    http, modbus = free_port(), free_port()
    config: dict[str, Any] = {
        "mqtt": {"host": HOST, "port": mosquitto.port, "heartbeat": 2},
        "buses": [
            {
                "port": daly_pty,
                "protocol": "daly_classic",
                "poll_interval": 1,
                "packs": [{"id": "garage", "name": "Garage"}],
            }
        ],
        "api": {"host": HOST, "port": http},
        "stale_after": 10,
        "timezone": "UTC",
        "modbus": {"host": HOST, "port": modbus, "display": {"dashboards": 1}},
        "tunnel": {"host": HOST, "port": free_port()},
        "data_dir": str(tmp_path / "data"),
    }
    path = write_config(tmp_path, config)
    running = {name: start_service(tmp_path, name, path) for name in SUBSCRIBED}
    procs.extend(running.values())
    base = f"http://{HOST}:{http}"
    wait_until(
        lambda: httpx.get(f"{base}/api/packs/garage/state", timeout=2).status_code == 200,
        timeout=40,
    )
    names = {STATUS_NAME.get(name, name) for name in SUBSCRIBED}

    def all_online() -> bool:
        found = asyncio.run(statuses(mosquitto.port))
        return all(found.get(name, {}).get("state") == "online" for name in names)

    wait_until(all_online, timeout=30)

    refused = asyncio.run(send_all(mosquitto.port))
    COUNTS["mqtt: malformed messages sent"] += PER_TOPIC * len(TOPICS)
    COUNTS["mqtt: of them refused by their model"] += sum(len(t) for t in refused.values())
    for kind in TOPICS:
        assert TOPICS[kind].topic(f"m{NESTED}") in refused[kind]

    for name, proc in running.items():
        want = sum(len(refused[kind]) for kind in SUBSCRIBED[name])
        wait_until(lambda p=proc, w=want: p.log().count("dropping message") >= w, timeout=30)  # type: ignore[misc]
        log = proc.log()
        assert log.count("dropping message") == want, name
        for kind in SUBSCRIBED[name]:
            for where in refused[kind]:
                assert f"dropping message on {where}:" in log, (name, where)
        COUNTS[f"mqtt: 'dropping message' lines, {name}"] += want
    # history answers a malformed query on its request topic with an error reply, not a drop
    history_log = running["history"].log()
    bad_queries = len(refused["history_request"])
    wait_until(lambda: running["history"].log().count("refused:") >= bad_queries, timeout=20)
    COUNTS["mqtt: malformed history queries answered with an error"] += bad_queries
    # and a malformed file request (CSV, zip, days, delete) the same way
    bad_files = len(refused["history_files"])
    wait_until(
        lambda: running["history"].log().count("history file request from") >= bad_files,
        timeout=20,
    )

    # everyone still runs, counted the drops in its status, and answers
    for name, proc in running.items():
        assert proc.alive(), name
        assert "Traceback" not in proc.log(), proc.log()[-3000:]

    def counted() -> bool:
        found = asyncio.run(statuses(mosquitto.port))
        return all(
            (found.get(STATUS_NAME.get(name, name), {}).get("detail") or {}).get("dropped")
            == sum(len(refused[kind]) for kind in SUBSCRIBED[name])
            for name in running
        )

    wait_until(counted, timeout=20)
    query = {
        "transaction": "t-after",
        "pack": "garage",
        "fields": ["soc"],
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-02T00:00:00Z",
    }
    assert asyncio.run(ask_history(mosquitto.port, query)).get("status") == "ok"
    assert history_log.count("Traceback") == 0
    first = httpx.get(f"{base}/api/packs/garage/state", timeout=2).json()["ts"]
    wait_until(lambda: httpx.get(f"{base}/api/packs/garage/state", timeout=2).json()["ts"] != first)
    assert httpx.get(f"{base}/healthz", timeout=2).json() == {"status": "ok", "backbone": True}

    def modbus_answers() -> bool:
        client = ModbusTcpClient(HOST, port=modbus, timeout=2, retries=0)
        try:
            return (
                bool(client.connect())
                and not client.read_holding_registers(BASE, count=2, device_id=1).isError()
            )
        finally:
            client.close()

    wait_until(modbus_answers, timeout=15)

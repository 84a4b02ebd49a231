"""The walking skeleton: simulator on a pty -> reader -> Mosquitto -> API, all real processes."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import jsonschema
import pytest

from bmsgate.broker import free_port
from bmsgate_bms.registry import NAMES, info
from bmsgate_common.models import PackState
from bmsgate_common.service import READER_STOPPED
from tests.support.procs import (
    Mosquitto,
    Proc,
    start_service,
    start_simulator,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration
SCHEMAS = Path(__file__).parents[2] / "schemas"


def pipeline_config(broker: Mosquitto, port: str, http_port: int, **bus: Any) -> dict[str, Any]:
    return {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "heartbeat": 2},
        "buses": [
            {
                "port": port,
                "protocol": "daly_classic",
                "poll_interval": 1,
                "packs": [{"id": "garage", "name": "Garage"}],
                **bus,
            }
        ],
        "api": {"host": "127.0.0.1", "port": http_port},
        "stale_after": 10,
    }


def get_json(url: str) -> Any:
    response = httpx.get(url, timeout=2)
    return response.status_code, response.json()


async def retained(broker: Mosquitto, topic: str) -> dict[str, Any]:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert message.retain, "the broker must keep the state retained"
                return json.loads(message.payload)  # type: ignore[arg-type,no-any-return]
    raise AssertionError("unreachable")


def test_state_travels_from_the_pty_to_the_api(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str, procs: list[Proc]
) -> None:
    http = free_port()
    config = write_config(tmp_path, pipeline_config(mosquitto, daly_pty, http))
    started = datetime.now(UTC)
    procs.append(start_service(tmp_path, "reader", config))
    procs.append(start_service(tmp_path, "api", config))
    base = f"http://127.0.0.1:{http}"

    packs = wait_until(
        lambda: [p for p in get_json(f"{base}/api/packs")[1] if p["online"]], timeout=20
    )
    assert packs[0]["pack"] == "garage" and packs[0]["name"] == "Garage"
    assert packs[0]["protocol"] == "daly_classic"

    status, body = get_json(f"{base}/api/packs/garage/state")
    assert status == 200
    jsonschema.validate(body, json.loads((SCHEMAS / "pack_state.v1.schema.json").read_text()))
    state = PackState.model_validate(body)
    assert state.cell_count == 16 and len(state.cell_voltages) == 16
    assert all(2.5 < v < 3.7 for v in state.cell_voltages)
    # 0x90 and 0x95 are read ~0.1 s apart while the simulated pack moves on: 0.1 V steps + drift
    assert state.pack_voltage == pytest.approx(sum(state.cell_voltages), abs=0.3)
    assert state.ts >= started

    # a new state every second: the timestamp moves on
    wait_until(
        lambda: (
            PackState.model_validate(get_json(f"{base}/api/packs/garage/state")[1]).ts > state.ts
        )
    )

    # the same state is retained on the backbone for late subscribers
    on_wire = asyncio.run(retained(mosquitto, "bmsgate/bms/garage/state"))
    assert PackState.model_validate(on_wire).pack == "garage"
    assert get_json(f"{base}/healthz") == (200, {"status": "ok", "backbone": True})
    assert get_json(f"{base}/api/packs/nowhere/state")[0] == 404
    for proc in procs:
        assert "Traceback" not in proc.log()


@pytest.mark.parametrize("protocol", NAMES)
def test_every_registered_protocol_travels_from_its_simulator_to_the_backbone(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc], protocol: str
) -> None:
    """``bmsgate simulate`` on a pty -> the reader process -> a retained state on Mosquitto,
    for every make, with two packs by address where the protocol has bus addresses."""
    low, high = info(protocol).addresses
    boards = min(2, high - low + 1)
    sim, port = start_simulator(tmp_path, protocol, "--boards", str(boards), "--cells", "14")
    procs.append(sim)
    packs = [{"id": f"p{n}", "address": n} for n in range(1, boards + 1)]
    config = write_config(
        tmp_path,
        {
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "heartbeat": 2},
            "buses": [{"port": port, "protocol": protocol, "poll_interval": 0.5, "packs": packs}],
        },
    )
    procs.append(start_service(tmp_path, "reader", config))

    def kept(topic: str) -> dict[str, Any] | None:
        try:  # before the first state there is nothing retained, then a live message
            return asyncio.run(retained(mosquitto, topic))
        except (TimeoutError, AssertionError):
            return None

    for pack in packs:
        body = wait_until(lambda p=pack: kept(f"bmsgate/bms/{p['id']}/state"), timeout=30)
        state = PackState.model_validate(body)
        assert state.protocol == protocol and state.cell_count == 14
        assert state.pack_voltage == pytest.approx(sum(state.cell_voltages), abs=0.3)
    assert all("Traceback" not in p.log() for p in procs)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_stopped_reader_leaves_its_packs_offline_at_once(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str, procs: list[Proc], sig: int
) -> None:
    http = free_port()
    config = write_config(tmp_path, pipeline_config(mosquitto, daly_pty, http))
    reader = start_service(tmp_path, "reader", config)
    procs.append(reader)
    procs.append(start_service(tmp_path, "api", config))
    topic = "bmsgate/bms/garage/availability"
    wait_until(lambda: asyncio.run(retained(mosquitto, topic))["state"] == "online", timeout=20)
    packs = f"http://127.0.0.1:{http}/api/packs"
    wait_until(lambda: get_json(packs)[1][0]["online"], timeout=20)

    started = time.monotonic()
    assert reader.stop(sig) == 0
    gone = asyncio.run(retained(mosquitto, topic))
    assert gone["state"] == "offline" and gone["reason"] == READER_STOPPED
    # the API says so at once, long before the state would be stale (stale_after 10 s)
    wait_until(lambda: get_json(packs)[1][0]["online"] is False, timeout=3)
    assert time.monotonic() - started < 5
    assert "Traceback" not in reader.log()


def test_invalid_message_is_logged_and_dropped(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str, procs: list[Proc]
) -> None:
    http = free_port()
    config = write_config(tmp_path, pipeline_config(mosquitto, daly_pty, http))
    procs.append(start_service(tmp_path, "reader", config))
    api = start_service(tmp_path, "api", config)
    procs.append(api)
    base = f"http://127.0.0.1:{http}"
    wait_until(lambda: get_json(f"{base}/api/packs/garage/state")[0] == 200, timeout=20)

    async def publish_garbage() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish("bmsgate/bms/garage/state", b"{not json", qos=1)
            await client.publish("bmsgate/bms/garage/state", json.dumps({"pack": "garage"}), qos=1)

    asyncio.run(publish_garbage())
    wait_until(lambda: api.log().count("dropping message on bmsgate/bms/garage/state") == 2)
    assert "Traceback" not in api.log()
    assert api.alive()
    assert get_json(f"{base}/api/packs/garage/state")[0] == 200  # still serving real states


def test_missing_port_is_named_retried_and_reported_offline(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    http = free_port()
    missing = str(tmp_path / "ttyUSB-gone")
    config = write_config(tmp_path, pipeline_config(mosquitto, missing, http, offline_after=1))
    reader = start_service(tmp_path, "reader", config)
    procs.append(reader)
    procs.append(start_service(tmp_path, "api", config))
    wait_until(lambda: f"cannot open serial port {missing}" in reader.log(), timeout=20)
    status = wait_until(
        lambda: asyncio.run(retained(mosquitto, "bmsgate/bms/garage/availability")), timeout=20
    )
    assert status["state"] == "offline" and "serial port" in status["reason"]
    packs = wait_until(lambda: get_json(f"http://127.0.0.1:{http}/api/packs")[1], timeout=20)
    assert packs[0]["online"] is False
    code, body = get_json(f"http://127.0.0.1:{http}/api/packs/garage/state")
    assert code == 503 and body["online"] is False and "offline" in body["detail"]
    assert reader.alive() and reader.log().count("cannot open serial port") == 1  # logged once
    assert "Traceback" not in reader.log()


def test_a_listened_jk_pb_bus_travels_from_its_simulated_master_to_the_backbone(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    """``bmsgate simulate --master``: a JK-PB master polls two slaves on a pty; the reader
    process only listens (``listen: true``); every address becomes a pack on Mosquitto."""
    sim, port = start_simulator(
        tmp_path, "jk_pb", "--boards", "2", "--cells", "14", "--master", "0.3"
    )
    procs.append(sim)
    config = write_config(
        tmp_path,
        {
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "heartbeat": 2},
            "buses": [
                {
                    "port": port,
                    "protocol": "jk_pb",
                    "listen": True,
                    "poll_interval": 1.0,
                    "packs": [{"id": "master", "address": 0}],
                }
            ],
        },
    )
    procs.append(start_service(tmp_path, "reader", config))

    def kept(topic: str) -> dict[str, Any] | None:
        try:
            return asyncio.run(retained(mosquitto, topic))
        except (TimeoutError, AssertionError):
            return None

    for pack in ("master", "reader-0-1", "reader-0-2"):
        body = wait_until(lambda p=pack: kept(f"bmsgate/bms/{p}/state"), timeout=30)
        state = PackState.model_validate(body)
        assert state.protocol == "jk_pb" and state.cell_count == 14
    assert all("Traceback" not in p.log() for p in procs)

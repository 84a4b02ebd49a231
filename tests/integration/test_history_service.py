"""The history service as a process: states in over Mosquitto, archive queries and daily figures
out, points in a real VictoriaMetrics, a clean stop and a restart that resumes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bmsgate_common.models import HealthReport, HistoryReply, PackState
from tests.support.needs import require
from tests.support.procs import Mosquitto, Proc, start_service, wait_until, write_config
from tests.support.victoria import VictoriaMetrics, find_victoria

pytestmark = pytest.mark.integration


def state(i: int, t0: datetime) -> PackState:
    return PackState(
        pack="p1",
        name="P1",
        protocol="daly_classic",
        ts=t0 + timedelta(seconds=i),
        pack_voltage=52.8,
        current=10.0,
        power=528.0,
        soc=50 + i / 10,
        cell_voltages=[3.3 + (i % 3) / 1000] * 16,
        cell_count=16,
        temperatures=[20.0, 21.0],
    )


async def ask(port: int, payload: str) -> dict[str, Any]:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe("bmsgate/history/itest/reply", qos=1)
        await client.publish("bmsgate/history/itest/request", payload, qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                return json.loads(message.payload)  # type: ignore[arg-type,no-any-return]
    raise AssertionError("unreachable")


async def retained(port: int, topic: str) -> dict[str, Any]:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                return json.loads(message.payload)  # type: ignore[arg-type,no-any-return]
    raise AssertionError("unreachable")


async def test_history_service_end_to_end(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    require(find_victoria(), "victoria-metrics is not installed")
    vm = VictoriaMetrics(tmp_path)
    vm.start()
    try:
        config = write_config(
            tmp_path,
            {
                "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "heartbeat": 2},
                "data_dir": str(tmp_path / "data"),
                "timezone": "UTC",
                "history": {
                    "archive": {"commit_interval": 0.2},
                    "influx": {
                        "enabled": True,
                        "url": vm.url,
                        "token": "tok",
                        "flush_interval": 0.2,
                    },
                },
            },
        )
        history = start_service(tmp_path, "history", config)
        procs.append(history)
        await asyncio.to_thread(wait_until, lambda: "history running" in history.log(), 20)
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            for i in range(20):
                await client.publish("bmsgate/bms/p1/state", state(i, t0).model_dump_json(), qos=1)
            await client.publish("bmsgate/bms/p1/state", b'{"broken": 1}', qos=1)

        query = {
            "transaction": "q1",
            "pack": "p1",
            "fields": ["cells", "soc", "power"],
            "start": (t0 - timedelta(minutes=5)).isoformat(),
            "end": (t0 + timedelta(minutes=1)).isoformat(),
            "resolution": "raw",
        }

        async def stored() -> HistoryReply:
            while True:
                reply = HistoryReply.model_validate(await ask(mosquitto.port, json.dumps(query)))
                if len(reply.times) == 20:
                    return reply
                await asyncio.sleep(0.3)

        reply = await asyncio.wait_for(stored(), 20)
        assert reply.transaction == "q1" and reply.status == "ok" and reply.resolution == "raw"
        assert [s.name for s in reply.series][:2] == ["cell_1", "cell_2"]
        assert reply.series[16].name == "soc" and reply.series[16].values[-1] == 51.9
        # the time before the first state is a gap, and so is the time since the last (t0 + 19 s)
        # when that is longer than the gap rule allows (docs/history.md, "Queries"); none between
        gap, *since = reply.gaps
        assert gap.start == t0 - timedelta(minutes=5) and gap.end == t0
        assert all(g.start == t0 + timedelta(seconds=19) for g in since), since

        bad = await ask(mosquitto.port, json.dumps({**query, "pack": "P 1"}))
        assert bad["status"] == "error" and bad["transaction"] == "q1" and "pack" in bad["error"]
        bad = await ask(mosquitto.port, "{not json")
        assert bad["status"] == "error" and bad["transaction"] is None
        unknown = await ask(mosquitto.port, json.dumps({**query, "pack": "nobody"}))
        assert unknown["status"] == "error" and "unknown pack" in unknown["error"]

        daily = await retained(mosquitto.port, "bmsgate/bms/p1/daily")
        assert daily["pack"] == "p1" and daily["max_soc"] >= 50.0

        series = await asyncio.to_thread(vm.wait_values, 'bms_cell_1{pack="p1"}', 20)
        assert series[0]["metric"]["protocol"] == "daly_classic"

        assert history.stop(signal.SIGTERM) == 0
        assert "Traceback" not in history.log()
        # a restart resumes from the archive and republishes the retained health report
        again = start_service(tmp_path, "history", config)
        procs.append(again)
        report = HealthReport.model_validate(
            await retained(mosquitto.port, "bmsgate/bms/p1/health")
        )
        assert report.pack == "p1" and report.findings == []
        assert "p1: resumed from the archive" in again.log()
    finally:
        vm.stop()


async def test_a_stop_commits_what_came_since_the_last_commit(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    """With the default commit interval (minutes) nothing is committed before the stop: the
    stop's own commit must store every state, or a restart loses what came since the last one."""
    config = write_config(
        tmp_path,
        {
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "heartbeat": 1},
            "data_dir": str(tmp_path / "data"),
            "timezone": "UTC",
        },
    )
    history = start_service(tmp_path, "history", config)
    procs.append(history)
    await asyncio.to_thread(wait_until, lambda: "history running" in history.log(), 30)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        for i in range(10):
            await client.publish("bmsgate/bms/p1/state", state(i, t0).model_dump_json(), qos=1)

        # its status (every second) counts the states it took, committed or not
        await client.subscribe("bmsgate/service/history/status", qos=1)
        async with asyncio.timeout(30):
            async for message in client.messages:
                if json.loads(message.payload)["detail"].get("stored") == 10:  # type: ignore[arg-type]
                    break
    assert history.stop(signal.SIGTERM) == 0
    archive = tmp_path / "data" / "history" / "archive.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{archive}?mode=ro", uri=True)) as db:
        assert db.execute("SELECT count(*) FROM raw").fetchone() == (10,)

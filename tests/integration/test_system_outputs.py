"""The System page's outputs, storage and logs from real parts under `bmsgate run` (one process).

A simulated DALY board on a pty; a real Modbus TCP client; the notifier sending with the real
Apprise library to a local HTTP receiver; VictoriaMetrics as the InfluxDB server; an MQTT target
with a password on a port where nothing listens. GET /api/system must show what these did: one
client connected, the last send and then the failures, the backlog growing while the database is
down, the archive's size on disk, free disk and the write rate; GET /api/system/logs/<service>
each service's own lines, the secrets masked.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient

from bmsgate.broker import free_port
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer
from bmsgate_common.logs import MASK
from tests.support.needs import needs
from tests.support.receiver import receiver
from tests.support.tree import bmsgate_run, write_config
from tests.support.victoria import VictoriaMetrics, find_victoria

pytestmark = pytest.mark.integration
T = TypeVar("T")
PASSWORD = "system-real-pass"
MQTT_SECRET = "Mqtt-Target-Secret-31"
HOOK_SECRET = "Hook-Secret-7a1e"


async def until(what: Callable[[], Awaitable[T | None]], within: float, why: str) -> T:
    """Poll ``what`` until it gives something true."""
    end = time.monotonic() + within
    while True:
        got = await what()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"not within {within:g} s: {why}")
        await asyncio.sleep(0.5)


def du(folder: Path) -> int:
    """The bytes of the files directly in ``folder``, as the disk holds them (``du``'s blocks)."""
    return sum(
        e.stat().st_blocks * 512 for e in os.scandir(folder) if e.is_file(follow_symlinks=False)
    )


@needs(find_victoria(), "victoria-metrics is not installed")
async def test_the_system_page_shows_what_the_real_outputs_did(tmp_path: Path) -> None:
    vm = VictoriaMetrics(tmp_path)
    vm.start()
    bus = make_bus("daly_classic", cells=16, seed=3)
    try:
        with receiver() as (got, rport):
            async with PtyServer(bus, tmp_path / "ttySHED") as sim:
                await run_and_check(tmp_path, sim, vm, got, rport)
    finally:
        vm.stop()


async def run_and_check(
    tmp_path: Path, sim: PtyServer, vm: VictoriaMetrics, got: Any, rport: int
) -> None:
    data: dict[str, Any] = {
        "mqtt": {"heartbeat": 1},
        "log_level": "DEBUG",
        "buses": [
            {
                "port": sim.port,
                "protocol": "daly_classic",
                "poll_interval": 1,
                "offline_after": 2,
                "packs": [{"id": "shed"}],
            }
        ],
        "publisher": {
            "targets": [
                {
                    "name": "cloud",
                    "host": "127.0.0.1",
                    "port": free_port(),  # nothing listens: it keeps trying and logging
                    "username": "gateway",
                    "password": MQTT_SECRET,
                }
            ]
        },
        "history": {
            "archive": {"commit_interval": 2},
            "influx": {"enabled": True, "url": vm.url, "flush_interval": 1},
        },
        "notifier": {
            "targets": [
                {"name": "phone", "url": f"json://bob:{HOOK_SECRET}@127.0.0.1:{rport}/inbox"}
            ],
            "gather": 0,
            "retry_min": 1,
            "retry_max": 2,
        },
    }
    config = write_config(tmp_path, data)
    written = yaml.safe_load(config.read_text())
    base = f"http://127.0.0.1:{written['api']['port']}"
    modbus_port = written["modbus"]["port"]
    log_path = tmp_path / "run.log"
    async with (
        bmsgate_run(config, log_path),
        httpx.AsyncClient(base_url=base, timeout=10) as ui,
    ):

        async def up() -> bool:
            try:
                return (await ui.get("/healthz")).json()["backbone"]
            except httpx.HTTPError:
                return False

        await until(up, 60, "the API up on the backbone")
        assert (await ui.post("/api/auth/setup", json={"password": PASSWORD})).status_code == 204

        async def outputs(kind: str) -> dict[str, Any]:
            view = (await ui.get("/api/system")).json()
            return next(o for o in view["outputs"] if o["kind"] == kind)

        async def fact(kind: str, name: str, want: object) -> dict[str, Any] | None:
            out = await outputs(kind)
            return out if out["facts"].get(name) == want else None

        async def positive(kind: str, name: str) -> dict[str, Any] | None:
            out = await outputs(kind)
            return out if (out["facts"].get(name) or 0) > 0 else None

        async def bigger(kind: str, name: str, than: float) -> dict[str, Any] | None:
            out = await outputs(kind)
            return out if (out["facts"].get(name) or 0) > than else None

        # (a) a real Modbus TCP client connected: one client, and back to none when it leaves
        modbus = AsyncModbusTcpClient("127.0.0.1", port=modbus_port, timeout=2, retries=0)
        await until(modbus.connect, 30, "the Modbus client connected")
        server = await until(
            lambda: fact("Modbus TCP server", "clients connected", 1), 30, "1 client shown"
        )
        assert server["state"] == "connected"
        modbus.close()
        await until(lambda: fact("Modbus TCP server", "clients connected", 0), 30, "0 clients")

        # (c) InfluxDB: written while the server is up, a backlog that grows while it is down
        await until(lambda: positive("InfluxDB", "written"), 60, "points written to InfluxDB")
        vm.stop()
        down = await until(lambda: positive("InfluxDB", "backlog (points)"), 60, "a backlog")
        later = await until(
            lambda: bigger("InfluxDB", "backlog (points)", down["facts"]["backlog (points)"]),
            30,
            "the backlog growing",
        )
        assert later["state"] == "down", later

        # (b) the notifier: nothing tried yet is unknown; the pack going offline is sent; its
        # return fails while the receiver answers 503, and the failures are counted
        idle = await outputs("Notifications")
        assert idle["state"] == "unknown" and idle["facts"]["last sent"] is None, idle
        sim.doze()
        sent = await until(lambda: positive("Notifications", "sent"), 60, "a notification sent")
        assert got.on("/inbox"), "the receiver got nothing"
        assert sent["state"] == "connected" and sent["facts"]["last sent"] is not None
        assert datetime.fromisoformat(sent["facts"]["last sent"])
        got.failing = True
        sim.wake()
        failed = await until(lambda: positive("Notifications", "failures"), 60, "a failure")
        assert failed["state"] == "down" and failed["facts"]["last failure"] is not None
        assert failed["facts"]["last failure"] > failed["facts"]["last sent"]
        again = await until(
            lambda: bigger("Notifications", "failures", failed["facts"]["failures"]),
            30,
            "the failures counted on each retry",
        )
        assert again["facts"]["waiting"] >= 1

        # (d) storage: the archive's files as on disk, free disk as statvfs says, a write rate
        folder = tmp_path / "data" / "history"
        view = (await ui.get("/api/system")).json()
        storage = view["storage"]
        assert storage is not None, view
        on_disk = du(folder)
        assert 0 < storage["archive_bytes"] <= on_disk + 2 * 1024 * 1024, (storage, on_disk)
        assert storage["archive_bytes"] >= on_disk / 4, (storage, on_disk)
        disk = os.statvfs(folder)
        free = disk.f_bavail * disk.f_frsize
        assert abs(storage["disk_free_bytes"] - free) < 0.05 * free + 100 * 1024 * 1024
        assert storage["disk_total_bytes"] == disk.f_blocks * disk.f_frsize
        # commits every 2 s of a pack at 1 Hz: bytes per second, far from gigabytes
        assert 0 < storage["disk_write_rate"] < 50 * 1024 * 1024, storage

        # (e) the logs: each service its own lines, no secret in any of them. The API logs
        # what an owner names a token; here the MQTT target's password, pasted by mistake: the
        # API holds every secret of the configuration, so its own line masks it
        made = await ui.post("/api/auth/tokens", json={"name": f"script {MQTT_SECRET}"})
        assert made.status_code == 201, made.text
        lines: dict[str, list[str]] = {}
        for service in ("api", "history", "notifier", "publisher", "modbus", "reader-0"):
            answer = (await ui.get(f"/api/system/logs/{service}")).json()
            assert answer["reachable"], answer
            lines[service] = answer["lines"]
        notifier = "\n".join(lines["notifier"])
        assert "target phone" in notifier, notifier[-2000:]
        assert "[notifier]" in notifier and "[api]" not in notifier
        assert "[history]" in "\n".join(lines["history"])
        assert not any("[notifier]" in line for line in lines["api"])
        assert f"API token 'script {MASK}'" in "\n".join(lines["api"]), lines["api"][-5:]
        every = "\n".join(line for kept in lines.values() for line in kept)
        assert MQTT_SECRET not in every and HOOK_SECRET not in every
        assert "cloud" in "\n".join(lines["publisher"]), lines["publisher"][-5:]

    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert HOOK_SECRET not in text and MQTT_SECRET not in text
    assert f"API token 'script {MASK}'" in text  # the process's own output masks it too

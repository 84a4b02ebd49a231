"""`bmsgate run`'s services share one process, a thread each: one that ends comes back alone.

The whole tree on the simulator with its private broker. History is restarted over the backbone
(its thread ends with exit code 75): the reader's states keep coming, no other service goes
offline, the shared process stays the same, and history is online again. Then the shared process
is killed (SIGKILL, as a crash of the interpreter): every service comes back in a new one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest

from bmsgate.broker import free_port
from bmsgate_common.models import ServiceRestart, utcnow
from tests.support.needs import needs
from tests.support.procs import find_mosquitto
from tests.test_cli_run import run_command

pytestmark = pytest.mark.integration


def shared_process(root: int) -> int | None:
    """The pid of ``root``'s child that runs the services (named bms-services)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == root and (entry / "comm").read_text().strip() == "bms-services":
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


class Backbone:
    """What the test hears on the private broker: service statuses and pack states, timed."""

    def __init__(self) -> None:
        self.statuses: list[tuple[float, str, str]] = []  # (time, service, state)
        self.states: list[float] = []

    async def hear(self, client: aiomqtt.Client) -> None:
        """Record every status and state until cancelled."""
        async for message in client.messages:
            if message.retain:
                continue
            topic = str(message.topic)
            if topic.endswith("/state"):
                self.states.append(time.monotonic())
            elif topic.endswith("/status"):
                status = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                self.statuses.append((time.monotonic(), topic.split("/")[-2], status["state"]))

    async def wait(self, check: object, within: float) -> None:
        """Until ``check()`` is true; fails after ``within`` s."""
        deadline = time.monotonic() + within
        while not check():  # type: ignore[operator]
            assert time.monotonic() < deadline, (self.statuses[-10:], len(self.states))
            await asyncio.sleep(0.1)


@needs(find_mosquitto(), "mosquitto is not installed")
async def test_one_service_restarts_alone_and_a_crash_of_the_process_brings_all_back(
    tmp_path: Path,
) -> None:
    http = free_port()
    data = tmp_path / "data"
    log = (tmp_path / "run.log").open("w")
    # fmt: off
    proc = subprocess.Popen(  # noqa: ASYNC220
        run_command(http, data), stdout=subprocess.PIPE, stderr=log, text=True,
    )
    # fmt: on
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.startswith("bmsgate is running")
        saved = json.loads((data / "run" / "mosquitto" / "users.json").read_text())
        seen = Backbone()
        async with aiomqtt.Client(
            "127.0.0.1", saved["port"], username="admin", password=saved["users"]["admin"]
        ) as client:
            await client.subscribe("bmsgate/service/+/status")
            await client.subscribe("bmsgate/bms/+/state", qos=0)
            hearing = asyncio.create_task(seen.hear(client))
            await seen.wait(lambda: len(seen.states) >= 2, 30)
            host = shared_process(proc.pid)
            assert host is not None

            # one service ends (a restart asked for over the backbone): it alone comes back
            asked = time.monotonic()
            request = ServiceRestart(ts=utcnow())
            await client.publish(
                "bmsgate/service/history/restart", request.model_dump_json(), qos=1
            )

            def history_back() -> bool:
                after = [(t, s) for t, n, s in seen.statuses if n == "history" and t > asked]
                states = [s for _, s in after]
                return "offline" in states and states[-1] == "online"

            await seen.wait(history_back, 30)
            back = time.monotonic()
            during = [t for t in seen.states if asked < t < back]
            others = [(n, s) for t, n, s in seen.statuses if t > asked and n != "history"]
            assert not [o for o in others if o[1] != "online"], others
            assert shared_process(proc.pid) == host  # the same process throughout
            if back - asked > 2.5:  # the reader went on publishing meanwhile (1 s poll)
                assert during, (back - asked, seen.statuses[-6:])
            assert "history restarting on request" in (tmp_path / "run.log").read_text()

            # the shared process crashes: every service starts again, in a new one
            os.kill(host, signal.SIGKILL)
            killed = time.monotonic()
            await seen.wait(lambda: any(t > killed + 0.5 for t in seen.states), 60)
            again = shared_process(proc.pid)
            assert again is not None and again != host
            async with httpx.AsyncClient(timeout=10) as web:
                api = await web.get(f"http://127.0.0.1:{http}/api/packs/sim-1/state")
            assert api.status_code == 200 and api.json()["cell_count"] == 16
            hearing.cancel()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert "Traceback" not in (tmp_path / "run.log").read_text()

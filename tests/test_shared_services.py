"""`bmsgate run`'s services share one process, a thread each: one that ends comes back alone.

The whole tree on the simulator with its private broker. History is restarted over the backbone
(its thread ends with exit code 75): the reader's states keep coming, no other service goes
offline, the shared process stays the same, and history is online again. Then the shared process
is killed (SIGKILL, as a crash of the interpreter): every service comes back in a new one.

And the services' process alone: an exception escaping one service (raised in its thread from
outside) ends that thread alone, with exit code 1; the reader's states keep coming, and the
service, started again, is online.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest
import yaml

from bmsgate.broker import free_port
from bmsgate_common.models import ServiceRestart, utcnow
from tests.support.needs import needs
from tests.support.procs import Mosquitto, find_mosquitto
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


# the services' process, driven line by line from stdin: an exception is raised in one
# service's thread (PyThreadState_SetAsyncExc, as an unexpected error in its own code would),
# then that service is started again, as the supervisor does
HOST = """
import ctypes, json, sys, threading
from bmsgate.zygote import _Host

config = sys.argv[1]
host, loaded, exits, lock = _Host(), set(), [], threading.Lock()
def send(message):
    with lock:
        exits.append(message)
host.serve({"thread": ["bmsgate_reader", "--config", config, "--bus", "0"]}, loaded, send)
host.serve({"thread": ["bmsgate_history", "--config", config]}, loaded, send)
history = exits[1]["pid"]
print("started", flush=True)
for line in sys.stdin:
    if line.strip() == "crash":
        thread = host.threads[history][0]
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(RuntimeError)
        )
        thread.join(20)
        print(json.dumps([m for m in exits if "exit" in m]), flush=True)
    elif line.strip() == "again":
        host.serve({"thread": ["bmsgate_history", "--config", config]}, loaded, send)
        print("again", flush=True)
    else:
        break
host.end()
print(json.dumps([m for m in exits if "exit" in m]), flush=True)
"""


async def test_an_exception_that_ends_one_service_leaves_the_others_running(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
                "buses": [{"port": daly_pty, "protocol": "daly_classic", "packs": [{"id": "a"}]}],
                "data_dir": str(tmp_path / "data"),
            }
        )
    )
    # fmt: off
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-c", HOST, str(config)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # fmt: on
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

    async def say(what: str) -> str:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(what + "\n")
        proc.stdin.flush()
        return await asyncio.to_thread(proc.stdout.readline)

    try:
        assert (await asyncio.to_thread(proc.stdout.readline)).strip() == "started"
        seen = Backbone()
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.subscribe("bmsgate/service/+/status")
            await client.subscribe("bmsgate/bms/+/state", qos=0)
            hearing = asyncio.create_task(seen.hear(client))
            await seen.wait(lambda: len(seen.states) >= 2, 30)
            exits = json.loads(await say("crash"))
            crashed = time.monotonic()
            assert [m["code"] for m in exits] == [1]  # history's thread alone, as an error
            await seen.wait(lambda: sum(t > crashed for t in seen.states) >= 2, 15)
            assert await say("again") == "again\n"
            again = time.monotonic()
            await seen.wait(
                lambda: any(
                    t > again and n == "history" and s == "online" for t, n, s in seen.statuses
                ),
                30,
            )
            hearing.cancel()
        exits = json.loads(await say("end"))
        assert sorted(m["code"] for m in exits) == [0, 0, 1]  # both stopped cleanly at the end
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "RuntimeError" in proc.stderr.read()  # the traceback of the service that failed

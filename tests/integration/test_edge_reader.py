"""``bmsgate run --only reader`` on an edge machine: the lean supervisor and the lean reader.

Real Mosquitto, a simulated DALY board on a pty, ``bmsgate run`` as a user starts it. Every
message the lean reader publishes is validated by its pydantic model (the message contract), and
the reader process is shown to run without pydantic until a message needs the full reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer
from bmsgate_common import topics
from bmsgate_common.models import Command, ServiceRestart
from tests.support.mqtt import Listener, listen
from tests.support.procs import Mosquitto
from tests.support.tree import run_argv

pytestmark = pytest.mark.integration


def config(folder: Path, port: str, broker: int, **bus: Any) -> Path:
    """A configuration with one DALY bus of one pack against the broker on ``broker``."""
    return config_buses(folder, broker, [daly(port, "shed", "Shed", **bus)])


def daly(port: str, pack: str, name: str, **bus: Any) -> dict[str, Any]:
    """A DALY bus of one pack, polled every 0.5 s."""
    return {
        "port": port,
        "protocol": "daly_classic",
        "poll_interval": 0.5,
        "packs": [{"id": pack, "name": name}],
        **bus,
    }


def config_buses(folder: Path, broker: int, buses: list[dict[str, Any]]) -> Path:
    """A configuration with these buses against the broker on ``broker``."""
    path = folder / "bmsgate.yaml"
    data = {
        "mqtt": {"host": "127.0.0.1", "port": broker},
        "buses": buses,
        "data_dir": str(folder / "data"),
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def readers(root: int) -> list[int]:
    """The pids of the reader processes under ``bmsgate run`` (pid ``root``)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat.split("(", 1)[1].rsplit(")", 1)
            if int(rest.split()[1]) == root and name == "bms-reader":
                out.append(int(entry.name))
    return out


def maps_pydantic(pid: int) -> bool:
    """Whether the process has pydantic's compiled core loaded."""
    return "pydantic_core" in Path(f"/proc/{pid}/maps").read_text()


def maps_ssl(pid: int) -> bool:
    """Whether the process has Python's ssl module (and so OpenSSL) loaded."""
    return "_ssl." in Path(f"/proc/{pid}/maps").read_text()


async def one_reader(root: int, within: float = 20.0, other_than: int = 0) -> int:
    """The pid of the one reader process, once it runs (another than ``other_than``)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = [p for p in readers(root) if p != other_than]
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError("no reader process")


def validate(listener: Listener) -> set[str]:
    """Validate every message heard with the model of its topic; the kinds seen."""
    kinds = set()
    for seen in listener.messages:
        if not seen.payload:  # an empty retained message deletes one: none expected here
            raise AssertionError(f"empty message on {seen.topic}")
        spec = next(s for s in topics.TOPICS.values() if s.name_in(seen.topic) is not None)
        spec.model.model_validate(seen.payload)  # raises on anything the contract refuses
        kinds.add(spec.kind)
    return kinds


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)


async def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(proc.wait, 30)


async def states(broker: int, pack: str = "shed", within: float = 30.0) -> None:
    """Wait for a state of ``pack`` on the broker."""
    async with listen(broker, f"bmsgate/bms/{pack}/state") as heard:
        await heard.wait_for(lambda h: h.on("state"), within=within)


@contextlib.asynccontextmanager
async def edge_run(folder: Path, port: str, broker: int) -> AsyncIterator[tuple[int, Path, Path]]:
    """``bmsgate run --only reader`` polling; yields its pid, its file and its log.

    It stops cleanly (exit code 0) with no traceback logged when the block ends.
    """
    path = config(folder, port, broker)
    log = folder / "run.log"
    proc = start(run_argv("--only", "reader", config=path), log)
    try:
        await states(broker)
        yield proc.pid, path, log
    finally:
        assert await stop(proc) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


async def test_edge_reader_publishes_what_the_models_accept_without_pydantic(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    bus = make_bus("daly_classic")
    async with PtyServer(bus, link=tmp_path / "tty") as pty:
        path = config(tmp_path, pty.port, mosquitto.port)
        log = tmp_path / "run.log"
        async with listen(mosquitto.port, "bmsgate/#") as heard:
            proc = start(run_argv("--only", "reader", config=path), log)
            try:
                root = proc.pid
                await heard.wait_for(lambda h: h.on("bms/shed/settings"), within=30)
                reader = await one_reader(root)
                # the supervisor and the reader run without pydantic (and the supervisor
                # without an event loop: no asyncio imported, so no selector thread either)
                assert not maps_pydantic(root) and not maps_pydantic(reader)
                # nor ssl: the backbone is plain TCP (edge.py)
                assert not maps_ssl(root) and not maps_ssl(reader)
                bus.boards[0].model.cells[0].soc = 0.0  # a cell empty: the BMS raises an alarm
                await heard.wait_for(lambda h: h.on("bms/shed/alarm"), within=15)
                await heard.wait_for(
                    lambda h: any(s.get("state") == "online" for s in h.on("reader-0/status"))
                )
                assert not maps_pydantic(reader)
            finally:
                code = await stop(proc)
            assert code == 0, log.read_text()
            await heard.wait_for(lambda h: h.on("reader-0/status")[-1]["state"] == "offline")
        kinds = validate(heard)
        assert {"state", "availability", "alarm", "settings", "sniff_state", "service_status"} <= (
            kinds
        )
        last = heard.on("bms/shed/availability")[-1]
        assert (last["state"], last["reason"]) == ("offline", "reader stopped")
        assert heard.on("bms/shed/state")[-1]["current"] is not None
        assert "Traceback" not in log.read_text()


async def test_a_command_hands_the_bus_to_the_full_reader(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str
) -> None:
    async with (
        edge_run(tmp_path, daly_pty, mosquitto.port) as (root, _, _),
        listen(mosquitto.port, "bmsgate/bms/shed/#", "bmsgate/service/#") as heard,
    ):
        reader = await one_reader(root)
        assert not maps_pydantic(reader)
        cmd = Command(transaction="t-1", action="set_charge_mos", value=False)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish("bmsgate/bms/shed/set", cmd.model_dump_json(), qos=1)
        # the command is answered (control is off by default), not lost in the handover
        result = await heard.wait_for(lambda h: h.on("bms/shed/result"), within=20)
        assert (result[0]["transaction"], result[0]["status"]) == ("t-1", "error")
        assert result[0]["error"] == "control is disabled"
        # the same process goes on polling, now with the models (still without ssl)
        assert readers(root) == [reader] and maps_pydantic(reader) and not maps_ssl(reader)
        count = len(heard.on("bms/shed/state"))
        await heard.wait_for(lambda h: len(h.on("bms/shed/state")) > count + 1, within=10)
        validate(heard)


async def test_a_restart_for_every_service_restarts_the_lean_reader(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str
) -> None:
    async with edge_run(tmp_path, daly_pty, mosquitto.port) as (root, _, log):
        first = await one_reader(root)
        restart = ServiceRestart(ts=datetime.now(UTC), reason="test")
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish("bmsgate/service/all/restart", restart.model_dump_json(), qos=1)
        await wait_for_line(log, "reader-0 restarting on request")
        await states(mosquitto.port)
        # the bus's task started again in the same process, lean again: the next message for
        # it hands it over again (pydantic, imported for the first, stays loaded)
        assert readers(root) == [first]
        cmd = Command(transaction="t-2", action="set_charge_mos", value=False)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish("bmsgate/bms/shed/set", cmd.model_dump_json(), qos=1)
        await wait_for_line(log, "bmsgate/bms/shed/set needs the full reader")
        assert readers(root) == [first]


async def test_the_lean_supervisor_restarts_applies_and_refuses(
    tmp_path: Path, mosquitto: Mosquitto, daly_pty: str
) -> None:
    async with edge_run(tmp_path, daly_pty, mosquitto.port) as (root, path, log):
        first = await one_reader(root)
        os.kill(first, signal.SIGKILL)  # a crash: the process started again after restart_delay
        second = await one_reader(root, other_than=first)
        # an invalid file: one line, the reader keeps running
        good = path.read_text()
        path.write_text(good.replace("poll_interval: 0.5", "poll_interval: -1"))
        await wait_for_line(log, "configuration not applied, services keep running")
        assert readers(root) == [second]
        # a valid change of the bus: its reader starts again with it, in the same process
        path.write_text(good.replace("name: Shed", "name: Garden shed"))
        await wait_for_line(log, f"{path} applied")
        async with listen(mosquitto.port, "bmsgate/bms/shed/state") as heard:
            await heard.wait_for(
                lambda h: any(s["name"] == "Garden shed" for s in h.on("state")), within=20
            )
        assert readers(root) == [second]
        # the pack renamed: the broker forgets the old one once its reader has stopped
        path.write_text(good.replace("id: shed", "id: barn"))
        await states(mosquitto.port, "barn")
        await wait_for_line(log, f"{path} applied", times=2)  # the broker told to forget
        async with listen(mosquitto.port, "bmsgate/bms/shed/#") as old:
            await asyncio.sleep(1.0)  # the broker sends what it retains on subscribing
        assert [m.topic for m in old.messages if m.retain and m.payload] == []
    assert "readers exited with code -9; restarting in" in log.read_text()
    assert readers(root) == []


async def test_two_buses_share_one_reader_process_each_a_reader_of_its_own(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        PtyServer(make_bus("daly_classic"), link=tmp_path / "tty0") as pty0,
        PtyServer(make_bus("daly_classic"), link=tmp_path / "tty1") as pty1,
        listen(mosquitto.port, "bmsgate/#") as heard,
    ):
        buses = [daly(pty0.port, "shed", "Shed"), daly(pty1.port, "barn", "Barn")]
        path = config_buses(tmp_path, mosquitto.port, buses)
        log = tmp_path / "run.log"
        proc = start(run_argv("--only", "reader", config=path), log)
        try:
            root = proc.pid
            for pack in ("shed", "barn"):
                await heard.wait_for(lambda h, p=pack: h.on(f"bms/{p}/settings"), within=30)
            for service in ("reader-0", "reader-1"):  # each its own service on the backbone
                await heard.wait_for(
                    lambda h, s=service: any(m["state"] == "online" for m in h.on(f"{s}/status"))
                )
            # one process for both buses, lean: neither pydantic nor ssl
            [reader] = readers(root)
            assert not maps_pydantic(reader) and not maps_ssl(reader)
            assert {"state", "availability", "settings", "service_status"} <= validate(heard)

            # a command for bus 1's pack hands only bus 1 to the full reader
            cmd = Command(transaction="t-1", action="set_charge_mos", value=False)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
                await client.publish("bmsgate/bms/barn/set", cmd.model_dump_json(), qos=1)
            result = await heard.wait_for(lambda h: h.on("bms/barn/result"), within=20)
            assert (result[0]["transaction"], result[0]["error"]) == ("t-1", "control is disabled")
            assert readers(root) == [reader] and maps_pydantic(reader)
            logged = log.read_text()
            assert "[reader-1] bmsgate_reader.service: a message on bmsgate/bms/barn/set" in logged
            assert "[reader-0] bmsgate_reader.service: a message on" not in logged  # lean still
            for pack in ("shed", "barn"):  # both poll on
                count = len(heard.on(f"bms/{pack}/state"))
                await heard.wait_for(
                    lambda h, p=pack, c=count: len(h.on(f"bms/{p}/state")) > c + 1, within=10
                )

            # bus 1's poll interval changed: only bus 1's reader starts again, in the process
            heard.messages.clear()
            buses[1]["poll_interval"] = 0.7
            config_buses(tmp_path, mosquitto.port, buses)
            await heard.wait_for(
                lambda h: any(a["state"] == "offline" for a in h.on("bms/barn/availability")),
                within=20,
            )
            await wait_for_line(log, f"{path} applied")
            await heard.wait_for(lambda h: h.on("bms/barn/state"), within=20)
            count = len(heard.on("bms/shed/state"))
            await heard.wait_for(lambda h: len(h.on("bms/shed/state")) > count + 1, within=10)
            assert all(a["state"] == "online" for a in heard.on("bms/shed/availability"))
            assert all(m["state"] == "online" for m in heard.on("reader-0/status"))
            assert readers(root) == [reader]

            # bus 1 removed: its reader stops, its pack forgotten, bus 0 polls on
            heard.messages.clear()
            config_buses(tmp_path, mosquitto.port, buses[:1])
            await wait_for_line(log, f"{path} applied", times=2)
            left = await heard.wait_for(
                lambda h: [m for m in h.on("reader-1/status") if m["state"] == "offline"]
            )
            assert "left_out" in left[-1]["detail"]
            count = len(heard.on("bms/shed/state"))
            await heard.wait_for(lambda h: len(h.on("bms/shed/state")) > count + 1, within=10)
            assert all(a["state"] == "online" for a in heard.on("bms/shed/availability"))
            assert readers(root) == [reader]
        finally:
            code = await stop(proc)
        assert code == 0, log.read_text()
    async with listen(mosquitto.port, "bmsgate/bms/barn/#") as old:
        await asyncio.sleep(1.0)  # the broker sends what it retains on subscribing
    assert [m.topic for m in old.messages if m.retain and m.payload] == []
    assert "Traceback" not in log.read_text()


async def wait_for_line(log: Path, text: str, within: float = 20.0, times: int = 1) -> None:
    """Wait until ``text`` has been logged ``times`` times."""
    deadline = time.monotonic() + within
    while (logged := await asyncio.to_thread(log.read_text)).count(text) < times:
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged: {logged[-2000:]}")
        await asyncio.sleep(0.1)


def test_an_invalid_file_at_start_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "bmsgate.yaml"
    path.write_text("mqtt: {host: 127.0.0.1}\nbuses: [{port: /dev/null, protocol: nope}]\n")
    done = subprocess.run(
        run_argv("--only", "reader", config=path), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.startswith("bmsgate run: ") and len(done.stderr.splitlines()) == 1

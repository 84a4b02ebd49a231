"""The tunnel against the real reader on a pty, a real Mosquitto, and real clients over TCP."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import serial
from dalybms import DalyBMS

from bmsgate.broker import free_port  # the service is told its tunnel port in its settings
from bmsgate_bms import daly_classic, jk_pb
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer, SimBus
from bmsgate_common import topics
from bmsgate_common.models import TunnelCommand
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import Settings
from bmsgate_reader.service import Reader
from bmsgate_reader.service import serve as serve_reader
from bmsgate_serial.link import SerialLink
from bmsgate_tunnel.service import TunnelService
from bmsgate_tunnel.service import serve as serve_tunnel
from tests.support.mqtt import Listener, listen
from tests.support.needs import require
from tests.support.procs import Mosquitto

pytestmark = pytest.mark.integration


@dataclass
class Gateway:
    sim: SimBus
    reader: Reader
    tunnel: TunnelService
    port: int
    seen: Listener
    log: Path

    async def command(self, action: str, pack: str = "p1", **terms: Any) -> dict[str, Any]:
        """Send a TunnelCommand; the status answering it."""
        transaction = uuid.uuid4().hex[:8]
        cmd = TunnelCommand(transaction=transaction, action=action, **terms)  # type: ignore[arg-type]
        await self.reader.backbone.publish(topics.TUNNEL_COMMAND, pack, cmd)
        found = await self.seen.wait_for(
            lambda s: [
                x for x in s.on(f"/bms/{pack}/tunnel/state") if x["transaction"] == transaction
            ]
        )
        return dict(found[0])

    def states(self, pack: str = "p1") -> int:
        return len(self.seen.on(f"/bms/{pack}/state"))

    def last_status(self, pack: str = "p1") -> dict[str, Any]:
        return dict(self.seen.on(f"/bms/{pack}/tunnel/state")[-1])

    def sessions(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path,
    broker: Mosquitto,
    protocol: str = "daly_classic",
    boards: int = 1,
    control: bool = True,
    **tunnel: Any,
) -> AsyncIterator[Gateway]:
    sim = make_bus(protocol, boards=boards)
    port = free_port()
    async with PtyServer(sim, tmp_path / "tty") as pty, listen(broker.port, "bmsgate/#") as seen:
        # fmt: off
        cfg = Settings.model_validate(
            {
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "heartbeat": 5},
                "control": {"enabled": control},
                "buses": [
                    {
                        "port": pty.port, "protocol": protocol, "poll_interval": 0.2,
                        "timeout": 0.3, "packs": [{"id": f"p{n}", "address": n} for n in range(1, boards + 1)],
                    }
                ],
                "tunnel": {"host": "127.0.0.1", "port": port, **tunnel},
                "data_dir": str(tmp_path),
            }
        )
        # fmt: on
        reader = Reader(cfg.buses[0], Backbone(cfg.mqtt, "reader-0"), control=control)
        service = TunnelService(cfg, Backbone(cfg.mqtt, "tunnel"), tmp_path / "sessions.jsonl")
        tasks = [
            asyncio.create_task(serve_reader(reader)),
            asyncio.create_task(serve_tunnel(service)),
        ]
        try:
            await seen.wait_for(lambda s: s.on("/bms/p1/state") and s.on("/bms/p1/tunnel/state"))
            yield Gateway(sim, reader, service, port, seen, tmp_path / "sessions.jsonl")
        finally:
            # Python 3.11's asyncio.wait_for (used by the reader's serial link) can swallow a
            # cancel that arrives as its wait ends; cancel again until each service has stopped
            deadline = time.monotonic() + 10
            while not all(task.done() for task in tasks) and time.monotonic() < deadline:
                for task in tasks:
                    task.cancel()
                await asyncio.wait(tasks, timeout=0.5)
            stuck = [task for task in tasks if not task.done()]
            for task in stuck:  # a service that does not stop is a bug: show where it waits
                task.print_stack()
            assert not stuck, "a service did not stop within 10 s of being cancelled"


async def refused(port: int) -> bool:
    """Whether a connection to the port is refused or dropped at once without a byte."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    try:
        return await asyncio.wait_for(reader.read(1), 3) == b""
    except ConnectionResetError:
        return True
    finally:
        writer.close()


async def wait_closed_session(gw: Gateway, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(gw.sessions()) < count:
        assert time.monotonic() < deadline, "the session was not logged"
        await asyncio.sleep(0.05)
    return gw.sessions()


async def test_own_driver_reads_through_the_tunnel_and_polling_pauses(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with gateway(tmp_path, mosquitto, boards=2) as gw:
        assert await refused(gw.port)  # off by default
        opened = await gw.command("open", minutes=5)
        assert opened["ok"] and opened["open"] and opened["port"] == gw.port
        assert opened["idle_timeout"] == 120 and 299 < opened["window_left"] <= 300
        assert (await gw.command("status", pack="p2"))["open"]  # the bus's other pack

        link = SerialLink(f"socket://127.0.0.1:{gw.port}", 9600, timeout=1.0)
        started = time.monotonic()
        readings = [await daly_classic.Driver(link, n).read() for n in (1, 2)]
        took = time.monotonic() - started
        await asyncio.sleep(0.5)  # a poll under way when the lease came may still finish
        polled = gw.states()
        for reading, board in zip(readings, gw.sim.boards, strict=True):
            assert reading.cell_voltages == pytest.approx(board.model.cell_voltages, abs=0.0015)
            assert reading.soc == pytest.approx(board.model.soc, abs=0.1)
        await asyncio.sleep(1.0)
        assert gw.states() == polled  # the reader does not poll while a client is on
        status = await gw.seen.wait_for(
            lambda s: [x for x in s.on("/bms/p1/tunnel/state") if x["client"] and x["rx_bytes"]]
        )
        assert status[-1]["client"].startswith("127.0.0.1:") and status[-1]["uptime"] >= 0

        await link.close()
        sessions = await wait_closed_session(gw)
        assert sessions[0]["client"].startswith("127.0.0.1:")
        assert sessions[0]["reason"] == "the client disconnected"
        assert sessions[0]["tx_bytes"] > 0 and sessions[0]["rx_bytes"] > sessions[0]["tx_bytes"]
        await gw.seen.wait_for(lambda s: gw.states() > polled)  # polling resumed
        assert gw.last_status()["open"]  # the window stays open for the next session
        print(f"two DALY snapshots through the tunnel in {took:.2f} s")

        closed = await gw.command("close")
        assert closed["ok"] and not closed["open"] and closed["time_left"] is None
        assert await refused(gw.port)


async def test_jk_driver_reads_through_the_tunnel(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with gateway(tmp_path, mosquitto, protocol="jk_pb") as gw:
        await gw.command("open")
        link = SerialLink(f"socket://127.0.0.1:{gw.port}", 115200, timeout=1.0)
        link.gap = 0.1  # a network adds more than the line's 4 character times between pieces
        reading = await jk_pb.Driver(link, 1).read()
        assert reading.cell_voltages == pytest.approx(
            gw.sim.boards[0].model.cell_voltages, abs=0.0015
        )
        await link.close()
        await wait_closed_session(gw)


@pytest.fixture
def socat() -> Iterator[list[subprocess.Popen[bytes]]]:
    require(shutil.which("socat"), "socat is not installed")
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        proc.wait(5)


def virtual_port(
    procs: list[subprocess.Popen[bytes]], path: Path, port: int
) -> subprocess.Popen[bytes]:
    """A virtual COM port as a PC's virtual-port software makes one: a pty joined to TCP."""
    proc = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={path}", f"tcp:127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
    )
    procs.append(proc)
    deadline = time.monotonic() + 5
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "socat exited"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return proc


def _pyserial_soc(path: str) -> bytes:
    with serial.Serial(path, 9600, timeout=2.0) as port:
        port.write(daly_classic.request(daly_classic.SOC))
        return bytes(port.read(13))


async def test_pyserial_on_a_socat_virtual_com_port(
    tmp_path: Path, mosquitto: Mosquitto, socat: list[subprocess.Popen[bytes]]
) -> None:
    async with gateway(tmp_path, mosquitto) as gw:
        await gw.command("open")
        com = tmp_path / "COM7"
        await asyncio.to_thread(virtual_port, socat, com, gw.port)
        answer = await asyncio.to_thread(_pyserial_soc, str(com))
        data = daly_classic.frame_data(answer, daly_classic.SOC, 1)
        assert data is not None
        model = gw.sim.boards[0].model
        assert int.from_bytes(data[0:2], "big") / 10 == pytest.approx(model.pack_voltage, abs=0.1)
        assert int.from_bytes(data[6:8], "big") / 10 == pytest.approx(model.soc, abs=0.1)


def _dalybms_read(path: str) -> dict[str, Any]:
    bms = DalyBMS(request_retries=2, address=4)  # host 0x40, which board 1 answers
    bms.connect(path)
    try:
        return {"status": bms.status, "soc": bms.get_soc(), "cells": bms.get_cell_voltages()}
    finally:
        bms.disconnect()


async def test_dalybms_through_a_socat_virtual_com_port(
    tmp_path: Path, mosquitto: Mosquitto, socat: list[subprocess.Popen[bytes]]
) -> None:
    async with gateway(tmp_path, mosquitto) as gw:
        await gw.command("open", no_timeout=True)
        com = tmp_path / "COM8"
        await asyncio.to_thread(virtual_port, socat, com, gw.port)
        got = await asyncio.to_thread(_dalybms_read, str(com))
        model = gw.sim.boards[0].model
        assert got["status"]["cells"] == len(model.cells)
        assert list(got["cells"].values()) == pytest.approx(model.cell_voltages, abs=0.001)
        assert got["soc"]["soc_percent"] == pytest.approx(model.soc, abs=0.1)


async def test_one_client_at_a_time(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with gateway(tmp_path, mosquitto) as gw:
        await gw.command("open")
        first_r, first_w = await asyncio.open_connection("127.0.0.1", gw.port)
        await gw.seen.wait_for(lambda s: gw.last_status()["client"])
        assert await refused(gw.port)  # a second client is dropped
        rtts = []
        for _ in range(20):  # the first still works; 13-byte request to 13-byte answer
            sent = time.monotonic()
            first_w.write(daly_classic.request(daly_classic.SOC))
            assert len(await asyncio.wait_for(first_r.readexactly(13), 3)) == 13
            rtts.append(time.monotonic() - sent)
        rtts.sort()
        print(
            f"SOC round trip through the tunnel: median {rtts[10] * 1e3:.1f} ms, max {rtts[-1] * 1e3:.1f} ms"
        )
        assert gw.tunnel.tunnels[0].refused == 1
        first_w.close()
        await wait_closed_session(gw)


async def test_idle_expiry_closes_the_tunnel_and_polling_resumes(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with gateway(tmp_path, mosquitto) as gw:
        opened = await gw.command("open", idle_timeout=1.0)
        assert opened["time_left"] <= 1.0
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        await gw.seen.wait_for(lambda s: gw.last_status()["client"])
        polled = gw.states()
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(1), 5) == b""  # dropped for silence
        idle = time.monotonic() - started
        assert 0.7 < idle < 2.5
        sessions = await wait_closed_session(gw)
        assert sessions[0]["reason"] == "1 s without traffic"
        await gw.seen.wait_for(lambda s: not gw.last_status()["open"])
        assert await refused(gw.port)
        await gw.seen.wait_for(lambda s: gw.states() > polled)  # polling resumed
        writer.close()
        print(f"idle tunnel closed {idle:.2f} s after the last byte")


async def test_window_end_closes_even_a_busy_tunnel(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with gateway(tmp_path, mosquitto) as gw:
        await gw.command("open", minutes=1.5 / 60, no_timeout=True)
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        started = time.monotonic()

        async def keep_asking() -> None:
            while time.monotonic() - started < 5:
                writer.write(daly_classic.request(daly_classic.SOC))
                await asyncio.wait_for(reader.readexactly(13), 3)

        with pytest.raises(asyncio.IncompleteReadError):
            await keep_asking()
        assert 1.3 < time.monotonic() - started < 2.5
        assert (await wait_closed_session(gw))[0]["reason"] == "the window ended"
        assert await refused(gw.port)
        writer.close()


async def test_closed_by_command_drops_the_client(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with gateway(tmp_path, mosquitto) as gw:
        await gw.command("open")
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        await gw.seen.wait_for(lambda s: gw.last_status()["client"])
        closed = await gw.command("close")
        assert not closed["open"] and closed["client"] is None
        assert await asyncio.wait_for(reader.read(1), 3) == b""
        assert (await wait_closed_session(gw))[0]["reason"] == "closed by command"
        await gw.seen.wait_for(lambda s: gw.reader.lease.current is None, within=3)  # line back
        assert await refused(gw.port)
        writer.close()


async def test_allow_list_refuses_other_clients(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with gateway(tmp_path, mosquitto, allow=["192.168.7.0/24"]) as gw:
        await gw.command("open")
        assert await refused(gw.port)
        assert "not on the allow-list" in caplog.text
        assert gw.sessions() == []
    async with gateway(tmp_path, mosquitto, allow=["10.0.0.1", "127.0.0.0/8"]) as gw:
        await gw.command("open")
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(daly_classic.request(daly_classic.SOC))
        assert len(await asyncio.wait_for(reader.readexactly(13), 3)) == 13
        writer.close()
        await wait_closed_session(gw)


async def test_control_disabled_keeps_it_closed(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with gateway(tmp_path, mosquitto, control=False) as gw:
        answer = await gw.command("open")
        assert answer["ok"] is False and answer["error"] == "control is disabled"
        assert not answer["open"]
        assert await refused(gw.port)


async def test_malformed_command_is_one_log_line(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway(tmp_path, mosquitto) as gw:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish("bmsgate/bms/p1/tunnel/set", b"{not json", qos=1)
            await client.publish(
                "bmsgate/bms/p1/tunnel/set",
                json.dumps({"transaction": "x", "action": "open", "minutes": -1}),
                qos=1,
            )
            await client.publish(
                "bmsgate/bms/nobody/tunnel/set",
                json.dumps({"transaction": "y", "action": "open"}),
                qos=1,
            )
        await gw.seen.wait_for(lambda s: caplog.text.count("dropping message") == 2)
        await gw.seen.wait_for(lambda s: "unknown pack 'nobody'" in caplog.text)
        assert (await gw.command("open"))["open"]  # still serving


async def test_cli_opens_shows_and_closes(
    tmp_path: Path,
    mosquitto: Mosquitto,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bmsgate.cli import main

    caplog.set_level(logging.INFO)
    who = f"asked by bmsgate tunnel, user {getpass.getuser()} on {socket.gethostname()}"

    monkeypatch.setenv("BMSGATE_MQTT__HOST", "127.0.0.1")
    monkeypatch.setenv("BMSGATE_MQTT__PORT", str(mosquitto.port))
    monkeypatch.delenv("BMSGATE_CONFIG", raising=False)
    async with gateway(tmp_path, mosquitto) as gw:
        assert await asyncio.to_thread(main, ["tunnel", "open", "p1", "--minutes", "2"]) == 0
        out = capsys.readouterr().out
        assert f"open on port {gw.port}" in out and "2.0 min" in out and "120 s" in out
        assert gw.last_status()["open"]
        assert await asyncio.to_thread(main, ["tunnel", "status", "p1"]) == 0
        assert "no client connected" in capsys.readouterr().out
        assert await asyncio.to_thread(main, ["tunnel", "close", "p1"]) == 0
        assert "closed" in capsys.readouterr().out
        assert await refused(gw.port)
        # the log says who opened and who closed it
        opened = [r.getMessage() for r in caplog.records if " open on " in r.getMessage()]
        assert len(opened) == 1 and opened[0].endswith(who), opened
        assert f"tunnel of bus 0: close {who}" in caplog.text
        assert await asyncio.to_thread(main, ["tunnel", "open", "p1", "--minutes", "-3"]) == 2
        assert "minutes" in capsys.readouterr().err
        no_answer = ["tunnel", "status", "nobody", "--wait", "0.5"]
        assert await asyncio.to_thread(main, no_answer) == 1
        assert "no answer" in capsys.readouterr().err

"""Tunnel, sniffer and raw frames through the API, against a real Mosquitto, the real reader on a
simulated DALY pty and the real tunnel service, with the API served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from services.api.tests.inprocess import app_client

from bmsgate.broker import free_port  # the service is told its tunnel port in its settings
from bmsgate_api.app import create_app, make_context
from bmsgate_api.store import PackStore
from bmsgate_bms import daly_classic
from bmsgate_bms.sim import make_bus
from bmsgate_bms.sim.bus import PtyServer, SimBus
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import Settings
from bmsgate_reader.service import Reader
from bmsgate_reader.service import serve as serve_reader
from bmsgate_tunnel.service import TunnelService
from bmsgate_tunnel.service import serve as serve_tunnel
from tests.support.procs import Mosquitto

pytestmark = pytest.mark.integration
PASSWORD = "battery-gate-1"
SOC_REQUEST = daly_classic.request(0x90, 1).hex()  # a540900800000000000000007d


@dataclass
class Stack:
    http: httpx.AsyncClient
    sim: SimBus
    tunnel_port: int


async def stop(tasks: list[asyncio.Task[Any]]) -> None:
    deadline = time.monotonic() + 10
    while not all(t.done() for t in tasks) and time.monotonic() < deadline:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=0.5)
    assert all(t.done() for t in tasks), "a service did not stop"


@contextlib.asynccontextmanager
async def stack(tmp_path: Path, broker: Mosquitto, control: bool = True) -> AsyncIterator[Stack]:
    sim = make_bus("daly_classic", boards=1)
    tunnel_port = free_port()
    async with PtyServer(sim, tmp_path / "tty") as pty:
        # fmt: off
        cfg = Settings.model_validate({
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "heartbeat": 5},
            "control": {"enabled": control},
            "buses": [{"port": pty.port, "protocol": "daly_classic", "poll_interval": 0.3,
                       "timeout": 0.3, "sniff": True, "packs": [{"id": "p1", "address": 1}]}],
            "tunnel": {"host": "127.0.0.1", "port": tunnel_port},
            "api": {"public_read": "never"},
            "data_dir": str(tmp_path),
        })
        # fmt: on
        reader = Reader(cfg.buses[0], Backbone(cfg.mqtt, "reader-0"), control=control)
        tunnel = TunnelService(cfg, Backbone(cfg.mqtt, "tunnel"), tmp_path / "sessions.jsonl")
        store = PackStore()
        ctx = make_context(store, cfg, Backbone(cfg.mqtt, "api"), persist=False)
        app = create_app(store, ctx=ctx)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")  # in-process: port 0
        )
        tasks = [
            asyncio.create_task(serve_reader(reader)),
            asyncio.create_task(serve_tunnel(tunnel)),
            asyncio.create_task(server.serve()),
        ]
        try:
            deadline = time.monotonic() + 15
            while not ("p1" in store.states and "p1" in store.tunnels and server.started):
                assert time.monotonic() < deadline, "no state or tunnel status reached the API"
                await asyncio.sleep(0.05)
            api_port = server.servers[0].sockets[0].getsockname()[1]
            base = f"http://127.0.0.1:{api_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                yield Stack(http, sim, tunnel_port)
        finally:
            server.should_exit = True
            await asyncio.wait(tasks[2:], timeout=5)
            await stop(tasks)


async def login(http: httpx.AsyncClient) -> None:
    assert (await http.post("/api/auth/setup", json={"password": PASSWORD})).status_code == 204


async def test_tunnel_opens_shows_the_client_and_closes(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bmsgate_tunnel")
    async with stack(tmp_path, mosquitto) as st:
        http = st.http
        # reading needs a login here (public_read: never), changing always does
        assert (await http.get("/api/packs/p1/tunnel")).status_code == 401
        denied = await http.post("/api/packs/p1/tunnel", json={"action": "open"})
        assert denied.status_code == 401
        await login(http)
        closed = await http.get("/api/packs/p1/tunnel")
        assert closed.status_code == 200 and closed.json()["open"] is False
        bad = await http.post("/api/packs/p1/tunnel", json={"action": "close", "minutes": 3})
        assert bad.status_code == 400 and "takes no minutes" in bad.json()["detail"]
        both = {"action": "open", "idle_timeout": 30, "no_timeout": True}
        assert (await http.post("/api/packs/p1/tunnel", json=both)).status_code == 400
        assert (await http.post("/api/packs/p1/tunnel", json={"action": "x"})).status_code == 422
        assert (await http.get("/api/packs/..%2Fx/tunnel")).status_code in (404, 422)

        opened = await http.post(
            "/api/packs/p1/tunnel", json={"action": "open", "minutes": 5, "no_timeout": True}
        )
        assert opened.status_code == 200, opened.text
        body = opened.json()
        assert body["open"] and body["port"] == st.tunnel_port and body["idle_timeout"] is None
        assert 299 < body["window_left"] <= 300
        assert (
            "(no idle limit), asked by web API, the owner's session from 127.0.0.1" in caplog.text
        )

        reader, writer = await asyncio.open_connection("127.0.0.1", st.tunnel_port)
        writer.write(bytes.fromhex(SOC_REQUEST))
        await writer.drain()
        answer = await asyncio.wait_for(reader.readexactly(13), 5)
        assert answer[:3] == bytes.fromhex("a50190")
        deadline = time.monotonic() + 5
        while True:  # the tunnel service refreshes its status every second
            status = (await http.get("/api/packs/p1/tunnel")).json()
            if status["client"] and status["rx_bytes"] >= 13:
                break
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.2)
        assert status["client"].startswith("127.0.0.1:") and status["tx_bytes"] == 13
        assert status["uptime"] >= 0 and 0 < status["time_left"] <= 300

        shut = await http.post("/api/packs/p1/tunnel", json={"action": "close"})
        assert shut.status_code == 200 and shut.json()["open"] is False
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the client was dropped
        writer.close()


async def test_raw_frame_is_answered_and_decoded_and_the_sniffer_streams(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with stack(tmp_path, mosquitto) as st:
        http = st.http
        frame = {"data": " ".join(SOC_REQUEST[i : i + 2] for i in range(0, 26, 2))}
        assert (await http.post("/api/packs/p1/raw", json=frame)).status_code == 401
        await login(http)
        assert (await http.post("/api/packs/p1/raw", json={"data": "zz"})).status_code == 422
        unknown = await http.post("/api/packs/nope/raw", json=frame)
        assert unknown.status_code == 404

        got = await http.post("/api/packs/p1/raw", json=frame)
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["sent"] == SOC_REQUEST and body["answer"].startswith("a50190")
        assert body["error"] is None
        assert body["decoded"]["soc"] == pytest.approx(st.sim.boards[0].model.soc, abs=0.2)
        assert body["seconds"] < 3

        # polling resumed after the release: the sniffer shows the reader's own polls again
        frames: list[dict[str, Any]] = []
        async with http.stream("GET", "/api/sniff") as stream:
            assert stream.status_code == 200
            event = None
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "frame":
                    frames.append(json.loads(line[5:]))
                    if {f["direction"] for f in frames} >= {"to_bms", "from_bms"} and len(
                        frames
                    ) > 6:
                        break
        assert all(f["bus"] == "reader-0" for f in frames)
        assert any(f["decoded"] for f in frames if f["direction"] == "from_bms")


async def test_control_disabled_refuses_tunnel_and_raw_frames(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with stack(tmp_path, mosquitto, control=False) as st:
        await login(st.http)
        for path, body in (("tunnel", {"action": "open"}), ("raw", {"data": SOC_REQUEST})):
            got = await st.http.post(f"/api/packs/p1/{path}", json=body)
            assert got.status_code == 403 and "control" in got.json()["detail"]


async def test_settings_are_shown_and_downloaded_with_every_secret_masked() -> None:
    cfg = Settings.model_validate(
        {
            "mqtt": {"host": "127.0.0.1", "username": "u", "password": "mqtt-secret-1"},
            "buses": [{"port": "/dev/null", "protocol": "daly_classic", "packs": [{"id": "p1"}]}],
            "data_dir": "/tmp/x",
        }
    )
    async with app_client(PackStore(), cfg) as http:
        assert (await http.get("/api/settings")).status_code == 401
        assert (await http.get("/api/settings/download")).status_code == 401
        await login(http)
        shown = await http.get("/api/settings")
        assert shown.status_code == 200
        body = shown.json()
        assert body["mqtt"]["password"] == "********" and body["mqtt"]["username"] == "u"
        assert body["buses"][0]["packs"][0]["id"] == "p1"
        got = await http.get("/api/settings/download")
        assert (
            got.status_code == 200 and "bmsgate-settings.yaml" in got.headers["content-disposition"]
        )
        assert "mqtt-secret-1" not in got.text and "mqtt-secret-1" not in shown.text
        assert "password: '********'" in got.text or 'password: "********"' in got.text


def test_credentials_in_urls_are_masked_too() -> None:
    from bmsgate_common.config_file import mask_urls as masked

    data = {"a": ["mqtts://user:pw@broker:8883/x", "http://127.0.0.1:8086"], "n": 3}
    assert masked(data) == {
        "a": ["mqtts://********@broker:8883/x", "http://127.0.0.1:8086"],
        "n": 3,
    }

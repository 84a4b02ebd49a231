"""Gzip and cache headers from a real uvicorn server: pages, scripts, JSON and the event stream
(each event still arrives at once through the compression)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import zlib
from collections.abc import AsyncIterator

import httpx
import uvicorn

from bmsgate_api.app import create_app, make_context
from bmsgate_api.deps import Context
from bmsgate_api.store import PackStore
from bmsgate_api.views import pack_view
from bmsgate_common.models import Availability, PackState, utcnow
from bmsgate_common.settings import Settings

GZIP = {"Accept-Encoding": "gzip"}


def state(pack: str) -> PackState:
    cells = [3.3 + i / 1000 for i in range(16)]
    return PackState(
        pack=pack,
        name=pack.title(),
        protocol="jk_pb",
        ts=utcnow(),
        pack_voltage=52.9,
        current=-8.0,
        power=-423.0,
        soc=58.0,
        cell_voltages=cells,
        cell_count=16,
        nominal_capacity=100.0,
        charge_mos=True,
        discharge_mos=True,
    )


@contextlib.asynccontextmanager
async def served(store: PackStore) -> AsyncIterator[tuple[str, Context]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ctx = make_context(store, Settings(), None, persist=False)
    server = uvicorn.Server(
        uvicorn.Config(create_app(store, ctx=ctx), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}", ctx
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_pages_scripts_and_json_are_gzipped_and_static_files_carry_cache_headers() -> None:
    store = PackStore()
    store.states["garage"] = state("garage")
    store.availability["garage"] = Availability(pack="garage", state="online", ts=utcnow())
    async with served(store) as (base, _), httpx.AsyncClient(base_url=base) as http:
        for path, kind in (
            ("/", "text/html"),
            ("/status.js", "javascript"),
            ("/style.css", "text/css"),
            ("/api/overview", "application/json"),
            ("/api/protocols", "application/json"),
        ):
            got = await http.get(path, headers=GZIP)
            assert got.status_code == 200, (path, got.text[:200])
            assert kind in got.headers["content-type"]
            assert got.headers.get("content-encoding") == "gzip", path
            assert "accept-encoding" in got.headers["vary"].lower()
            plain = await http.get(path, headers={"Accept-Encoding": "identity"})
            assert "content-encoding" not in plain.headers
            if not path.startswith("/api"):  # the overview's ages move on
                assert plain.content == got.content
        # own files: kept, but asked for each time (an upgrade changes them under the same name)
        page = await http.get("/index.html", headers=GZIP)
        assert page.headers["cache-control"] == "no-cache" and page.headers["etag"]
        again = await http.get("/index.html", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304 and again.headers["cache-control"] == "no-cache"
        uplot = await http.get("/vendor/uplot/uPlot.iife.min.js", headers=GZIP)
        assert uplot.status_code == 200 and uplot.headers["content-encoding"] == "gzip"
        assert uplot.headers["cache-control"] == "public, max-age=86400"
        assert "cache-control" not in (await http.get("/api/overview")).headers


async def test_the_event_stream_is_gzipped_and_each_event_arrives_at_once() -> None:
    store = PackStore()
    store.states["garage"] = state("garage")
    store.availability["garage"] = Availability(pack="garage", state="online", ts=utcnow())
    async with (
        served(store) as (base, ctx),
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", "/api/events", headers=GZIP) as stream,
    ):
        assert stream.headers["content-encoding"] == "gzip"
        assert stream.headers["content-type"].startswith("text/event-stream")
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        raw = stream.aiter_raw()
        text, wire = "", 0

        async def until(marker: str) -> float:
            nonlocal text, wire
            started = time.monotonic()
            async with asyncio.timeout(5):
                while marker not in text:
                    chunk = await anext(raw)
                    wire += len(chunk)
                    text += inflate.decompress(chunk).decode()
            return time.monotonic() - started

        await until('"pack":"garage"')  # the current view first
        assert text.startswith("event: beat")
        # a new state: its event comes through the compressor at once, not when a buffer fills
        newer = state("garage").model_copy(update={"name": "Garage again"})
        store.states["garage"] = newer
        ctx.hub.publish("pack", pack_view(store, "garage", utcnow()))
        assert await until("Garage again") < 2
        assert wire < len(text.encode()) / 2  # the repeated JSON shrinks

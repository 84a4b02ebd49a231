"""The web UI behind a path-prefix proxy, as Home Assistant's ingress serves it (the add-on):
every page, its API calls, the live events and the chart library reach bmsgate through the
prefix, and nothing is asked for outside it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bmsgate.broker import free_port
from bmsgate_common.version import VERSION
from tests.support.browser import set_password, shot, start_garage_stack, watch
from tests.support.procs import (
    Mosquitto,
    Proc,
    wait_until,
)

pytestmark = pytest.mark.integration
PREFIX = "/api/hassio_ingress/3b8c5e0f1a"  # the shape of the Supervisor's ingress path
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}


class IngressProxy:
    """Strips PREFIX and forwards to the API with X-Forwarded-* as the Supervisor does."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.outside: list[str] = []  # requests that missed the prefix (Home Assistant's own paths)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.forward)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def forward(self, request: web.Request) -> web.StreamResponse:
        if not request.path.startswith(PREFIX + "/"):
            self.outside.append(request.path)
            return web.Response(status=404, text="not bmsgate's")
        url = self.upstream + request.path_qs[len(PREFIX) :]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        headers |= {
            "X-Forwarded-For": "192.168.1.50",
            "X-Forwarded-Host": request.host,
            "X-Forwarded-Proto": "http",
            "X-Ingress-Path": PREFIX,
        }
        async with self.session.request(
            request.method, url, headers=headers, data=await request.read(), allow_redirects=False
        ) as up:
            answer = web.StreamResponse(status=up.status)
            for key, value in up.headers.items():
                if key.lower() not in HOP:
                    answer.headers.add(key, value)
            await answer.prepare(request)
            async for chunk in up.content.iter_any():  # event streams go through as they come
                await answer.write(chunk)
            return answer

    def __enter__(self) -> IngressProxy:
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *_: Any) -> None:
        async def stop() -> None:
            await self.runner.cleanup()
            await self.session.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def proxied(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> Iterator[tuple[str, IngressProxy]]:
    base = start_garage_stack(
        tmp_path,
        mosquitto,
        procs,
        # public_read as by default; the add-on trusts the ingress gateway
        api={"public_read": "local", "mdns": False, "trusted_proxies": ["127.0.0.1"]},
    )
    with IngressProxy(base) as proxy:
        yield f"http://127.0.0.1:{proxy.port}{PREFIX}", proxy


def test_the_web_ui_works_under_the_ingress_path(
    proxied: tuple[str, IngressProxy], browser_context: Any
) -> None:
    from playwright.sync_api import expect

    base, proxy = proxied
    page = browser_context.new_page()
    problems = watch(page)
    page.goto(f"{base}/")
    expect(page.locator("#heading")).to_have_text("Set the password")
    assert page.url.startswith(f"{base}/login.html")
    set_password(page, "ingress-pass-1")  # a POST through the proxy: the forwarded host is believed
    card = page.locator('.card[data-pack="garage"]:not(.offline)')
    expect(card.locator('[data-field="soc"]')).to_contain_text("%")
    first = card.locator(".age[data-ts]").get_attribute("data-ts")
    wait_until(lambda: card.locator(".age[data-ts]").get_attribute("data-ts") != first, 10)  # live
    expect(page.locator("footer.about #version")).to_have_text(VERSION)
    page.goto(f"{base}/battery.html")
    assert page.evaluate("typeof uPlot") == "function"  # the chart library, through the prefix
    expect(page.locator("canvas").first).to_be_visible(timeout=15_000)
    shot(page, "ingress-battery")
    assert proxy.outside == [] and problems == []

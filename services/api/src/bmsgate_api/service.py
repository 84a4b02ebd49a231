"""Runs the API: uvicorn embedded in the service's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from bmsgate_common.logs import hold_secrets
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import Settings
from bmsgate_common.timezones import site_zone

from .app import create_app, make_context
from .connections import BACKLOG, Crowd, connection_limit, guarded, raise_file_limit
from .mdns import announced
from .store import PackStore

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service's until_signal owns SIGTERM/SIGINT.

    Its loop wakes once a second, not ten times: the work of a tick (the Date header, whose
    resolution is a second) is done every tenth; ``stop()`` wakes it at once.
    """

    TICK = 1.0  # [s]

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # a multiple of 10: the Date header is renewed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.TICK):
                    await self._wake.wait()

    def stop(self) -> None:
        """End serve() as soon as its loop sees it, as a signal would."""
        self.should_exit = True
        wake = getattr(self, "_wake", None)
        if wake is not None:
            wake.set()


def _quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """One log line per minute, not a traceback per try, while accept() lacks descriptors."""
    previous = loop.get_exception_handler()
    last = float("-inf")

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal last
        if context.get("message") != "socket.accept() out of system resource":
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        if loop.time() - last >= 60:
            log.warning("cannot accept HTTP connections: %s", context.get("exception"))
        last = loop.time()

    loop.set_exception_handler(handler)


def _password_material(cfg: Settings, current: str | None) -> list[str]:
    """The web password's hash in force, and a password file's text (it may be the password)."""
    found = [current] if current else []
    if cfg.api.password_file is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            found.append(cfg.api.password_file.read_text(encoding="utf-8").strip())
    return found


async def run_api(
    cfg: Settings, config_file: Path | None = None, *, supervised: bool = False
) -> None:
    """Serve the API until cancelled, then shut down within 2 s.

    ``config_file`` is the file the settings and setup pages edit (None: they cannot write);
    ``supervised``: `bmsgate run` applies a written file itself.
    """
    store = PackStore(stale_after=cfg.stale_after, tz=site_zone(cfg))
    ctx = make_context(store, cfg, Backbone(cfg.mqtt, "api"), persist=True)
    ctx.config_file = config_file
    ctx.supervised = supervised
    hold_secrets(_password_material(cfg, ctx.passwords.current()))
    if ctx.passwords.current() is None:
        log.warning(
            "no password is set: the first visit to http://<this host>:%d/ asks for one",
            cfg.api.port,
        )
    crowd = Crowd(
        connection_limit(cfg.api.max_connections, raise_file_limit()), cfg.api.header_timeout
    )
    _quiet_accept_errors(asyncio.get_running_loop())
    server = _Server(
        uvicorn.Config(
            create_app(store, ctx=ctx),
            host=cfg.api.host,
            port=cfg.api.port,
            http=guarded(AutoHTTPProtocol, crowd),
            backlog=BACKLOG,
            log_level="warning",
            log_config=None,  # its lines go through bmsgate's handler: one format, secrets masked
            proxy_headers=False,  # guard.py believes only api.trusted_proxies
            timeout_graceful_shutdown=2,
            lifespan="on",
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        async with announced(cfg.api):  # http://<api.mdns_name>.local/
            await asyncio.shield(task)
    except asyncio.CancelledError:
        server.stop()
        await task
        raise
    if server.started is False:
        raise OSError(f"the API could not listen on {cfg.api.host}:{cfg.api.port}")

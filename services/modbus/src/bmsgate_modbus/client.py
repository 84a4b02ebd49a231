"""Client mode: write chosen values into other Modbus TCP servers (function 16).

Each target has its own task and its own connection, so a slow or dead server delays nobody
else; a new state while a write is under way only marks the target due again (latest wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from bmsgate_common.settings import ModbusPushTarget

from .logic import Quantities, push_writes

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0  # [s] between reconnect attempts to a dead server


class PushTarget:
    """Keeps one remote server up to date with the values its configuration names."""

    def __init__(
        self,
        cfg: ModbusPushTarget,
        quantities: Callable[[], Mapping[str, Quantities | None]],
    ) -> None:
        """Write ``cfg.values`` taken from ``quantities()`` (pack -> its current quantities)."""
        self.cfg = cfg
        self.name = f"{cfg.host}:{cfg.port}/{cfg.unit}"
        self.packs = {v.pack for v in cfg.values}
        self._quantities = quantities
        self._due = asyncio.Event()
        self._client: AsyncModbusTcpClient | None = None
        self.writes = 0
        self.failures = 0
        self.up = False
        self.last_error = ""

    def notify(self, packs: set[str]) -> None:
        """A new state of ``packs`` arrived; in every-state mode, write soon (never blocks)."""
        if self.cfg.interval == 0 and not self.packs.isdisjoint(packs):
            self._due.set()

    async def _wait_until_due(self) -> None:
        if self.cfg.interval > 0:
            await asyncio.sleep(self.cfg.interval)
        else:
            await self._due.wait()
        self._due.clear()

    async def push_once(self) -> bool:
        """Connect if needed and write every value once; False when the server failed."""
        writes = push_writes(self.cfg, self._quantities())
        if not writes:
            return True
        try:
            client = await self._connected()
            for address, regs in writes:
                async with asyncio.timeout(self.cfg.timeout * 2):
                    reply = await client.write_registers(address, regs, device_id=self.cfg.unit)
                if reply.isError():
                    # the server answered: keep the connection, report what it refused
                    log.warning("push %s: register %d refused: %s", self.name, address, reply)
                    self.failures += 1
                    continue
                self.writes += 1
        except (ModbusException, OSError, TimeoutError) as err:
            self.failures += 1
            self.last_error = str(err) or type(err).__name__
            self.up = False
            self._close()
            return False
        if not self.up:
            log.info("push %s connected", self.name)
        self.up = True
        return True

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._close()
        # reconnects are ours (with backoff): pymodbus's own would retry behind our back
        client = AsyncModbusTcpClient(
            self.cfg.host,
            port=self.cfg.port,
            timeout=self.cfg.timeout,
            retries=0,
            reconnect_delay=0,
        )
        self._client = client
        async with asyncio.timeout(self.cfg.timeout * 2):
            connected = await client.connect()
        if not connected:
            raise ConnectionError(f"cannot connect to {self.name}")
        return client

    def _close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):  # the socket of a server that went away
                self._client.close()
            self._client = None

    async def run(self) -> None:
        """Write on every due moment until cancelled; back off while the server is away."""
        backoff = 0.0
        first = True
        try:
            while True:
                if not first:
                    await self._wait_until_due()
                first = False
                if await self.push_once():
                    backoff = 0.0
                    continue
                if backoff == 0.0:
                    log.warning(
                        "push %s unreachable (%s); retrying with backoff",
                        self.name,
                        self.last_error,
                    )
                backoff = min(MAX_BACKOFF, max(0.5, backoff * 2))
                await asyncio.sleep(backoff)
                self._due.set()  # try again with the latest values
        finally:
            self._close()

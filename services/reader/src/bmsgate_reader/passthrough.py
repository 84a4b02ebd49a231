"""Passthrough and sniffer: the original BMS gadget keeps working next to bmsgate.

The gadget (DALY Bluetooth/WiFi dongle, JK display) is plugged into a second serial port. What it
sends is cut into requests by silence (protocol-agnostic: a request ends when the gadget pauses
for a few character times), relayed to the BMS between bmsgate's own polls through the same
line lock, and the BMS's answer goes back to the gadget. The sniffer publishes every frame seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

import serial
from pydantic import ValidationError

from bmsgate_bms.errors import FrameError
from bmsgate_bms.registry import protocol
from bmsgate_common import topics
from bmsgate_common.models import SniffedFrame, utcnow
from bmsgate_common.mqtt import Backbone
from bmsgate_serial.link import LinkDown, SerialLink, open_serial

log = logging.getLogger(__name__)
REOPEN_DELAY = 2.0  # [s] between attempts to reopen the gadget's port


class _GadgetPort(asyncio.Protocol):
    def __init__(self, received: Callable[[bytes], None], lost: asyncio.Event) -> None:
        self.received = received
        self.lost = lost

    def data_received(self, data: bytes) -> None:
        self.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


class Passthrough:
    """Relays a gadget on ``port`` to the BMS on ``link``."""

    def __init__(self, port: str, baudrate: int, link: SerialLink) -> None:
        self.port = port
        self.baudrate = baudrate
        self.link = link
        self.relayed = 0
        self._buffer = bytearray()
        self._arrived = asyncio.Event()

    def _received(self, data: bytes) -> None:
        self._buffer += data
        self._arrived.set()

    async def _next_request(self) -> bytes:
        """Bytes from the gadget up to its first pause of ``link.gap`` seconds."""
        await self._arrived.wait()
        while True:
            self._arrived.clear()
            try:
                async with asyncio.timeout(self.link.gap):
                    await self._arrived.wait()
            except TimeoutError:
                break
        request, self._buffer = bytes(self._buffer), bytearray()
        return request

    async def run(self) -> None:
        """Relay forever; reopen the gadget's port when it goes away."""
        while True:
            lost = asyncio.Event()
            try:
                transport = await open_serial(
                    lambda: _GadgetPort(self._received, lost),  # noqa: B023 - used at once
                    self.port,
                    self.baudrate,
                )
            except (OSError, serial.SerialException) as err:
                log.warning("passthrough port %s: %s; retrying", self.port, err)
                await asyncio.sleep(REOPEN_DELAY)
                continue
            log.info("passthrough: gadget on %s relayed to %s", self.port, self.link.port)
            try:
                while not lost.is_set():
                    request = await self._next_request()
                    if not request:
                        continue
                    try:
                        answer = await self.link.relay(request)
                    except LinkDown as err:
                        log.debug("passthrough: %s", err)
                        continue
                    if answer:
                        transport.write(answer)
                    self.relayed += 1
            finally:
                transport.close()


REQUESTS: Final = frozenset(("to_bms", "gadget_to_bms"))  # the master's side of the line


class Sniffer:
    """Publishes the line's traffic with what the protocol decoder makes of each frame."""

    def __init__(
        self,
        backbone: Backbone,
        bus: str,
        protocol_name: str,
        context: dict[str, Any],
        enabled: bool = True,
    ):
        self.backbone = backbone
        self.bus = bus
        self.module = protocol(protocol_name)
        self.context = context
        self.enabled = enabled  # bus.sniff at start; a SniffSet on the backbone changes it
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=1000)
        self.dropped = 0

    def see(self, direction: str, data: bytes) -> None:
        """Called by the link for each request and frame; never blocks the line."""
        if not self.enabled:
            return
        try:
            self.queue.put_nowait((direction, data))
        except asyncio.QueueFull:
            self.dropped += 1  # the broker is slower than the line: count, never stall polling

    def describe(self, direction: str, data: bytes) -> SniffedFrame:
        """A sniffed frame with its decoding: requests as requests, answers as answers."""
        decoded: dict[str, Any] | None = None
        error = None
        decoder = self.module.decode_request if direction in REQUESTS else self.module.decode_hex
        try:
            decoded = decoder(data)
        except (FrameError, ValueError) as err:
            error = str(err)
        fields = dict(bus=self.bus, ts=utcnow(), direction=direction, data=data.hex(), error=error)
        try:
            return SniffedFrame.model_validate(fields | {"decoded": decoded})
        except ValidationError:  # nested extras a flat message cannot carry: keep the bytes
            return SniffedFrame.model_validate(fields | {"error": error or "decoded, not shown"})

    async def run(self) -> None:
        """Publish what the link saw, in order."""
        while True:
            direction, data = await self.queue.get()
            await self.backbone.publish(topics.SNIFF, self.bus, self.describe(direction, data))

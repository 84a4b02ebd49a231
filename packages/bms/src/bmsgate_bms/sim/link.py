"""An in-process Link straight into a SimBus: drivers meet simulated boards with no I/O at all."""

from __future__ import annotations

import asyncio

from ..errors import LinkTimeout
from ..link import FrameCollector, Framer
from .bus import SimBus


class SimLink:
    """A null modem between a driver and a SimBus (faults apply; timing does not)."""

    def __init__(self, bus: SimBus) -> None:
        self.bus = bus
        self.junk = 0

    async def exchange(
        self, request: bytes, framer: Framer, count: int = 1, *, max_count: int | None = None
    ) -> list[bytes]:
        """Send ``request`` to the bus and frame what it answers."""
        await asyncio.sleep(0)
        collector = FrameCollector(request, framer)
        frames: list[bytes] = []
        for _delay, chunk in self.bus.feed(request):
            frames += collector.feed(chunk)
        self.junk += collector.junk
        limit = max_count if max_count is not None else count
        if len(frames) < count:
            raise LinkTimeout(f"{len(frames)} of {count} frames answered")
        return frames[:limit]

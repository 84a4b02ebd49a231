"""The contract between a driver and the wire: a Link exchanges a request for framed replies.

A Framer finds frames in received bytes: it returns ``(consumed, frame)``. ``frame`` is a complete
frame that passed framing and checksum checks; ``(0, None)`` means "need more bytes"; ``(n, None)``
means the first n bytes are junk to drop. Framers are pure; the serial link in the reader and the
simulator's tests implement ``Link``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Framer = Callable[[bytes], tuple[int, bytes | None]]


class Link(Protocol):
    """A half-duplex line to one or more BMS."""

    async def exchange(
        self, request: bytes, framer: Framer, count: int = 1, *, max_count: int | None = None
    ) -> list[bytes]:
        """Send ``request``; return ``count`` frames (up to ``max_count`` if more arrive at once).

        Raises LinkTimeout when fewer than ``count`` valid frames arrive in time.
        """
        ...


class FrameCollector:
    """Pure receive logic shared by every Link: echo removal, junk counting, framing.

    Feed it the bytes that arrive after ``request`` was sent; it drops an echo of the request
    (RS485 adapters without echo suppression, or a second master), drops junk and returns the
    frames the framer finds.
    """

    def __init__(self, request: bytes, framer: Framer) -> None:
        self.request = request
        self.framer = framer
        self.buffer = bytearray()
        self.junk = 0  # bytes dropped that were neither an echo nor part of a frame
        self.echoes = 0
        self._echo_checked = not request  # no request (listening): nothing can echo

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete frames found so far."""
        self.buffer += data
        frames: list[bytes] = []
        while self.buffer:
            if not self._echo_checked:
                size = min(len(self.buffer), len(self.request))
                if bytes(self.buffer[:size]) == self.request[:size]:
                    if size < len(self.request):
                        break  # maybe an echo: wait for the rest of it
                    del self.buffer[:size]
                    self.echoes += 1
                    continue
                self._echo_checked = True
            used, frame = self.framer(bytes(self.buffer))
            if used == 0:
                break
            del self.buffer[:used]
            if frame is None:
                self.junk += used
            else:
                frames.append(frame)
        return frames

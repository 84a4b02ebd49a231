"""A simulated RS485 bus (or UART) of one or more boards, served on a pseudo-terminal or TCP.

The bus collects request bytes, lets the board whose framer recognises a request answer it, and
writes the answer back paced at the baud rate after the board's answer delay. Faults are injected
here, on the wire, so every protocol gets them the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tty
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .model import PackModel

log = logging.getLogger(__name__)

Fault = Literal[
    "none", "silent", "garbage", "bad_checksum", "split", "glued", "echo", "slow", "sleep"
]
FAULTS: tuple[Fault, ...] = (
    "none",
    "silent",
    "garbage",
    "bad_checksum",
    "split",
    "glued",
    "echo",
    "slow",
    "sleep",
)


class Board(Protocol):
    """One simulated BMS on the bus."""

    address: int
    model: PackModel

    def request_framer(self, buf: bytes) -> tuple[int, bytes | None]:
        """Find a complete request at the start of ``buf`` (see bmsgate_bms.link.Framer)."""
        ...

    def answer(self, request: bytes) -> list[bytes] | None:
        """The frames this board sends for ``request``; None when the request is not for it."""
        ...


@dataclass
class Faults:
    """What goes wrong on the wire. ``mode`` applies to every answer until changed."""

    mode: Fault = "none"
    slow_delay: float = 2.0  # [s] extra delay in "slow" mode

    def apply(self, request: bytes, frames: list[bytes]) -> list[tuple[float, bytes]]:
        """Turn an answer into timed writes ``(delay before, bytes)`` under the current fault."""
        data = b"".join(frames)
        if self.mode in ("silent", "sleep") or not data:
            return []
        if self.mode == "garbage":
            return [(0.0, random.randbytes(len(data)))]
        if self.mode == "bad_checksum":
            return [(0.0, data[:-1] + bytes(((data[-1] + 1) & 0xFF,)))]
        if self.mode == "split":
            cut = max(1, len(data) // 2)
            return [(0.0, data[:cut]), (0.02, data[cut:])]
        if self.mode == "glued":
            return [(0.0, data + data)]
        if self.mode == "echo":
            return [(0.0, request + data)]
        if self.mode == "slow":
            return [(self.slow_delay, data)]
        return [(0.0, f) for f in frames]


@dataclass
class SimBus:
    """Boards sharing one line, with timing and faults."""

    boards: Sequence[Board]
    baudrate: int = 9600
    answer_delay: float = 0.005  # [s] the BMS's own time to answer
    pace: bool = False  # write at the baud rate (benchmarks) rather than at once
    faults: Faults = field(default_factory=Faults)
    requests: int = 0
    heard: Counter[bytes] = field(default_factory=Counter)  # each request, as often as it came
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[tuple[float, bytes]]:
        """Take received bytes; return the timed writes of every answer they complete."""
        self._buf += data
        writes: list[tuple[float, bytes]] = []
        while self._buf:
            request, used = self._next_request()
            if used == 0:
                break
            del self._buf[:used]
            if request is None:
                continue
            self.requests += 1
            self.heard[request] += 1
            for board in self.boards:
                frames = board.answer(request)
                if frames is not None:
                    timed = self.faults.apply(request, frames)
                    if timed:
                        first_delay, first = timed[0]
                        # the board hears the request only once it is on the wire
                        on_wire = self.wire_time(len(request)) if self.pace else 0.0
                        timed[0] = (first_delay + self.answer_delay + on_wire, first)
                    writes += timed
                    break
        return writes

    def _next_request(self) -> tuple[bytes | None, int]:
        """The first complete request in the buffer, or junk to drop, or (None, 0) to wait."""
        buf = bytes(self._buf)
        shortest_junk = len(buf)
        for board in self.boards:
            used, request = board.request_framer(buf)
            if request is not None:
                return request, used
            # 0: some board waits for more bytes, so nothing may be dropped yet
            shortest_junk = min(shortest_junk, used) if used else 0
        return None, shortest_junk

    def wire_time(self, size: int) -> float:
        """Seconds ``size`` bytes take on the line (8N1: 10 bits a byte)."""
        return size * 10 / self.baudrate

    def step(self, dt: float) -> None:
        """Advance every board's pack model."""
        for board in self.boards:
            board.model.step(dt)

    async def _write_all(self, writes: list[tuple[float, bytes]], write: _Writer) -> None:
        """Write each chunk once its delay (and, paced, its time on the wire) has passed.

        Deadlines are absolute, so the scheduler's lateness on one chunk is not added to the next.
        """
        loop = asyncio.get_running_loop()
        due = loop.time()
        for delay, chunk in writes:
            due += delay + (self.wire_time(len(chunk)) if self.pace else 0.0)
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            write(chunk)

    async def run_time(self, speed: float = 1.0, tick: float = 1.0) -> None:
        """Advance the models in real time (``speed`` x faster) until cancelled."""
        while True:
            await asyncio.sleep(tick)
            self.step(tick * speed)


class _Writer(Protocol):
    def __call__(self, data: bytes) -> None: ...


class PtyServer:
    """Serves a SimBus on a pseudo-terminal; ``port`` is the path a reader opens.

    With ``link``, the port is a symlink of that name, removed on close: /dev/pts numbers are
    reused at once, and a reader still retrying a vanished number would otherwise open
    whatever pty gets it next.
    """

    def __init__(self, bus: SimBus, link: str | os.PathLike[str] | None = None) -> None:
        self.bus = bus
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        self.device = os.ttyname(self._slave)
        self._link = os.fspath(link) if link is not None else None
        if self._link is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._link)
            os.symlink(self.device, self._link)
        self.port = self._link or self.device
        self._tasks: set[asyncio.Task[None]] = set()
        self.received = 0  # bytes the reader sent

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # no reader on the other end right now
            os.write(self._master, data)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except OSError:
            return  # the slave side was closed; a new open reconnects it
        self.received += len(data)
        writes = self.bus.feed(data)
        if writes:
            task = asyncio.get_running_loop().create_task(self.bus._write_all(writes, self._write))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def send(self, writes: list[tuple[float, bytes]]) -> asyncio.Task[None]:
        """Put timed writes on the line unasked (a bus master's traffic, for a listener)."""
        task = asyncio.get_running_loop().create_task(self.bus._write_all(writes, self._write))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def doze(self) -> None:
        """Stop reading the line, as a board asleep: what is sent waits in the pty's buffers."""
        asyncio.get_running_loop().remove_reader(self._master)

    def wake(self) -> None:
        """Read the line again, first whatever waited while dozing."""
        asyncio.get_running_loop().add_reader(self._master, self._on_readable)

    async def __aenter__(self) -> PtyServer:
        self.wake()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop answering and release the pty."""
        with contextlib.suppress(RuntimeError):  # closed outside the loop, or after it ended
            asyncio.get_running_loop().remove_reader(self._master)
        for task in self._tasks:
            task.cancel()
        if self._link is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._link)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class TcpServer:
    """Serves a SimBus on TCP (``socket://host:port`` for a reader, or a virtual COM port)."""

    def __init__(self, bus: SimBus, host: str = "127.0.0.1", port: int = 0) -> None:
        self.bus = bus
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(4096):
                await self.bus._write_all(self.bus.feed(data), writer.write)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> TcpServer:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

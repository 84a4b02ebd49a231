"""The serial edge: a Link over one port (pyserial-asyncio-fast), reopened when it comes back.

RS485 is half-duplex, so one lock serialises every exchange on the port: requests never overlap,
whether they come from the poll loop or a command. Input left over from an earlier answer is
discarded before each request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

import serial
import serial_asyncio_fast

from bmsgate_bms.errors import LinkTimeout
from bmsgate_bms.link import FrameCollector, Framer
from bmsgate_common.ports import device_problem

log = logging.getLogger(__name__)


BY_ID_DIR = Path("/dev/serial/by-id")  # udev's stable names: adapter serial number and port
ANSWERS_KEPT = 64  # frames: more than one snapshot of any protocol needs


def by_id_name(device: str, by_id_dir: Path = BY_ID_DIR) -> str | None:
    """The by-id name whose link points at ``device``, if udev made one."""
    try:
        links = list(by_id_dir.iterdir())
    except OSError:
        return None
    for link in links:
        if os.path.realpath(link) == device:
            return link.name
    return None


class LinkDown(OSError):
    """The port cannot be opened or was lost (adapter unplugged, wrong path, busy)."""


class _ThreadTransport(asyncio.Transport):
    """A pyserial port read by a thread, for URL handlers without a file descriptor.

    pyserial's ``rfc2217://`` client (RS485-to-Ethernet gateways in RFC 2217 mode: EW11, USR,
    Waveshare) keeps its socket behind a Telnet filter thread and has no write timeout, so
    pyserial-asyncio-fast cannot drive it; this hands its bytes to the event loop instead.
    """

    def __init__(
        self, port: serial.SerialBase, protocol: asyncio.Protocol, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__()
        self._port, self._protocol, self._loop = port, protocol, loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name=f"read {port.port}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        error: Exception | None = None
        while not self._stop.is_set():
            try:
                data = self._port.read(self._port.in_waiting or 1)  # returns after its timeout
            except (OSError, serial.SerialException) as err:
                error = err
                break
            if data:
                self._loop.call_soon_threadsafe(self._protocol.data_received, data)
        with contextlib.suppress(OSError, serial.SerialException):
            self._port.close()
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody to tell
            self._loop.call_soon_threadsafe(self._protocol.connection_lost, error)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send at once: a request is a few hundred bytes at most."""
        try:
            self._port.write(bytes(data))
        except (OSError, serial.SerialException) as err:
            self._stop.set()
            log.debug("write to %s failed: %s", self._port.port, err)

    def close(self) -> None:
        """Stop the reading thread; it closes the port and reports the connection lost."""
        self._stop.set()

    def is_closing(self) -> bool:
        """Whether close() was called or the port failed."""
        return self._stop.is_set()


THREADED_SCHEMES: Final = ("rfc2217://",)  # URL handlers pyserial-asyncio-fast cannot drive


async def _open_threaded(url: str, baudrate: int, protocol: asyncio.Protocol) -> asyncio.Transport:
    loop = asyncio.get_running_loop()
    port = await loop.run_in_executor(
        None, lambda: serial.serial_for_url(url, baudrate=baudrate, timeout=0.05)
    )
    transport = _ThreadTransport(port, protocol, loop)
    protocol.connection_made(transport)
    return transport


async def open_serial(
    protocol_factory: Callable[[], asyncio.Protocol], port: str, baudrate: int
) -> asyncio.Transport:
    """Open ``port`` for ``protocol_factory``: the one place bmsgate hands a port to pyserial.

    A port that is neither a serial device nor socket:// / rfc2217:// is refused here too (a
    pyserial URL handler such as spy:// would write files), whatever let it through.
    """
    problem = device_problem(port)
    if problem:
        raise LinkDown(f"cannot open serial port {port}: {problem}")
    if port.startswith(THREADED_SCHEMES):
        return await _open_threaded(port, baudrate, protocol_factory())
    transport, _ = await serial_asyncio_fast.create_serial_connection(
        asyncio.get_running_loop(), protocol_factory, port, baudrate=baudrate
    )
    return transport


class _Receiver(asyncio.Protocol):
    def __init__(self, link: SerialLink) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        if self.link.raw_sink is not None:
            self.link.raw_sink(data)  # leased: bytes go to the lease holder, not to a poll
            return
        self.link._rx += data
        self.link._arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.link._on_lost(exc)


class SerialLink:
    """A Link to the BMS on one serial port (``/dev/...``, ``socket://`` or ``rfc2217://``)."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        timeout: float = 0.5,
        by_id_dir: Path = BY_ID_DIR,
    ) -> None:
        self.port = port
        self.by_id_dir = by_id_dir
        self.identity: str | None = None  # the adapter's /dev/serial/by-id name, once seen
        self.device: str | None = None  # what the port path resolved to when last opened
        self.baudrate = baudrate
        self.timeout = timeout  # [s] of silence before a request counts as unanswered
        # [s] of silence that ends a multi-frame answer: 4 character times plus scheduling slack
        self.gap = 0.015 + 40 / baudrate
        self._lock = asyncio.Lock()
        self._transport: asyncio.Transport | None = None
        self._rx = bytearray()
        self._arrived = asyncio.Event()
        self._closed = asyncio.Event()
        self.junk = 0  # bytes dropped that belonged to no frame
        self.echoes = 0
        self.raw_sink: Callable[[bytes], None] | None = None  # set while the line is leased
        # sees every request and frame on the line, e.g. ("to_bms", b"..."): the sniffer
        self.monitor: Callable[[str, bytes], None] | None = None
        self.answers: list[bytes] = []  # frames received since the reader last cleared it

    @property
    def is_open(self) -> bool:
        """Whether the port is open right now."""
        return self._transport is not None

    def _target(self) -> str:
        """The path to open: once the adapter's by-id name is known, only that adapter.

        A USB adapter replugged may come back as another ttyUSB number, and the old number may
        then belong to a different adapter (another BMS): following the by-id name avoids both.
        """
        if self.identity is None:
            return self.port
        by_id = self.by_id_dir / self.identity
        if not by_id.exists():
            raise LinkDown(
                f"cannot open serial port {self.port}: adapter {self.identity} is unplugged"
            )
        return os.path.realpath(by_id)

    def _remember(self, path: str) -> str:
        """Note what was opened; the adapter's by-id name the first time. Returns a log note."""
        self.device = os.path.realpath(path)
        self.identity = self.identity or by_id_name(self.device, self.by_id_dir)
        return "" if self.device == os.path.realpath(self.port) else f" (adapter now {path})"

    async def open(self) -> None:
        """Open the port; LinkDown names the port and the reason."""
        path = self._target()
        try:
            transport = await open_serial(lambda: _Receiver(self), path, self.baudrate)
        except LinkDown:
            raise
        except (OSError, serial.SerialException, ValueError) as err:
            raise LinkDown(f"cannot open serial port {self.port}: {err}") from err
        self._transport = transport
        self._closed.clear()
        log.info("opened %s%s at %d baud", self.port, self._remember(path), self.baudrate)

    def _on_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            log.warning("lost serial port %s%s", self.port, f": {exc}" if exc else "")
        self._transport = None
        self._arrived.set()
        self._closed.set()

    async def close(self) -> None:
        """Close the port and wait until it is really closed.

        pyserial closes in an executor; a descriptor closed late could by then be another port's.
        """
        if self._transport is not None:
            transport, self._transport = self._transport, None
            transport.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._closed.wait()

    @contextlib.asynccontextmanager
    async def leased(self, sink: Callable[[bytes], None]) -> AsyncIterator[None]:
        """Hold the line for raw traffic: no exchange runs, and received bytes go to ``sink``."""
        async with self._lock:
            if self._transport is None:
                await self.open()
            self.raw_sink = sink
            try:
                yield
            finally:
                self.raw_sink = None
                self._rx.clear()

    def raw_write(self, data: bytes) -> None:
        """Send bytes on a leased line."""
        if self.raw_sink is None:
            raise RuntimeError("raw_write needs the line leased")
        if self._transport is None:
            raise LinkDown(f"serial port {self.port} went away")
        self._transport.write(data)

    async def _wait(self, until: float) -> bool:
        """Wait for bytes until the monotonic deadline; False on timeout."""
        self._arrived.clear()
        remaining = until - time.monotonic()
        if remaining <= 0:
            return False
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as the wait ends, and a stopping reader would then keep polling
        try:
            async with asyncio.timeout(remaining):
                await self._arrived.wait()
        except TimeoutError:
            return False
        return True

    async def exchange(
        self, request: bytes, framer: Framer, count: int = 1, *, max_count: int | None = None
    ) -> list[bytes]:
        """Send ``request``; return ``count`` frames (up to ``max_count`` sent back to back)."""
        async with self._lock:
            if self._transport is None:
                await self.open()
            assert self._transport is not None
            self._rx.clear()  # stale input from an earlier, late answer
            collector = FrameCollector(request, framer)
            self._transport.write(request)
            if self.monitor:
                self.monitor("to_bms", request)
            frames: list[bytes] = []
            limit = max_count or count
            deadline = time.monotonic() + self.timeout
            try:
                while len(frames) < limit:
                    if self._rx:
                        data = bytes(self._rx)
                        self._rx.clear()
                        frames += collector.feed(data)
                        continue
                    if self._transport is None:
                        raise LinkDown(f"serial port {self.port} went away")
                    if len(frames) >= count:
                        deadline = min(deadline, time.monotonic() + self.gap)
                    if not await self._wait(deadline):
                        break
            finally:
                self.junk += collector.junk
                self.echoes += collector.echoes
            del self.answers[:-ANSWERS_KEPT]
            self.answers += frames
            if self.monitor:
                for frame in frames:
                    self.monitor("from_bms", frame)
            if len(frames) < count:
                self._flush()
                detail = f", {collector.junk} bytes of junk" if collector.junk else ""
                raise LinkTimeout(f"{len(frames)} of {count} frames in {self.timeout} s{detail}")
            return frames[:limit]

    async def hear(self, collector: FrameCollector, within: float) -> list[bytes]:
        """Frames heard on the line within ``within`` seconds, sending nothing (listen mode).

        Returns as soon as a frame is complete; bytes of a frame still arriving stay in
        ``collector`` for the next call.
        """
        async with self._lock:
            if self._transport is None:
                await self.open()
            deadline = time.monotonic() + within
            while True:
                if self._rx:
                    data = bytes(self._rx)
                    self._rx.clear()
                    junk = collector.junk
                    frames = collector.feed(data)
                    self.junk += collector.junk - junk
                    if frames:
                        return frames
                    continue
                if self._transport is None:
                    raise LinkDown(f"serial port {self.port} went away")
                if not await self._wait(deadline):
                    return []

    def _flush(self) -> None:
        """Drop whatever of an unanswered request has not left the host yet, and any late answer.

        A request the BMS did not answer should not act later: bytes an adapter still holds
        (flow control, a full buffer) would otherwise reach a board when it wakes, long after
        the caller was told the command failed. The kernel's buffers are flushed (tcflush);
        bytes still in the transport's own buffer go with the port, reopened at the next
        exchange. Bytes already on the wire, or taken in by a pty's other end, cannot be called
        back (a pty's output flush drops only what waits for the other end to take it).
        """
        transport = self._transport
        if transport is None:
            return
        port = getattr(transport, "serial", None)
        try:
            if port is not None:
                port.reset_output_buffer()
                port.reset_input_buffer()
        except (OSError, serial.SerialException) as err:
            log.debug("flushing %s failed: %s", self.port, err)
        try:
            waiting = transport.get_write_buffer_size()
        except NotImplementedError:  # a network port's transport does not say
            waiting = 0
        if waiting:
            log.info("closing %s: bytes of an unanswered request were still waiting", self.port)
            self._transport = None
            transport.abort()
        self._rx.clear()

    async def relay(self, data: bytes) -> bytes:
        """Send another master's bytes (a passthrough gadget) and return what the BMS answers.

        The answer ends after ``gap`` seconds of silence, or ``timeout`` without any byte.
        """
        async with self._lock:
            if self._transport is None:
                await self.open()
            assert self._transport is not None
            self._rx.clear()
            self._transport.write(data)
            if self.monitor:
                self.monitor("gadget_to_bms", data)
            answer = bytearray()
            deadline = time.monotonic() + self.timeout
            while True:
                if self._rx:
                    answer += self._rx
                    self._rx.clear()
                    deadline = time.monotonic() + self.gap
                if self._transport is None or not await self._wait(deadline):
                    break
            if self.monitor and answer:
                self.monitor("bms_to_gadget", bytes(answer))
            return bytes(answer)

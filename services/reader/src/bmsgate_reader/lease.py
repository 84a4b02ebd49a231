"""Raw access to the line: the tunnel or a raw frame from the web UI leases the bus.

While a lease is held, polling pauses, bytes published on ``.../raw/tx`` by the holder go to the
BMS and every byte from the BMS is published on ``.../raw/rx``. The lease ends when released,
after ``idle_timeout`` seconds without traffic, or when the port goes away; polling resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from bmsgate_common import topics
from bmsgate_common.models import RawData, RawLease, RawLeaseState, asker, utcnow
from bmsgate_common.mqtt import Backbone
from bmsgate_serial.link import LinkDown, SerialLink

log = logging.getLogger(__name__)


@dataclass
class Lease:
    """One holder's time on the line."""

    pack: str
    holder: str
    idle_timeout: float | None  # [s]; None = until released
    asked_by: str | None = None  # who asked for it (RawLease.requested_by)
    released_by: str | None = None  # who asked to give it back, if anyone did
    started: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)
    rx_bytes: int = 0
    tx_bytes: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def expires_in(self, now: float) -> float | None:
        """Seconds left before the lease expires for inactivity."""
        if self.idle_timeout is None:
            return None
        return max(0.0, self.idle_timeout - (now - self.last_activity))

    def touch(self) -> None:
        """Traffic or a renewal: the idle clock starts again."""
        self.last_activity = time.monotonic()


class LeaseManager:
    """Grants, relays and expires the lease of one bus."""

    def __init__(self, link: SerialLink, backbone: Backbone, packs: set[str], control: bool):
        self.link = link
        self.backbone = backbone
        self.packs = packs
        self.control = control
        self.current: Lease | None = None
        self.free = asyncio.Event()
        self.free.set()
        self._rx: asyncio.Queue[bytes] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _state(
        self,
        pack: str,
        request: RawLease | None,
        ok: bool,
        error: str | None = None,
        ended: Lease | None = None,
    ) -> None:
        """Publish who holds the line; ``ended`` gives the final counts of a lease just ended."""
        lease = self.current or ended
        await self.backbone.publish(
            topics.RAW_LEASE_STATE,
            pack,
            RawLeaseState(
                pack=pack,
                transaction=request.transaction if request else None,
                holder=self.current.holder if self.current else None,
                ok=ok,
                error=error,
                expires_in=self.current.expires_in(time.monotonic()) if self.current else None,
                rx_bytes=lease.rx_bytes if lease else 0,
                tx_bytes=lease.tx_bytes if lease else 0,
                ts=utcnow(),
            ),
        )

    async def on_request(self, pack: str, request: RawLease) -> None:
        """Handle acquire, renew and release from the backbone."""
        if pack not in self.packs:
            return
        if not self.control:
            await self._state(pack, request, False, "control is disabled")
            return
        lease = self.current
        if request.action == "acquire" and lease is None:
            self.current = Lease(pack, request.holder, request.idle_timeout, request.requested_by)
            self.free.clear()
            # granted once the line is really ours (after the poll under way), not before:
            # bytes sent on an early grant would meet the poller instead of the holder
            self._task = asyncio.create_task(self._hold(self.current, request))
            return
        if lease is None or lease.holder != request.holder:
            held = f"the line is held by {lease.holder}" if lease else "no lease is held"
            await self._state(pack, request, request.action == "release" and lease is None, held)
            return
        if request.action == "release":
            lease.released_by = asker(request.requested_by)
            lease.done.set()
            return  # _hold publishes the final state
        lease.idle_timeout = request.idle_timeout  # acquire again or renew: new terms
        lease.touch()
        await self._state(pack, request, True)

    async def on_tx(self, pack: str, data: RawData) -> None:
        """Bytes from the holder to the BMS."""
        lease = self.current
        if pack not in self.packs or lease is None or data.holder != lease.holder:
            return
        raw = bytes.fromhex(data.data)
        try:
            self.link.raw_write(raw)
        except (LinkDown, RuntimeError) as err:
            log.warning("raw write failed: %s", err)
            lease.done.set()
            return
        lease.tx_bytes += len(raw)
        lease.touch()

    def _received(self, data: bytes) -> None:
        self._rx.put_nowait(data)

    async def _relay(self, lease: Lease) -> None:
        while True:
            data = await self._rx.get()
            lease.rx_bytes += len(data)
            lease.touch()
            await self.backbone.publish(
                topics.RAW_RX, lease.pack, RawData(holder=lease.holder, data=data.hex())
            )

    async def _hold(self, lease: Lease, request: RawLease) -> None:
        """Keep the line for ``lease`` until released, idle too long, or the port is lost."""
        who = asker(lease.asked_by)
        log.info("%s took the line of %s asked by %s", lease.holder, self.link.port, who)
        relay: asyncio.Task[None] | None = None
        granted = False
        try:
            async with self.link.leased(self._received):
                relay = asyncio.create_task(self._relay(lease))
                await self._state(lease.pack, request, True)
                granted = True
                while not lease.done.is_set():
                    left = lease.expires_in(time.monotonic())
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(left, 1.0) if left is not None else 1.0):
                            await lease.done.wait()
                    if left is not None and lease.expires_in(time.monotonic()) == 0:
                        log.info(
                            "lease of %s expired after %.0f s idle",
                            lease.holder,
                            lease.idle_timeout,
                        )
                        break
                    if not self.link.is_open:
                        break
        except LinkDown as err:
            log.warning("lease of %s ended: %s", lease.holder, err)
            if not granted:  # the asker hears why instead of waiting for a grant
                await self._state(lease.pack, request, False, str(err))
        finally:
            if relay:
                relay.cancel()
            while not self._rx.empty():  # what arrived before the line was given back
                data = self._rx.get_nowait()
                lease.rx_bytes += len(data)
                await self.backbone.publish(  # False when the broker is away
                    topics.RAW_RX, lease.pack, RawData(holder=lease.holder, data=data.hex())
                )
            self.current = None
            self.free.set()
            log.info(
                "%s released the line%s: %d bytes in, %d out, %.0f s",
                lease.holder,
                f" asked by {lease.released_by}" if lease.released_by else "",
                lease.rx_bytes,
                lease.tx_bytes,
                time.monotonic() - lease.started,
            )
            # publishing answers False, never raises, when the broker stops with the service
            await self._state(lease.pack, None, True, ended=lease)

    async def close(self) -> None:
        """End any lease (service stopping)."""
        if self.current is not None:
            self.current.done.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

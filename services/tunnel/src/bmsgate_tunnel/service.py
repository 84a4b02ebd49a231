"""The tunnel service: a TCP port per bus, open only for a window, relaying through the reader.

The reader keeps the serial port. A client's bytes go out as RawData on ``.../raw/tx`` under a
lease the tunnel holds while the client is connected (polling pauses meanwhile); the BMS's bytes
come back on ``.../raw/rx`` and go to the client. The listener exists only while the tunnel is
open, so a closed tunnel refuses connections in the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Literal

from bmsgate_common import topics
from bmsgate_common.models import (
    Extra,
    RawData,
    RawLease,
    RawLeaseState,
    TunnelCommand,
    TunnelStatus,
    requester,
    utcnow,
)
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import Settings, TunnelSettings

from .logic import BusTunnel, Network, Session, Window, allowed, bus_tunnels, chunks, networks

log = logging.getLogger(__name__)

LEASE_IDLE = 15.0  # [s] the reader ends our lease by itself if renewals stop (tunnel gone)
RENEW_EVERY = 5.0  # [s] between lease renewals while a client is on
LEASE_WAIT = 5.0  # [s] for the reader to answer an acquire
TICK = 0.2  # [s] between expiry checks
STATUS_EVERY = 1.0  # [s] between status updates while open
MAX_CHUNK = 4096  # bytes per RawData (8192 hex characters)

LeaseAction = Literal["acquire", "release", "renew"]


class Tunnel:
    """The tunnel of one bus: its window, its listener and at most one client session."""

    def __init__(
        self,
        bus: BusTunnel,
        cfg: TunnelSettings,
        backbone: Backbone,
        *,
        control: bool,
        session_log: Path | None = None,
        mqtt_user: str | None = None,
    ) -> None:
        self.bus = bus
        self.mqtt_user = mqtt_user  # the broker user it sends as: the first part of requested_by
        self.cfg = cfg
        self.backbone = backbone
        self.control = control
        self.session_log = session_log
        self.allow: list[Network] = networks(cfg.allow)
        self.holder = f"tunnel-{bus.index}"
        self.window: Window | None = None
        self.server: asyncio.Server | None = None
        self.session: Session | None = None
        self.sessions = 0
        self.refused = 0
        self._writer: asyncio.StreamWriter | None = None
        self._leased = False
        self._pending: dict[str, asyncio.Future[RawLeaseState]] = {}
        self._last_status = 0.0

    # -- commands and status -------------------------------------------------------------------

    async def command(self, cmd: TunnelCommand) -> None:
        """Carry out open, close or status and answer with a status carrying the transaction."""
        if cmd.action == "status":
            await self.publish_status(cmd.transaction)
            return
        who = f"asked by {cmd.requested_by or 'an unnamed backbone client'}"
        if cmd.action == "close":
            log.info("tunnel of bus %d: close %s", self.bus.index, who)
            await self.close("closed by command", transaction=cmd.transaction)
            return
        if not self.control:
            log.warning(
                "tunnel of bus %d not opened (%s): control is disabled", self.bus.index, who
            )
            await self.publish_status(cmd.transaction, error="control is disabled")
            return
        now = time.monotonic()
        window = Window.start(cmd, self.cfg, now)
        if self.server is None:
            try:
                self.server = await asyncio.start_server(
                    self._client, self.cfg.host, self.bus.port, reuse_address=True
                )
            except OSError as err:
                reason = f"cannot listen on {self.cfg.host}:{self.bus.port}: {err.strerror or err}"
                log.error("tunnel of bus %d: %s", self.bus.index, reason)
                await self.publish_status(cmd.transaction, error=reason)
                return
        again = self.window is not None
        self.window = window
        idle = "no idle limit" if window.idle_timeout is None else f"idle {window.idle_timeout:g} s"
        log.info(
            "tunnel of %s %s on %s:%d for %.4g min (%s)%s, %s",
            ", ".join(self.bus.packs),
            "extended" if again else "open",
            self.cfg.host,
            self.bus.port,
            (window.ends - now) / 60,
            idle,
            f", allowed: {', '.join(self.cfg.allow)}" if self.allow else "",
            who,
        )
        await self.publish_status(cmd.transaction)

    def status(self, transaction: str | None = None, error: str | None = None) -> TunnelStatus:
        """What the tunnel is doing now."""
        now = time.monotonic()
        window, session = self.window, self.session
        return TunnelStatus(
            pack=self.bus.packs[0],
            transaction=transaction,
            ok=error is None,
            error=error,
            open=window is not None,
            port=self.bus.port,
            client=session.client if session else None,
            uptime=now - session.started if session else None,
            rx_bytes=session.rx_bytes if session else 0,
            tx_bytes=session.tx_bytes if session else 0,
            time_left=window.time_left(now) if window else None,
            window_left=window.window_left(now) if window else None,
            idle_timeout=window.idle_timeout if window else None,
            sessions=self.sessions,
            ts=utcnow(),
        )

    async def publish_status(
        self, transaction: str | None = None, error: str | None = None
    ) -> None:
        """Publish the status, retained, on the tunnel topic of every pack of the bus."""
        self._last_status = time.monotonic()
        status = self.status(transaction, error)
        for pack in self.bus.packs:
            await self.backbone.publish(
                topics.TUNNEL_STATUS, pack, status.model_copy(update={"pack": pack})
            )

    async def tick(self) -> None:
        """Close an expired window; refresh the status of an open tunnel now and then."""
        if self.window is None:
            return
        now = time.monotonic()
        reason = self.window.expired(now)
        if reason:
            await self.close(reason)
        elif now - self._last_status >= STATUS_EVERY:
            await self.publish_status()

    async def close(self, reason: str, transaction: str | None = None) -> None:
        """Stop listening and end any session."""
        was_open = self.window is not None
        self.window = None
        if self.server is not None:
            self.server.close()
            self.server = None
        await self._end_session(reason)
        if was_open:
            log.info("tunnel of %s closed: %s", ", ".join(self.bus.packs), reason)
        await self.publish_status(transaction)

    # -- the backbone side ---------------------------------------------------------------------

    async def on_lease_state(self, state: RawLeaseState) -> None:
        """The reader's answer to a lease request, or news that the lease ended."""
        pending = self._pending.pop(state.transaction or "", None)
        if pending is not None:
            if not pending.done():
                pending.set_result(state)
            return
        if self._leased and state.holder != self.holder:
            await self._end_session(f"the reader ended the lease ({state.error or 'line lost'})")

    async def on_rx(self, data: RawData) -> None:
        """Bytes from the BMS: to the client."""
        session, writer = self.session, self._writer
        if data.holder != self.holder or session is None or writer is None:
            return
        raw = bytes.fromhex(data.data)
        writer.write(raw)
        session.rx_bytes += len(raw)
        if self.window:
            self.window.touch(time.monotonic())

    def _asker(self, session: Session | None) -> str:
        """Who asks the reader for the line: the TCP client of ``session``, for its log."""
        return requester(self.mqtt_user, "tcp", session.client if session else "none")

    async def _lease(
        self, action: LeaseAction, idle: float | None = LEASE_IDLE
    ) -> RawLeaseState | None:
        """Ask the reader for the line; its answer, or None when it did not answer in time."""
        transaction = f"{self.holder}-{uuid.uuid4().hex[:12]}"
        answer: asyncio.Future[RawLeaseState] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = answer
        request = RawLease(
            transaction=transaction,
            holder=self.holder,
            action=action,
            idle_timeout=idle,
            requested_by=self._asker(self.session),
        )
        try:
            await self.backbone.publish(topics.RAW_LEASE, self.bus.lease_pack, request)
            async with asyncio.timeout(LEASE_WAIT):  # unlike 3.11's wait_for, never eats a cancel
                return await answer
        except TimeoutError:
            return None
        finally:
            self._pending.pop(transaction, None)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            state = await self._lease("renew")
            if state is not None and not state.ok:
                await self._end_session(f"the reader ended the lease ({state.error})")
                return

    # -- the client side -----------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One TCP connection: refused, or a session until either side ends it."""
        peer = writer.get_extra_info("peername") or ("?", 0)
        address = str(peer[0])
        client = f"[{address}]:{peer[1]}" if ":" in address else f"{address}:{peer[1]}"
        refusal = None
        if self.window is None:
            refusal = "the tunnel is closed"
        elif not allowed(address, self.allow):
            refusal = "not on the allow-list"
        elif self.session is not None:
            refusal = f"{self.session.client} is connected"
        if refusal:
            self.refused += 1
            log.warning("tunnel of bus %d refused %s: %s", self.bus.index, client, refusal)
            writer.close()
            return
        session = Session(client, time.monotonic(), utcnow())
        self.session, self._writer = session, writer
        assert self.window is not None
        self.window.touch(time.monotonic())
        log.info("tunnel of bus %d: %s connected", self.bus.index, client)
        state = await self._lease("acquire")
        if self.session is not session:  # closed meanwhile
            if state is not None and state.ok:
                await self._lease("release", None)
            writer.close()
            return
        if state is None or not state.ok:
            why = "the reader did not answer" if state is None else state.error or "refused"
            await self._end_session(f"no line: {why}")
            await self.publish_status(error=f"no line: {why}")
            return
        self._leased = True
        self.sessions += 1
        await self.publish_status()
        renew = asyncio.create_task(self._renew())
        try:
            while self.session is session:
                data = await reader.read(MAX_CHUNK)
                if not data:
                    break
                for piece in chunks(data, MAX_CHUNK):
                    await self.backbone.publish(
                        topics.RAW_TX,
                        self.bus.lease_pack,
                        RawData(holder=self.holder, data=piece.hex()),
                    )
                    session.tx_bytes += len(piece)
                if self.window:
                    self.window.touch(time.monotonic())
        except OSError as err:
            log.debug("tunnel client %s: %s", client, err)
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
            if self.session is session:
                await self._end_session("the client disconnected")

    async def _end_session(self, reason: str) -> None:
        """Give the line back, drop the client and log the session."""
        session, writer = self.session, self._writer
        if session is None:
            return
        self.session, self._writer = None, None
        if self._leased:
            self._leased = False
            await self.backbone.publish(  # False when the broker is away: the lease times out
                topics.RAW_LEASE,
                self.bus.lease_pack,
                RawLease(
                    transaction=f"{self.holder}-end",
                    holder=self.holder,
                    action="release",
                    idle_timeout=None,
                    requested_by=self._asker(session),
                ),
            )
        if writer is not None:
            writer.close()
        session.ended_at = utcnow()
        session.reason = reason
        self._log_session(session)
        await self.publish_status()

    def _log_session(self, session: Session) -> None:
        record = session.record()
        log.info(
            "tunnel session of bus %d: client %s, %s to %s (%.1f s), %d bytes to the BMS, "
            "%d from it; %s",
            self.bus.index,
            record["client"],
            record["start"],
            record["end"],
            record["seconds"],
            record["tx_bytes"],
            record["rx_bytes"],
            record["reason"],
        )
        if self.session_log is None:
            return
        try:
            self.session_log.parent.mkdir(parents=True, exist_ok=True)
            with self.session_log.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"bus": self.bus.index, **record}) + "\n")
        except OSError as err:
            log.warning("cannot write the session log %s: %s", self.session_log, err)


class TunnelService:
    """Every bus's tunnel, fed by the backbone."""

    def __init__(self, cfg: Settings, backbone: Backbone, session_log: Path | None = None) -> None:
        self.backbone = backbone
        self.tunnels = [
            Tunnel(
                bus,
                cfg.tunnel,
                backbone,
                control=cfg.control.enabled,
                session_log=session_log,
                mqtt_user=cfg.mqtt.username,
            )
            for bus in bus_tunnels(cfg)
        ]
        self.by_pack = {pack: t for t in self.tunnels for pack in t.bus.packs}
        self.by_lease_pack = {t.bus.lease_pack: t for t in self.tunnels}

    def detail(self) -> dict[str, Extra]:
        """Figures for the service status."""
        return {
            "open": sum(t.window is not None for t in self.tunnels),
            "sessions": sum(t.sessions for t in self.tunnels),
            "refused": sum(t.refused for t in self.tunnels),
        }

    async def on_command(self, pack: str, cmd: TunnelCommand) -> None:
        """A TunnelCommand for one pack: its bus's tunnel carries it out."""
        tunnel = self.by_pack.get(pack)
        if tunnel is None:
            log.warning("tunnel command %s for unknown pack %r ignored", cmd.transaction, pack)
            return
        await tunnel.command(cmd)

    async def on_lease_state(self, pack: str, state: RawLeaseState) -> None:
        """Lease news from a reader."""
        tunnel = self.by_lease_pack.get(pack)
        if tunnel is not None:
            await tunnel.on_lease_state(state)

    async def on_rx(self, pack: str, data: RawData) -> None:
        """Bytes from a BMS."""
        tunnel = self.by_lease_pack.get(pack)
        if tunnel is not None:
            await tunnel.on_rx(data)

    async def run(self) -> None:
        """Announce every tunnel closed, then watch the windows until cancelled; close all after."""
        for tunnel in self.tunnels:
            await tunnel.publish_status()
        try:
            while True:
                for tunnel in self.tunnels:
                    await tunnel.tick()
                await asyncio.sleep(TICK)
        finally:
            for tunnel in self.tunnels:
                await tunnel.close("the service stopped")  # publishing never raises


async def serve(service: TunnelService) -> None:
    """Subscribe, connect and run until cancelled."""
    backbone = service.backbone
    backbone.subscribe(topics.TUNNEL_COMMAND, service.on_command, retained=False)
    backbone.subscribe(topics.RAW_LEASE_STATE, service.on_lease_state, retained=False)
    backbone.subscribe(topics.RAW_RX, service.on_rx, retained=False)
    async with backbone:
        await service.run()


async def run_tunnel(cfg: Settings) -> None:
    """The service's main: one tunnel per configured bus."""
    holder: list[TunnelService] = []
    backbone = Backbone(cfg.mqtt, "tunnel", detail=lambda: holder[0].detail() if holder else {})
    service = TunnelService(cfg, backbone, cfg.data_dir / "tunnel" / "sessions.jsonl")
    holder.append(service)
    await serve(service)

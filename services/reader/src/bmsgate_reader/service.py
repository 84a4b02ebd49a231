"""The reader service: owns one serial port, polls its BMS, publishes states, runs commands."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

from bmsgate_bms.driver import Driver, UnsupportedCommand
from bmsgate_bms.errors import FrameError, LinkTimeout
from bmsgate_bms.registry import protocol
from bmsgate_common.models import Command, CommandResult, utcnow
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import BusSettings, PackSettings, Settings

from .logic import PackTracker, to_state
from .serial_link import LinkDown, SerialLink

log = logging.getLogger(__name__)

POLL_ERRORS = (FrameError, LinkTimeout, LinkDown)
MAX_BACKOFF = 30.0  # [s] between attempts to reopen a missing port


class Reader:
    """Polls every pack of one bus and publishes what it reads."""

    def __init__(self, bus: BusSettings, backbone: Backbone, *, control: bool = False) -> None:
        self.bus = bus
        self.backbone = backbone
        self.control = control
        self.link = SerialLink(bus.port, bus.baud, bus.timeout)
        module = protocol(bus.protocol)
        self.drivers: dict[str, tuple[PackSettings, Driver]] = {
            p.id: (p, module.Driver(self.link, p.address)) for p in bus.packs
        }
        self.trackers = {p.id: PackTracker(p.id, bus.offline_after) for p in bus.packs}
        self.polls = 0
        self.failures = 0
        self._backoff = 0.0

    def counters(self) -> dict[str, int | float | str | bool | None]:
        """Health figures for the service status."""
        return {
            "port": self.bus.port,
            "polls": self.polls,
            "failures": self.failures,
            "junk_bytes": self.link.junk,
            "port_open": self.link.is_open,
        }

    async def _read(self, driver: Driver) -> object:
        last: Exception | None = None
        for _ in range(self.bus.retries + 1):
            try:
                return await driver.read()
            except POLL_ERRORS as err:
                last = err
                if isinstance(err, LinkDown):
                    break
        assert last is not None
        raise last

    async def poll_once(self) -> None:
        """Read every pack once and publish states, availability changes and alarm events."""
        for pack, driver in self.drivers.values():
            tracker = self.trackers[pack.id]
            self.polls += 1
            try:
                reading = await self._read(driver)
            except POLL_ERRORS as err:
                self.failures += 1
                if isinstance(err, LinkDown):
                    await self._port_down(err)
                else:
                    log.debug("%s: no valid answer: %s", pack.id, err)
                change = tracker.missed(utcnow(), _reason(err))
                if change:
                    log.warning("%s is offline: %s", pack.id, change.reason)
                    await self.backbone.publish("availability", pack.id, change)
                continue
            self._backoff = 0.0
            state = to_state(reading, pack, self.bus.protocol, utcnow())  # type: ignore[arg-type]
            await self.backbone.publish("state", pack.id, state)
            change = tracker.seen(state.ts)
            if change:
                log.info("%s is online", pack.id)
                await self.backbone.publish("availability", pack.id, change)
            for event in tracker.alarm_changes(state):
                await self.backbone.publish("alarm", pack.id, event)

    async def _port_down(self, err: LinkDown) -> None:
        if self._backoff == 0.0:
            log.error("%s; retrying with backoff", err)
        self._backoff = min(MAX_BACKOFF, max(1.0, self._backoff * 2))
        await asyncio.sleep(self._backoff)

    async def republish_availability(self) -> None:
        """Send every known availability again (retained values are lost when a broker restarts)."""
        for pack_id, tracker in self.trackers.items():
            if tracker.last is not None:
                await self.backbone.publish("availability", pack_id, tracker.last)

    async def run(self) -> None:
        """Poll forever at the configured interval."""
        beat = time.monotonic()
        while True:
            started = time.monotonic()
            was_connected = self.backbone.connected
            await self.poll_once()
            if (not was_connected and self.backbone.connected) or (
                started - beat > self.backbone.cfg.heartbeat
            ):
                beat = started
                await self.republish_availability()
            await asyncio.sleep(max(0.0, self.bus.poll_interval - (time.monotonic() - started)))

    async def execute(self, pack_id: str, cmd: Command) -> None:
        """Carry out a command and publish its result: the value read back, or the error."""

        def result(
            status: Literal["ok", "error"],
            value: bool | float | None = None,
            error: str | None = None,
        ) -> CommandResult:
            return CommandResult(
                transaction=cmd.transaction, pack=pack_id, action=cmd.action,
                status=status, value=value, error=error, ts=utcnow(),
            )  # fmt: skip

        if pack_id not in self.drivers:
            return  # another reader owns that pack
        if not self.control:
            await self.backbone.publish(
                "result", pack_id, result("error", error="control is disabled")
            )
            return
        _, driver = self.drivers[pack_id]
        try:
            if cmd.action in ("set_charge_mos", "set_discharge_mos"):
                value: bool | float = await driver.set_mos(
                    cmd.action == "set_charge_mos", bool(cmd.value)
                )
                ok = value == cmd.value
            elif cmd.action == "set_soc":
                value = await driver.set_soc(float(cmd.value or 0))
                ok = abs(value - float(cmd.value or 0)) <= 0.5
            else:
                raise UnsupportedCommand("reset is not supported yet")
        except (*POLL_ERRORS, UnsupportedCommand) as err:
            await self.backbone.publish(
                "result", pack_id, result("error", error=str(err) or type(err).__name__)
            )
            return
        err_text = None if ok else f"the BMS reports {value} after the command"
        await self.backbone.publish(
            "result", pack_id, result("ok" if ok else "error", value, err_text)
        )


def _reason(err: Exception) -> str:
    if isinstance(err, LinkTimeout):
        return "no answer"
    if isinstance(err, LinkDown):
        return "serial port unavailable"
    return f"bad frame: {err}"


async def run_reader(cfg: Settings, bus_index: int = 0) -> None:
    """Run the reader for bus ``bus_index`` of the settings until cancelled."""
    bus = cfg.buses[bus_index]
    reader: Reader | None = None
    backbone = Backbone(
        cfg.mqtt, f"reader-{bus_index}", detail=lambda: reader.counters() if reader else {}
    )
    reader = Reader(bus, backbone, control=cfg.control.enabled)

    async def on_command(pack_id: str, cmd: Command) -> None:
        await reader.execute(pack_id, cmd)

    backbone.subscribe("command", on_command, retained=False)
    async with backbone:
        try:
            await reader.run()
        finally:
            await reader.link.close()

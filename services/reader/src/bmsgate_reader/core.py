"""The reader's polling core: one bus polled, its states, availability, alarms and settings sent.

Shared by the reader (service.py: commands, raw leases, the sniffer, listening, own SOC) and the
lean reader (lean.py: ``bmsgate run --only reader``, without pydantic; docs/performance.md).
Neither pydantic nor the settings model is imported here: the messages are made by ``messages``
(the models of bmsgate_common.models in the reader, plain data checked against them in the lean
one) and sent by ``send``; the settings are the model's or a view of what it validated
(bmsgate_common.settings_view), read by the same names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from bmsgate_bms.driver import Driver
from bmsgate_bms.errors import FrameError, LinkTimeout
from bmsgate_bms.plausible import implausible
from bmsgate_bms.polling import SlowReads
from bmsgate_bms.reading import BmsReading
from bmsgate_bms.registry import protocol
from bmsgate_bms.setpoints import bounds, table_of
from bmsgate_common.clock import WALL
from bmsgate_common.exits import READER_STOPPED
from bmsgate_common.soc import SocEstimator
from bmsgate_serial.link import LinkDown, SerialLink

from .counters import CounterStore
from .logic import EnergyCounter, PackTracker, state_fields

log = logging.getLogger("bmsgate_reader.service")

POLL_ERRORS = (FrameError, LinkTimeout, LinkDown)
BACKOFF = (0.5, 5.0)  # [s] first and longest wait before reopening a missing port
SAVE_EVERY = 300.0  # [s] between writes of the energy counters (each one wears an SD card)
BALANCER_SETTINGS = ("balance_switch", "balancer_switch")  # JK-PB, DALY new
SETTINGS_EVERY = 3600.0  # [s] between reads of the BMS's own settings
SETTINGS_RETRY = 60.0  # [s] before a failed settings read is tried again
STOP_ANNOUNCE = 2.0  # [s] at most for the packs' ``offline`` when the reader stops


class Messages(Protocol):
    """Makes the reader's messages from their fields: the models, or plain data (plain.py)."""

    def pack_state(self, fields: dict[str, Any]) -> Any: ...
    def availability(self, **fields: Any) -> Any: ...
    def alarm_event(self, **fields: Any) -> Any: ...
    def bms_settings(self, settings: list[dict[str, Any]], **fields: Any) -> Any: ...
    def sniff_state(self, **fields: Any) -> Any: ...


class Pack:
    """One BMS on the bus: its settings, driver, availability and energy counter."""

    def __init__(
        self, cfg: Any, driver: Driver | None, tracker: PackTracker, energy: EnergyCounter
    ) -> None:
        self.cfg = cfg  # PackSettings, or settings_view.PackSection
        self.driver = driver  # None when listening: bmsgate sends nothing to it
        self.tracker = tracker
        self.energy = energy
        self.lying = False  # its last answer was implausible (logged once until it is not)
        self.settings: dict[str, Any] = {}  # the BMS's own settings as last read
        self.settings_due = 0.0  # [s] monotonic time of the next settings read
        self.soc = SocEstimator()  # bmsgate's own SOC, when cfg.own_soc


def reason(err: Exception) -> str:
    """Why a poll gave no state, in words."""
    if isinstance(err, LinkTimeout):
        return "no answer"
    if isinstance(err, LinkDown):
        return "serial port unavailable"
    return f"bad frame: {err}"


class BusPoller:
    """Polls every pack of one bus and sends what it reads.

    ``bus`` is a BusSettings or a settings_view.BusSection; ``service`` names the reader
    (``reader-0``), ``heartbeat`` [s] is how often availability and sniffer state go out again.
    """

    def __init__(
        self,
        bus: Any,
        messages: Messages,
        service: str,
        heartbeat: float,
        *,
        counters: CounterStore | None = None,
    ) -> None:
        self.bus = bus
        self.messages = messages
        self.service = service
        self.heartbeat = heartbeat
        self.counters = counters
        self.link = SerialLink(bus.port, bus.baud, bus.timeout)
        self.module = protocol(bus.protocol)
        self.limits = self.module.INFO.limits
        self.setpoints = table_of(self.module, bus.variant)
        self.packs: dict[str, Pack] = {
            p.id: self._pack(p, phase) for phase, p in enumerate(bus.packs)
        }
        self.polls = 0
        self.failures = 0
        self.keep_awake = bus.keep_awake > 0  # switched at runtime by set_keep_awake
        self.implausible = 0  # answers with valid frames and impossible values, not published
        self._backoff = 0.0
        self._saved: float | None = None  # [s] monotonic; None: the counters are not on disk yet

    # what a reader provides: the connection it sends on

    async def send(self, kind: str, name: str, message: Any) -> bool:
        """Send ``message`` on topic ``kind`` (topic_routes.ROUTES) for ``name``; False if not."""
        raise NotImplementedError

    @property
    def connects(self) -> int:
        """Connections to the broker made so far: a change means retained messages may be lost."""
        raise NotImplementedError

    @property
    def sniffing(self) -> bool:
        """Whether the bus's sniffer is on."""
        return bool(self.bus.sniff)

    @property
    def can_keep_awake(self) -> bool:
        """Whether this protocol's driver has a harmless request to keep a board awake."""
        return hasattr(self.module.Driver, "wake")

    def _pack(self, cfg: Any, phase: int = 0) -> Pack:
        driver = None
        if not self.bus.listen:
            driver = self.module.Driver(self.link, cfg.address, **self.bus.driver_options())
            slow = getattr(driver, "slow", None)  # a protocol with slow reads (its POLL table)
            if isinstance(slow, SlowReads):
                # each pack's slow reads on another poll, so every round of the bus is as long
                slow.every, slow.phase = self.bus.slow_every, phase
        energy = self.counters.load(cfg.id) if self.counters else EnergyCounter()
        tracker = PackTracker(
            cfg.id,
            self.bus.offline_after,
            availability=self.messages.availability,
            alarm=self.messages.alarm_event,
        )
        pack = Pack(cfg, driver, tracker, energy)
        if cfg.own_soc and self.counters:
            pack.soc.soc = self.counters.load_soc(cfg.id)  # the count goes on after a restart
        return pack

    def counters_detail(self) -> dict[str, int | float | str | bool | None]:
        """Health figures for the service status."""
        return {
            "port": self.bus.port,
            "device": self.link.device,
            "polls": self.polls,
            "failures": self.failures,
            "implausible": self.implausible,
            "junk_bytes": self.link.junk,
            "port_open": self.link.is_open,
        }

    async def _read(self, driver: Driver) -> BmsReading:
        """One snapshot, retried ``bus.retries`` times on a bad or missing answer."""
        for attempt in range(self.bus.retries + 1):
            self.link.answers.clear()
            try:
                return await driver.read()
            except (FrameError, LinkTimeout):
                if attempt == self.bus.retries:
                    raise
        raise AssertionError("unreachable")

    async def poll_pack(self, pack: Pack) -> Any:
        """Read one pack and send its state, availability change and alarm events.

        The state sent, or None when there was none.
        """
        self.polls += 1
        assert pack.driver is not None  # polled only when not listening
        try:
            reading = await self._read(pack.driver)
        except POLL_ERRORS as err:
            self.failures += 1
            if isinstance(err, LinkDown):
                await self._port_down(err)
            else:
                log.debug("%s: no valid answer: %s", pack.cfg.id, err)
            await self._missed(pack, reason(err))
            return None
        self._backoff = 0.0
        state = await self._publish(pack, reading)
        if state is not None and self.setpoints and time.monotonic() >= pack.settings_due:
            await self.read_settings(pack)
        return state

    def _extras(self, pack: Pack, extras: dict[str, Any]) -> dict[str, Any]:
        """The switches the reader knows besides the reading: the balancer and keep-awake."""
        extras = dict(extras)
        for key in BALANCER_SETTINGS:  # a switch only the settings carry (JK-PB, DALY new)
            if key in pack.settings and "balancer_enabled" not in extras:
                extras["balancer_enabled"] = bool(pack.settings[key])
        if "balancer_enabled" in extras:
            extras["balancer_enabled"] = bool(extras["balancer_enabled"])
        if self.bus.keep_awake and self.can_keep_awake:
            extras["keep_awake"] = self.keep_awake
        return extras

    async def read_settings(self, pack: Pack) -> bool:
        """Read the BMS's own settings and send them (retained); False if it did not answer.

        Settings change rarely: they are read after the first good poll, every SETTINGS_EVERY
        and after each write; a failed read is tried again after SETTINGS_RETRY.
        """
        assert pack.driver is not None
        try:
            values = await pack.driver.read_settings()  # type: ignore[attr-defined]
        except POLL_ERRORS as err:  # a port gone (unplugged) too: the next poll reports it
            pack.settings_due = time.monotonic() + SETTINGS_RETRY
            log.debug("%s: settings not read: %s", pack.cfg.id, err)
            return False
        pack.settings_due = time.monotonic() + SETTINGS_EVERY
        await self._publish_settings(pack, values)
        return True

    async def _publish_settings(self, pack: Pack, values: dict[str, Any]) -> None:
        pack.settings = values
        rows = []
        for point in self.setpoints:
            if point.key not in values:
                continue
            low, high = bounds(point, values) if point.writable else (None, None)
            rows.append(
                {
                    "key": point.key,
                    "label": point.label,
                    "unit": point.unit,
                    "value": values[point.key],
                    "writable": point.writable,
                    "min": low,
                    "max": high,
                }
            )
        message = self.messages.bms_settings(
            pack=pack.cfg.id, protocol=self.bus.protocol, ts=WALL.now(), settings=rows
        )
        await self.send("settings", pack.cfg.id, message)

    async def _own_soc(self, pack: Pack, fields: dict[str, Any]) -> None:
        """Count bmsgate's own SOC into ``fields`` (the reader's; the lean one has none)."""

    async def _publish(self, pack: Pack, reading: BmsReading) -> Any:
        """Send a pack's reading (polled or heard): state, availability and alarm events."""
        problem = implausible(reading, self.limits)
        if problem is not None:
            await self._lied(pack, problem)
            return None
        if pack.lying:
            pack.lying = False
            log.info("%s: plausible answers again", pack.cfg.id)
        now = WALL.now()
        fields = state_fields(reading, pack.cfg, self.bus.protocol, now)
        pack.energy.add(now, fields["power"], fields["current"], time.monotonic())
        fields |= pack.energy.totals()
        fields["extras"] = self._extras(pack, fields["extras"])
        if pack.cfg.own_soc:
            await self._own_soc(pack, fields)
        state = self.messages.pack_state(fields)
        await self.send("state", pack.cfg.id, state)
        change = pack.tracker.seen(now)
        if change:
            log.info("%s is online", pack.cfg.id)
            await self.send("availability", pack.cfg.id, change)
        alarms = pack.tracker.alarm_changes(
            fields["alarms"], now, fields["cell_voltages"], fields["temperatures"]
        )
        for event in alarms:
            await self.send("alarm", pack.cfg.id, event)
        return state

    async def _missed(self, pack: Pack, why: str) -> None:
        """Count a poll without a usable state; the pack goes offline after ``offline_after``."""
        change = pack.tracker.missed(WALL.now(), why)
        if change:
            log.warning("%s is offline: %s", pack.cfg.id, pack.tracker.reason)
            await self.send("availability", pack.cfg.id, change)

    async def _lied(self, pack: Pack, problem: str) -> None:
        """An answer whose values cannot be true: not published, archived or integrated.

        The pack's last good state stays the retained one; if the board keeps lying it goes
        offline with the reason, as for a board that does not answer.
        """
        self.implausible += 1
        if not pack.lying:
            pack.lying = True
            frames = " | ".join(f.hex(" ") for f in self.link.answers)
            log.warning(
                "%s: implausible answer ignored: %s; frames: %s", pack.cfg.id, problem, frames
            )
        else:
            log.debug("%s: implausible answer ignored: %s", pack.cfg.id, problem)
        await self._missed(pack, f"implausible values: {problem}")

    async def poll_once(self) -> None:
        """Read every pack once."""
        for pack in self.packs.values():
            await self.poll_pack(pack)
        if self.counters and (self._saved is None or time.monotonic() - self._saved >= SAVE_EVERY):
            self.save_counters()  # the first right away: a counter file from the first poll on

    def continue_counters(self, published: Mapping[str, Any]) -> None:
        """Each pack's counters at least its last published state's (retained on the backbone).

        ``published``: pack -> its state, a model or its fields.
        """
        for pack_id, state in published.items():
            pack = self.packs.get(pack_id)
            if pack is not None and pack.energy.at_least(state):
                ts = state["ts"] if isinstance(state, Mapping) else state.ts.isoformat()
                log.info(
                    "%s: energy counters go on from the last published state (%s), ahead "
                    "of the saved ones",
                    pack_id,
                    ts,
                )

    def save_counters(self) -> None:
        """Persist every pack's energy counter."""
        if self.counters:
            for pack in self.packs.values():
                self.counters.save(pack.cfg.id, pack.energy, pack.soc.soc)
        self._saved = time.monotonic()

    async def _port_down(self, err: LinkDown) -> None:
        """Wait before the next attempt to open the port, longer each time, up to BACKOFF[1]."""
        if self._backoff == 0.0:
            log.error("%s; retrying", err)
        self._backoff = min(BACKOFF[1], max(BACKOFF[0], self._backoff * 2))
        await asyncio.sleep(self._backoff)

    async def republish_availability(self) -> None:
        """Send every known availability again (retained values are lost when a broker restarts)."""
        for pack in self.packs.values():
            if pack.tracker.last is not None:
                await self.send("availability", pack.cfg.id, pack.tracker.last)

    async def send_sniff_state(self, transaction: str | None = None) -> None:
        """Send whether the bus's sniffer is on (retained)."""
        state = self.messages.sniff_state(
            bus=self.service, enabled=self.sniffing, ts=WALL.now(), transaction=transaction
        )
        await self.send("sniff_state", self.service, state)

    async def announce_stop(self) -> None:
        """Every pack ``offline`` (retained) as the reader stops, so nobody waits for staleness.

        Bounded: with the broker away the stop goes on; the API's ``stale_after`` covers that,
        as it covers a reader that dies without a word (its last will is the service status).
        """
        now = WALL.now()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_ANNOUNCE):
                for pack_id in self.packs:
                    gone = self.messages.availability(
                        pack=pack_id, state="offline", ts=now, reason=READER_STOPPED
                    )
                    await self.send("availability", pack_id, gone)

    async def _before_poll(self) -> None:
        """Wait until the line may be polled (the reader's raw lease)."""

    async def _idle(self, until: float) -> None:
        """Wait for the next poll."""
        await asyncio.sleep(max(0.0, until - time.monotonic()))

    async def poll_forever(self) -> None:
        """Poll at the configured interval, until cancelled.

        Availability and sniffer state go out again after a reconnection (the broker may have
        lost its retained messages) and every heartbeat.
        """
        beat = time.monotonic()
        connects = self.connects
        while True:
            await self._before_poll()
            started = time.monotonic()
            await self.poll_once()
            if connects != self.connects or started - beat > self.heartbeat:
                connects = self.connects
                beat = started
                await self.republish_availability()
                await self.send_sniff_state()
            await self._idle(started + self.bus.poll_interval)

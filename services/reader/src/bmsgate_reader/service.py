"""The reader service: owns one serial port, polls its BMS, publishes states, runs commands."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Literal, cast

from bmsgate_bms.driver import Driver, UnsupportedCommand
from bmsgate_bms.errors import FrameError, LinkTimeout
from bmsgate_bms.link import FrameCollector
from bmsgate_bms.plausible import implausible
from bmsgate_bms.polling import SlowReads
from bmsgate_bms.reading import BmsReading
from bmsgate_bms.registry import protocol
from bmsgate_bms.setpoints import SettingError, bounds, check_write, pick, table_of
from bmsgate_common import topics
from bmsgate_common.models import (
    Availability,
    BmsSettings,
    Command,
    CommandResult,
    PackState,
    SettingValue,
    SniffSet,
    SniffState,
    asker,
    utcnow,
)
from bmsgate_common.mqtt import Backbone
from bmsgate_common.service import READER_STOPPED
from bmsgate_common.settings import BusSettings, PackSettings, Settings
from bmsgate_common.soc import SocEstimator, SocRules
from bmsgate_common.tasks import stop_tasks
from bmsgate_serial.link import LinkDown, SerialLink

from .counters import CounterStore
from .lease import LeaseManager
from .logic import EnergyCounter, PackTracker, to_state
from .passthrough import Passthrough, Sniffer

log = logging.getLogger(__name__)

POLL_ERRORS = (FrameError, LinkTimeout, LinkDown)
BACKOFF = (0.5, 5.0)  # [s] first and longest wait before reopening a missing port
SAVE_EVERY = 300.0  # [s] between writes of the energy counters (each one wears an SD card)
BALANCER_SETTINGS = ("balance_switch", "balancer_switch")  # JK-PB, DALY new
UVP_SETTINGS = ("cell_uvp", "cell_undervoltage_l2")  # the BMS's own cell cut-off, by protocol
SETTINGS_EVERY = 3600.0  # [s] between reads of the BMS's own settings
SETTINGS_RETRY = 60.0  # [s] before a failed settings read is tried again
RESET_WAIT = 10.0  # [s] a reset BMS has to answer again
RESULT_KEEP = 30.0  # [s] a result the broker could not take is offered again this long
STOP_ANNOUNCE = 2.0  # [s] at most for the packs' ``offline`` when the reader stops


class Pack:
    """One BMS on the bus: its settings, driver, availability and energy counter."""

    def __init__(
        self, cfg: PackSettings, driver: Driver | None, offline_after: int, energy: EnergyCounter
    ):
        self.cfg = cfg
        self.driver = driver  # None when listening: bmsgate sends nothing to it
        self.tracker = PackTracker(cfg.id, offline_after)
        self.energy = energy
        self.lying = False  # its last answer was implausible (logged once until it is not)
        self.settings: dict[str, Any] = {}  # the BMS's own settings as last read
        self.settings_due = 0.0  # [s] monotonic time of the next settings read
        self.soc = SocEstimator()  # bmsgate's own SOC, when cfg.own_soc


class Reader:
    """Polls every pack of one bus and publishes what it reads."""

    def __init__(
        self,
        bus: BusSettings,
        backbone: Backbone,
        *,
        control: bool = False,
        counters: CounterStore | None = None,
    ) -> None:
        self.bus = bus
        self.backbone = backbone
        self.control = control
        self.counters = counters
        self.link = SerialLink(bus.port, bus.baud, bus.timeout)
        self.module = protocol(bus.protocol)
        self.limits = self.module.INFO.limits
        self.setpoints = table_of(self.module, bus.variant)
        self.packs: dict[str, Pack] = {
            p.id: self._pack(p, phase) for phase, p in enumerate(bus.packs)
        }
        self.lease = LeaseManager(self.link, backbone, set(self.packs), control)
        self.sniffer = Sniffer(backbone, backbone.service, bus.protocol, {}, enabled=bus.sniff)
        self.link.monitor = self.sniffer.see
        self.passthrough = (
            Passthrough(bus.passthrough, bus.baud, self.link) if bus.passthrough else None
        )
        self.polls = 0
        self.failures = 0
        self.keep_awake = bus.keep_awake > 0  # switched at runtime by set_keep_awake
        self.wakes = 0  # harmless reads sent to keep boards awake
        self.implausible = 0  # answers with valid frames and impossible values, not published
        self._backoff = 0.0
        self._saved: float | None = None  # [s] monotonic; None: the counters are not on disk yet
        self._resends: set[asyncio.Task[None]] = set()

    def _pack(self, cfg: PackSettings, phase: int = 0) -> Pack:
        driver = None
        if not self.bus.listen:
            driver = self.module.Driver(self.link, cfg.address, **self.bus.driver_options())
            slow = getattr(driver, "slow", None)  # a protocol with slow reads (its POLL table)
            if isinstance(slow, SlowReads):
                # each pack's slow reads on another poll, so every round of the bus is as long
                slow.every, slow.phase = self.bus.slow_every, phase
        energy = self.counters.load(cfg.id) if self.counters else EnergyCounter()
        pack = Pack(cfg, driver, self.bus.offline_after, energy)
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

    async def poll_pack(self, pack: Pack) -> PackState | None:
        """Read one pack and publish its state, availability change and alarm events."""
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
            await self._missed(pack, _reason(err))
            return None
        self._backoff = 0.0
        state = await self._publish(pack, reading)
        if state is not None and self.setpoints and time.monotonic() >= pack.settings_due:
            await self.read_settings(pack)
        return state

    def soc_rules(self, pack: Pack, capacity: float | None) -> SocRules:
        """The pack's full/empty rules; empty at the BMS's own cell UVP when it was read."""
        cfg = pack.cfg
        uvp = next((pack.settings[k] for k in UVP_SETTINGS if k in pack.settings), None)
        empty = cfg.empty_cell_voltage or (float(uvp) if isinstance(uvp, int | float) else 2.8)
        taper = cfg.full_current if cfg.full_current is not None else 0.02 * (capacity or 0.0)
        return SocRules(cfg.full_cell_voltage, taper, cfg.full_time, empty)

    async def _own_soc(self, pack: Pack, state: PackState) -> PackState:
        """Count the own SOC; at a re-sync, push it to the BMS where that is possible and on."""
        capacity = state.nominal_capacity
        stats = state.cells  # without cells both extremes read 0 V
        event = pack.soc.update(
            time.monotonic(),
            state.current,
            capacity,
            stats.high if stats else 0.0,
            stats.low if stats else 0.0,
            state.soc,
            self.soc_rules(pack, capacity),
        )
        own = pack.soc.soc
        if event is not None and own is not None:
            log.info(
                "%s: own SOC re-synced to %.0f %% (%s); the BMS says %.1f %%",
                pack.cfg.id,
                own,
                event,
                state.soc,
            )
            if pack.cfg.push_soc and self.control:  # the driver refuses where it cannot
                assert pack.driver is not None
                try:
                    back = await pack.driver.set_soc(own)
                    log.info(
                        "%s: SOC %.0f %% pushed to the BMS, read back %.1f %%",
                        pack.cfg.id,
                        own,
                        back,
                    )
                except (*POLL_ERRORS, UnsupportedCommand) as err:
                    log.warning("%s: SOC not pushed to the BMS: %s", pack.cfg.id, err)
        return state.model_copy(update={"soc_estimate": None if own is None else round(own, 1)})

    def _extras(self, pack: Pack, state: PackState) -> dict[str, Any]:
        """The switches the reader knows besides the reading: the balancer and keep-awake."""
        extras = dict(state.extras)
        for key in BALANCER_SETTINGS:  # a switch only the settings carry (JK-PB, DALY new)
            if key in pack.settings and "balancer_enabled" not in extras:
                extras["balancer_enabled"] = bool(pack.settings[key])
        if "balancer_enabled" in extras:
            extras["balancer_enabled"] = bool(extras["balancer_enabled"])
        if self.bus.keep_awake and self.can_keep_awake:
            extras["keep_awake"] = self.keep_awake
        return extras

    async def read_settings(self, pack: Pack) -> bool:
        """Read the BMS's own settings and publish them (retained); False if it did not answer.

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
                SettingValue(
                    key=point.key,
                    label=point.label,
                    unit=point.unit,
                    value=values[point.key],
                    writable=point.writable,
                    min=low,
                    max=high,
                )
            )
        message = BmsSettings(
            pack=pack.cfg.id, protocol=self.bus.protocol, ts=utcnow(), settings=rows
        )
        await self.backbone.publish(topics.SETTINGS, pack.cfg.id, message)

    async def _publish(self, pack: Pack, reading: BmsReading) -> PackState | None:
        """Publish a pack's reading (polled or heard): state, availability and alarm events."""
        problem = implausible(reading, self.limits)
        if problem is not None:
            await self._lied(pack, problem)
            return None
        if pack.lying:
            pack.lying = False
            log.info("%s: plausible answers again", pack.cfg.id)
        now = utcnow()
        state = to_state(reading, pack.cfg, self.bus.protocol, now)
        pack.energy.add(now, state.power, state.current, time.monotonic())
        state = state.model_copy(
            update=pack.energy.totals() | {"extras": self._extras(pack, state)}
        )
        if pack.cfg.own_soc:
            state = await self._own_soc(pack, state)
        await self.backbone.publish(topics.STATE, pack.cfg.id, state)
        change = pack.tracker.seen(state.ts)
        if change:
            log.info("%s is online", pack.cfg.id)
            await self.backbone.publish(topics.AVAILABILITY, pack.cfg.id, change)
        for event in pack.tracker.alarm_changes(state):
            await self.backbone.publish(topics.ALARM, pack.cfg.id, event)
        return state

    async def _missed(self, pack: Pack, reason: str) -> None:
        """Count a poll without a usable state; the pack goes offline after ``offline_after``."""
        change = pack.tracker.missed(utcnow(), reason)
        if change:
            log.warning("%s is offline: %s", pack.cfg.id, change.reason)
            await self.backbone.publish(topics.AVAILABILITY, pack.cfg.id, change)

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

    def continue_counters(self, published: dict[str, PackState]) -> None:
        """Each pack's counters at least its last published state's (retained on the backbone)."""
        for pack_id, state in published.items():
            pack = self.packs.get(pack_id)
            if pack is not None and pack.energy.at_least(state):
                log.info(
                    "%s: energy counters go on from the last published state (%s), ahead "
                    "of the saved ones",
                    pack_id,
                    state.ts.isoformat(),
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
                await self.backbone.publish(topics.AVAILABILITY, pack.cfg.id, pack.tracker.last)

    async def announce_stop(self) -> None:
        """Every pack ``offline`` (retained) as the reader stops, so nobody waits for staleness.

        Bounded: with the broker away the stop goes on; the API's ``stale_after`` covers that,
        as it covers a reader that dies without a word (its last will is the service status).
        """
        now = utcnow()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_ANNOUNCE):
                for pack_id in self.packs:
                    gone = Availability(
                        pack=pack_id, state="offline", ts=now, reason=READER_STOPPED
                    )
                    await self.backbone.publish(topics.AVAILABILITY, pack_id, gone)

    def heard_pack(self, address: int) -> Pack:
        """The pack at ``address`` on a listened bus: configured, or made when first heard."""
        for pack in self.packs.values():
            if pack.cfg.address == address:
                return pack
        cfg = PackSettings(id=f"{self.backbone.service}-{address}", address=address)
        log.info("heard address %d on the bus: pack %s", address, cfg.id)
        self.packs[cfg.id] = pack = self._pack(cfg)
        self.lease.packs.add(cfg.id)
        return pack

    async def listen(self) -> None:
        """Listen mode: publish every address the bus's master and slaves send, sending nothing.

        A pack not heard within ``poll_interval`` (the master's cycle) counts a missed poll, so
        it goes offline after ``offline_after`` cycles of silence.
        """
        hears = cast(Any, self.module)  # a protocol with INFO.listen_addresses has these
        listener = hears.BusListener()
        collector = FrameCollector(b"", hears.bus_framer)
        period = max(self.bus.poll_interval, 0.5)
        heard: set[str] = set()
        ends = time.monotonic() + period
        beat = time.monotonic()
        while True:
            try:
                frames = await self.link.hear(collector, max(0.0, ends - time.monotonic()))
                self._backoff = 0.0
            except LinkDown as err:
                await self._port_down(err)
                frames = []
            for frame in frames:
                for item in listener.feed(frame):
                    if item.frame_type == hears.TYPE_SETTINGS and self.setpoints:
                        heard_settings = pick(self.setpoints, item.values)
                        await self._publish_settings(self.heard_pack(item.address), heard_settings)
                    if item.frame_type != hears.TYPE_LIVE:
                        continue  # settings and device info: not a state
                    pack = self.heard_pack(item.address)
                    self.polls += 1
                    try:
                        reading = hears.to_reading(item.values)
                    except FrameError as err:
                        self.failures += 1
                        log.debug("%s: heard frame not usable: %s", pack.cfg.id, err)
                        continue
                    heard.add(pack.cfg.id)
                    await self._publish(pack, reading)
            now = time.monotonic()
            if now >= ends:
                for pack in list(self.packs.values()):
                    if pack.cfg.id not in heard:
                        await self._missed(pack, "not heard on the bus")
                heard.clear()
                ends = now + period
                if self.counters and (self._saved is None or now - self._saved >= SAVE_EVERY):
                    self.save_counters()
            if now - beat > self.backbone.cfg.heartbeat:
                beat = now
                await self.republish_availability()

    async def run(self) -> None:
        """Poll forever at the configured interval (or listen, with ``listen``)."""
        if self.bus.listen:
            await self.listen()
            return
        beat = time.monotonic()
        connects = self.backbone.connects
        while True:
            if not self.lease.free.is_set():
                await self.lease.free.wait()  # the line is leased: no polling meanwhile
            started = time.monotonic()
            await self.poll_once()
            # connected again since the last round: the broker may have lost retained messages
            if connects != self.backbone.connects or started - beat > self.backbone.cfg.heartbeat:
                connects = self.backbone.connects
                beat = started
                await self.republish_availability()
                await self.set_sniff(self.backbone.service)
            await self._idle(started + self.bus.poll_interval)

    @property
    def can_keep_awake(self) -> bool:
        """Whether this protocol's driver has a harmless request to keep a board awake."""
        return hasattr(self.module.Driver, "wake")

    async def _idle(self, until: float) -> None:
        """Wait for the next poll; with keep-awake on, ask each board something harmless."""
        while True:
            left = until - time.monotonic()
            if not (self.keep_awake and self.bus.keep_awake and self.can_keep_awake):
                await asyncio.sleep(max(0.0, left))
                return
            if left <= self.bus.keep_awake:
                await asyncio.sleep(max(0.0, left))
                return
            await asyncio.sleep(self.bus.keep_awake)
            if not self.lease.free.is_set():
                continue  # the line is leased: nothing of ours goes on it
            for pack in self.packs.values():
                try:
                    await pack.driver.wake()  # type: ignore[union-attr]
                    self.wakes += 1
                except POLL_ERRORS as err:
                    log.debug("%s: keep-awake read not answered: %s", pack.cfg.id, err)

    async def set_sniff(self, bus: str, request: SniffSet | None = None) -> None:
        """Turn the sniffer on or off (``request``), then publish whether it is on."""
        if bus != self.backbone.service:
            return  # another reader's bus
        if request is not None and request.enabled != self.sniffer.enabled:
            self.sniffer.enabled = request.enabled
            on = "on" if request.enabled else "off"
            log.info("sniffer %s asked by %s", on, asker(request.requested_by))
        state = SniffState(
            bus=bus,
            enabled=self.sniffer.enabled,
            ts=utcnow(),
            transaction=request.transaction if request else None,
        )
        await self.backbone.publish(topics.SNIFF_STATE, bus, state)

    async def execute(self, pack_id: str, cmd: Command) -> None:
        """Carry out a command; publish the value read back from the BMS, or why it failed."""
        pack = self.packs.get(pack_id)
        if pack is None:
            return  # another reader owns that pack
        if not self.control:
            await self._result(pack_id, cmd, "error", error="control is disabled")
            return
        if self.bus.listen:
            error = "the bus is only listened to: bmsgate sends nothing on it"
            await self._result(pack_id, cmd, "error", error=error)
            return
        try:
            value, confirmed = await self._apply(pack, cmd)
        except (*POLL_ERRORS, UnsupportedCommand, SettingError) as err:
            log.info(
                "%s: %s%s %s asked by %s refused: %s",
                pack_id,
                cmd.action,
                f" {cmd.setting}" if cmd.setting else "",
                cmd.value,
                asker(cmd.requested_by),
                err,
            )
            await self._result(pack_id, cmd, "error", error=str(err) or type(err).__name__)
            return
        log.info(
            "%s: %s%s %s asked by %s -> %s",
            pack_id,
            cmd.action,
            f" {cmd.setting}" if cmd.setting else "",
            cmd.value,
            asker(cmd.requested_by),
            value,
        )
        if cmd.action != "read_settings":
            await self.poll_pack(pack)  # everyone sees the new state at once, not the next poll
        if confirmed:
            await self._result(pack_id, cmd, "ok", value)
        else:
            await self._result(pack_id, cmd, "error", value, f"the BMS reports {value} afterwards")

    async def _apply(self, pack: Pack, cmd: Command) -> tuple[bool | float | None, bool]:
        """Send the command; return the value read back and whether it is what was asked."""
        driver = pack.driver
        assert driver is not None  # commands are refused on a listened bus
        if cmd.action in ("set_setting", "read_settings") and not self.setpoints:
            raise UnsupportedCommand(f"{self.bus.protocol} has no documented settings")
        if cmd.action == "set_keep_awake":
            if not self.can_keep_awake:
                raise UnsupportedCommand(f"{self.bus.protocol} has no keep-awake request")
            if not self.bus.keep_awake:
                raise UnsupportedCommand("keep_awake is 0 in this bus's configuration")
            self.keep_awake = bool(cmd.value)
            return self.keep_awake, True  # the reader's own switch: what it does now
        if cmd.action == "set_balancer":
            set_balancer = getattr(driver, "set_balancer", None)
            if set_balancer is None:
                raise UnsupportedCommand(f"{self.bus.protocol} has no balancer switch")
            on = bool(cmd.value)
            state = bool(await set_balancer(on))
            if self.setpoints:
                pack.settings_due = 0.0  # the switch is a setting too: read them again
            return state, state == on
        if cmd.action == "read_settings":
            if not await self.read_settings(pack):
                raise LinkTimeout("the BMS did not answer the settings read")
            return None, True
        if cmd.action == "set_setting":
            assert cmd.setting is not None  # validated by Command
            assert cmd.value is not None
            if not pack.settings and not await self.read_settings(pack):
                raise LinkTimeout("the settings could not be read, so the write is not bounded")
            target = float(cmd.value)
            point = check_write(self.setpoints, pack.settings, cmd.setting, target)
            write = driver.write_setting  # type: ignore[attr-defined]
            values = await write(cmd.setting, target, pack.settings)
            pack.settings_due = time.monotonic() + SETTINGS_EVERY
            await self._publish_settings(pack, values)
            back = values.get(cmd.setting)
            if not isinstance(back, int | float):
                return None, False
            return float(back), abs(float(back) - target) <= point.step * 1.01
        if cmd.action in ("set_charge_mos", "set_discharge_mos"):
            on = bool(cmd.value)
            state = await driver.set_mos(cmd.action == "set_charge_mos", on)
            return state, state == on
        if cmd.action == "set_soc":
            target = float(cmd.value)  # type: ignore[arg-type]  # validated by Command
            soc = await driver.set_soc(target)
            return soc, abs(soc - target) <= 0.5  # the BMS stores 0.1 % steps, some round to 1 %
        reset = getattr(driver, "reset", None)
        if reset is None:
            raise UnsupportedCommand(f"{self.bus.protocol} has no reset command")
        with contextlib.suppress(LinkTimeout):  # a board may restart without answering
            await reset()
        deadline = time.monotonic() + RESET_WAIT
        while True:
            try:
                await driver.read()
                return None, True
            except (FrameError, LinkTimeout):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _result(
        self,
        pack_id: str,
        cmd: Command,
        status: Literal["ok", "error"],
        value: bool | float | None = None,
        error: str | None = None,
    ) -> None:
        result = CommandResult(
            transaction=cmd.transaction,
            pack=pack_id,
            action=cmd.action,
            status=status,
            value=value,
            error=error,
            ts=utcnow(),
        )
        if not await self.backbone.publish(topics.RESULT, pack_id, result):
            # the broker went away mid-command: its caller still waits, so offer it again
            task = asyncio.create_task(self._resend(pack_id, result))
            self._resends.add(task)
            task.add_done_callback(self._resends.discard)

    async def _resend(self, pack_id: str, result: CommandResult) -> None:
        deadline = time.monotonic() + RESULT_KEEP
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            if await self.backbone.publish(topics.RESULT, pack_id, result):
                log.info(
                    "%s: result of %s sent after the broker came back", pack_id, result.transaction
                )
                return
        log.warning(
            "%s: result of %s not delivered: no broker for %.0f s",
            pack_id,
            result.transaction,
            RESULT_KEEP,
        )


def _reason(err: Exception) -> str:
    if isinstance(err, LinkTimeout):
        return "no answer"
    if isinstance(err, LinkDown):
        return "serial port unavailable"
    return f"bad frame: {err}"


async def serve(reader: Reader) -> None:
    """Take commands and poll until cancelled; then the packs go offline and the port closes.

    Every pack is announced ``offline`` first, then the counters are saved and the port closed.
    """

    async def on_command(pack_id: str, cmd: Command) -> None:
        await reader.execute(pack_id, cmd)

    reader.backbone.subscribe(topics.COMMAND, on_command, retained=False)
    reader.backbone.subscribe(topics.RAW_LEASE, reader.lease.on_request, retained=False)
    reader.backbone.subscribe(topics.RAW_TX, reader.lease.on_tx, retained=False)
    reader.backbone.subscribe(topics.SNIFF_SET, reader.set_sniff, retained=False)
    async with reader.backbone:
        # before the first poll: the counters go on from what was last published, if ahead
        reader.continue_counters(
            await reader.backbone.read_retained(topics.STATE, list(reader.packs))
        )
        await reader.set_sniff(reader.backbone.service)
        helpers = [
            asyncio.create_task(job.run())
            for job in (reader.sniffer, reader.passthrough)
            if job is not None
        ]
        try:
            await reader.run()
        finally:
            await reader.announce_stop()
            await stop_tasks(helpers)
            await reader.lease.close()
            reader.save_counters()
            await reader.link.close()


async def run_reader(cfg: Settings, bus_index: int = 0) -> None:
    """Run the reader for bus ``bus_index`` of the settings until cancelled."""
    holder: list[Reader] = []
    backbone = Backbone(
        cfg.mqtt,
        f"reader-{bus_index}",
        detail=lambda: holder[0].counters_detail() if holder else {},
    )
    holder.append(
        Reader(
            cfg.buses[bus_index],
            backbone,
            control=cfg.control.enabled,
            counters=CounterStore(cfg.data_dir / "reader"),
        )
    )
    await serve(holder[0])

"""The reader service: owns one serial port, polls its BMS, publishes states, runs commands."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Literal, cast

from bmsgate_bms.driver import UnsupportedCommand
from bmsgate_bms.errors import FrameError, LinkTimeout
from bmsgate_bms.link import FrameCollector
from bmsgate_bms.setpoints import SettingError, check_write, pick
from bmsgate_common import topics
from bmsgate_common.models import (
    AlarmEvent,
    Availability,
    BmsSettings,
    CellStats,
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
from bmsgate_common.settings import BusSettings, PackSettings, Settings
from bmsgate_common.soc import SocRules
from bmsgate_common.tasks import stop_tasks
from bmsgate_serial.link import LinkDown

from .core import POLL_ERRORS, SAVE_EVERY, SETTINGS_EVERY, BusPoller, Pack
from .counters import CounterStore
from .lease import LeaseManager
from .passthrough import Passthrough, Sniffer

log = logging.getLogger(__name__)

UVP_SETTINGS = ("cell_uvp", "cell_undervoltage_l2")  # the BMS's own cell cut-off, by protocol
RESET_WAIT = 10.0  # [s] a reset BMS has to answer again
RESULT_KEEP = 30.0  # [s] a result the broker could not take is offered again this long


class ModelMessages:
    """The reader's messages as the models of bmsgate_common.models."""

    def pack_state(self, fields: dict[str, Any]) -> PackState:
        return PackState(**fields)

    def availability(self, **fields: Any) -> Availability:
        return Availability(**fields)

    def alarm_event(self, **fields: Any) -> AlarmEvent:
        return AlarmEvent(**fields)

    def bms_settings(self, settings: list[dict[str, Any]], **fields: Any) -> BmsSettings:
        return BmsSettings(settings=[SettingValue(**row) for row in settings], **fields)

    def sniff_state(self, **fields: Any) -> SniffState:
        return SniffState(**fields)


class Reader(BusPoller):
    """Polls every pack of one bus and publishes what it reads; runs commands, leases, sniffs."""

    def __init__(
        self,
        bus: BusSettings,
        backbone: Backbone,
        *,
        control: bool = False,
        counters: CounterStore | None = None,
    ) -> None:
        super().__init__(
            bus, ModelMessages(), backbone.service, backbone.cfg.heartbeat, counters=counters
        )
        self.backbone = backbone
        self.control = control
        self.lease = LeaseManager(self.link, backbone, set(self.packs), control)
        self.sniffer = Sniffer(backbone, backbone.service, bus.protocol, {}, enabled=bus.sniff)
        self.link.monitor = self.sniffer.see
        self.passthrough = (
            Passthrough(bus.passthrough, bus.baud, self.link) if bus.passthrough else None
        )
        self.wakes = 0  # harmless reads sent to keep boards awake
        self._resends: set[asyncio.Task[None]] = set()

    async def send(self, kind: str, name: str, message: Any) -> bool:
        """Publish ``message`` on the backbone (its model checked against the topic's)."""
        return await self.backbone.publish(topics.TOPICS[kind], name, message)

    @property
    def connects(self) -> int:
        return self.backbone.connects

    @property
    def sniffing(self) -> bool:
        return self.sniffer.enabled

    def soc_rules(self, pack: Pack, capacity: float | None) -> SocRules:
        """The pack's full/empty rules; empty at the BMS's own cell UVP when it was read."""
        cfg = pack.cfg
        uvp = next((pack.settings[k] for k in UVP_SETTINGS if k in pack.settings), None)
        empty = cfg.empty_cell_voltage or (float(uvp) if isinstance(uvp, int | float) else 2.8)
        taper = cfg.full_current if cfg.full_current is not None else 0.02 * (capacity or 0.0)
        return SocRules(cfg.full_cell_voltage, taper, cfg.full_time, empty)

    async def _own_soc(self, pack: Pack, fields: dict[str, Any]) -> None:
        """Count the own SOC; at a re-sync, push it to the BMS where that is possible and on."""
        capacity = fields["nominal_capacity"]
        stats = CellStats.of(fields["cell_voltages"])  # without cells both extremes read 0 V
        event = pack.soc.update(
            time.monotonic(),
            fields["current"],
            capacity,
            stats.high if stats else 0.0,
            stats.low if stats else 0.0,
            fields["soc"],
            self.soc_rules(pack, capacity),
        )
        own = pack.soc.soc
        if event is not None and own is not None:
            log.info(
                "%s: own SOC re-synced to %.0f %% (%s); the BMS says %.1f %%",
                pack.cfg.id,
                own,
                event,
                fields["soc"],
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
        fields["soc_estimate"] = None if own is None else round(own, 1)

    def heard_pack(self, address: int) -> Pack:
        """The pack at ``address`` on a listened bus: configured, or made when first heard."""
        for pack in self.packs.values():
            if pack.cfg.address == address:
                return pack
        cfg = PackSettings(id=f"{self.service}-{address}", address=address)
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
            if now - beat > self.heartbeat:
                beat = now
                await self.republish_availability()

    async def run(self) -> None:
        """Poll forever at the configured interval (or listen, with ``listen``)."""
        if self.bus.listen:
            await self.listen()
            return
        await self.poll_forever()

    async def _before_poll(self) -> None:
        if not self.lease.free.is_set():
            await self.lease.free.wait()  # the line is leased: no polling meanwhile

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
        if bus != self.service:
            return  # another reader's bus
        if request is not None and request.enabled != self.sniffer.enabled:
            self.sniffer.enabled = request.enabled
            on = "on" if request.enabled else "off"
            log.info("sniffer %s asked by %s", on, asker(request.requested_by))
        await self.send_sniff_state(request.transaction if request else None)

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


async def serve(reader: Reader, handover: tuple[str, bytes] | None = None) -> None:
    """Take commands and poll until cancelled; then the packs go offline and the port closes.

    Every pack is announced ``offline`` first, then the counters are saved and the port closed.
    ``handover``: a message (topic, payload) the lean reader received and hands over (lean.py),
    taken as if it had come now.
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
        await reader.send_sniff_state()
        if handover is not None:
            reader.backbone.take(*handover)
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


async def run_reader(
    cfg: Settings, bus_index: int = 0, *, handover: tuple[str, bytes] | None = None
) -> None:
    """Run the reader for bus ``bus_index`` of the settings until cancelled (``serve``)."""
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
    await serve(holder[0], handover)

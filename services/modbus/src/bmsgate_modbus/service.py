"""The Modbus service: backbone messages into the register store, the server, the push targets."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time

from pymodbus.constants import ExcCodes

from bmsgate_common import topics
from bmsgate_common.models import (
    Availability,
    Command,
    CommandResult,
    DailyStats,
    Extra,
    PackState,
    requester,
    utcnow,
)
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import Settings
from bmsgate_common.tasks import stop_tasks
from bmsgate_common.timezones import site_zone

from .client import PushTarget
from .logic import (
    MapOptions,
    Quantities,
    RefusalLog,
    RegisterStore,
    client_may_write,
    default_units,
    write_commands,
)
from .server import RegisterServer

log = logging.getLogger(__name__)

TICK = 1.0  # [s] seconds counter, state age and staleness move on this often
PUBLISH_TIMEOUT = 2.0  # [s] a write request waits this long for the backbone to take a command


def _free_memory() -> float:
    """Available memory [bytes] (register 50 saturates at 65535 anyway)."""
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError):
        return 0.0


class ModbusService:
    """Keeps the store current from the backbone and turns accepted writes into commands."""

    def __init__(self, cfg: Settings, backbone: Backbone) -> None:
        """Build the store for the configured units; nothing connects yet."""
        self.cfg = cfg
        self.backbone = backbone
        opts = MapOptions(
            word_order=cfg.modbus.float_word_order,
            temperature_unit=cfg.modbus.temperature_unit,
            stale_after=cfg.stale_after,
            tz=site_zone(cfg),
            display=cfg.modbus.display,
        )
        self.store = RegisterStore(
            default_units(cfg), {b.id: tuple(b.packs) for b in cfg.banks}, opts
        )
        self.server = (
            RegisterServer(self.store, cfg.modbus.host, cfg.modbus.port, self.on_write)
            if cfg.modbus.enabled
            else None
        )
        self.targets = [PushTarget(t, self._push_quantities) for t in cfg.modbus.push]
        self.commands = 0
        self._transactions = itertools.count(1)
        # write requests waiting for their command's result: transaction -> (pack, future);
        # each entry leaves with its request, answered or timed out
        self._waiting: dict[str, tuple[str, asyncio.Future[CommandResult]]] = {}
        self._started = time.monotonic()
        self.refusals = RefusalLog()  # writes refused before any check of their content
        self.tick()

    def counters(self) -> dict[str, Extra]:
        """Health figures for the service status."""
        out: dict[str, Extra] = {"commands": self.commands, "waiting": len(self._waiting)}
        if self.server is not None:
            out |= {
                "requests": self.server.requests,
                "refused": self.server.refused,
                "clients": self.server.clients,
            }
        for i, target in enumerate(self.targets):
            out |= {
                f"push{i}_up": target.up,
                f"push{i}_writes": target.writes,
                f"push{i}_failures": target.failures,
            }
        return out

    def subscribe(self) -> None:
        """Register the backbone handlers (before the backbone starts)."""
        self.backbone.subscribe(topics.STATE, self._on_state, qos0=True)
        self.backbone.subscribe(topics.AVAILABILITY, self._on_availability)
        self.backbone.subscribe(topics.DAILY, self._on_daily)
        self.backbone.subscribe(topics.RESULT, self._on_result, retained=False)

    def _changed(self, pack: str) -> None:
        self.store.refresh(utcnow(), {pack})
        touched = {pack} | {bank for bank, cfg in self.store.banks.items() if pack in cfg.packs}
        for target in self.targets:
            target.notify(touched)

    async def _on_state(self, name: str, state: PackState) -> None:
        if name != state.pack:
            log.warning("dropping state for %r on the topic of %r", state.pack, name)
            return
        self.store.on_state(state)
        self._changed(name)

    async def _on_availability(self, name: str, availability: Availability) -> None:
        if name == availability.pack:
            self.store.on_availability(availability)
            self._changed(name)

    async def _on_daily(self, name: str, daily: DailyStats) -> None:
        if name == daily.pack:
            self.store.on_daily(daily)
            self._changed(name)

    async def _on_result(self, name: str, result: CommandResult) -> None:
        if name != result.pack:
            return
        waiter = self._waiting.get(result.transaction)
        if waiter is not None and waiter[0] == name and not waiter[1].done():
            waiter[1].set_result(result)
        elif result.transaction.startswith("modbus-"):
            # the reader offers a result again after a broker outage; its request has gone
            log.info("%s: result of %s came after its write was answered", name, result.transaction)
        if self.store.on_result(result):
            self._changed(name)

    def _push_quantities(self) -> dict[str, Quantities | None]:
        now = utcnow()
        wanted = {v.pack for t in self.targets for v in t.cfg.values}
        return {pack: self.store.quantities(pack, now) for pack in wanted}

    def tick(self) -> None:
        """Move the seconds counter, state ages and staleness on."""
        at = utcnow()
        self.store.set_system(
            uptime=time.monotonic() - self._started, free_memory=_free_memory(), now=at
        )
        self.store.refresh(at)
        for client, more, seconds in self.refusals.summaries(time.monotonic()):
            log.warning(
                "%d more writes from %s refused in %.0f s (logged one by one: the first %d)",
                more,
                client,
                seconds,
                self.refusals.per_window,
            )

    def _refused(self, client: str, asked: str, why: str) -> ExcCodes:
        if self.refusals.note(client, time.monotonic()):
            log.warning("%s refused: %s", asked, why)
        return ExcCodes.ILLEGAL_FUNCTION  # the server is read-only for this client

    async def on_write(
        self, client: str, unit: int, offset: int, values: list[int]
    ) -> ExcCodes | None:
        """Decide about a write request; accepted MOS writes go out as backbone commands.

        Modbus TCP has no authentication, so a write needs control enabled and a client address
        in ``modbus.write_clients``; every write is logged with that address. The write is
        acknowledged when the reader confirms every command with an ok result: an error result
        is DEVICE_FAILURE, no result within ``modbus.command_timeout`` GATEWAY_NO_RESPONSE (the
        command or its result may have died with the broker).
        """
        asked = f"write from {client} to unit {unit} offset {offset} values {values}"
        if not self.cfg.control.enabled:  # secure default: this server is read-only
            return self._refused(client, asked, "control is off (control.enabled)")
        if not client_may_write(client, self.cfg.modbus.write_clients):
            return self._refused(client, asked, "client not in modbus.write_clients")
        target = self.store.units.get(unit)
        if target is None or target in self.store.banks:
            log.warning("%s refused: not a pack's unit", asked)
            return ExcCodes.ILLEGAL_ADDRESS  # a bank's registers are read-only
        commands = write_commands(offset, values)
        if isinstance(commands, ExcCodes):
            log.warning("%s refused: only 0 or 1 to the MOS registers (%s)", asked, commands.name)
            return commands
        if not self.store.online(target, utcnow()):
            log.warning("%s refused: %s is offline", asked, target)
            return ExcCodes.GATEWAY_NO_RESPONSE
        if not self.backbone.connected:
            # the broker away (or not yet reached): the command's result could not be heard,
            # so the command is not sent
            log.warning("%s refused: the backbone is not connected", asked)
            return ExcCodes.GATEWAY_NO_RESPONSE
        log.info("%s accepted for %s", asked, target)
        sent: list[Command] = []
        timeout = self.cfg.modbus.command_timeout
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):  # the whole write, publishing included
                for action, value in commands:
                    command = Command(
                        transaction=f"modbus-{unit}-{next(self._transactions)}",
                        action=action,
                        value=value,
                        requested_by=requester(self.cfg.mqtt.username, "modbus", client),
                    )
                    # waiting before the publish, so a quick result cannot pass unseen
                    self._waiting[command.transaction] = (target, loop.create_future())
                    sent.append(command)
                    if not await self._send(target, command):
                        log.warning("%s: %s not sent: backbone unreachable", asked, action)
                        return ExcCodes.DEVICE_FAILURE
                    self.commands += 1
                    log.info(
                        "unit %d: %s %s sent to %s (%s, asked by %s)",
                        unit,
                        action,
                        value,
                        target,
                        command.transaction,
                        client,
                    )
                results = [await self._waiting[c.transaction][1] for c in sent]
        except TimeoutError:
            # the timeout cancels the future it interrupted: cancelled = no result either
            waited = [(c.transaction, self._waiting[c.transaction][1]) for c in sent]
            missing = [t for t, future in waited if future.cancelled() or not future.done()]
            log.warning(
                "%s: no result for %s within %.1f s (modbus.command_timeout)",
                asked,
                ", ".join(missing),
                timeout,
            )
            return ExcCodes.GATEWAY_NO_RESPONSE
        finally:
            for command in sent:
                self._waiting.pop(command.transaction, None)
        failed = [r for r in results if r.status != "ok"]
        for result in failed:
            log.warning("%s: %s failed: %s", asked, result.action, result.error)
        return ExcCodes.DEVICE_FAILURE if failed else None

    async def _send(self, target: str, command: Command) -> bool:
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                return await self.backbone.publish(topics.COMMAND, target, command)
        except TimeoutError:
            return False

    async def run(self) -> None:
        """Serve and push until cancelled."""
        tasks = [asyncio.create_task(t.run(), name=f"push {t.name}") for t in self.targets]
        try:
            while True:
                await asyncio.sleep(TICK)
                self.tick()
        finally:
            await stop_tasks(tasks)


async def run_modbus(cfg: Settings) -> None:
    """Run the Modbus service until cancelled; ListenError when the port cannot be bound."""
    service: ModbusService | None = None
    backbone = Backbone(cfg.mqtt, "modbus", detail=lambda: service.counters() if service else {})
    service = ModbusService(cfg, backbone)
    service.subscribe()
    if service.server is not None:
        await service.server.start()  # before the backbone: a bad port fails fast
    elif not service.targets:
        log.info("modbus server disabled and no push targets: nothing to do")
    try:
        async with backbone:
            await service.run()
    finally:
        if service.server is not None:
            await service.server.stop()

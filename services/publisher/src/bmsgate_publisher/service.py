"""The publisher service: backbone in, dongle packets / HA discovery / flat topics out; banks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import time
from datetime import datetime
from pathlib import Path

from bmsgate_common import bank as banks
from bmsgate_common import topics
from bmsgate_common.durable import write_durably
from bmsgate_common.liveness import Arrivals
from bmsgate_common.models import (
    Availability,
    BmsSettings,
    Command,
    CommandResult,
    DailyStats,
    Extra,
    PackState,
    requester,
    utcnow,
)
from bmsgate_common.mqtt import VERSION, Backbone
from bmsgate_common.settings import BankSettings, Settings
from bmsgate_common.tasks import stop_tasks
from bmsgate_common.timezones import site_zone
from bmsgate_outputs.discovery import web_url
from bmsgate_outputs.plan import HeardPacks, Plan

from .commands import parse_command
from .target import TargetLink

log = logging.getLogger(__name__)
BANK_HOLD = 2.0  # [s] banks are not published before: their retained counters come in first
BANK_SAVE_EVERY = 60.0  # [s] between writes of the bank counters; also written when a member
# starts or stops counting, so the starts saved with them stay true and a crash loses nothing:
# the first state after a restart adds what the member moved since the save

BANK_TICK = 1.0  # [s] how often banks are re-checked for members going stale
COMMAND_QUEUE = 100  # commands waiting for the backbone; more means someone is flooding us
# [s] a target's command without a result by then is reported unconfirmed (as long as the API's
# default command_timeout; the reader offers a result again for 30 s after a broker outage)
RESULT_WAIT = 15.0


def free_memory() -> int:
    """Available memory [bytes] for the dongle's ``mem`` field (MemAvailable; 0 if unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file says kB
    except (OSError, ValueError, IndexError):
        pass
    return 0


class BankTracker:
    """Keeps one bank's combined state, counters and availability, and says when they change."""

    def __init__(self, cfg: BankSettings, totals: banks.BankTotals | None = None) -> None:
        self.cfg = cfg
        self.members = {p: banks.Member() for p in cfg.packs}
        self.first_run = totals is None  # no saved totals: continue from the retained state
        self.totals = totals or banks.BankTotals()
        self.state: PackState | None = None
        self.online: bool | None = None
        self.moved = False  # a member started or stopped counting at the latest update

    def update(
        self, now: datetime, stale_after: float, arrivals: Arrivals | None = None
    ) -> tuple[PackState | None, Availability | None]:
        """The state and availability to publish (each None when unchanged).

        Nothing while a member is not judged yet (bmsgate_common.bank.pending): after a start
        the bank is first published whole, or with the members known to be out left out.
        """
        self.moved = False
        if arrivals is not None and banks.pending(
            self.cfg, self.members, now, stale_after, arrivals
        ):
            return None, None
        used = banks.counted(self.cfg, self.members, now, stale_after, arrivals)
        unheard = {p for p, m in self.members.items() if m.state is None}
        shares = banks.cycle_shares(self.cfg, self.members)
        self.moved = self.totals.update(used, shares, unheard)
        state = banks.combine(
            self.cfg, self.members, now, stale_after, self.totals.shown(), arrivals
        )
        new_state = state if state is not None and state != self.state else None
        if state is not None:
            self.state = state
        online = state is not None
        change = None
        if online != self.online:
            self.online = online
            change = banks.availability(self.cfg, state, now)
        return new_state, change


class BankBook:
    """The banks' counters on disk (one JSON file), replaced atomically and durably."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, banks.BankTotals]:
        """The saved totals by bank id; a damaged file is reported and set aside."""
        try:
            data = json.loads(self.path.read_text())
            return {str(b): banks.BankTotals.from_json(t) for b, t in data["banks"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            kept = self.path.with_suffix(".damaged")
            log.error("bank counters %s unreadable (%s); kept as %s, now 0", self.path, err, kept)
            with contextlib.suppress(OSError):
                self.path.replace(kept)
            return {}

    def save(self, totals: dict[str, banks.BankTotals]) -> None:
        """Write them durably: a power cut leaves the old or the new file (durable.py)."""
        body = {"v": 1, "banks": {b: t.to_json() for b, t in totals.items()}}
        write_durably(self.path, json.dumps(body).encode(), mode=0o644)


class Publisher:
    """Everything the service does between the backbone and the targets."""

    def __init__(
        self, cfg: Settings, backbone: Backbone, *, result_wait: float = RESULT_WAIT
    ) -> None:
        self.cfg = cfg
        self.backbone = backbone
        self.control = cfg.control.enabled
        pub = cfg.publisher
        self.hub = HeardPacks(stale_after=cfg.stale_after)
        self.zone = site_zone(cfg)  # of the dongle's local ``ts``
        web = web_url(cfg.api.host, cfg.api.port, socket.gethostname())
        self.plans = {
            t.name: Plan(
                t,
                self.control,
                VERSION,
                cfg.stale_after,
                configuration_url=t.homeassistant.configuration_url or web,
            )
            for t in pub.targets
        }
        known = [p.id for b in cfg.buses for p in b.packs] + [b.id for b in cfg.banks]
        self.links = {
            t.name: TargetLink(
                t,
                cfg.mqtt,
                self.on_command,
                [p for p in known if self.plans[t.name].wants(p)],
                configs=self.on_config,
                stale_after=cfg.stale_after,
            )
            for t in pub.targets
        }
        self.book = BankBook(cfg.data_dir / "publisher" / "bank-counters.json")
        saved = self.book.load()
        self.banks = {b.id: BankTracker(b, saved.get(b.id)) for b in cfg.banks}
        self.commands: asyncio.Queue[tuple[str, Command]] = asyncio.Queue(COMMAND_QUEUE)
        self.refused = 0
        self.started = time.monotonic()
        self._transactions = itertools.count(1)
        self.result_wait = result_wait
        # our commands waiting for their result: transaction -> (pack, action, give-up timer)
        self._ours: dict[str, tuple[str, str, asyncio.TimerHandle]] = {}

    def counters(self) -> dict[str, Extra]:
        """Health figures for the service status."""
        out: dict[str, Extra] = {
            "packs": len(self.hub.packs),
            "refused": self.refused,
            "waiting": len(self._ours),
        }
        for link in self.links.values():
            out |= link.counters()
        return out

    # --- backbone in ---------------------------------------------------------------------

    async def on_state(self, name: str, state: PackState) -> None:
        """A pack (or bank) state."""
        if name != state.pack:
            return
        self.hub.on_state(state)
        own = self.banks.get(name)
        if own is not None and not self._publishing():  # retained, from before this start
            own.totals.heard(banks.counters_of(state), first_run=own.first_run)
            own.first_run = False  # one retained state at most
        for tracker in self.banks.values():
            if name in tracker.members:
                tracker.members[name].state = state
                self._bank_update(tracker)

    async def on_availability(self, name: str, change: Availability) -> None:
        """A pack came or went."""
        if name != change.pack:
            return
        self.hub.on_availability(change)
        for tracker in self.banks.values():
            if name in tracker.members:
                tracker.members[name].availability = change
                self._bank_update(tracker)

    async def on_daily(self, name: str, daily: DailyStats) -> None:
        """The day so far, for the dongle's daily packet."""
        self.hub.view(name).daily = daily

    async def on_settings(self, name: str, settings: BmsSettings) -> None:
        """The BMS's own settings, for Home Assistant's diagnostic sensors."""
        if name == settings.pack:
            self.hub.view(name).settings = settings

    async def on_result(self, name: str, result: CommandResult) -> None:
        """A command's outcome: the confirmed switch state goes out at once."""
        if self._settled(result.transaction) is not None and result.status == "error":
            log.warning(
                "%s: %s (%s) failed: %s", name, result.action, result.transaction, result.error
            )
        key = self.hub.on_result(name, result.action, result.status, result.value)
        if key is not None:
            self._show_switch(name, key, result.status == "ok", result.error)

    def _show_switch(self, pack: str, key: str, ok: bool, error: str | None) -> None:
        """Send the switch's confirmed state again (a failed command flips back), and its result."""
        view = self.hub.view(pack)
        for link_name, plan in self.plans.items():
            if plan.wants(pack):
                for message in plan.mos_messages(pack, view, again=key):
                    self.links[link_name].offer(message)
                for message in plan.result_message(pack, key, ok, error, utcnow()):
                    self.links[link_name].offer(message)

    def _settled(self, transaction: str) -> tuple[str, str] | None:
        """Stop waiting for one of our commands: its (pack, action), None when not ours."""
        pending = self._ours.pop(transaction, None)
        if pending is None:
            return None
        pending[2].cancel()
        return pending[0], pending[1]

    def _unconfirmed(self, transaction: str, why: str) -> None:
        """One of our commands has no result: say so, and show the switch as the BMS has it."""
        settled = self._settled(transaction)
        if settled is None:
            return
        pack, action = settled
        log.warning(
            "%s: %s (%s) not confirmed: %s; showing the switch as the BMS reports it",
            pack,
            action,
            transaction,
            why,
        )
        key = self.hub.on_result(pack, action, "error", None)  # as a failed command: flip back
        if key is not None:
            self._show_switch(pack, key, False, f"not confirmed: {why}")

    def _publishing(self) -> bool:
        """Past the first seconds, in which a bank's retained state from before comes in."""
        return time.monotonic() - self.started >= BANK_HOLD

    def _bank_update(self, tracker: BankTracker) -> None:
        state, change = tracker.update(utcnow(), self.cfg.stale_after, self.hub.arrivals)
        if tracker.moved:
            self.save_banks()  # the members' starts on disk stay true until the next change
        if not self._publishing():
            tracker.state, tracker.online = None, None  # all of it goes out once publishing
            return
        if state is not None:
            self.backbone.post(topics.STATE, tracker.cfg.id, state)
        if change is not None:
            self.backbone.post(topics.AVAILABILITY, tracker.cfg.id, change)

    # --- targets in ----------------------------------------------------------------------

    def on_config(self, target: str, pack: str, payload: bytes) -> None:
        """The discovery config a target's broker kept from before: its components stay."""
        try:
            cmps = json.loads(payload)["cmps"]
            if not isinstance(cmps, dict):
                raise TypeError("cmps is not an object")
        except (ValueError, KeyError, TypeError) as err:
            log.warning(
                "target %s: ignoring the retained discovery config of %s: %s", target, pack, err
            )
            return
        plan = self.plans[target]
        if plan.seed(pack, cmps):
            log.debug("target %s: %s keeps the components announced before", target, pack)
            for message in plan.refresh(self.hub, pack, utcnow()):
                self.links[target].offer(message)  # replaces a smaller config still waiting

    def on_command(self, target: str, topic: str, payload: bytes) -> None:
        """A switch command from a target; becomes a backbone Command only with control on."""
        settings = self.links[target].target
        try:
            pack, actions = parse_command(settings, topic, payload)
        except ValueError as err:
            self.refused += 1
            log.warning("target %s: ignoring message on %s: %s", target, topic, err)
            return
        if not self.control:
            self.refused += 1
            log.warning(
                "target %s: refusing %s for %s: control is disabled (control.enabled)",
                target,
                ", ".join(a for a, _ in actions),
                pack,
            )
            return
        view = self.hub.packs.get(pack)
        why = (
            "no such pack here"
            if view is None or not self.plans[target].wants(pack)
            else "a bank has no switches"
            if pack in self.banks or (view.state and view.state.extras.get("bank"))
            else None
        )
        if why:
            self.refused += 1
            log.warning("target %s: refusing a command for %r: %s", target, pack, why)
            return
        for action, value in actions:
            transaction = f"publisher-{target}-{next(self._transactions)}"
            try:
                self.commands.put_nowait(
                    (
                        pack,
                        Command(
                            transaction=transaction,
                            action=action,
                            value=value,
                            requested_by=requester(self.backbone.cfg.username, f"target-{target}"),
                        ),
                    )
                )
            except asyncio.QueueFull:
                self.refused += 1
                log.warning("target %s: too many commands waiting; dropping %s", target, action)
                return
            timer = asyncio.get_running_loop().call_later(
                self.result_wait,
                self._unconfirmed,
                transaction,
                f"no result within {self.result_wait:g} s",
            )
            self._ours[transaction] = (pack, action, timer)
            log.info("target %s: %s %s for %s (%s)", target, action, value, pack, transaction)

    async def forward_commands(self) -> None:
        """Hand commands to the backbone, one at a time, away from the targets' tasks."""
        while True:
            pack, command = await self.commands.get()
            if not await self.backbone.publish(topics.COMMAND, pack, command):
                self._unconfirmed(command.transaction, "the backbone broker is away")

    # --- loops ---------------------------------------------------------------------------

    async def target_loop(self, name: str) -> None:
        """Every interval: hand the target what is new, and the status packets."""
        plan, link = self.plans[name], self.links[name]
        while True:
            started = time.monotonic()
            now = utcnow()
            messages = plan.tick(
                self.hub, now, now.astimezone(self.zone), started - self.started, free_memory()
            )
            link.fit(len(messages))
            for message in messages:
                link.offer(message)
            await asyncio.sleep(max(0.0, plan.target.interval - (time.monotonic() - started)))

    async def bank_loop(self) -> None:
        """Re-check banks every second, so a member that goes quiet drops out; save the counters."""
        saved = time.monotonic() - BANK_SAVE_EVERY + BANK_HOLD + 1  # the first soon after start
        try:
            while True:
                for tracker in self.banks.values():
                    self._bank_update(tracker)
                if time.monotonic() - saved >= BANK_SAVE_EVERY:
                    self.save_banks()
                    saved = time.monotonic()
                await asyncio.sleep(BANK_TICK)
        finally:
            self.save_banks()  # on the way out too: a restart adds nothing twice, loses nothing

    def save_banks(self) -> None:
        """Write every bank's counters (with each member's start) durably."""
        try:
            self.book.save({b: t.totals for b, t in self.banks.items()})
        except OSError as err:
            log.warning("bank counters not saved to %s: %s", self.book.path, err)

    async def run(self) -> None:
        """Run every target, the banks and the command forwarder until cancelled."""
        tasks = [
            asyncio.create_task(link.run(), name=f"target-{n}") for n, link in self.links.items()
        ]
        tasks += [asyncio.create_task(self.target_loop(n)) for n in self.plans]
        tasks.append(asyncio.create_task(self.forward_commands()))
        if self.banks:
            tasks.append(asyncio.create_task(self.bank_loop()))
        try:
            await asyncio.gather(*tasks)
        finally:
            await stop_tasks(tasks)
            for link in self.links.values():
                await link.close()


async def run_publisher(cfg: Settings) -> None:
    """Run the publisher until cancelled."""
    publisher: Publisher | None = None
    backbone = Backbone(
        cfg.mqtt, "publisher", detail=lambda: publisher.counters() if publisher else {}
    )
    publisher = Publisher(cfg, backbone)
    # after a backbone outage a bank waits for its members again, as after a start
    backbone.on_disconnect.append(publisher.hub.arrivals.deaf)
    backbone.on_reconnect.append(publisher.hub.arrivals.listen_again)
    backbone.subscribe(topics.STATE, publisher.on_state, qos0=True)
    backbone.subscribe(topics.AVAILABILITY, publisher.on_availability)
    backbone.subscribe(topics.DAILY, publisher.on_daily)
    backbone.subscribe(topics.SETTINGS, publisher.on_settings)
    backbone.subscribe(topics.RESULT, publisher.on_result, retained=False)
    async with backbone:
        await publisher.run()

"""The notifier service: backbone messages in, Apprise notifications out. Wiring and I/O only.

The clocks are injected (``clock``: the wall clock; ``mono``: the monotonic one, for every
interval) and all timing happens in ``tick(now)``, so tests drive time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Final

from bmsgate_common import topics
from bmsgate_common.clock import WALL
from bmsgate_common.logs import hold_secrets, secret_parts
from bmsgate_common.models import (
    AlarmEvent,
    Availability,
    DailyStats,
    HealthReport,
    NotifyTest,
    NotifyTestResult,
    PackState,
    ServiceStatus,
    utcnow,
)
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import NotifierSettings, Settings
from bmsgate_common.timezones import find_zone, site_zone

from .events import Detector, Event
from .policy import Channel, Gate, Notification
from .report import ReportKind, daily_report, next_report
from .sender import AppriseSender, Tune, check_url, mask, secrets_of

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Mono = Callable[[], float]  # [s] monotonic
TICK = 0.5  # [s] how often queues, retries, reports and grace times are looked at
TEST_TIMEOUT = 20.0  # [s] for a test message
TEST_MESSAGE: Final = Notification(
    title="bmsgate test message",
    body="If you read this, bmsgate's notifications reach you.",
    priority="normal",
    tone="info",
    events=(),
)


def check_config(cfg: Settings) -> str | None:
    """One line about the first unusable notifier setting (a bad Apprise URL), or None."""
    for i, target in enumerate(cfg.notifier.targets):
        problem = check_url(target.url.get_secret_value())
        if problem:
            return f"bad value for 'notifier.targets.{i}.url' (target {target.name}): {problem}"
    return None


class Notifier:
    """The detector, the repeat gate, one channel and sender per target, and the report clock."""

    def __init__(
        self,
        cfg: NotifierSettings,
        clock: Clock = utcnow,
        tune: Tune | None = None,
        names: dict[str, str] | None = None,
        tz: tzinfo | None = None,
        mono: Mono = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.mono = mono
        # the site's zone (run_notifier passes it); the coordinates' when not given
        self.tz: tzinfo = tz or find_zone(cfg.latitude, cfg.longitude)
        self.detector = Detector(cfg, names)
        self.gate = Gate(cfg.repeat_after)
        self.channels = [Channel(t, cfg, self.tz) for t in cfg.targets]
        self.senders = [AppriseSender(t.url.get_secret_value(), tune) for t in cfg.targets]
        self.tune = tune
        self.next: tuple[datetime, ReportKind] | None = None
        self.events = 0
        self.last: dict[tuple[str, bool], datetime] = {}  # (target, sent) -> when, last time
        self._sending: set[asyncio.Task[None]] = set()
        self._steps = WALL.steps  # wall-clock steps already planned around (bmsgate_common.clock)
        self._plan_report(clock())

    def counters(self) -> dict[str, int | float | str | bool | None]:
        """Figures for the service status."""
        out: dict[str, int | float | str | bool | None] = {
            "events": self.events,
            "suppressed": self.gate.suppressed,
        }
        for ch in self.channels:
            n = ch.target.name
            out[f"{n}_sent"] = ch.sent
            out[f"{n}_failures"] = ch.failures
            out[f"{n}_waiting"] = ch.pending()
            out[f"{n}_dropped"] = ch.dropped_total
            for ok, word in ((True, "last_sent"), (False, "last_failed")):
                at = self.last.get((n, ok))
                out[f"{n}_{word}"] = at.isoformat() if at else None
        return out

    def _plan_report(self, now: datetime) -> None:
        c = self.cfg
        if c.latitude is None or c.longitude is None:
            return
        self.next = next_report(now, c.latitude, c.longitude, self.tz, c.reports)
        if self.next:
            log.info(
                "next daily report: %s at %s", self.next[1], f"{self.next[0]:%Y-%m-%d %H:%M %Z}"
            )

    # --- incoming ------------------------------------------------------------------------------
    def dispatch(
        self, events: list[Event], now: datetime | None = None, gated: bool = True
    ) -> None:
        """Pass events through the repeat gate to every target that wants them."""
        now = now or self.clock()
        mono = self.mono()
        for event in events:
            self.events += 1
            gate = gated and event.kind != "report"
            admitted = self.gate.admit(event, mono) if gate else event
            if admitted is None:
                log.debug("held back as a repeat: %s", event.subject)
                continue
            taken = [ch.target.name for ch in self.channels if ch.offer(admitted, now, mono)]
            log.info(
                "event %s: %s -> %s",
                event.kind,
                event.body.split("\n", 1)[0],
                ", ".join(taken) or "no target",
            )

    async def on_state(self, pack: str, state: PackState) -> None:
        """A pack's state: SOC and cell delta edges."""
        self.dispatch(self.detector.on_state(pack, state))

    async def on_availability(self, pack: str, avail: Availability) -> None:
        """BMS offline or back."""
        self.dispatch(self.detector.on_availability(pack, avail))

    async def on_alarm(self, pack: str, alarm: AlarmEvent) -> None:
        """An alarm raised or cleared."""
        self.dispatch(self.detector.on_alarm(pack, alarm))

    async def on_daily(self, pack: str, daily: DailyStats) -> None:
        """The day's figures, for the report."""
        self.detector.on_daily(pack, daily)

    async def on_health(self, pack: str, report: HealthReport) -> None:
        """Battery-health findings."""
        self.dispatch(self.detector.on_health(pack, report))

    async def on_service(self, service: str, status: ServiceStatus) -> None:
        """A service's status (a going-down is confirmed by ``tick`` after the grace time)."""
        self.dispatch(self.detector.on_service(service, status, self.clock(), self.mono()))

    def keep(self, task: asyncio.Task[None]) -> None:
        """Hold a reference to a running send until it is done."""
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def on_test(self, client: str, test: NotifyTest) -> NotifyTestResult:
        """Send the test message to a configured target or to the URL being saved.

        The answer is ``sent`` or ``failed`` only: how delivery failed (refused, timed out, a
        status code) stays in this log, so the test cannot probe what the machine reaches.
        """
        if test.target is not None:
            found = [i for i, t in enumerate(self.cfg.targets) if t.name == test.target]
            if not found:
                why = f"no notifier target named {test.target!r}"
                return NotifyTestResult(transaction=test.transaction, result="refused", error=why)
            sender, where = self.senders[found[0]], f"target {test.target}"
        else:
            assert test.url is not None
            hold_urls([test.url])  # before Apprise reads it
            problem = check_url(test.url)
            if problem:
                return NotifyTestResult(
                    transaction=test.transaction, result="refused", error=problem
                )
            sender, where = AppriseSender(test.url, self.tune), mask(test.url)
        try:
            async with asyncio.timeout(TEST_TIMEOUT):
                sent = await sender.send(TEST_MESSAGE)
        except TimeoutError:
            sent = False
        except Exception as err:  # a plugin's bug: the same "failed" as any other failure
            log.warning("test message to %s: send raised %s", where, type(err).__name__)
            sent = False
        log.info("test message for %s to %s: %s", client, where, "sent" if sent else "failed")
        return NotifyTestResult(transaction=test.transaction, result="sent" if sent else "failed")

    # --- time ----------------------------------------------------------------------------------
    def report(self, kind: ReportKind, at: datetime) -> Event:
        """The daily report due now (and the alarm log starts afresh)."""
        d = self.detector
        names = {p: d.name(p) for p in set(d.states) | set(d.dailies)}
        return daily_report(kind, at, self.tz, names, d.states, d.dailies, d.take_alarm_log())

    async def tick(self, now: datetime | None = None, wait: bool = True) -> None:
        """Everything time-driven: reports, grace times, kept-back repeats, then the sends.

        ``wait=False`` leaves the sends running (a slow target must not hold up the clock).
        """
        now = now or self.clock()
        if WALL.steps != self._steps:  # the clock was set: plan from the new time, catch nothing up
            self._steps = WALL.steps
            self._plan_report(now)
        if self.next is not None and now >= self.next[0]:
            self.dispatch([self.report(self.next[1], now)], now)
            self._plan_report(now)
        mono = self.mono()
        self.dispatch(self.detector.tick(now, mono), now)
        self.dispatch(self.gate.release(mono), now, gated=False)
        sends = []
        for channel, sender in zip(self.channels, self.senders, strict=True):
            message = channel.take(now, mono)
            if message is not None:
                task = asyncio.create_task(self._send(channel, sender, message))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
                sends.append(task)
        if wait and sends:
            await asyncio.wait(sends)

    async def _send(self, channel: Channel, sender: AppriseSender, message: Notification) -> None:
        name = channel.target.name
        try:
            ok = await sender.send(message)
        except Exception as err:  # a plugin bug must not stop the other targets
            log.warning("target %s: send raised %s", name, type(err).__name__)
            ok = False
        retry = channel.done(ok, self.mono())
        self.last[name, ok] = self.clock()  # the System page shows the last send and failure
        if retry is not None:
            log.warning(
                "target %s (%s): not delivered; %d events wait, retry in %.0f s",
                name,
                mask(channel.target.url.get_secret_value()),
                channel.pending(),
                retry,
            )
        else:
            log.info("target %s: sent %r (%d events)", name, message.title, len(message.events))

    async def run(self) -> None:
        """Tick until cancelled."""
        while True:
            await self.tick(wait=False)
            await asyncio.sleep(TICK)


def protect_logs(cfg: NotifierSettings) -> None:
    """Mask the target URLs' secret parts in the notifier's lines (Apprise's included)."""
    hold_urls([t.url.get_secret_value() for t in cfg.targets])


def hold_urls(urls: list[str]) -> None:
    """Mask these URLs' secret parts in the notifier's lines from now on (bmsgate_common.logs)."""
    # the parts of every URL first: Apprise, reading a URL, logs it with only its own marks hidden
    hold_secrets(s for url in urls for s in secret_parts(url))
    hold_secrets(s for url in urls for s in secrets_of(url))


async def run_notifier(cfg: Settings, clock: Clock = utcnow, tune: Tune | None = None) -> None:
    """Run until cancelled."""
    protect_logs(cfg.notifier)
    notifier: Notifier | None = None
    backbone = Backbone(
        cfg.mqtt, "notifier", detail=lambda: notifier.counters() if notifier else {}
    )
    names = {p.id: p.display_name for b in cfg.buses for p in b.packs}
    names.update({b.id: b.name or b.id for b in cfg.banks})
    notifier = Notifier(cfg.notifier, clock, tune, names, site_zone(cfg))

    async def on_test(client: str, test: NotifyTest) -> None:
        # posted: a test may take TEST_TIMEOUT, and the other handlers must not wait for it
        async def run() -> None:
            backbone.post(topics.NOTIFY_TEST_RESULT, client, await notifier.on_test(client, test))

        notifier.keep(asyncio.create_task(run()))

    backbone.subscribe(topics.STATE, notifier.on_state, qos0=True)
    backbone.subscribe(topics.AVAILABILITY, notifier.on_availability)
    backbone.subscribe(topics.ALARM, notifier.on_alarm, retained=False)
    backbone.subscribe(topics.DAILY, notifier.on_daily)
    backbone.subscribe(topics.HEALTH, notifier.on_health)
    backbone.subscribe(topics.SERVICE_STATUS, notifier.on_service)
    backbone.subscribe(topics.NOTIFY_TEST, on_test, retained=False)
    targets = ", ".join(
        f"{t.name} ({mask(t.url.get_secret_value())})" for t in cfg.notifier.targets
    )
    async with backbone:
        log.info("notifier running: targets %s; zone %s", targets or "none", notifier.tz)
        await notifier.run()

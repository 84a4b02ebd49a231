"""The history service: backbone states into the archive and InfluxDB; answers, daily figures back.

All the deciding happens in the pure modules; this file is wiring and I/O.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import threading
import time
from datetime import date
from pathlib import Path
from typing import IO

from bmsgate_common import topics
from bmsgate_common.clock import WALL, span
from bmsgate_common.models import (
    Availability,
    DailyStats,
    HealthReport,
    HistoryFileReply,
    HistoryFileRequest,
    HistoryReply,
    PackState,
    utcnow,
)
from bmsgate_common.mqtt import Backbone
from bmsgate_common.settings import Settings
from bmsgate_common.tasks import stop_tasks
from bmsgate_common.timezones import site_zone

from . import files
from .archive import DAY_MS, Archive, Store
from .daily import DailyTracker
from .health import HealthTracker
from .influx import InfluxWriter, to_line
from .query import Layout, error_reply, parse, run_query
from .sample import Sample, day_bounds, energy, from_state, local_day, to_ms
from .storage import WriteRate, storage_figures

log = logging.getLogger(__name__)

TICK = 5.0  # [s] the periodic work's beat; commits come every archive.commit_interval
DAILY_EVERY = 60.0  # [s] the retained daily figures are refreshed at most this often
HEALTH_EVERY = 600.0  # [s] health rules are evaluated and their evidence saved
PURGE_EVERY = 3600.0  # [s] retention is applied
REPLAY_DAYS = 7  # health evidence rebuilt from the archive when none was saved
FUTURE_MARGIN = 300.0  # [s] a state stamped further ahead of this clock is refused
PURGE_AFTER_STEP = 86_400.0  # [s] no retention this long after the clock was set forward


def archive_path(cfg: Settings) -> Path:
    """Where the archive lives."""
    return cfg.data_dir / "history" / "archive.sqlite"


class WriterBusy(OSError):
    """Another process holds the archive's writer lock."""


def hold_writer(cfg: Settings, wait: float = 0.0) -> IO[bytes]:
    """The archive's writer lock (flock), held until the file returned is closed.

    WriterBusy when another process still holds it after ``wait`` seconds. The history service
    holds it while it runs, so ``python -m bmsgate_history delete`` cannot be a second writer.
    """
    path = archive_path(cfg).with_name("archive.writer.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.open("ab")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() >= deadline:
                lock.close()
                raise WriterBusy(f"another process writes {archive_path(cfg)}") from None
            time.sleep(0.2)


def buffer_path(cfg: Settings) -> Path:
    """Where points wait while InfluxDB is away."""
    return cfg.data_dir / "history" / "influx-buffer.sqlite"


class History:
    """Holds the archive, the InfluxDB writer and the per-pack trackers."""

    def __init__(self, cfg: Settings, backbone: Backbone) -> None:
        self.cfg = cfg
        self.h = cfg.history
        self.backbone = backbone
        self.tz = site_zone(cfg)
        self.max_gap_ms = int(self.h.max_gap * 1000)
        self.archive = (
            Archive(archive_path(cfg), self.h.archive, self.h.max_gap)
            if self.h.archive.enabled
            else None
        )
        self.reader = Store(archive_path(cfg)) if self.archive else None
        self._read_lock = threading.Lock()  # one query at a time on the reading connection
        self.influx = (
            InfluxWriter(self.h.influx, buffer_path(cfg)) if self.h.influx.enabled else None
        )
        self.daily: dict[str, DailyTracker] = {}
        self.health: dict[str, HealthTracker] = {}
        self.prev: dict[str, Sample] = {}
        self.known = {p.id for b in cfg.buses for p in b.packs} | {b.id for b in cfg.banks}
        self.layout = Layout.of(cfg.buses, cfg.banks)
        self.queries = 0
        self.query_errors = 0
        self._daily_sent: dict[str, float] = {}
        self.refused = 0  # states stamped ahead of this clock by more than FUTURE_MARGIN
        self._ahead: set[str] = set()  # packs whose states are refused as ahead (logged once)
        self._write_rate = WriteRate()

    def counters(self) -> dict[str, int | float | str | bool | None]:
        """Health figures for the service status."""
        out: dict[str, int | float | str | bool | None] = {
            "stored": self.archive.written if self.archive else 0,
            "queries": self.queries,
            "query_errors": self.query_errors,
            "refused_ahead": self.refused,
            **storage_figures(archive_path(self.cfg).parent, self._write_rate),
        }
        if self.influx:
            out.update(self.influx.counters())
        return out

    # --- start-up --------------------------------------------------------------------------
    def _tracker(self, pack: str) -> HealthTracker:
        tracker = self.health.get(pack)
        if tracker is None:
            tracker = HealthTracker(pack, self.h.health, self.tz, self.max_gap_ms)
            saved = self.archive.get(f"health:{pack}") if self.archive else None
            if saved:
                try:
                    tracker.load(saved)
                except (ValueError, KeyError, TypeError) as err:
                    log.warning("%s: saved health evidence unreadable (%s); rebuilding", pack, err)
            self.health[pack] = tracker
        return tracker

    def replay(self, now: int) -> None:
        """Rebuild today's figures and unsaved health evidence from the archive."""
        if self.archive is None:
            return
        for pack in self.archive.packs():
            self._replay_today(pack, now)
            tracker = self._tracker(pack)
            since = tracker.prev.ts + 1 if tracker.prev else now - REPLAY_DAYS * DAY_MS
            for s in self.archive.samples(pack, since, now + 1):
                tracker.add(s)
            log.info("%s: resumed from the archive", pack)

    def _replay_today(self, pack: str, now: int) -> None:
        """Today's figures of ``pack`` from the archive as it is now."""
        assert self.archive is not None
        midnight = day_bounds(local_day(now, self.tz), self.tz)[0]
        daily = self.daily[pack] = DailyTracker(pack, self.tz)
        self.prev.pop(pack, None)
        for s in self.archive.samples(pack, midnight, now + 1):
            daily.add(s)
            self.prev[pack] = s

    # --- incoming --------------------------------------------------------------------------
    async def on_state(self, pack: str, state: PackState) -> None:
        """Store, forward and account one live state."""
        sample = from_state(state)
        ahead = sample.ts - to_ms(utcnow())
        if ahead > FUTURE_MARGIN * 1000:
            self.refused += 1
            if pack not in self._ahead:
                self._ahead.add(pack)
                log.warning(
                    "%s: states stamped %s ahead of this clock are not stored (the "
                    "sender's clock is wrong)",
                    pack,
                    span(ahead / 1000),
                )
            return
        if pack in self._ahead:
            self._ahead.discard(pack)
            log.info("%s: states in time again", pack)
        if self.archive:
            sample = self.archive.add(pack, sample)
        else:
            prev = self.prev.get(pack)
            if prev is not None and sample.ts <= prev.ts:
                return
            e_in, e_out = energy(prev, sample, self.max_gap_ms)
            sample = sample._replace(e_in=e_in, e_out=e_out)
        self.prev[pack] = sample
        if self.influx:
            self.influx.add(to_line(state, self.h.influx.measurement))
        daily = self.daily.setdefault(pack, DailyTracker(pack, self.tz))
        finished = daily.add(sample)
        if finished is not None:
            self.backbone.post(topics.DAILY, pack, finished)
            self._daily_sent[pack] = 0.0  # the new day's figures follow at the next commit
        if self.h.health.enabled:
            self._tracker(pack).add(sample)

    async def publish_daily(self, pack: str) -> None:
        """Publish the pack's day so far (retained)."""
        stats = self.daily[pack].stats() if pack in self.daily else None
        if stats is not None and await self.backbone.publish(topics.DAILY, pack, stats):
            self._daily_sent[pack] = time.monotonic()

    async def on_availability(self, pack: str, availability: Availability) -> None:
        """An offline pack leaves a gap: nothing is integrated or joined across it."""
        if availability.state != "offline":
            return
        if self.archive:
            self.archive.gap(pack)
        self.prev.pop(pack, None)
        if pack in self.health:
            self.health[pack].prev = None

    def answer(self, payload: bytes) -> HistoryReply:
        """The reply to one raw request (runs in a worker thread)."""
        q = parse(payload)
        if isinstance(q, HistoryReply):
            return q
        if self.reader is None:
            why = "the archive is disabled (history.archive.enabled)"
            return error_reply(q.transaction, why, "disabled")
        with self._read_lock:
            if not self._known(q.pack, self.reader):
                return error_reply(q.transaction, f"unknown pack {q.pack!r}", "not_found")
            now = to_ms(utcnow())
            try:
                return run_query(
                    q, self.reader, self.h.archive, self.tz, now, self.max_gap_ms, self.layout
                )
            except (ValueError, OverflowError):  # a local day past 9999-12-31 (daily buckets)
                return error_reply(q.transaction, "the range reaches past the calendar's end")

    def _known(self, pack: str, store: Store) -> bool:
        return pack in self.known or store.pack_id(pack) is not None

    def answer_files(
        self, q: HistoryFileRequest, today: DailyStats | None = None
    ) -> list[HistoryFileReply]:
        """The reply to a days, csv, zip or energy request (runs in a worker thread)."""
        assert self.reader is not None
        with self._read_lock:
            if not self._known(q.pack, self.reader):
                return [files.error(q.transaction, "not_found", f"unknown pack {q.pack!r}")]
            return files.answer(self.reader, q, self.tz, today)

    async def delete_day(self, q: HistoryFileRequest) -> HistoryFileReply:
        """Delete one local day through the writer; today's figures and health are rebuilt.

        The writer re-opens its current buckets from the samples left, so the next commit
        cannot write deleted samples back; the retained daily figures and health report are
        sent again, the health evidence without the deleted day.
        """
        assert self.archive is not None
        assert q.day is not None
        start, end = files.bounds(q.day, self.tz)
        if not self._known(q.pack, self.archive):
            return files.error(q.transaction, "not_found", f"unknown pack {q.pack!r}")
        n = self.archive.delete_range(q.pack, start, end)
        now = to_ms(utcnow())
        if self.h.health.enabled:
            await self._health_without(q.pack, start, end, now)
        today = day_bounds(local_day(now, self.tz), self.tz)
        if start < today[1] and end > today[0]:
            self._replay_today(q.pack, now)
            stats = self.daily[q.pack].stats() or DailyStats(
                pack=q.pack, day=local_day(now, self.tz), ts=utcnow()
            )  # nothing left today: the figures say so instead of keeping the deleted ones
            if await self.backbone.publish(topics.DAILY, q.pack, stats):
                self._daily_sent[q.pack] = time.monotonic()
        log.info("%s: %s deleted (%d samples)", q.pack, q.day.isoformat(), n)
        return files.deleted(q, n)

    async def _health_without(self, pack: str, start: int, end: int, now: int) -> None:
        """The pack's health evidence rebuilt without [start, end), saved and published again.

        The days the archive replays at a start (and still holds sample by sample) are taken in
        again from what is left; older ones keep their figures, the deleted days lose theirs.
        """
        assert self.archive is not None
        since = max(end, day_bounds(local_day(now - REPLAY_DAYS * DAY_MS, self.tz), self.tz)[0])
        oldest = self.archive.oldest("raw", pack)
        if oldest is not None:  # the first day raw data may no longer hold whole
            first = day_bounds(local_day(oldest, self.tz), self.tz)
            since = max(since, first[0] if oldest == first[0] else first[1])
        left = self.archive.samples(pack, since, now + 1)
        tracker = self.health[pack] = self._tracker(pack).without(start, end, since, left)
        await self._report_health(pack, tracker, local_day(now, self.tz))

    async def on_files(self, client: str, payload: bytes) -> None:
        """Answer a file request with one reply, or a file in parts; a failure is an error."""
        self.queries += 1
        q = files.parse(payload)
        replies: list[HistoryFileReply]
        try:
            if isinstance(q, HistoryFileReply):
                replies = [q]
            elif self.archive is None:
                why = "the archive is disabled (history.archive.enabled)"
                replies = [files.error(q.transaction, "disabled", why)]
            elif q.action == "delete":  # on this thread: the writer's connection stays here
                replies = [await self.delete_day(q)]
            else:  # the day so far, taken on this thread: the states change it here
                daily = self.daily.get(q.pack) if q.action == "energy" else None
                today = daily.stats() if daily is not None else None
                replies = await asyncio.to_thread(self.answer_files, q, today)
        except files.FileError as err:
            replies = [files.error(getattr(q, "transaction", None), err.code, str(err))]
        except Exception as err:  # a bug must not kill the service or leave the caller waiting
            log.exception("file request failed")
            why = f"internal error: {type(err).__name__}"
            replies = [files.error(getattr(q, "transaction", None), "internal", why)]
        if replies[0].status == "error":
            self.query_errors += 1
            log.info("history file request from %s refused: %s", client, replies[0].error)
        for reply in replies:
            await self.backbone.publish(topics.HISTORY_FILES_REPLY, client, reply)

    async def on_request(self, client: str, payload: bytes) -> None:
        """Answer a query on the asking client's reply topic; any failure is an error reply."""
        self.queries += 1
        try:
            reply = await asyncio.to_thread(self.answer, payload)
        except Exception as err:  # a bug must not kill the service or leave the caller waiting
            log.exception("query failed")
            reply = error_reply(None, f"internal error: {type(err).__name__}", "internal")
        if reply.status == "error":
            self.query_errors += 1
            log.info("history query from %s refused: %s", client, reply.error)
        await self.backbone.publish(topics.HISTORY_REPLY, client, reply)

    # --- periodic --------------------------------------------------------------------------
    async def evaluate_health(self) -> None:
        """Run the health rules, publish each pack's findings (retained) and save the evidence."""
        today = local_day(to_ms(utcnow()), self.tz)
        for pack, tracker in list(self.health.items()):  # states add packs while we publish
            await self._report_health(pack, tracker, today)

    async def _report_health(self, pack: str, tracker: HealthTracker, today: date) -> None:
        """Publish one pack's findings (retained) and save its evidence."""
        report = HealthReport(pack=pack, ts=utcnow(), findings=tracker.findings(today))
        for f in report.findings:
            log.info("%s health: %s cell %s since %s", pack, f.kind, f.cell, f.since)
        await self.backbone.publish(topics.HEALTH, pack, report)
        if self.archive:
            self.archive.put_value(f"health:{pack}", tracker.dump())
            self.archive.put_value(f"health_report:{pack}", report.model_dump_json())

    async def periodic(self) -> None:
        """Commit, refresh the daily figures, evaluate health and purge, each on its clock."""
        last_health = last_purge = last_commit = time.monotonic()
        interval = self.h.archive.commit_interval
        while True:
            await asyncio.sleep(min(interval, TICK))
            now = time.monotonic()
            if self.archive and now - last_commit >= interval - TICK / 10:
                last_commit = now
                self.archive.commit()
            for pack in list(self.daily):
                if now - self._daily_sent.get(pack, 0.0) >= DAILY_EVERY:
                    await self.publish_daily(pack)
            if self.h.health.enabled and now - last_health >= HEALTH_EVERY:
                last_health = now
                await self.evaluate_health()
            if self.archive and now - last_purge >= PURGE_EVERY:
                last_purge = now
                if WALL.forward_step_within(PURGE_AFTER_STEP):
                    log.info(
                        "retention waits: the clock was set forward %s ago",
                        span(now - (WALL.stepped_at or now)),
                    )
                    continue
                # on the loop thread: the writing connection is never shared between threads
                self.archive.purge(to_ms(utcnow()))  # logs what it deletes

    def close(self) -> None:
        """Save and close the files."""
        if self.archive:
            for pack, tracker in list(self.health.items()):  # states add packs while we publish
                self.archive.put_value(f"health:{pack}", tracker.dump())
            self.archive.close()
        if self.reader:
            self.reader.close()


async def run_history(cfg: Settings) -> None:
    """Run until cancelled; on the way out commit, flush and save."""
    history: History | None = None
    writer: IO[bytes] | None = None
    if cfg.history.archive.enabled:
        try:  # a restarted service waits for its predecessor, a by-hand delete for the CLI
            writer = await asyncio.to_thread(hold_writer, cfg, 30.0)
        except WriterBusy as err:
            log.error("%s; writing anyway (stop the other writer)", err)
    backbone = Backbone(cfg.mqtt, "history", detail=lambda: history.counters() if history else {})
    history = History(cfg, backbone)
    history.replay(to_ms(utcnow()))
    backbone.subscribe(topics.STATE, history.on_state, retained=False, qos0=True)
    backbone.subscribe(topics.AVAILABILITY, history.on_availability, retained=True)
    backbone.subscribe_raw(topics.HISTORY_REQUEST, history.on_request, retained=False)
    backbone.subscribe_raw(topics.HISTORY_FILES, history.on_files, retained=False)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with backbone:
            if cfg.history.health.enabled:
                await history.evaluate_health()  # the retained reports, as the archive has them
            tasks.append(asyncio.create_task(history.periodic(), name="history-periodic"))
            if history.influx:
                tasks.append(asyncio.create_task(history.influx.run(), name="history-influx"))
            log.info(
                "history running: archive %s, InfluxDB %s",
                archive_path(cfg) if history.archive else "off",
                history.influx.shown_url if history.influx else "off",
            )
            await asyncio.Event().wait()
    finally:
        await stop_tasks(tasks)
        if history.influx:
            await history.influx.close()
        history.close()
        if writer is not None:
            writer.close()  # the lock goes with it

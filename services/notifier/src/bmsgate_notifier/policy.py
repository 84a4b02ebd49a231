"""No storms, nothing lost: the repeat gate, and per target filters, quiet hours, digests, retries.

Pure and clock-free, so tests step time by hand: ``now`` (aware datetime) is the wall clock, for
what a person reads (quiet hours, times in a digest); ``mono`` [s] is the monotonic clock, for every
interval (repeat gate, gathering, bursts, retries), which a step of the wall clock must not stretch
or cut short.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo
from typing import Final

from bmsgate_common.settings import NotifierSettings, NotifyPriority, NotifyTargetSettings

from .events import TONES, Event, Tone, rank

DIGEST_LINES: Final = 25  # lines in one digest before "and N more"


class Gate:
    """Lets an event through unless its subject was told in the same state within ``repeat_after``.

    A state change is told at once, unless that very state was told within the interval (a
    flapping alarm). Such a change waits, and goes out when the interval is over only if it is
    still not what was told last; so nobody is left believing a stale state.
    """

    def __init__(self, repeat_after: float) -> None:
        self.interval = repeat_after  # [s]
        self.current: dict[str, str] = {}  # subject -> the state told last
        self.told_at: dict[tuple[str, str], float] = {}  # (subject, state) -> when [s] monotonic
        self.waiting: dict[str, Event] = {}
        self.suppressed = 0

    def _tell(self, event: Event, mono: float) -> Event:
        self.current[event.subject] = event.state
        self.told_at[event.subject, event.state] = mono
        self.waiting.pop(event.subject, None)
        return event

    def admit(self, event: Event, mono: float) -> Event | None:
        """The event if it may go out now, else None (dropped, or kept back)."""
        last = self.told_at.get((event.subject, event.state))
        if last is None or mono - last >= self.interval:
            return self._tell(event, mono)
        self.suppressed += 1
        if self.current.get(event.subject) == event.state:
            self.waiting.pop(event.subject, None)  # back to what the person already knows
        else:
            self.waiting[event.subject] = event
        return None

    def release(self, mono: float) -> list[Event]:
        """Kept-back events whose interval is over."""
        due = [
            e
            for e in self.waiting.values()
            if mono - self.told_at[e.subject, e.state] >= self.interval
        ]
        return [self._tell(e, mono) for e in due]


@dataclass(frozen=True)
class Notification:
    """What one send carries: a single event, or a digest of several."""

    title: str
    body: str
    priority: NotifyPriority
    tone: Tone
    events: tuple[Event, ...]
    dropped: int = 0


def in_quiet(local: time, start: time, end: time) -> bool:
    """Whether a local time of day lies in [start, end), across midnight when start > end."""
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def compose(events: list[Event], tz: tzinfo, dropped: int = 0) -> Notification:
    """One event as it is; several as a digest, oldest first, naming the pack when all share it."""
    note = f"\n({dropped} older events were dropped: the queue was full)" if dropped else ""
    priority = max((e.priority for e in events), key=rank)
    tone = max((e.tone for e in events), key=TONES.index)
    if len(events) == 1:
        e = events[0]
        return Notification(e.title, e.body + note, priority, tone, tuple(events), dropped)
    ordered = sorted(events, key=lambda e: e.ts)
    lines = [f"{e.ts.astimezone(tz):%H:%M} {e.body}" for e in ordered[:DIGEST_LINES]]
    if len(ordered) > DIGEST_LINES:
        lines.append(f"... and {len(ordered) - DIGEST_LINES} more")
    names = {e.title.split(":", 1)[0] for e in events if e.pack is not None}
    who = names.pop() if len(names) == 1 and all(e.pack for e in events) else "bmsgate"
    title = f"{who}: {len(events)} events"
    return Notification(title, "\n".join(lines) + note, priority, tone, tuple(events), dropped)


@dataclass
class _Queued:
    at: float  # [s] monotonic
    event: Event


@dataclass
class Channel:
    """One target's share of the events: filtered, held in quiet hours, batched, retried."""

    target: NotifyTargetSettings
    cfg: NotifierSettings
    tz: tzinfo
    queue: deque[_Queued] = field(default_factory=deque)
    held: list[_Queued] = field(default_factory=list)  # quiet hours
    sent_at: deque[float] = field(default_factory=deque)  # [s] monotonic
    dropped: int = 0  # since the last successful send
    dropped_total: int = 0
    sent: int = 0
    failures: int = 0
    next_try: float | None = None  # [s] monotonic
    backoff: float = 0.0
    inflight: Notification | None = None

    def wants(self, event: Event) -> bool:
        """Whether this target takes events of this kind, pack and priority."""
        t = self.target
        if t.events is not None and event.kind not in t.events:
            return False
        if t.packs is not None and event.pack is not None and event.pack not in t.packs:
            return False
        return rank(event.priority) >= rank(t.min_priority)

    def quiet(self, now: datetime) -> bool:
        """Whether ``now`` falls in the configured quiet hours (local time)."""
        q = self.cfg.quiet_hours
        return q is not None and in_quiet(now.astimezone(self.tz).time(), q.start, q.end)

    def offer(self, event: Event, now: datetime, mono: float) -> bool:
        """Queue an event this target wants; False if it does not want it."""
        if not self.wants(event):
            return False
        q = self.cfg.quiet_hours
        if q is not None and self.quiet(now) and rank(event.priority) < rank(q.let_through):
            self.held.append(_Queued(mono, event))
            self._bound(self.held)
        else:
            self.queue.append(_Queued(mono, event))
            self._bound(self.queue)
        return True

    def _bound(self, items: deque[_Queued] | list[_Queued]) -> None:
        # the oldest of the lowest priority goes first; the message after says how many
        while len(self.queue) + len(self.held) > self.cfg.queue_size and items:
            lowest = min(range(len(items)), key=lambda i: rank(items[i].event.priority))
            del items[lowest]
            self.dropped += 1
            self.dropped_total += 1

    def take(self, now: datetime, mono: float) -> Notification | None:
        """The message to send now, if any; the caller reports back with ``done``."""
        if self.held and not self.quiet(now):
            self.queue.extendleft(reversed(self.held))
            self.held.clear()
        if self.inflight is not None or not self.queue:
            return None
        if self.next_try is not None and mono < self.next_try:
            return None
        if mono - self.queue[0].at < self.cfg.gather:
            return None  # more may be on the way
        while self.sent_at and mono - self.sent_at[0] >= self.cfg.burst_window:
            self.sent_at.popleft()
        if len(self.sent_at) >= self.cfg.burst:
            return None  # too many lately: collect, and send them as one when a slot frees
        events = [q.event for q in self.queue]
        self.queue.clear()
        self.inflight = compose(events, self.tz, self.dropped)
        self.dropped = 0
        return self.inflight

    def done(self, ok: bool, mono: float) -> float | None:
        """Record the outcome; after a failure the events go back and the retry waits longer.

        Returns the seconds until the retry after a failure, None after a success.
        """
        msg, self.inflight = self.inflight, None
        if msg is None:
            return None
        if ok:
            self.sent += 1
            self.sent_at.append(mono)
            self.next_try, self.backoff = None, 0.0
            return None
        self.failures += 1
        self.dropped += msg.dropped
        self.queue.extendleft(_Queued(mono, e) for e in reversed(msg.events))
        self._bound(self.queue)
        self.backoff = min(max(self.backoff * 2, self.cfg.retry_min), self.cfg.retry_max)
        self.next_try = mono + self.backoff
        return self.backoff

    def pending(self) -> int:
        """Events waiting (queued, held for quiet hours, or in flight)."""
        return (
            len(self.queue) + len(self.held) + (len(self.inflight.events) if self.inflight else 0)
        )

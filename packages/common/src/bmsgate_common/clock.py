"""The wall clock, watched for steps; intervals belong on the monotonic clock, never on this one.

A Raspberry Pi has no real-time clock: it boots with a stale (or garbage) time that NTP steps
later, and a wrong NTP source or a hand-set clock steps it again. Timestamps must come from the
wall clock, but a step must be noticed: the difference between the wall and the monotonic clock
stays constant (NTP's slewing moves it by at most 0.5 ms a second) until the wall clock is set.
``WALL.now()`` notices a change of that difference larger than ``STEP`` between two calls, logs
it once, and counts it, so the parts that plan by the wall clock (reports, retention) re-plan.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Final

from .logs import SERVICE

log = logging.getLogger(__name__)

STEP: Final = 2.0  # [s] a change of wall minus monotonic larger than this is a step


def span(seconds: float) -> str:
    """A duration in words: ``+400 d 2 h``, ``-1 h 0 min``, ``+12 s``."""
    sign = "+" if seconds >= 0 else "-"
    s = round(abs(seconds))
    if s >= 86_400:
        return f"{sign}{int(s // 86_400)} d {int(s % 86_400 // 3600)} h"
    if s >= 3600:
        return f"{sign}{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{sign}{s:.0f} s"


class WallClock:
    """Reads the wall clock and notices when it is set (stepped)."""

    def __init__(self) -> None:
        self._offset: float | None = None  # [s] wall minus monotonic at the last reading
        self.steps = 0  # steps seen since the process started
        self.last_step = 0.0  # [s] the latest step, + = forward
        self.stepped_at: float | None = None  # [s] monotonic time of the latest step

    def now(self) -> datetime:
        """The current time, timezone-aware UTC; a step since the last call is logged."""
        wall, mono = time.time(), time.monotonic()
        offset = wall - mono
        if self._offset is not None and abs(offset - self._offset) > STEP:
            self.steps += 1
            self.last_step = offset - self._offset
            self.stepped_at = mono
            way = "forward" if self.last_step > 0 else "back"
            log.warning("the wall clock was set %s (%s)", way, span(self.last_step))
        self._offset = offset
        return datetime.fromtimestamp(wall, UTC)

    def forward_step_within(self, seconds: float) -> bool:
        """Whether the clock was set forward within the last ``seconds`` (monotonic)."""
        return (
            self.stepped_at is not None
            and self.last_step > 0
            and time.monotonic() - self.stepped_at < seconds
        )


class ServiceClocks:
    """A WallClock per service: services that share a process (bmsgate run) each notice a step."""

    def __init__(self) -> None:
        self._clocks: dict[str | None, WallClock] = {}

    def own(self) -> WallClock:
        """The calling service's clock (logs.SERVICE; one for a process that is one service)."""
        name = SERVICE.get()
        clock = self._clocks.get(name)
        if clock is None:
            clock = self._clocks[name] = WallClock()
        return clock

    def now(self) -> datetime:
        """WallClock.now of the calling service's clock."""
        return self.own().now()

    def forward_step_within(self, seconds: float) -> bool:
        """WallClock.forward_step_within of the calling service's clock."""
        return self.own().forward_step_within(seconds)

    @property
    def steps(self) -> int:
        """Steps the calling service has seen."""
        return self.own().steps

    @property
    def stepped_at(self) -> float | None:
        """[s] monotonic time of the latest step the calling service saw."""
        return self.own().stepped_at


WALL: Final = ServiceClocks()  # every timestamp comes through it (models.utcnow)

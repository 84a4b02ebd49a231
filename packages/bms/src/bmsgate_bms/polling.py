"""How often a protocol's reads go on the wire: the fast ones every poll, the slow ones less often.

A protocol module tags each read command fast or slow (its ``POLL`` table): fast is what moves
from one poll to the next (voltage, current and what signs it, SOC, MOSFETs, alarms), slow is
what changes rarely or is large on a slow line. A driver keeps the values of its last slow read
in ``SlowReads`` and merges them into every snapshot, with their age, so a value read earlier
is never shown as read now. Pure: the caller passes the monotonic time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .errors import FrameError, LinkTimeout

Tier = Literal["fast", "slow"]
FAST: Final[Tier] = "fast"
SLOW: Final[Tier] = "slow"
SLOW_EVERY: Final = 10  # polls between slow reads unless the bus says otherwise
MAX_AGE: Final = 60.0  # [s] no value is older than this: the slow reads are due again


def tagged(table: Mapping[int, Tier], tier: Tier) -> tuple[int, ...]:
    """The commands of ``table`` in ``tier``, in the table's order."""
    return tuple(cmd for cmd, t in table.items() if t == tier)


@dataclass
class SlowReads:
    """The values a driver reads every ``every`` polls, kept in between, and when they are due.

    ``phase`` spreads the boards of one bus over the polls (board n reads its slow commands on
    another poll than board n+1), so every round of the bus takes about as long. Besides every
    ``every`` polls the slow reads are due when ``max_age`` has passed and when the fast answer
    signals a change (``due``'s ``signal``: a MOSFET or alarm change, for instance).
    """

    every: int = 1  # 1: every poll reads everything
    phase: int = 0
    max_age: float = MAX_AGE  # [s]
    parts: dict[str, Any] = field(default_factory=dict)  # decoded values of the last slow read
    read_at: float | None = None  # [s] monotonic time of the last slow read
    polls: int = 0
    signal: Hashable = None  # what the fast answer said at the last poll
    owed: bool = False  # a slow read was due and has not succeeded yet (a retry reads it)
    tried_at: float | None = None  # [s] monotonic time of the last slow read, good or not
    absent: bool = False  # the board never answered its optional slow read: not asked again
    misses: int = 0  # optional slow reads unanswered before the first answer

    def due(self, now: float, signal: Hashable = None) -> bool:
        """Count a poll; whether it reads the slow commands too."""
        self.polls += 1
        changed, self.signal = signal != self.signal, signal
        self.owed = (
            self.owed
            or self.every <= 1
            or self.tried_at is None
            or changed
            or (self.polls + self.phase) % self.every == 0
            or now - self.tried_at >= self.max_age
        )
        return self.owed

    def keep(self, parts: Mapping[str, Any], now: float) -> None:
        """Remember what a slow read gave, read at ``now``."""
        self.parts = dict(parts)
        self.read_at = self.tried_at = now
        self.owed = False

    def failed(self, now: float) -> None:
        """A slow read went unanswered: the values keep ageing until the next due time."""
        self.tried_at = now
        self.owed = False

    async def optional(
        self, now: float, ask: Callable[[], Awaitable[Mapping[str, Any]]], tries: int = 1
    ) -> None:
        """A slow read a board may lack (a model or firmware text) when due, its failure no error.

        A board that has not answered it in ``tries`` attempts is not asked again: a board
        without it costs that many timeouts, once.
        """
        if self.absent or not self.due(now):
            return
        try:
            self.keep(await ask(), now)
        except (FrameError, LinkTimeout):
            self.failed(now)
            if self.read_at is None:
                self.misses += 1
                self.absent = self.misses >= tries

    def ages(self, now: float) -> dict[str, float]:
        """[s] how old each kept value is at ``now`` (0 when read at this poll); {} untiered."""
        if self.every <= 1 or self.read_at is None:
            return {}
        age = round(max(0.0, now - self.read_at), 1)
        return dict.fromkeys(self.parts, age)

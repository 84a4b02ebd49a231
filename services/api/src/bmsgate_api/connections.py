"""Connections: a time limit for each request head and a ceiling on open connections.

uvicorn waits for a request's head without a time limit, so ~1,000 half-sent requests used to
take every file descriptor of the API. Here, uvicorn's own HTTP protocol is extended:

* a connection that has not sent a complete request head within ``head_timeout`` seconds of
  opening (or of its last response) is closed;
* beyond ``limit`` open connections, a new one closes the oldest connection that is still
  waiting for its request head or for the rest of its request body; when none is waiting (every
  connection is being answered) the new one is closed instead. So half-open connections and
  trickled bodies cannot crowd out a real request (guard.py bounds a body's time and rate).

Each episode of the limit is logged once when it starts and once when it ends, not per
connection. The process's soft limit of open files is raised to its hard limit at start, and the
connection limit kept below it, so accept() does not run out of descriptors.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

BACKLOG = 128  # connections the kernel queues; asyncio accepts up to this many in one go
# descriptors kept for everything but HTTP connections (files, broker, logs), and for one batch
# of accepted connections plus the closed ones whose descriptors are freed a loop turn later
SPARE_FILES = 64 + 2 * BACKLOG


def raise_file_limit() -> int:
    """Raise the soft limit of open files to the hard one; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # not allowed here: the limit below follows the soft limit
    return soft


def connection_limit(wanted: int, files: int) -> int:
    """The connection limit: ``wanted``, but below the ``files`` the process may open."""
    return max(8, min(wanted, files - SPARE_FILES))


@dataclass
class Crowd:
    """What the protocols of one server share: the limits and whether an episode is on."""

    limit: int
    head_timeout: float  # [s]
    crowded: bool = False
    closed: int = 0  # connections closed in this episode

    def too_many(self, count: int) -> None:
        """Log the start of an episode."""
        if not self.crowded:
            self.crowded, self.closed = True, 0
            log.warning(
                "%d open HTTP connections: from now on each new one closes the oldest that "
                "has not sent its request (a client holding connections open?)",
                count,
            )
        self.closed += 1

    def count_is(self, count: int) -> None:
        """Log the end of an episode once the connections are down to half the limit."""
        if self.crowded and count <= self.limit // 2:
            self.crowded = False
            log.warning("HTTP connections back to %d; %d were closed", count, self.closed)


def guarded(base: type[asyncio.Protocol], crowd: Crowd) -> type[asyncio.Protocol]:
    """Uvicorn's HTTP protocol class ``base`` with the head timeout and the connection limit."""
    parent: Any = base

    class Guarded(parent):  # type: ignore[misc]
        _waiting_since: float | None = None  # [s] loop time; None while a request is handled
        _head_done: float | None = None  # [s] loop time the head of the request under way came
        _timer: asyncio.TimerHandle | None = None
        _cycle_seen: Any = None

        def _wait_for_head(self) -> None:
            self._cycle_seen = self.cycle
            self._waiting_since = self.loop.time()
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(crowd.head_timeout, self._head_late)

        def _head_late(self) -> None:
            self._timer = None
            if self.cycle is self._cycle_seen and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._wait_for_head()
            if len(self.connections) > crowd.limit:
                crowd.too_many(len(self.connections))
                victim = _oldest_waiting(self.connections, self)
                # it leaves the set only a loop turn later
                victim._waiting_since = victim._head_done = None
                victim.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not self._cycle_seen:  # a request head is complete
                self._cycle_seen = self.cycle
                self._head_done = self.loop.time()
                self._waiting_since = None
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._wait_for_head()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)
            crowd.count_is(len(self.connections))

    Guarded.__name__ = f"Guarded{base.__name__}"
    return Guarded


def _waiting_since(connection: Any) -> float | None:
    """[s] loop time since which ``connection`` waits for a request head or for a body's rest."""
    if connection._waiting_since is not None:
        return float(connection._waiting_since)
    cycle = getattr(connection, "cycle", None)
    body_due = cycle is not None and cycle.more_body and not cycle.response_complete
    return connection._head_done if body_due else None


def _oldest_waiting(connections: set[Any], newest: Any) -> Any:
    """The connection waiting longest for its request head or body; ``newest`` when none is."""
    waiting = [(since, c) for c in connections if (since := _waiting_since(c)) is not None]
    return min(waiting, key=lambda w: w[0])[1] if waiting else newest

"""A service hosted in a process it shares with others, without pydantic.

``bmsgate run`` runs services in threads of one process (service.run_hosted), and the edge run's
reader process runs each bus's reader as a task of one event loop (bmsgate.edge_buses): such a
service is stopped, and restarted, alone. The lean reader process imports this without the
settings model (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextvars import ContextVar
from typing import Any


class Hosted:
    """A service that runs in a thread or a task of a process it shares with others.

    Such a service is stopped by ``stop()`` rather than by a signal to its process, and a restart
    it asks for ends only its own thread or task. Its code is the same as in a process of its own.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.restart = False  # it asked for a restart (request_restart)
        self._stopped = False
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, task: asyncio.Task[Any]) -> None:
        """The service's main task (until_signal), cancelled by ``stop()``; in its own thread."""
        self._loop, self._task = task.get_loop(), task
        if self._stopped:
            task.cancel()

    def stop(self) -> None:
        """Cancel the service's main task, as SIGTERM does to a service alone; any thread."""
        self._stopped = True
        if self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # its loop has closed: it has ended
                self._loop.call_soon_threadsafe(self._task.cancel)


HOSTED: ContextVar[Hosted | None] = ContextVar("bmsgate_hosted", default=None)

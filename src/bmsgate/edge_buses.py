"""The edge run's one reader process: every bus of the settings a task of one event loop.

Forked by the lean supervisor (edge.py), this process serves each bus as the service
``reader-N`` of its own (its status, its will, its session with the broker), lean
(bmsgate_reader.lean) until a message for that reader hands the bus to the full reader, in the
same loop. A bus's task runs as a hosted service (bmsgate_common.service.Hosted): a restart it
asks for ends only that task. The supervisor's rules apply to each task (restarts.py): one that
raised starts again after restart_delay, one asked to restart at once, one whose bus is not
configured stays stopped. The process's memory grows by one bus's session and poller per bus
rather than by one interpreter per bus (docs/performance.md).

SIGHUP: the supervisor has written new settings; the buses whose settings changed (their
fingerprint, as run.py compares a service's) start again with them, the removed ones stop and
the added ones start; then SIGUSR1 to the supervisor says it is done.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from bmsgate_common.exits import RESTART_EXIT
from bmsgate_common.hosted import HOSTED, Hosted
from bmsgate_common.logs import SERVICE, setup_logging
from bmsgate_common.service_table import SERVICES, fingerprint
from bmsgate_common.settings_view import ValidatedSettings, settings_view

from .restarts import STOP_TIMEOUT, ended

log = logging.getLogger("bmsgate.run")


@dataclass
class BusTask:
    """One bus's reader in this process."""

    name: str
    index: int
    fingerprint: str
    task: asyncio.Task[int] | None = None
    hosted: Hosted = field(default_factory=lambda: Hosted(""))
    started: float = 0.0  # [s] monotonic
    backoff: float = 1.0  # [s] its last wait before a restart
    later: asyncio.TimerHandle | None = None  # its restart, when waiting for one
    stopping: bool = False


class Buses:
    """The buses of the written settings, started, restarted and stopped in this loop."""

    def __init__(self, runtime: Path) -> None:
        self.runtime = runtime
        self.view: ValidatedSettings = settings_view(json.loads(runtime.read_text()))
        self.buses: dict[str, BusTask] = {}

    def plan(self) -> dict[str, tuple[int, str]]:
        """The readers the settings ask for: name -> (bus, fingerprint)."""
        settings = self.view.settings
        reads = SERVICES["reader"].reads
        return {
            f"reader-{i}": (i, fingerprint(settings, reads, bus))
            for i, bus in enumerate(settings.get("buses") or [])
        }

    async def apply(self) -> None:
        """Stop the buses no longer wanted or whose settings changed; start the missing."""
        plan = self.plan()
        stale = [n for n, b in self.buses.items() if plan.get(n, (0, ""))[1] != b.fingerprint]
        await self.stop(stale)
        for name in stale:
            del self.buses[name]
        for name, (index, print_) in plan.items():
            if name not in self.buses:
                self.buses[name] = bus = BusTask(name, index, print_)
                self.start(bus)

    async def reload(self) -> None:
        """The supervisor wrote new settings: apply them, then tell it (SIGUSR1)."""
        self.view = settings_view(json.loads(self.runtime.read_text()))
        logging.getLogger().setLevel(self.view.log_level)
        await self.apply()
        os.kill(os.getppid(), signal.SIGUSR1)

    def start(self, bus: BusTask) -> None:
        """Run the bus's reader as a task of its own, a hosted service named after it."""
        from bmsgate_reader.lean import run_bus

        bus.later = None
        bus.hosted = Hosted(bus.name)
        context = contextvars.copy_context()
        context.run(HOSTED.set, bus.hosted)
        context.run(SERVICE.set, bus.name)  # its log lines name it
        bus.started = time.monotonic()
        bus.task = asyncio.get_running_loop().create_task(
            run_bus(self.view, bus.index), context=context
        )
        bus.task.add_done_callback(lambda task: self.ended(bus, task))

    def ended(self, bus: BusTask, task: asyncio.Task[int]) -> None:
        """A bus's task ended: start it again by the supervisor's rules, unless stopped."""
        if bus.stopping or task.cancelled() or bus.task is not task:
            return
        error = task.exception()
        if error is not None:
            log.error("%s failed: %r", bus.name, error, exc_info=error)
            code = 1
        else:
            code = RESTART_EXIT if bus.hosted.restart else task.result()
        wait = ended(bus.name, code, time.monotonic() - bus.started, bus.backoff)
        if wait is None:
            return  # it stays stopped until its settings change
        bus.backoff = wait
        bus.later = asyncio.get_running_loop().call_later(wait, self.start, bus)

    async def stop(self, names: list[str]) -> None:
        """Stop these buses' readers (their packs offline), at most STOP_TIMEOUT for each."""
        tasks = []
        for name in names:
            bus = self.buses[name]
            bus.stopping = True
            if bus.later is not None:
                bus.later.cancel()
            if bus.task is not None and not bus.task.done():
                bus.task.cancel()
                tasks.append(bus.task)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            if late:
                log.warning("%d readers did not stop in %.0f s", len(late), STOP_TIMEOUT)


async def serve(runtime: Path) -> int:
    """Serve every bus of the settings ``runtime`` until SIGTERM or SIGINT."""
    buses = Buses(runtime)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    reloads: list[asyncio.Task[None]] = []

    def hup() -> None:  # one reload after another, in the order asked
        previous = reloads[-1] if reloads else None

        async def after() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            await buses.reload()

        reloads.append(loop.create_task(after()))

    loop.add_signal_handler(signal.SIGHUP, hup)
    # the supervisor's SIGHUP waited, blocked, for this handler (edge.py)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    await buses.apply()
    await done.wait()
    for task in reloads:
        task.cancel()
    await buses.stop(list(buses.buses))
    return 0


def main(runtime: Path) -> int:
    """The reader process's body (edge.py forks it); its exit code."""
    view = settings_view(json.loads(runtime.read_text()))
    setup_logging(view.log_level, "readers", shared=True)
    return asyncio.run(serve(runtime))

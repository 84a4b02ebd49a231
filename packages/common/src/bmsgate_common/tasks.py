"""Background tasks of a service: stopped together, and waited for, when the service stops."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def stop_tasks(tasks: Iterable[asyncio.Task[object]]) -> None:
    """Cancel every task and wait until each has finished its cleanup."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)

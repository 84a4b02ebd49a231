"""Background tasks of a service: stopped together, and waited for, when the service stops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


async def stop_tasks(tasks: Iterable[asyncio.Task[object]]) -> None:
    """Cancel every task and wait until each has finished its cleanup."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def seen_disconnect(client: object) -> None:
    """Mark the error of a connection the broker broke as seen, on a client that is done.

    aiomqtt (the independent client of the tests) keeps it in a future that only its message
    iterator reads; a client left another way (a publish the broker refused and answered by
    closing the connection, a session cancelled, a publish that failed first) leaves it unread,
    and asyncio prints "Future exception was never retrieved" with the error when the client is
    collected, long after the reconnect it was part of. Duck-typed: no aiomqtt import here.
    """
    future = getattr(client, "_disconnected", None)
    if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
        future.exception()

"""Background tasks of a service: stopped together, and waited for, when the service stops."""

from __future__ import annotations

import asyncio
import errno
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

    aiomqtt keeps it in a future that only its message iterator reads; a client left another
    way (a publish the broker refused and answered by closing the connection, a session
    cancelled, a publish that failed first) leaves it unread, and asyncio prints "Future
    exception was never retrieved" with the error when the client is collected, long after
    the reconnect it was part of. Duck-typed: no aiomqtt import here.
    """
    future = getattr(client, "_disconnected", None)
    if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
        future.exception()


def _late_socket_callback(context: dict[str, object]) -> bool:
    """Whether an error is a socket watch requested for a connection closed meanwhile.

    paho-mqtt (under aiomqtt) asks the loop to watch its socket from a callback scheduled
    for later; after a freeze longer than the keepalive (a process stopped, a machine
    suspended) the broker has closed the connection and paho the socket by the time the call
    runs, and registering the closed descriptor fails. The client notices the lost connection
    itself and reconnects, so this is no error.
    """
    err = context.get("exception")
    handle = repr(context.get("handle", ""))
    watch = "add_writer" in handle or "add_reader" in handle
    closed = isinstance(err, OSError | ValueError) and (
        not isinstance(err, OSError) or err.errno == errno.EBADF
    )
    return watch and closed


def quiet_late_socket_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    """Log a socket watch that fails on a closed connection at debug level, without traceback."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        if _late_socket_callback(context):
            log.debug("socket watch after the connection closed: %s", context.get("exception"))
            return
        loop.default_exception_handler(context)

    if loop.get_exception_handler() is None:
        loop.set_exception_handler(handler)

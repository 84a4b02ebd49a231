"""An MQTT listener for tests: collects what a service publishes, with the retain flag."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt


@dataclass
class Seen:
    """One message as the broker delivered it."""

    topic: str
    payload: Any
    retain: bool
    qos: int


@dataclass
class Listener:
    """Messages received so far, and a way to wait for one."""

    messages: list[Seen] = field(default_factory=list)

    def on(self, suffix: str) -> list[Any]:
        """Payloads of messages whose topic ends with ``suffix``."""
        return [m.payload for m in self.messages if m.topic.endswith(suffix)]

    async def wait_for(self, check: Callable[[Listener], Any], within: float = 10.0) -> Any:
        """Wait until ``check(self)`` is truthy; fail the test after ``within`` seconds."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            result = check(self)
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not seen within {within} s; got {self.messages[-5:]!r}")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def listen(port: int, *filters: str) -> AsyncIterator[Listener]:
    """Subscribe to ``filters`` on the broker at 127.0.0.1:``port`` for the block's duration."""
    listener = Listener()
    ready = asyncio.Event()

    async def run() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            for topic in filters:
                await client.subscribe(topic, qos=1)
            ready.set()
            async for message in client.messages:
                raw = message.payload
                try:
                    payload = json.loads(raw) if isinstance(raw, bytes | str) and raw else raw
                except ValueError:
                    payload = raw
                listener.messages.append(
                    Seen(str(message.topic), payload, message.retain, message.qos)
                )

    task = asyncio.create_task(run())
    await asyncio.wait([task, asyncio.create_task(ready.wait())], return_when="FIRST_COMPLETED")
    if task.done():
        task.result()
    try:
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)  # a hang here fails the test instead of stalling it


def seen_disconnect(client: aiomqtt.Client) -> None:
    """Mark the error of a connection the broker broke as seen, on a client that is done.

    aiomqtt keeps it in a future that only its message iterator reads; a client left another way
    (a publish the broker refused and answered by closing the connection, a time limit) leaves it
    unread, and asyncio prints "Future exception was never retrieved" with the error when the
    client is collected, long after the test it was part of.
    """
    future = getattr(client, "_disconnected", None)  # aiomqtt's own: no public way to it
    if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
        future.exception()

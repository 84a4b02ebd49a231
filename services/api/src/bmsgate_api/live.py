"""The API's side of the backbone: request/reply (history, commands) and the fan-out to SSE."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

CLIENT = "api"  # our level in <base>/history/<client>/request
RAW_HOLDER = "webui"  # who holds the line while the API sends a raw frame


class Replies:
    """Futures waiting for an answer that carries the same transaction."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._parts: dict[str, dict[int, Any]] = {}  # answers that come in several messages

    def new(self, prefix: str) -> str:
        """A fresh transaction id with a future waiting for its answer."""
        transaction = f"{prefix}-{secrets.token_hex(8)}"
        self._waiting[transaction] = asyncio.get_running_loop().create_future()
        return transaction

    async def wait(self, transaction: str, seconds: float) -> Any:
        """The answer to ``transaction``; TimeoutError after ``seconds``."""
        future = self._waiting[transaction]
        try:
            async with asyncio.timeout(seconds):
                return await future
        finally:
            self._waiting.pop(transaction, None)
            self._parts.pop(transaction, None)

    def cancel(self, transaction: str) -> None:
        """Stop waiting (the request could not be sent)."""
        self._waiting.pop(transaction, None)

    def part(self, transaction: str | None, index: int, count: int, message: Any) -> None:
        """Part ``index`` of ``count``; the answer is the list of parts once all are in."""
        if (transaction or "") not in self._waiting:
            return  # nobody asked (or no longer waits): nothing is kept
        assert transaction is not None
        got = self._parts.setdefault(transaction, {})
        got[index] = message
        if len(got) == count and all(i in got for i in range(count)):
            self.answer(transaction, [got[i] for i in range(count)])

    def answer(self, transaction: str | None, message: Any) -> None:
        """Hand ``message`` to whoever waits for ``transaction``; others are ignored."""
        future = self._waiting.get(transaction or "")
        if future is not None and not future.done():
            future.set_result(message)


@dataclass
class EventFanout:
    """Fan-out of live events to every connected browser; a slow one loses its oldest events."""

    size: int = 200
    listeners: set[asyncio.Queue[tuple[str, Any]]] = field(default_factory=set)

    def publish(self, event: str, data: Any) -> None:
        """Queue ``event`` for every listener."""
        for queue in self.listeners:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait((event, data))

    def listen(self) -> asyncio.Queue[tuple[str, Any]]:
        """A new listener's queue; remove it with ``leave``."""
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(self.size)
        self.listeners.add(queue)
        return queue

    def leave(self, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        """Forget a listener."""
        self.listeners.discard(queue)


class Latest:
    """One browser's waiting events: the newest per event and pack, oldest first.

    A browser slower than the packs (or an API that did not get the CPU for a moment) gets each
    pack's newest view, never a queue of old ones, and never loses a pack's only change: at
    1,000 packs a queue of 200 that dropped its oldest lost a third of the packs' updates.
    """

    def __init__(self) -> None:
        self.replaced = 0  # events a newer one of the same pack replaced before they were sent
        self._items: OrderedDict[tuple[str, str], tuple[str, Any]] = OrderedDict()
        self._ready = asyncio.Event()

    def put(self, event: str, data: Any) -> None:
        """Keep ``data`` (a view with a ``pack``) as the newest ``event`` of its pack."""
        key = (event, data.pack)
        if self._items.pop(key, None) is not None:
            self.replaced += 1
        self._items[key] = (event, data)
        self._ready.set()

    async def wait(self, seconds: float) -> bool:
        """Whether an event waits, within ``seconds``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._ready.wait()
        return self._ready.is_set()

    def take(self) -> list[tuple[str, Any]]:
        """Every waiting event, oldest first."""
        self._ready.clear()
        items = list(self._items.values())
        self._items.clear()
        return items


@dataclass
class LatestFanout:
    """Fan-out of the packs' and banks' views to every connected browser (``Latest`` each)."""

    listeners: set[Latest] = field(default_factory=set)

    def publish(self, event: str, data: Any) -> None:
        """Hand ``data`` to every listener."""
        for listener in self.listeners:
            listener.put(event, data)

    def listen(self) -> Latest:
        """A new listener; remove it with ``leave``."""
        listener = Latest()
        self.listeners.add(listener)
        return listener

    def leave(self, listener: Latest) -> None:
        """Forget a listener."""
        self.listeners.discard(listener)

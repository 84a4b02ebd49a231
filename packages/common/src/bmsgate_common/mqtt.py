"""The backbone: a service's MQTT connection that never gives up reconnecting.

Every service gets a ``Backbone``: it publishes the service's status ``online`` (retained) at start
and on every heartbeat, so the status comes back by itself after a broker restart, and leaves a
last will ``offline``. Incoming payloads are validated against the topic map's model here, once;
an invalid one is logged with the reason and dropped, and the service keeps going.

The protocol is bmsgate's own MQTT 3.1.1 client over asyncio (``mqtt_client``, the same one the
publisher's targets use): a service needs a handful of packet types, and a client library cost
more memory and CPU per message than the service's own work (docs/decisions.md "Backbone: MQTT
3.1.1 of its own over asyncio"). The session rules (connecting again for ever, the last will,
the retained read, publishing with failures counted, the heartbeat, the stop) are
``session.BackboneSession``'s, which the lean reader shares without pydantic; this module adds
what the backbone means on top of it: typed topics, validation, handlers and the service status.
Every subscription is made, in one SUBSCRIBE, before the connection counts as up and before any
handler runs, so a retained message never reaches a service that has not yet heard everything
it asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from . import topics
from .config_file import mask_urls
from .logs import recent_lines
from .models import Extra, LogLines, LogRequest, ServiceRestart, ServiceStatus, utcnow
from .service import request_restart
from .session import BROKER_ERRORS as BROKER_ERRORS
from .session import DEFAULT_HOST as DEFAULT_HOST
from .session import RETAINED_WAIT, BackboneSession, cancel
from .session import BackboneError as BackboneError
from .settings import MqttSettings
from .topics import TopicSpec
from .version import VERSION as VERSION  # kept importable from here

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[str, M], Awaitable[None]]
RawHandler = Callable[[str, bytes], Awaitable[None]]

STOP_TIMEOUT = 2.0  # [s] for the handlers to finish what they hold when the service stops


@dataclass(eq=False)
class _Route:
    """One subscription: its filter, the handler, and the queue the handler works through."""

    spec: TopicSpec[Any]
    handler: RawHandler
    retained: bool
    qos: int
    filter: str
    queue: asyncio.Queue[tuple[str, str, bytes]] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None


class Backbone:
    """One service's connection to the backbone: typed topics over its ``BackboneSession``."""

    def __init__(
        self,
        cfg: MqttSettings,
        service: str,
        detail: Callable[[], dict[str, Extra]] | None = None,
        *,
        restartable: bool = True,
    ) -> None:
        self.cfg = cfg
        self.service = service
        self.base = cfg.base_topic
        self._detail = detail or dict
        last_will = ServiceStatus(service=service, state="offline", version=VERSION)
        self.session = BackboneSession(
            cfg.host,
            cfg.port,
            service,
            last_will.model_dump_json(exclude_none=True).encode(),
            base_topic=cfg.base_topic,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else "",
            deliver=self._deliver,
            logger=log,
        )
        # called when the connection is lost, and when it is back with every subscription
        # (retained messages come again)
        self.on_disconnect = self.session.on_disconnect
        self.on_reconnect = self.session.on_reconnect
        self.started = utcnow()
        self._routes: list[_Route] = []
        # routes by (levels, last level): a message is matched against a few, not all
        self._index: dict[tuple[int, str], list[_Route]] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        # posted messages, sent one after the other: a newer retained state never goes first
        self._outbox: asyncio.Queue[tuple[TopicSpec[Any], str, BaseModel]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        if restartable:  # a service; a command-line tool is not restarted
            self.subscribe(topics.SERVICE_RESTART, self._on_restart, retained=False)
            self.subscribe(topics.SERVICE_LOGS, self._on_logs, retained=False)

    @property
    def connected(self) -> bool:
        """True once connected and every subscription is made; False when it is lost."""
        return self.session.connected

    @property
    def connects(self) -> int:
        """Connections made so far: a change tells a service it reconnected."""
        return self.session.connects

    @property
    def dropped(self) -> int:
        """Invalid incoming messages."""
        return self.session.dropped

    @property
    def unsent(self) -> int:
        """Publishes that failed while the broker was away."""
        return self.session.unsent

    async def _on_logs(self, name: str, request: LogRequest) -> None:
        if name == self.service:  # lines are logged without secrets; URL credentials masked too
            lines = [mask_urls(line) for line in recent_lines(request.lines)]
            reply = LogLines(transaction=request.transaction, service=self.service, lines=lines)
            await self.publish(topics.SERVICE_LOG_LINES, self.service, reply)

    async def _on_restart(self, name: str, request: ServiceRestart) -> None:
        if name in (self.service, "all"):
            log.info("restart requested%s", f": {request.reason}" if request.reason else "")
            request_restart()

    def subscribe(
        self, spec: TopicSpec[M], handler: Handler[M], *, retained: bool = True, qos0: bool = False
    ) -> None:
        """Call ``handler(name, model)`` for every valid message of ``spec``.

        ``retained=False`` skips messages the broker replays from its retained store.
        ``qos0=True`` takes the messages at QoS 0, without an acknowledgement packet each (for
        the many per-pack states: it was half the CPU a service spent per state). Nothing is
        lost by it: the sessions are clean, so the broker forgets a QoS 1 message unacknowledged
        when a connection breaks just the same, and on a live connection TCP delivers both.
        """
        validate = spec.model.model_validate_json

        async def on_payload(name: str, payload: bytes) -> None:
            try:
                model = validate(payload)
            except ValidationError as err:
                self.session.dropped += 1
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "payload"
                at = spec.topic(name, self.base)
                log.warning("dropping message on %s: %s: %s", at, where, first["msg"])
                return
            await handler(name, model)

        self.subscribe_raw(spec, on_payload, retained=retained, qos0=qos0)

    def subscribe_raw(
        self,
        spec: TopicSpec[Any],
        handler: RawHandler,
        *,
        retained: bool = True,
        qos0: bool = False,
    ) -> None:
        """Call ``handler(name, payload)`` for every message of ``spec``; the handler parses.

        Handlers of one subscription run one message after the other, in the order received;
        those of different subscriptions independently of each other.
        """
        route = _Route(
            spec, handler, retained, 0 if qos0 else spec.qos, spec.subscription(self.base)
        )
        self._routes.append(route)
        levels = route.filter.split("/")
        self._index.setdefault((len(levels), levels[-1]), []).append(route)
        if self.session.running:  # subscribed while running: asked for at once
            self._start_worker(route)
        self.session.subscribe([(route.filter, route.qos)])

    def _start_worker(self, route: _Route) -> None:
        if route.worker is None:
            name = f"{self.service}-{route.spec.kind}"
            route.worker = asyncio.create_task(self._work(route), name=name)

    async def _work(self, route: _Route) -> None:
        queue, handler = route.queue, route.handler
        while True:
            topic, name, payload = await queue.get()
            try:
                await handler(name, payload)
            except Exception:  # a bug in one handler: one message lost, the service goes on
                log.exception("handling the message on %s failed", topic)
            finally:
                queue.task_done()

    # messages in (called by the BackboneSession as they are read)

    def _deliver(self, topic: str, payload: bytes, retain: bool) -> None:
        levels = topic.split("/")
        for key in ((len(levels), levels[-1]), (len(levels), "+")):
            for route in self._index.get(key, ()):
                if retain and not route.retained:
                    continue
                name = route.spec.name_in(topic, self.base)
                if name is not None:
                    route.queue.put_nowait((topic, name, payload))

    def take(self, topic: str, payload: bytes) -> None:
        """Handle a message received on another connection as if it came now, not retained.

        The lean reader hands over the first message that needs the full reader (its models).
        """
        self._deliver(topic, payload, False)

    async def connect(self) -> None:
        """Connect once and make every subscription; BROKER_ERRORS when that fails."""
        await self.session.connect()
        self._start_workers()

    def _start_workers(self) -> None:
        for route in self._routes:
            self._start_worker(route)

    async def close(self) -> None:
        """Say goodbye to the broker (no last will then) and stop the handlers."""
        await self.session.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT):  # what the handlers hold, if it can go
                for route in self._routes:
                    await route.queue.join()
        for route in self._routes:
            if route.worker is not None:
                await cancel(route.worker)
                route.worker = None

    async def read_retained(
        self, spec: TopicSpec[M], names: Sequence[str], wait: float = RETAINED_WAIT
    ) -> dict[str, M]:
        """The retained message of each of ``names`` on ``spec``, read once and not followed.

        Read by the session after this service's status (``BackboneSession.read_retained``); an
        invalid one is dropped and counted. Empty when the broker is away; ``wait`` bounds it.
        """
        found: dict[str, M] = {}
        wanted = [spec.topic(name, self.base) for name in names]
        raw = await self.session.read_retained(
            wanted, self.publish_status, spec.subscription(self.base), wait
        )
        for topic, payload in raw.items():
            name = spec.name_in(topic, self.base)
            if name is None:
                continue
            try:
                found[name] = spec.model.model_validate_json(payload)
            except ValidationError as err:
                self.session.dropped += 1
                log.warning("retained message on %s dropped: %s", topic, err.errors()[0]["msg"])
        return found

    async def publish(self, spec: TopicSpec[M], name: str, model: M) -> bool:
        """Publish ``model`` on the topic of ``spec`` for ``name``; False if the broker is away.

        At QoS 1 it returns once the broker has acknowledged the message.
        """
        if not isinstance(model, spec.model):  # mypy catches it; this is for untyped callers
            raise TypeError(
                f"{spec.kind} carries {spec.model.__name__}, not {type(model).__name__}"
            )
        topic, payload = spec.topic(name, self.base), model.model_dump_json().encode()
        return await self.session.publish(topic, payload, spec.qos, spec.retained)

    def post(self, spec: TopicSpec[M], name: str, model: M) -> None:
        """Publish without waiting for it: what a message handler uses.

        A handler that awaited a QoS 1 publish would hold its subscription's queue until the
        broker's acknowledgement came; posted messages go out in the order they were posted,
        one after the other.
        """
        self._outbox.put_nowait((spec, name, model))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_posted(), name=f"{self.service}-outbox")

    async def _send_posted(self) -> None:
        while True:
            spec, name, model = await self._outbox.get()
            await self.publish(spec, name, model)  # False when the broker is away: counted there
            self._outbox.task_done()

    async def publish_status(self) -> bool:
        """Publish this service's retained status ``online`` with its counters."""
        status = ServiceStatus(
            service=self.service,
            state="online",
            ts=utcnow(),
            version=VERSION,
            started=self.started,
            detail={**self.session.counts(), **self._detail()},
        )
        return await self.publish(topics.SERVICE_STATUS, self.service, status)

    async def __aenter__(self) -> Backbone:
        """Connect (waiting for the broker as long as it takes), subscribe, then say online."""
        await self.session.start(self.publish_status)
        self._start_workers()
        beat = self.session.heartbeat(self.publish_status, self.cfg.heartbeat)
        self._heartbeat = asyncio.create_task(beat, name=f"{self.service}-heartbeat")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sender:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):  # what handlers posted last, if it can go
                    await self._outbox.join()
            await cancel(self._sender)
            self._sender = None
        if self._heartbeat:
            await cancel(self._heartbeat)
        await self.session.stop_connecting()
        offline = ServiceStatus(service=self.service, state="offline", ts=utcnow(), version=VERSION)
        await self.session.say_offline(offline.model_dump_json().encode())
        await self.close()

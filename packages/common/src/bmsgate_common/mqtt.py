"""The backbone: a service's MQTT connection that never gives up reconnecting.

Every service gets a ``Backbone``: it publishes the service's status ``online`` (retained) at start
and on every heartbeat, so the status comes back by itself after a broker restart, and leaves a
last will ``offline``. Incoming payloads are validated against the topic map's model here, once;
an invalid one is logged with the reason and dropped, and the service keeps going.

The protocol is bmsgate's own MQTT 3.1.1 client over asyncio (``mqtt_client``, the same one the
publisher's targets use): a service needs a handful of packet types, and a client library cost
more memory and CPU per message than the service's own work (docs/decisions.md "Backbone: MQTT
3.1.1 of its own over asyncio"). This module adds what the backbone means on top of it: typed
topics, validation, handlers, reconnecting and the service status.
Every subscription is made, in one SUBSCRIBE, before the connection counts as up and before any
handler runs, so a retained message never reaches a service that has not yet heard everything
it asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from . import mqtt_client, topics
from .config_file import mask_urls
from .logs import recent_lines
from .models import Extra, LogLines, LogRequest, ServiceRestart, ServiceStatus, utcnow
from .mqtt_client import Connection, Message, MqttError, Will
from .service import request_restart
from .settings import MqttSettings
from .topics import TopicSpec
from .version import VERSION as VERSION  # kept importable from here

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[str, M], Awaitable[None]]
RawHandler = Callable[[str, bytes], Awaitable[None]]

DEFAULT_HOST = "127.0.0.1"
CONNECT_TIMEOUT = 10.0  # [s] for the TCP connection, CONNACK and SUBACK together
KEEPALIVE = 60  # [s] MQTT keepalive: a ping when nothing went or came for half of it
STOP_TIMEOUT = 2.0  # [s] for the handlers to finish what they hold when the service stops
RETAINED_WAIT = 5.0  # [s] at most for the retained messages read once at a start
RETRY_FIRST = 0.5  # [s] first wait before connecting again; doubles up to RETRY_MAX
RETRY_MAX = 10.0  # [s]


# the broker refused, broke or lost the connection (the connection layer's error)
BackboneError = MqttError


# what connecting and publishing raise when the broker is away or the connection broke
BROKER_ERRORS = (BackboneError, OSError)


def broker_url(cfg: MqttSettings) -> str:
    """``mqtt://host:port`` of the backbone (credentials go separately, never in a URL)."""
    return f"mqtt://{cfg.host or DEFAULT_HOST}:{cfg.port}"


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
    """One service's connection to the backbone."""

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
        self._status_topic = topics.SERVICE_STATUS.topic(service, self.base)
        last_will = ServiceStatus(service=service, state="offline", version=VERSION)
        self._client_id = f"bmsgate-{service}-{os.getpid()}"
        self._will = Will(self._status_topic, last_will.model_dump_json(exclude_none=True).encode())
        # True once connected and every subscription is made; False when the connection is lost
        self.connected = False
        self.connects = 0  # connections made so far: a change tells a service it reconnected
        # called when the connection is lost, and when it is back with every subscription
        # (retained messages come again)
        self.on_disconnect: list[Callable[[], None]] = []
        self.on_reconnect: list[Callable[[], None]] = []
        self.started = utcnow()
        self.dropped = 0  # invalid incoming messages
        self.unsent = 0  # publishes that failed while the broker was away
        self._routes: list[_Route] = []
        # routes by (levels, last level): a message is matched against a few, not all
        self._index: dict[tuple[int, str], list[_Route]] = {}
        self._taps: dict[str, asyncio.Queue[tuple[str, bytes, bool]]] = {}  # read_retained's
        self._session: Connection | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        # posted messages, sent one after the other: a newer retained state never goes first
        self._outbox: asyncio.Queue[tuple[TopicSpec[Any], str, BaseModel]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        if restartable:  # a service; a command-line tool is not restarted
            self.subscribe(topics.SERVICE_RESTART, self._on_restart, retained=False)
            self.subscribe(topics.SERVICE_LOGS, self._on_logs, retained=False)

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
                self.dropped += 1
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
        if self._session is not None:  # subscribed while running: asked for at once
            self._start_worker(route)
            with contextlib.suppress(BackboneError):  # nothing waits for the SUBACK
                self._session.subscribe([(route.filter, route.qos)])

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

    # the connection: messages in (called by the Connection as they are read), requests out

    def _deliver(self, msg: Message) -> None:
        topic, payload, retain = msg.topic, msg.payload, msg.retain
        if self._taps and (tap := self._taps.get(topic)) is not None:
            tap.put_nowait((topic, payload, retain))
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
        self._deliver(Message(topic, payload, 1, False, 0))

    def _on_lost(self, session: Connection) -> None:
        if session is not self._session:
            return
        self._session = None
        if self.connected:
            self.connected = False
            log.warning("backbone unreachable (connection lost); will keep retrying")
            for callback in self.on_disconnect:
                callback()

    def _connection(self) -> Connection:
        if self._session is None:
            raise BackboneError("not connected")
        return self._session

    async def connect(self) -> None:
        """Connect once and make every subscription; BROKER_ERRORS when that fails."""
        cfg = self.cfg
        session: Connection | None = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                session = await mqtt_client.connect(
                    cfg.host or DEFAULT_HOST,
                    cfg.port,
                    client_id=self._client_id,
                    keepalive=KEEPALIVE,
                    will=self._will,
                    username=cfg.username,
                    password=cfg.password.get_secret_value() if cfg.password else "",
                    on_message=self._deliver,
                    on_lost=self._on_lost,
                )
                self._session = session
                filters = list(dict.fromkeys((r.filter, r.qos) for r in self._routes))
                if filters:
                    granted = await session.subscribe(filters)
                    refused = [
                        f for (f, _), code in zip(filters, granted, strict=False) if code > 1
                    ]
                    if refused:  # connecting again would not change it; the rest works
                        log.warning("backbone refused the subscription to %s", ", ".join(refused))
        except TimeoutError as err:
            if session is not None:
                session.abort()
            raise BackboneError("no answer in time") from err
        except BaseException:
            if session is not None:
                session.abort()
            raise
        for route in self._routes:
            self._start_worker(route)
        self.connected = True
        self.connects += 1

    async def close(self) -> None:
        """Say goodbye to the broker (no last will then) and stop the handlers."""
        if self._keeper:
            await _cancel(self._keeper)
        session = self._session
        self._session = None  # its end is no outage
        self.connected = False
        if session is not None:
            await session.close()  # what is written still goes out
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT):  # what the handlers hold, if it can go
                for route in self._routes:
                    await route.queue.join()
        for route in self._routes:
            if route.worker is not None:
                await _cancel(route.worker)
                route.worker = None

    async def _keep(self) -> None:
        """Wait while connected (the connection pings); when it is lost, connect again."""
        while True:
            session = self._session
            if session is not None:
                await asyncio.wait([session.lost])
                continue
            delay = RETRY_FIRST
            while True:
                await asyncio.sleep(delay)
                try:
                    await self.connect()
                    break
                except BROKER_ERRORS as err:
                    log.debug("backbone %s not reachable: %s", broker_url(self.cfg), err)
                    delay = min(delay * 2, RETRY_MAX)
            log.info("backbone connected at %s", broker_url(self.cfg))
            for callback in self.on_reconnect:
                callback()
            await self.publish_status()

    async def read_retained(
        self, spec: TopicSpec[M], names: Sequence[str], wait: float = RETAINED_WAIT
    ) -> dict[str, M]:
        """The retained message of each of ``names`` on ``spec``, read once and not followed.

        One subscription to those exact topics (not every name's), with this service's own
        status last, published retained just before: the broker sends the retained messages of
        a subscription in the order of its filters, so once the status is in, so is every
        retained message asked for. Nothing more is received afterwards. Empty when the broker
        is away; ``wait`` bounds it.
        """
        found: dict[str, M] = {}
        if not names or not await self.publish_status():
            return found
        wanted = [spec.topic(name, self.base) for name in names]
        inbox: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
        filters = [*wanted, self._status_topic]
        for topic in filters:
            self._taps[topic] = inbox
        try:
            async with asyncio.timeout(wait):
                # one QoS for all: delivered in the order sent
                await self._connection().subscribe([(f, 1) for f in filters])
                while True:
                    topic, payload, retain = await inbox.get()
                    if topic == self._status_topic:
                        break
                    name = spec.name_in(topic, self.base)
                    if not retain or name is None:
                        continue
                    try:
                        found[name] = spec.model.model_validate_json(payload)
                    except ValidationError as err:
                        self.dropped += 1
                        log.warning(
                            "retained message on %s dropped: %s", topic, err.errors()[0]["msg"]
                        )
        except (TimeoutError, *BROKER_ERRORS) as err:
            log.warning(
                "retained messages on %s not all read: %s",
                spec.subscription(self.base),
                type(err).__name__,
            )
        finally:
            for topic in filters:
                self._taps.pop(topic, None)
            with contextlib.suppress(BackboneError):  # nothing waits for the UNSUBACK
                self._connection().unsubscribe(filters)
        return found

    async def publish(self, spec: TopicSpec[M], name: str, model: M) -> bool:
        """Publish ``model`` on the topic of ``spec`` for ``name``; False if the broker is away.

        At QoS 1 it returns once the broker has acknowledged the message.
        """
        if not isinstance(model, spec.model):  # mypy catches it; this is for untyped callers
            raise TypeError(
                f"{spec.kind} carries {spec.model.__name__}, not {type(model).__name__}"
            )
        session = self._session
        if not self.connected or session is None:
            self.unsent += 1
            return False
        topic = spec.topic(name, self.base)
        payload = model.model_dump_json().encode()
        try:
            await session.publish_acked(topic, payload, spec.qos, spec.retained)
        except BackboneError:
            self.unsent += 1
            return False
        return True

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
            detail={"dropped": self.dropped, "unsent": self.unsent, **self._detail()},
        )
        return await self.publish(topics.SERVICE_STATUS, self.service, status)

    async def _beat(self) -> None:
        while True:
            if self.connected:
                await self.publish_status()
            await asyncio.sleep(self.cfg.heartbeat)

    async def __aenter__(self) -> Backbone:
        """Connect (waiting for the broker as long as it takes), subscribe, then say online."""
        delay = RETRY_FIRST
        while True:
            try:
                await self.connect()
                break
            except BROKER_ERRORS as err:
                if delay == RETRY_FIRST:
                    log.warning(
                        "backbone %s not reachable (%s); retrying", broker_url(self.cfg), err
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        if delay != RETRY_FIRST:
            log.info("backbone connected at %s", broker_url(self.cfg))
        self._keeper = asyncio.create_task(self._keep(), name=f"{self.service}-backbone")
        self._heartbeat = asyncio.create_task(self._beat(), name=f"{self.service}-heartbeat")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sender:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):  # what handlers posted last, if it can go
                    await self._outbox.join()
            await _cancel(self._sender)
            self._sender = None
        if self._heartbeat:
            await _cancel(self._heartbeat)
        if self._keeper:
            await _cancel(self._keeper)
        offline = ServiceStatus(service=self.service, state="offline", ts=utcnow(), version=VERSION)
        with contextlib.suppress(TimeoutError):  # publish answers False when the broker is away
            async with asyncio.timeout(2.0):
                await self.publish(topics.SERVICE_STATUS, self.service, offline)
        await self.close()


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

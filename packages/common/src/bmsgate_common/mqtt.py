"""The backbone: a service's MQTT connection that never gives up reconnecting.

Every service gets a ``Backbone``: it publishes the service's status ``online`` (retained) at start
and on every heartbeat, so the status comes back by itself after a broker restart, and leaves a
last will ``offline``. Incoming payloads are validated against the topic map's model here, once;
an invalid one is logged with the reason and dropped, and the service keeps going.

The protocol is MQTT 3.1.1 over asyncio (``mqtt_wire`` makes and reads the packets): a service
needs a handful of packet types, and a client library cost more memory and CPU per message than
the service's own work (docs/decisions.md "Backbone: MQTT 3.1.1 of its own over asyncio").
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

from . import mqtt_wire as wire
from . import topics
from .config_file import mask_urls
from .logs import recent_lines
from .models import Extra, LogLines, LogRequest, ServiceRestart, ServiceStatus, utcnow
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


class BackboneError(Exception):
    """The broker refused, broke or lost the connection."""


# what connecting and publishing raise when the broker is away or the connection broke
BROKER_ERRORS = (BackboneError, OSError)


def broker_url(cfg: MqttSettings) -> str:
    """``mqtt://host:port`` of the backbone (credentials go separately, never in a URL)."""
    return f"mqtt://{cfg.host or DEFAULT_HOST}:{cfg.port}"


class _Session(asyncio.Protocol):
    """One TCP connection to the broker: whole packets handed to the backbone as they come."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.last_in = self.last_out = loop.time()
        self._time = loop.time

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_in = self._time()
        self.buf += data
        try:
            packets = wire.split(self.buf)
            for packet in packets:
                self.backbone._on_packet(self, packet)
        except (wire.ProtocolError, BackboneError) as err:
            log.warning("backbone connection closed: %s", err)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.backbone._on_lost(self)

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise BackboneError("connection closed")
        self.last_out = self._time()
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


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
        self._connect_packet = wire.connect(
            f"bmsgate-{service}-{os.getpid()}",
            KEEPALIVE,
            will=(
                self._status_topic,
                last_will.model_dump_json(exclude_none=True).encode(),
                1,
                True,
            ),
            username=cfg.username,
            password=(
                (cfg.password.get_secret_value() if cfg.password else "") if cfg.username else None
            ),
        )
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
        self._session: _Session | None = None
        self._waiting: dict[int, asyncio.Future[bytes]] = {}  # PUBACK/SUBACK/UNSUBACK by id
        self._connack: asyncio.Future[bytes] | None = None
        self._next_id = 0
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
            with contextlib.suppress(BackboneError):
                self._request(lambda pid: wire.subscribe(pid, [(route.filter, route.qos)]))

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

    # the connection: packets in (called by _Session), requests out

    def _on_packet(self, session: _Session, packet: wire.Packet) -> None:
        kind = packet.kind
        if kind == wire.PUBLISH:
            msg = wire.message(packet)
            if msg.qos:
                session.write(wire.puback(msg.packet_id))
            self._deliver(msg.topic, msg.payload, msg.retain)
        elif kind in (wire.PUBACK, wire.SUBACK, wire.UNSUBACK):
            future = self._waiting.pop(wire.packet_id(packet), None)
            if future is not None and not future.done():
                future.set_result(packet.body[2:])
        elif kind == wire.CONNACK:
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(packet.body)
        elif kind != wire.PINGRESP:
            raise wire.ProtocolError(f"unexpected packet type {kind} from the broker")

    def _deliver(self, topic: str, payload: bytes, retain: bool) -> None:
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

    def _on_lost(self, session: _Session) -> None:
        if session is not self._session:
            return
        self._session = None
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(BackboneError("connection lost"))
        self._waiting.clear()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(BackboneError("connection closed before CONNACK"))
        if self.connected:
            self.connected = False
            log.warning("backbone unreachable (connection lost); will keep retrying")
            for callback in self.on_disconnect:
                callback()

    def _new_id(self) -> int:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._waiting:
                return self._next_id
        raise BackboneError("every packet id is in use")

    def _request(self, build: Callable[[int], bytes]) -> asyncio.Future[bytes]:
        """Send the packet ``build(packet_id)``; its acknowledgement's body, when it comes."""
        session = self._session
        if session is None:
            raise BackboneError("not connected")
        packet_id = self._new_id()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[packet_id] = future
        try:
            session.write(build(packet_id))
        except BackboneError:
            del self._waiting[packet_id]
            raise
        return future

    async def connect(self) -> None:
        """Connect once and make every subscription; BROKER_ERRORS when that fails."""
        loop = asyncio.get_running_loop()
        session: _Session | None = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                _, session = await loop.create_connection(
                    lambda: _Session(self), self.cfg.host or DEFAULT_HOST, self.cfg.port
                )
                self._session = session
                self._connack = loop.create_future()
                session.write(self._connect_packet)
                answer = await self._connack
                if len(answer) < 2 or answer[1]:
                    code = answer[1] if len(answer) > 1 else -1
                    raise BackboneError(wire.REFUSED.get(code, f"CONNACK {answer.hex()}"))
                filters = list(dict.fromkeys((r.filter, r.qos) for r in self._routes))
                if filters:
                    granted = await self._request(lambda pid: wire.subscribe(pid, filters))
                    refused = [
                        f for (f, _), code in zip(filters, granted, strict=False) if code > 1
                    ]
                    if refused:  # connecting again would not change it; the rest works
                        log.warning("backbone refused the subscription to %s", ", ".join(refused))
        except TimeoutError as err:
            if session is not None:
                session.close()
            raise BackboneError("no answer in time") from err
        except BaseException:
            if session is not None:
                session.close()
            raise
        finally:
            self._connack = None
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
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(BackboneError("connection closed"))
        self._waiting.clear()
        if session is not None:
            with contextlib.suppress(BackboneError):
                session.write(wire.BYE)
            if session.transport is not None:
                session.transport.close()  # what is written still goes out
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await session.lost
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT):  # what the handlers hold, if it can go
                for route in self._routes:
                    await route.queue.join()
        for route in self._routes:
            if route.worker is not None:
                await _cancel(route.worker)
                route.worker = None

    async def _keep(self) -> None:
        """Ping while connected; when the connection is lost, connect again, for ever."""
        loop = asyncio.get_running_loop()
        while True:
            session = self._session
            if session is not None:
                await asyncio.wait([session.lost], timeout=KEEPALIVE / 2)
                if not session.lost.done():
                    now = loop.time()
                    if now - session.last_in > KEEPALIVE:  # a ping went unanswered
                        log.warning("backbone silent for %.0f s; connecting again", KEEPALIVE)
                        session.close()
                    elif now - session.last_out >= KEEPALIVE / 2 or (
                        now - session.last_in >= KEEPALIVE / 2
                    ):
                        with contextlib.suppress(BackboneError):
                            session.write(wire.PING)
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
                await self._request(lambda pid: wire.subscribe(pid, [(f, 1) for f in filters]))
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
                self._request(lambda pid: wire.unsubscribe(pid, filters)).cancel()
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
            if spec.qos:
                await self._request(lambda pid: wire.publish(topic, payload, 1, spec.retained, pid))
            else:
                session.write(wire.publish(topic, payload, 0, spec.retained))
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

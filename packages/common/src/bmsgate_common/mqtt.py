"""The backbone: a FastStream MQTT broker per service that never gives up reconnecting.

Every service gets a ``Backbone``: it publishes the service's status ``online`` (retained) at start
and on every heartbeat, so the status comes back by itself after a broker restart, and leaves a
last will ``offline``. Incoming payloads are validated against the topic map's model here, once;
an invalid one is logged with the reason and dropped, and the service keeps going.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from faststream import AckPolicy
from faststream.exceptions import FastStreamException
from faststream.mqtt import MQTTBroker, MQTTMessage, QoS, ReconnectConfig, Will
from faststream.security import SASLPlaintext
from pydantic import BaseModel, ValidationError
from zmqtt.errors import MQTTError

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
STOP_TIMEOUT = 5.0  # [s] to close the connection when the service stops
RETAINED_WAIT = 5.0  # [s] at most for the retained messages read once at a start
# what the client raises when the broker is away or the connection broke
BROKER_ERRORS = (MQTTError, OSError, RuntimeError, FastStreamException)


def broker_url(cfg: MqttSettings) -> str:
    """``mqtt://host:port`` of the backbone (credentials go separately, never in a URL)."""
    return f"mqtt://{cfg.host or DEFAULT_HOST}:{cfg.port}"


async def _as_received(msg: MQTTMessage) -> MQTTMessage:
    """FastStream's decoding step left out: the handler parses the payload, once."""
    return msg


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
        security = (
            SASLPlaintext(
                username=cfg.username,
                password=cfg.password.get_secret_value() if cfg.password else "",
            )
            if cfg.username
            else None
        )
        self.broker = MQTTBroker(
            broker_url(cfg),
            client_id=f"bmsgate-{service}-{os.getpid()}",
            will=Will(
                topic=self._status_topic,
                payload=last_will.model_dump_json(exclude_none=True).encode(),
                qos=QoS.AT_LEAST_ONCE,
                retain=True,
            ),
            # the default gives up after ~31 s for good; a gateway must wait for the broker forever
            reconnect=ReconnectConfig(initial_delay=0.5, max_delay=10.0, max_attempts=None),
            security=security,
            logger=None,
            graceful_timeout=2.0,
            # handlers take the message as it came: no dependency injection per message (its
            # context lookup ran in a worker thread, the largest CPU cost per state received)
            apply_types=False,
        )
        self.connected = False
        # called when a publish fails while connected (the broker went away), and when one
        # succeeds again after that (it came back: retained messages are sent again)
        self.on_disconnect: list[Callable[[], None]] = []
        self.on_reconnect: list[Callable[[], None]] = []
        self.started = utcnow()
        self.dropped = 0  # invalid incoming messages
        self.unsent = 0  # publishes that failed while the broker was away
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

        async def on_payload(name: str, payload: bytes) -> None:
            try:
                model = spec.model.model_validate_json(payload)
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
        """Call ``handler(name, payload)`` for every message of ``spec``; the handler parses."""
        qos = QoS.AT_MOST_ONCE if qos0 else QoS(spec.qos)

        async def on_message(msg: MQTTMessage) -> None:
            raw = msg.raw_message
            if raw.retain and not retained:
                return
            name = spec.name_in(raw.topic, self.base)
            if name is None:
                return
            try:
                await handler(name, raw.payload)
            except Exception:  # FastStream runs without a logger: a bug here would leave no line
                log.exception("handling the message on %s failed", raw.topic)

        # nothing to acknowledge at QoS 0: FastStream then leaves its acknowledgement step out
        policy = AckPolicy.MANUAL if qos0 else AckPolicy.ACK
        self.broker.subscriber(
            spec.subscription(self.base), qos=qos, decoder=_as_received, ack_policy=policy
        )(on_message)

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
        try:
            async with asyncio.timeout(wait):
                client = self.broker.config.client
                qos = QoS.AT_LEAST_ONCE  # one QoS for all: delivered in the order sent
                async with client.subscribe(*wanted, self._status_topic, qos=qos) as sub:
                    async for msg in sub:
                        if msg.topic == self._status_topic:
                            break
                        name = spec.name_in(msg.topic, self.base)
                        if not msg.retain or name is None:
                            continue
                        try:
                            found[name] = spec.model.model_validate_json(msg.payload)
                        except ValidationError as err:
                            self.dropped += 1
                            log.warning(
                                "retained message on %s dropped: %s",
                                msg.topic,
                                err.errors()[0]["msg"],
                            )
        except (TimeoutError, *BROKER_ERRORS) as err:
            log.warning(
                "retained messages on %s not all read: %s",
                spec.subscription(self.base),
                type(err).__name__,
            )
        return found

    async def publish(self, spec: TopicSpec[M], name: str, model: M) -> bool:
        """Publish ``model`` on the topic of ``spec`` for ``name``; False if the broker is away."""
        if not isinstance(model, spec.model):  # mypy catches it; this is for untyped callers
            raise TypeError(
                f"{spec.kind} carries {spec.model.__name__}, not {type(model).__name__}"
            )
        try:
            await self.broker.publish(
                model.model_dump_json(),
                spec.topic(name, self.base),
                qos=QoS(spec.qos),
                retain=spec.retained,
            )
        except BROKER_ERRORS as err:
            self.unsent += 1
            if self.connected:
                log.warning("backbone unreachable (%s); will keep retrying", type(err).__name__)
                self.connected = False
                for callback in self.on_disconnect:
                    callback()
            return False
        if not self.connected:
            log.info("backbone connected at %s", broker_url(self.cfg))
            self.connected = True
            for callback in self.on_reconnect:
                callback()
        return True

    def post(self, spec: TopicSpec[M], name: str, model: M) -> None:
        """Publish without waiting for it: what a message handler uses.

        A handler that awaited a QoS 1 publish could wait for ever under load: the broker's
        acknowledgement arrives on the connection whose reading stops while the queue of
        messages for the handlers is full, and that queue only drains when the handler returns.
        Posted messages go out in the order they were posted.
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
            await self.publish_status()
            await asyncio.sleep(self.cfg.heartbeat if self.connected else 1.0)

    async def __aenter__(self) -> Backbone:
        while True:
            try:
                await self.broker.start()
                self.connected = True
                break
            except (MQTTError, OSError) as err:
                log.warning("backbone %s not reachable (%s); retrying", broker_url(self.cfg), err)
                await self.broker.stop()
                await asyncio.sleep(2.0)
        self._heartbeat = asyncio.create_task(self._beat(), name=f"{self.service}-heartbeat")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sender:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):  # what handlers posted last, if it can go
                    await self._outbox.join()
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self._heartbeat:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        offline = ServiceStatus(service=self.service, state="offline", ts=utcnow(), version=VERSION)
        with contextlib.suppress(TimeoutError):  # publish answers False when the broker is away
            async with asyncio.timeout(2.0):
                await self.publish(topics.SERVICE_STATUS, self.service, offline)
        task = asyncio.current_task()
        cancels = task.cancelling() if task else 0
        try:
            # zmqtt unsubscribes on stop; with the broker gone that can wait a long time
            async with asyncio.timeout(STOP_TIMEOUT):
                await self.broker.stop()
        except TimeoutError:
            log.warning("backbone did not close within %.0f s; leaving anyway", STOP_TIMEOUT)
        except BROKER_ERRORS:
            pass  # closing a connection that is already broken
        await _absorb_stray_cancel(task, cancels)


async def _absorb_stray_cancel(task: asyncio.Task[Any] | None, cancels: int) -> None:
    """Take the cancellation the broker's stop can leave pending on the stopping task.

    Seen on Python 3.11: after ``broker.stop()`` the next await of the task raises
    CancelledError with no new cancel request counted. A service's cleanup after the backbone
    (history's last commit, everything since the previous one) then stopped at its first
    await and was lost. A cancel requested meanwhile (counted) still goes through.
    """
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        if task is None or task.cancelling() > cancels:
            raise

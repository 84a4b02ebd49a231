"""A service's session with the backbone broker in raw topics and bytes: the rules, once.

Both the ``Backbone`` (mqtt.py: models, typed topics, handlers) and the lean reader
(bmsgate_reader.lean, no pydantic) speak to the broker through this: connecting with the
service's last will and every subscription, connecting again for ever when the connection is
lost, the retained messages read once, publishing with the failures counted, the heartbeat, the
offline status at a stop and the clean close. It imports no pydantic, settings or models, so a
lean process can use it (tests check the imports).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from . import mqtt_client
from .mqtt_client import Connection, Message, MqttError, Will
from .topic_routes import ROUTES, topic

DEFAULT_HOST: Final = "127.0.0.1"
CONNECT_TIMEOUT: Final = 10.0  # [s] for the TCP connection, CONNACK and SUBACK together
KEEPALIVE: Final = 60  # [s] MQTT keepalive: a ping when nothing went or came for half of it
RETAINED_WAIT: Final = 5.0  # [s] at most for the retained messages read once at a start
RETRY_FIRST: Final = 0.5  # [s] first wait before connecting again; doubles up to RETRY_MAX
RETRY_MAX: Final = 10.0  # [s]
OFFLINE_WAIT: Final = 2.0  # [s] at most for the status ``offline`` at a stop

# the broker refused, broke or lost the connection (the connection layer's error)
BackboneError = MqttError

# what connecting and publishing raise when the broker is away or the connection broke
BROKER_ERRORS: Final = (BackboneError, OSError)

# (topic, payload, retain) of each message received on a subscription
Deliver = Callable[[str, bytes, bool], None]


def broker_url(host: str | None, port: int) -> str:
    """``mqtt://host:port`` of the backbone (credentials go separately, never in a URL)."""
    return f"mqtt://{host or DEFAULT_HOST}:{port}"


class BackboneSession:
    """One service's session with the backbone broker, connected again whenever it is lost."""

    def __init__(
        self,
        host: str | None,
        port: int,
        service: str,
        will: bytes,
        *,
        base_topic: str,
        username: str | None = None,
        password: str = "",
        deliver: Deliver | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.host = host or DEFAULT_HOST
        self.port = port
        self.service = service
        self.where = broker_url(host, port)
        self.status_topic = topic("service_status", service, base_topic)
        self._will = Will(self.status_topic, will)  # the status ``offline`` the broker sends
        self._client_id = f"bmsgate-{service}-{os.getpid()}"
        self._login = (username, password)
        self._deliver = deliver
        self.log = logger or logging.getLogger(__name__)  # the service's: its lines name it
        self.filters: list[tuple[str, int]] = []  # (topic filter, QoS), subscribed at connecting
        # True once connected and every subscription is made; False when the connection is lost
        self.connected = False
        self.connects = 0  # connections made so far: a change tells a service it reconnected
        self.dropped = 0  # invalid incoming messages (the layer above validates)
        self.unsent = 0  # publishes that failed while the broker was away
        # called when the connection is lost, and when it is back with every subscription
        # (retained messages come again)
        self.on_disconnect: list[Callable[[], None]] = []
        self.on_reconnect: list[Callable[[], None]] = []
        self._taps: dict[str, asyncio.Queue[tuple[str, bytes, bool]]] = {}  # read_retained's
        self._conn: Connection | None = None
        self._keeper: asyncio.Task[None] | None = None

    def counts(self) -> dict[str, int]:
        """The session's counters for the service status's detail."""
        return {"dropped": self.dropped, "unsent": self.unsent}

    # messages in (called by the Connection as they are read)

    def _message(self, msg: Message) -> None:
        if self._taps and (tap := self._taps.get(msg.topic)) is not None:
            tap.put_nowait((msg.topic, msg.payload, msg.retain))
        if self._deliver is not None:
            self._deliver(msg.topic, msg.payload, msg.retain)

    def _on_lost(self, conn: Connection) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        if self.connected:
            self.connected = False
            self.log.warning("backbone unreachable (connection lost); will keep retrying")
            for callback in self.on_disconnect:
                callback()

    def _connection(self) -> Connection:
        if self._conn is None:
            raise BackboneError("not connected")
        return self._conn

    @property
    def running(self) -> bool:
        """Whether a connection is open (connected, or making its subscriptions)."""
        return self._conn is not None

    def subscribe(self, filters: Sequence[tuple[str, int]]) -> None:
        """Add subscriptions; asked for at once when connected, else at connecting."""
        self.filters.extend(filters)
        if self._conn is not None:
            with contextlib.suppress(BackboneError):  # nothing waits for the SUBACK
                self._conn.subscribe(list(filters))

    async def connect(self) -> None:
        """Connect once and make every subscription; BROKER_ERRORS when that fails."""
        conn: Connection | None = None
        username, password = self._login
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                conn = await mqtt_client.connect(
                    self.host,
                    self.port,
                    client_id=self._client_id,
                    keepalive=KEEPALIVE,
                    will=self._will,
                    username=username,
                    password=password,
                    on_message=self._message,
                    on_lost=self._on_lost,
                )
                self._conn = conn
                filters = list(dict.fromkeys(self.filters))
                if filters:
                    granted = await conn.subscribe(filters)
                    refused = [
                        f for (f, _), code in zip(filters, granted, strict=False) if code > 1
                    ]
                    if refused:  # connecting again would not change it; the rest works
                        self.log.warning(
                            "backbone refused the subscription to %s", ", ".join(refused)
                        )
        except TimeoutError as err:
            self._abort(conn)
            raise BackboneError("no answer in time") from err
        except BaseException:
            self._abort(conn)
            raise
        self.connected = True
        self.connects += 1

    def _abort(self, conn: Connection | None) -> None:
        if conn is not None:
            if self._conn is conn:
                self._conn = None
            conn.abort()

    async def start(self, online: Callable[[], Awaitable[Any]]) -> None:
        """Connect (waiting for the broker as long as it takes), then stay connected for ever.

        ``online()`` is awaited after each connection made again (the service says it is
        online: its retained status may have been lost with the broker).
        """
        delay = RETRY_FIRST
        while True:
            try:
                await self.connect()
                break
            except BROKER_ERRORS as err:
                if delay == RETRY_FIRST:
                    self.log.warning("backbone %s not reachable (%s); retrying", self.where, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        if delay != RETRY_FIRST:
            self.log.info("backbone connected at %s", self.where)
        self._keeper = asyncio.create_task(self._keep(online), name=f"{self.service}-backbone")

    async def _keep(self, online: Callable[[], Awaitable[Any]]) -> None:
        """Wait while connected (the connection pings); when it is lost, connect again."""
        while True:
            conn = self._conn
            if conn is not None:
                await asyncio.wait([conn.lost])
                continue
            delay = RETRY_FIRST
            while True:
                await asyncio.sleep(delay)
                try:
                    await self.connect()
                    break
                except BROKER_ERRORS as err:
                    self.log.debug("backbone %s not reachable: %s", self.where, err)
                    delay = min(delay * 2, RETRY_MAX)
            self.log.info("backbone connected at %s", self.where)
            for callback in self.on_reconnect:
                callback()
            await online()

    async def heartbeat(self, status: Callable[[], Awaitable[Any]], every: float) -> None:
        """``status()`` every ``every`` seconds while connected, for ever (cancel to stop)."""
        while True:
            if self.connected:
                await status()
            await asyncio.sleep(every)

    async def publish(self, where: str, payload: bytes, qos: int, retain: bool) -> bool:
        """Publish ``payload`` on ``where``; False (and counted) when the broker is away.

        At QoS 1 it returns once the broker has acknowledged the message.
        """
        conn = self._conn
        if not self.connected or conn is None:
            self.unsent += 1
            return False
        try:
            await conn.publish_acked(where, payload, qos, retain)
        except BackboneError:
            self.unsent += 1
            return False
        return True

    async def publish_status(self, payload: bytes) -> bool:
        """Publish this service's status (retained)."""
        _, retained, qos = ROUTES["service_status"]
        return await self.publish(self.status_topic, payload, qos, retained)

    async def say_offline(self, payload: bytes) -> None:
        """The status ``offline`` at a stop, if it can go within OFFLINE_WAIT."""
        with contextlib.suppress(TimeoutError):  # publish answers False when the broker is away
            async with asyncio.timeout(OFFLINE_WAIT):
                await self.publish_status(payload)

    async def read_retained(
        self,
        topics: Sequence[str],
        status: Callable[[], Awaitable[bool]],
        what: str,
        wait: float = RETAINED_WAIT,
    ) -> dict[str, bytes]:
        """The retained message of each of ``topics``, by topic, read once and not followed.

        ``status()`` publishes this service's own status (retained) first; one subscription to
        those exact topics, that status last: the broker sends the retained messages of a
        subscription in the order of its filters, so once the status is in, so is every
        retained message asked for. Nothing more is received afterwards. Empty when the broker
        is away; ``wait`` bounds it; ``what`` names the topics in the warning when not all came.
        """
        found: dict[str, bytes] = {}
        if not topics or not await status():
            return found
        inbox: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
        filters = [*topics, self.status_topic]
        for name in filters:
            self._taps[name] = inbox
        try:
            async with asyncio.timeout(wait):
                # one QoS for all: delivered in the order sent
                await self._connection().subscribe([(f, 1) for f in filters])
                while True:
                    where, payload, retain = await inbox.get()
                    if where == self.status_topic:
                        break
                    if retain:
                        found[where] = payload
        except (TimeoutError, *BROKER_ERRORS) as err:
            self.log.warning("retained messages on %s not all read: %s", what, type(err).__name__)
        finally:
            for name in filters:
                self._taps.pop(name, None)
            with contextlib.suppress(BackboneError):  # nothing waits for the UNSUBACK
                self._connection().unsubscribe(filters)
        return found

    async def stop_connecting(self) -> None:
        """Connect no more when the connection is lost (a stop is under way)."""
        if self._keeper is not None:
            await cancel(self._keeper)
            self._keeper = None

    async def close(self) -> None:
        """Stop connecting again, say goodbye to the broker (no last will then) and close."""
        await self.stop_connecting()
        conn, self._conn = self._conn, None  # its end is no outage
        self.connected = False
        if conn is not None:
            await conn.close()  # what is written still goes out


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for its end."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

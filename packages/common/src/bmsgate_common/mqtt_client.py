"""bmsgate's MQTT 3.1.1 client: one session over TCP or TLS, on asyncio, with plain arguments.

The backbone (``mqtt.Backbone``), the publisher's external targets and the command-line tools
all speak MQTT through this one connection layer; ``mqtt_wire`` makes and reads the packets.
It knows no topics, models or settings: whoever opens a connection passes host, port, login,
last will and TLS context, and decides what to do when the connection is lost (the backbone
and a target both connect again, for ever).

``publish`` writes and returns at once ("publish and go"); at QoS 1 the message counts as
unacknowledged until its PUBACK (at QoS 2, which only a sender asks for, until PUBCOMP), and
``drain()`` waits until none is left, so a sender can hand over a whole window of messages and
wait once. ``publish_acked`` waits for its own acknowledgement.
A connection pings the broker when nothing went either way for half the keepalive and closes
itself when the broker stays silent for a whole keepalive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from . import mqtt_wire as wire
from .mqtt_wire import Message

if TYPE_CHECKING:
    import ssl

__all__ = ["Connection", "Message", "MqttError", "Refused", "Will", "connect", "tls_context"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 10.0  # [s] for the TCP (and TLS) connection and the CONNACK together
CLOSE_WAIT: Final = 1.0  # [s] for the broker to close its side after DISCONNECT
# QoS 2 publishes between PUBLISH and PUBCOMP at once; the rest wait here. Mosquitto drops a
# client that has more than its max_inflight_messages (20 by default) of them open
QOS2_IN_FLIGHT: Final = 10


class MqttError(Exception):
    """The broker refused, broke or lost the connection, or did not answer in time."""


class Refused(MqttError):
    """The broker answered CONNECT with a refusal; ``code`` is the CONNACK return code."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(
            f"connection refused: {wire.REFUSED.get(code, f'CONNACK return code {code}')}"
        )


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes for this client when its connection breaks."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A TLS context that checks the broker's certificate and name.

    Against the system's CA certificates, or only against ``ca_file`` (PEM) when given: a
    broker with a certificate of its own CA.
    """
    import ssl  # here: a process without TLS runs without it (the edge run's readers)

    return ssl.create_default_context(cafile=ca_file)


def _retrieved(future: asyncio.Future[bytes]) -> None:
    # a request nobody awaits (an UNSUBSCRIBE, a SUBSCRIBE made while running) fails with the
    # connection; reading its error here keeps asyncio from printing it when it is collected
    if not future.cancelled():
        future.exception()


class Connection(asyncio.Protocol):
    """One MQTT session on one connection to a broker; made by ``connect``.

    Incoming PUBLISHes go to ``on_message`` when one was given (called in the loop, for each
    message as it is read: it must not block), else they wait for ``messages()``. A QoS 1
    message is acknowledged before it is handed over.
    """

    def __init__(
        self,
        keepalive: int,
        on_message: Callable[[Message], None] | None,
        on_lost: Callable[[Connection], None] | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.keepalive = keepalive
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = loop.create_future()  # done when the connection ends
        self.last_in = self.last_out = loop.time()
        self._time = loop.time
        self._buf = bytearray()
        self._on_message = on_message
        self._on_lost = on_lost
        self._inbox: asyncio.Queue[Message | None] | None = (
            None if on_message is not None else asyncio.Queue()
        )
        self._connack: asyncio.Future[bytes] = loop.create_future()
        self._waiting: dict[int, asyncio.Future[bytes]] = {}  # PUBACK/SUBACK/UNSUBACK by id
        self._unacked: set[int] = set()  # QoS 1 and 2 publishes sent and not acknowledged
        self._qos2_open = 0  # QoS 2 publishes written and not completed
        self._qos2_held: deque[bytes] = deque()  # QoS 2 publishes waiting for their turn
        self._drained: asyncio.Future[None] | None = None  # resolved when _unacked empties
        self._writable: asyncio.Future[None] | None = None  # while the transport is paused
        self._next_id = 0
        self._pinger: asyncio.Task[None] | None = None
        self._error: MqttError | None = None  # why the connection ended, when it did

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_in = self._time()
        self._buf += data
        try:
            for packet in wire.split(self._buf):
                self._on_packet(packet)
        except (wire.ProtocolError, MqttError) as err:
            log.warning("MQTT connection closed: %s", err)
            self._error = MqttError(str(err))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        error = self._error or MqttError(
            f"connection lost: {exc}" if exc else "connection closed by the broker"
        )
        self._error = error
        if self._pinger is not None:
            self._pinger.cancel()
        if not self._connack.done():
            self._connack.set_exception(MqttError(f"{error} before CONNACK"))
            self._connack.exception()  # read: nobody may be waiting any more
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()
        for waiter in (self._drained, self._writable):
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # read: its waiter may have timed out already
        if self._inbox is not None:
            self._inbox.put_nowait(None)
        if not self.lost.done():
            self.lost.set_result(None)
        if self._on_lost is not None:
            self._on_lost(self)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # packets in

    def _on_packet(self, packet: wire.Packet) -> None:
        kind = packet.kind
        if kind == wire.PUBLISH:
            msg = wire.message(packet)
            if msg.qos:
                self._write(wire.puback(msg.packet_id))
            if self._on_message is not None:
                self._on_message(msg)
            elif self._inbox is not None:
                self._inbox.put_nowait(msg)
        elif kind == wire.PUBREC:  # QoS 2, first half: release it, then wait for PUBCOMP
            self._write(wire.pubrel(wire.packet_id(packet)))
        elif kind in (wire.PUBACK, wire.PUBCOMP, wire.SUBACK, wire.UNSUBACK):
            packet_id = wire.packet_id(packet)
            future = self._waiting.pop(packet_id, None)
            if future is not None:
                if not future.done():
                    future.set_result(packet.body[2:])
            elif packet_id in self._unacked:
                self._unacked.discard(packet_id)
                if kind == wire.PUBCOMP:
                    self._qos2_open -= 1
                    if self._qos2_held:
                        self._qos2_open += 1
                        self._write(self._qos2_held.popleft())
                if not self._unacked and self._drained is not None and not self._drained.done():
                    self._drained.set_result(None)
        elif kind == wire.CONNACK:
            if not self._connack.done():
                self._connack.set_result(packet.body)
        elif kind != wire.PINGRESP:
            raise wire.ProtocolError(f"unexpected packet type {kind} from the broker")

    # packets out

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (or is ending)."""
        return self.transport is None or self.transport.is_closing() or self.lost.done()

    def _write(self, data: bytes) -> None:
        if self.closed:
            raise self._error or MqttError("connection closed")
        assert self.transport is not None
        self.last_out = self._time()
        self.transport.write(data)

    def _new_id(self) -> int:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._waiting and self._next_id not in self._unacked:
                return self._next_id
        raise MqttError("every packet id is in use")

    def request(self, build: Callable[[int], bytes]) -> asyncio.Future[bytes]:
        """Send the packet ``build(packet_id)``; the body of its acknowledgement, when it comes.

        Fails with ``MqttError`` when the connection ends first.
        """
        packet_id = self._new_id()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        self._write(build(packet_id))
        self._waiting[packet_id] = future
        return future

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Write a PUBLISH and return; at QoS 1 (2) unacknowledged until PUBACK (PUBCOMP)."""
        if qos:
            if self.closed:
                raise self._error or MqttError("connection closed")
            packet_id = self._new_id()
            packet = wire.publish(topic, payload, qos, retain, packet_id)
            if qos == 2 and self._qos2_open >= QOS2_IN_FLIGHT:
                self._qos2_held.append(packet)
            else:
                self._write(packet)
                self._qos2_open += qos == 2
            self._unacked.add(packet_id)
        else:
            self._write(wire.publish(topic, payload, 0, retain))

    async def publish_acked(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish at QoS 0 or 1; at QoS 1 return once the broker has acknowledged it."""
        if qos > 1:
            raise ValueError("publish_acked sends at QoS 0 or 1; QoS 2: publish and drain")
        if qos:
            await self.request(lambda pid: wire.publish(topic, payload, 1, retain, pid))
        else:
            self._write(wire.publish(topic, payload, 0, retain))

    @property
    def unacked(self) -> int:
        """QoS 1 and 2 messages sent with ``publish`` and not acknowledged yet."""
        return len(self._unacked)

    async def drain(self) -> None:
        """Wait until what was written has left and every QoS 1/2 ``publish`` is acknowledged.

        ``MqttError`` when the connection ends first; bound it with ``asyncio.timeout``.
        """
        loop = asyncio.get_running_loop()
        while self._writable is not None and not self._writable.done():
            await asyncio.shield(self._writable)
        if self._unacked:
            if self._drained is None or self._drained.done():
                self._drained = loop.create_future()
            await asyncio.shield(self._drained)
        if self._error is not None:
            raise self._error

    def subscribe(self, filters: list[tuple[str, int]]) -> asyncio.Future[bytes]:
        """Subscribe to (filter, qos) pairs in one SUBSCRIBE; the SUBACK's return codes.

        The broker answers the filters in this order: a code of 0 or 1 is the QoS granted,
        0x80 a refusal. Awaiting it is optional.
        """
        return self.request(lambda pid: wire.subscribe(pid, filters))

    def unsubscribe(self, filters: list[str]) -> asyncio.Future[bytes]:
        """Unsubscribe from ``filters``; the UNSUBACK when it comes (awaiting it is optional)."""
        return self.request(lambda pid: wire.unsubscribe(pid, filters))

    async def messages(self) -> AsyncIterator[Message]:
        """The messages of the subscriptions as they come; ``MqttError`` when the connection ends.

        Only for a connection made without ``on_message``.
        """
        if self._inbox is None:
            raise TypeError("this connection hands its messages to on_message")
        while True:
            msg = await self._inbox.get()
            if msg is None:
                self._inbox.put_nowait(None)  # for any other reader
                raise self._error or MqttError("connection closed")
            yield msg

    async def _ping(self) -> None:
        """Ping when nothing went or came for half the keepalive; give up after a silent one."""
        half = self.keepalive / 2
        while True:
            await asyncio.sleep(half)
            now = self._time()
            if now - self.last_in > self.keepalive:  # a ping went unanswered
                self._error = MqttError(f"broker silent for {self.keepalive} s")
                log.warning("MQTT broker silent for %d s; closing the connection", self.keepalive)
                self.abort()
                return
            if now - self.last_out >= half or now - self.last_in >= half:
                with contextlib.suppress(MqttError):
                    self._write(wire.PING)

    def abort(self) -> None:
        """Drop the connection at once (the broker then publishes the last will)."""
        if self.transport is not None:
            self.transport.abort()

    async def close(self) -> None:
        """Say DISCONNECT (the broker drops the last will), let what is written go, and wait."""
        if self._error is None:
            self._error = MqttError("connection closed")
        with contextlib.suppress(MqttError):
            self._write(wire.BYE)
        if self.transport is not None:
            self.transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT):
                await self.lost
        self.abort()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect(
    host: str,
    port: int,
    *,
    client_id: str,
    keepalive: int = 60,
    will: Will | None = None,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
    on_message: Callable[[Message], None] | None = None,
    on_lost: Callable[[Connection], None] | None = None,
) -> Connection:
    """Open a clean MQTT 3.1.1 session with the broker at ``host``:``port``.

    ``tls`` turns TLS on (the broker's name is checked against ``host``); ``on_lost`` is called
    once when the connection ends, whichever way. Raises ``Refused`` when the broker refuses
    (its reason in words), ``MqttError`` when it does not answer within CONNECT_TIMEOUT, ``OSError``
    (``ssl.SSLError`` among them) when the connection itself fails.
    """
    loop = asyncio.get_running_loop()
    packet = wire.connect(
        client_id,
        keepalive,
        will=None if will is None else (will.topic, will.payload, will.qos, will.retain),
        username=username,
        password=password if username is not None else None,
    )
    conn: Connection | None = None
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _, conn = await loop.create_connection(
                lambda: Connection(keepalive, on_message, on_lost),
                host,
                port,
                ssl=tls,
                server_hostname=host if tls is not None else None,
            )
            conn._write(packet)
            answer = await conn._connack
    except TimeoutError as err:
        if conn is not None:
            conn.abort()
        raise MqttError(f"no answer from {host}:{port} within {CONNECT_TIMEOUT:g} s") from err
    except BaseException:
        if conn is not None:
            conn.abort()
        raise
    if len(answer) < 2 or answer[1]:
        conn.abort()
        if len(answer) < 2:
            raise MqttError(f"CONNACK {answer.hex()} is too short")
        raise Refused(answer[1])
    if keepalive:
        conn._pinger = asyncio.create_task(conn._ping(), name=f"mqtt-ping-{client_id}")
    return conn

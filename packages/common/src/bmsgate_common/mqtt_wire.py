"""MQTT 3.1.1 packets as bytes, both ways: the backbone's protocol, with no I/O here.

Only what bmsgate uses (OASIS MQTT Version 3.1.1, 2014, section 3): CONNECT with a last will
and a login, PUBLISH at QoS 0 and 1 (and 2 outgoing: an external target may be set to it, with
PUBREL after the broker's PUBREC), SUBSCRIBE and UNSUBSCRIBE, PINGREQ, DISCONNECT; from the
broker CONNACK, PUBLISH, PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK and PINGRESP. No subscription
asks for QoS 2 (every topic of the map is QoS 0 or 1), so the broker never sends a PUBLISH at it.
"""

from __future__ import annotations

from typing import Final, NamedTuple

CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
PUBREC: Final = 5
PUBREL: Final = 6
PUBCOMP: Final = 7
SUBSCRIBE: Final = 8
SUBACK: Final = 9
UNSUBSCRIBE: Final = 10
UNSUBACK: Final = 11
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14

PING: Final = b"\xc0\x00"
BYE: Final = b"\xe0\x00"
# CONNACK return codes 1-5 (section 3.2.2.3)
REFUSED: Final = {
    1: "protocol version refused",
    2: "client id refused",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized (check the user name and password)",  # Mosquitto's answer to both
}


class ProtocolError(ValueError):
    """The broker sent something that is not MQTT 3.1.1 as the backbone speaks it."""


class Packet(NamedTuple):
    """One packet from the broker: its type, the flags of its first byte and its body."""

    kind: int
    flags: int
    body: bytes


class Message(NamedTuple):
    """A PUBLISH from the broker."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    packet_id: int  # 0 at QoS 0


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _length(len(body)) + body


def connect(
    client_id: str,
    keepalive: int,
    *,
    will: tuple[str, bytes, int, bool] | None = None,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT with a clean session; ``will`` is (topic, payload, qos, retain)."""
    flags = 0x02
    payload = _str(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | qos << 3 | (0x20 if retain else 0)
        payload += _str(topic) + _str(message)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    head = _str("MQTT") + bytes((4, flags)) + keepalive.to_bytes(2, "big")
    return _packet(CONNECT << 4, head + payload)


def publish(topic: str, payload: bytes, qos: int, retain: bool, packet_id: int = 0) -> bytes:
    """PUBLISH; ``packet_id`` only at QoS 1 and 2."""
    body = _str(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return _packet(PUBLISH << 4 | qos << 1 | retain, body)


def puback(packet_id: int) -> bytes:
    """The acknowledgement of a QoS 1 PUBLISH received."""
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


def pubrel(packet_id: int) -> bytes:
    """The release of a QoS 2 PUBLISH sent, once the broker has said PUBREC."""
    return b"\x62\x02" + packet_id.to_bytes(2, "big")


def subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    """SUBSCRIBE to (filter, qos) pairs in one packet: the broker answers them in this order."""
    body = packet_id.to_bytes(2, "big") + b"".join(_str(f) + bytes((q,)) for f, q in filters)
    return _packet(SUBSCRIBE << 4 | 2, body)


def unsubscribe(packet_id: int, filters: list[str]) -> bytes:
    """UNSUBSCRIBE from ``filters``."""
    body = packet_id.to_bytes(2, "big") + b"".join(_str(f) for f in filters)
    return _packet(UNSUBSCRIBE << 4 | 2, body)


def split(buf: bytearray) -> list[Packet]:
    """Take every whole packet off the front of ``buf``; a partial one stays for more bytes."""
    out: list[Packet] = []
    pos = 0
    end = len(buf)
    while end - pos >= 2:
        length = 0
        scale = 1
        i = pos + 1
        whole = False
        while i < end:
            byte = buf[i]
            i += 1
            length += (byte & 0x7F) * scale
            if not byte & 0x80:
                whole = True
                break
            scale *= 128
            if scale > 128**3:
                raise ProtocolError("remaining length longer than 4 bytes")
        if not whole or i + length > end:
            break  # the length or the body is not all in yet
        first = buf[pos]
        out.append(Packet(first >> 4, first & 0x0F, bytes(buf[i : i + length])))
        pos = i + length
    if pos:
        del buf[:pos]
    return out


def message(packet: Packet) -> Message:
    """The PUBLISH in ``packet``."""
    body = packet.body
    qos = (packet.flags >> 1) & 0x03
    if qos > 1 or len(body) < 2:
        raise ProtocolError(f"PUBLISH with QoS {qos} or no topic")
    n = int.from_bytes(body[:2], "big")
    start = 2 + n + (2 if qos else 0)
    if len(body) < start:
        raise ProtocolError("PUBLISH shorter than its topic")
    topic = body[2 : 2 + n].decode("utf-8", "replace")
    packet_id = int.from_bytes(body[2 + n : start], "big") if qos else 0
    return Message(topic, body[start:], qos, bool(packet.flags & 0x01), packet_id)


def packet_id(packet: Packet) -> int:
    """The packet id at the start of a PUBACK, PUBREC, PUBCOMP, SUBACK or UNSUBACK."""
    if len(packet.body) < 2:
        raise ProtocolError(f"packet type {packet.kind} without a packet id")
    return int.from_bytes(packet.body[:2], "big")

"""MQTT 3.1.1 packets: the bytes the specification gives, and packets split across reads."""

from __future__ import annotations

import pytest

from bmsgate_common import mqtt_wire as wire


def test_connect_carries_the_will_and_the_login() -> None:
    packet = wire.connect("c1", 60, will=("s/x", b"off", 1, True), username="u", password="p")
    # fixed header, "MQTT" level 4, flags: user, password, will retain, will QoS 1, will, clean
    assert packet[:1] == b"\x10"
    assert packet[2:10] == b"\x00\x04MQTT\x04" + bytes((0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02,))
    assert packet[10:12] == (60).to_bytes(2, "big")
    assert packet[12:] == b"\x00\x02c1" + b"\x00\x03s/x" + b"\x00\x03off" + b"\x00\x01u\x00\x01p"
    assert packet[1] == len(packet) - 2


def test_connect_without_a_login_has_no_login_flags() -> None:
    packet = wire.connect("c", 30)
    assert packet[9] == 0x02  # clean session only


def test_publish_qos1_carries_its_packet_id_and_the_retain_flag() -> None:
    assert wire.publish("a/b", b"{}", 1, True, 7) == b"\x33\x09\x00\x03a/b\x00\x07{}"
    assert wire.publish("a/b", b"{}", 0, False) == b"\x30\x07\x00\x03a/b{}"


def test_qos2_publish_and_its_release() -> None:
    # PUBLISH with QoS bits 10; PUBREL is type 6 with the reserved flags 0010 (section 3.6.1)
    assert wire.publish("a", b"", 2, False, 258) == b"\x34\x05\x00\x01a\x01\x02"
    assert wire.pubrel(258) == b"\x62\x02\x01\x02"


def test_a_long_payload_takes_a_multi_byte_length() -> None:
    payload = bytes(200)
    packet = wire.publish("t", payload, 0, False)
    assert packet[1:3] == bytes((203 % 128 | 0x80, 203 // 128))  # 3 + 200 bytes
    [got] = wire.split(bytearray(packet))
    assert wire.message(got) == wire.Message("t", payload, 0, False, 0)


def test_subscribe_and_unsubscribe_are_type_flags_0010() -> None:
    assert (
        wire.subscribe(1, [("a/+", 0), ("b", 1)]) == b"\x82\x0c\x00\x01\x00\x03a/+\x00\x00\x01b\x01"
    )
    assert wire.unsubscribe(2, ["b"]) == b"\xa2\x05\x00\x02\x00\x01b"


def test_split_keeps_a_partial_packet_for_the_next_read() -> None:
    stream = (
        wire.publish("x/1", b"one", 1, False, 9)
        + b"\x90\x03\x00\x01\x00"  # SUBACK id 1, granted QoS 0
        + wire.publish("x/2", bytes(300), 0, True)
    )
    buf = bytearray()
    got: list[wire.Packet] = []
    for i in range(len(stream)):  # one byte a read: the worst a socket can do
        buf += stream[i : i + 1]
        got += wire.split(buf)
    assert not buf
    assert [p.kind for p in got] == [wire.PUBLISH, wire.SUBACK, wire.PUBLISH]
    assert wire.message(got[0]) == wire.Message("x/1", b"one", 1, False, 9)
    assert wire.packet_id(got[1]) == 1 and got[1].body[2:] == b"\x00"
    assert wire.message(got[2]) == wire.Message("x/2", bytes(300), 0, True, 0)


def test_garbage_is_a_protocol_error_not_a_crash() -> None:
    with pytest.raises(wire.ProtocolError):
        wire.split(bytearray(b"\x30\xff\xff\xff\xff\x01"))  # a length of five bytes
    with pytest.raises(wire.ProtocolError):
        wire.message(wire.Packet(wire.PUBLISH, 0x04, b"\x00\x01a"))  # QoS 2 is never asked for
    with pytest.raises(wire.ProtocolError):
        wire.message(wire.Packet(wire.PUBLISH, 0x00, b"\x00\x09ab"))  # topic longer than packet
    with pytest.raises(wire.ProtocolError):
        wire.packet_id(wire.Packet(wire.PUBACK, 0, b"\x01"))

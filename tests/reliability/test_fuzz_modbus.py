"""The Modbus TCP server: malformed frames from the network to the running modbus service.

Random MBAP headers (transaction, protocol id, length that lies), unit ids, function codes and
bodies, plus plain garbage and half frames left open. The server never dies and still answers a
valid read afterwards (and every 50 frames).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient

from bmsgate.broker import free_port, wait_for_port
from bmsgate_modbus.registers import BASE
from bmsgate_modbus.server import RequestRefused
from tests.reliability.counts import COUNTS
from tests.support.procs import Mosquitto, Proc, start_service, write_config

pytestmark = pytest.mark.integration
HOST = "127.0.0.1"
EXAMPLES = 300
DIAG_FRAMES = 5

frames = st.one_of(
    st.builds(
        lambda tid, proto, length, unit, fc, body: (
            struct.pack(">HHHBB", tid, proto, length, unit, fc) + body
        ),
        st.integers(0, 0xFFFF),
        st.sampled_from([0, 0, 1, 0xFFFF]) | st.integers(0, 0xFFFF),
        st.sampled_from([0, 1, 2, 6, 7, 253, 254, 255, 256, 0xFFFF]) | st.integers(0, 0xFFFF),
        st.sampled_from([0, 1, 2, 247, 255]) | st.integers(0, 255),
        st.sampled_from([1, 2, 3, 4, 5, 6, 15, 16, 17, 22, 23, 43, 0x80, 0x83, 0])
        | st.integers(0, 255),
        st.binary(max_size=260),
    ),
    st.binary(min_size=1, max_size=300),  # no header at all
)


def valid_read(port: int) -> bool:
    client = ModbusTcpClient(HOST, port=port, timeout=2, retries=0)
    try:
        if not client.connect():
            return False
        reply = client.read_holding_registers(BASE, count=2, device_id=1)
        # garage has no state yet: a Modbus exception reply is an answer too
        return reply is not None
    finally:
        client.close()


def test_malformed_frames_do_not_stop_the_server(
    tmp_path: Path, mosquitto: Mosquitto, procs: list[Proc]
) -> None:
    port = free_port()
    config = {
        "mqtt": {"host": HOST, "port": mosquitto.port, "heartbeat": 2},
        "buses": [{"port": "/dev/null", "protocol": "daly_classic", "packs": [{"id": "garage"}]}],
        "timezone": "UTC",
        "modbus": {"host": HOST, "port": port, "display": {"dashboards": 1}},
        "data_dir": str(tmp_path / "data"),
    }
    proc = start_service(tmp_path, "modbus", write_config(tmp_path, config))
    procs.append(proc)
    assert wait_for_port(HOST, port, 15), proc.log()
    assert valid_read(port)
    held: list[socket.socket] = []
    sent = 0

    @settings(
        max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(frames, st.booleans())
    def send(frame: bytes, leave_open: bool) -> None:
        nonlocal sent
        sock = socket.create_connection((HOST, port), timeout=2)
        sock.sendall(frame)
        sent += 1
        if leave_open and len(held) < 20:
            held.append(sock)  # a half frame on an open connection
        else:
            sock.settimeout(0.01)
            with contextlib.suppress(TimeoutError, OSError):
                sock.recv(512)
            sock.close()
        if sent % 50 == 0:
            assert valid_read(port), f"no answer after {sent} malformed frames"

    send()
    # pipelined: many malformed frames in one stream, then a valid request on the same connection
    with socket.create_connection((HOST, port), timeout=2) as sock:
        sock.sendall(b"".join(struct.pack(">HHHBB", i, 0, 2, 1, 0x63) for i in range(100)))
        sent += 100
    # an unknown diagnostic sub-function (FC 8, 0x0E01): pymodbus 3.16 raises KeyError inside
    for i in range(DIAG_FRAMES):
        with socket.create_connection((HOST, port), timeout=2) as sock:
            sock.sendall(struct.pack(">HHHBBHB", i, 0, 5, 1, 8, 0x0E01, 0))
            with contextlib.suppress(TimeoutError, OSError):
                sock.recv(512)
        sent += 1
    for sock in held:
        sock.close()
    assert valid_read(port)
    assert proc.alive()
    log = proc.log()
    # requests pymodbus itself cannot serve are answered DEVICE_FAILURE with one warning line
    refused = log.count("request refused (DEVICE_FAILURE)")
    assert refused >= DIAG_FRAMES
    assert "Traceback" not in log, log[-3000:]
    COUNTS["modbus: requests answered DEVICE_FAILURE, one warning line each"] += refused
    COUNTS["modbus: malformed frames sent"] += sent
    COUNTS["modbus: valid reads answered in between"] += sent // 50 + 2


def test_a_failure_in_our_own_code_keeps_its_traceback() -> None:
    def record(text: str) -> logging.LogRecord:
        return logging.LogRecord("pymodbus.logging", logging.ERROR, "x", 1, text, None, None)

    pymodbus_own = record(
        "Datastore unable to fulfill request: 3585; Traceback (most recent call last):\n"
        '  File ".../pymodbus/pdu/diag_message.py", line 78, in datastore_update\n'
        "KeyError: 3585\n"
    )
    ours = record(
        "Datastore unable to fulfill request: x; Traceback (most recent call last):\n"
        '  File ".../bmsgate_modbus/server.py", line 1, in _access\nValueError: x\n'
    )
    refused = RequestRefused()
    assert refused.filter(pymodbus_own) and refused.filter(ours)
    assert pymodbus_own.levelname == "WARNING"
    assert pymodbus_own.getMessage() == "request refused (DEVICE_FAILURE): KeyError: 3585"
    assert ours.levelname == "ERROR" and "Traceback" in ours.getMessage()
